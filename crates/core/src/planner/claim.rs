//! The source design's literal order (MODEL §9), kept for fidelity and comparison.
//!
//! Starting from one node, nodes of notice are walked breadth-first; each party linked
//! to the node of notice that is not yet ordered is appended at the end when the node
//! of notice is its client, and put at the front when the node of notice is its server
//! (the first link in file order decides when both hold). Nodes the walk cannot reach
//! are walked the same way from the first of them, appended at the end. Steps then run
//! one at a time: every node's first step in that order, then every second step, and so
//! on. No disruption is declared: whether the order is safe is the verifier's call.

use std::collections::VecDeque;

use crate::error::CoreError;
use crate::fleet::{Fleet, NodeIx};
use crate::plan::{PLAN_FORMAT, Plan, Step};

/// The claim's node order.
pub(crate) fn claim_order(fleet: &Fleet, start: NodeIx) -> Vec<NodeIx> {
    let n = fleet.len();
    // Parties of each node in link order, with whether the node is their client.
    let mut parties: Vec<Vec<(NodeIx, bool)>> = vec![Vec::new(); n];
    for l in fleet.links.iter().filter(|l| !l.is_self()) {
        parties[l.client as usize].push((l.server, true));
        parties[l.server as usize].push((l.client, false));
    }
    let mut ordered = vec![false; n];
    let mut order: VecDeque<NodeIx> = VecDeque::with_capacity(n);
    let mut notice: VecDeque<NodeIx> = VecDeque::new();
    let starts = std::iter::once(start).chain(0..n as NodeIx);
    for root in starts {
        if ordered[root as usize] {
            continue;
        }
        ordered[root as usize] = true;
        order.push_back(root);
        notice.push_back(root);
        while let Some(x) = notice.pop_front() {
            for &(party, x_is_client) in &parties[x as usize] {
                if ordered[party as usize] {
                    continue;
                }
                ordered[party as usize] = true;
                if x_is_client {
                    order.push_back(party);
                } else {
                    order.push_front(party);
                }
                notice.push_back(party);
            }
        }
    }
    order.into()
}

pub(crate) fn plan_claim(fleet: &Fleet, start: Option<&str>) -> Result<Plan, CoreError> {
    // An id the rule refuses is no target either; said without quoting it.
    if let Some(Err(bad)) = start.map(crate::ids::check_node_id) {
        return Err(CoreError::Planning(format!("start node: {bad}")));
    }
    let start = match start {
        Some(id) => fleet.node(id).ok_or_else(|| {
            CoreError::Planning(format!("start node `{id}` is not a target of the rotation"))
        })?,
        None => 0,
    };
    let order = if fleet.is_empty() {
        Vec::new()
    } else {
        claim_order(fleet, start)
    };
    let rounds = fleet
        .modes
        .iter()
        .map(|m| m.steps().len())
        .max()
        .unwrap_or(0);
    let mut steps: Vec<Step> = Vec::with_capacity(fleet.step_count());
    let mut previous: Option<(u64, NodeIx)> = None;
    for round in 0..rounds {
        for &node in &order {
            let Some(&action) = fleet.mode(node).steps().get(round) else {
                continue;
            };
            let id = steps.len() as u64;
            let after = match previous {
                Some((p, pnode)) if pnode != node => vec![p],
                _ => Vec::new(),
            };
            steps.push(Step {
                id,
                node: fleet.id(node).to_string(),
                action,
                wave: id as u32,
                after,
            });
            previous = Some((id, node));
        }
    }
    Ok(Plan {
        format: PLAN_FORMAT.to_string(),
        ca: fleet.ca.clone(),
        strategy: Some("claim".to_string()),
        cycle_breaking: Some("none".to_string()),
        steps,
        disruptions: Vec::new(),
        comparison: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    #[test]
    fn a_start_node_the_id_rule_refuses_is_not_quoted() {
        let topology = Topology::parse("t.yaml", "ca: r\nnodes:\n  - {id: a}\n").unwrap();
        let fleet = Fleet::new(&topology);
        let e = plan_claim(&fleet, Some("a\u{1b}]0;x\u{7}")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot plan: start node: a node id must be printable: U+001B (a control character) at byte 1"
        );
        assert!(plan_claim(&fleet, Some("a")).is_ok());
    }

    #[test]
    fn clients_go_earlier_and_servers_later() {
        // a is client of b; c is client of a.
        let t = Topology::parse(
            "t.yaml",
            "ca: r\nlinks:\n  - {client: a, server: b}\n  - {client: c, server: a}\n",
        )
        .unwrap();
        let f = Fleet::new(&t);
        let order: Vec<&str> = claim_order(&f, 0).iter().map(|&n| f.id(n)).collect();
        assert_eq!(order, ["c", "a", "b"]);
    }
}
