//! A plan resolved against a fleet: the partial order on steps that the executor may
//! run and the verifier must check, with every reference checked.
//!
//! Resolving rejects plans that do not fit the topology (another CA, unknown nodes,
//! steps that are not the node's mode's steps in order, unknown or cyclic `after`),
//! naming the step's line and field.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::CoreError;
use crate::fleet::{Fleet, Link, NodeIx};
use crate::plan::Plan;
use crate::source::{Document, PathPart};

/// Dense index of a step: its position in the plan's `steps`.
pub type StepIx = u32;

/// A plan's steps as a checked partial order.
#[derive(Debug, Clone)]
pub struct PlanOrder {
    /// The node of each step.
    pub step_node: Vec<NodeIx>,
    /// Each step's position among its node's steps (0-based).
    pub step_rank: Vec<u8>,
    /// Each node's steps, in order.
    pub node_steps: Vec<Vec<StepIx>>,
    /// Direct predecessors of each step: its `after` plus its node's previous step.
    pub preds: Vec<Vec<StepIx>>,
    /// Steps in an order where every step comes after its predecessors.
    pub topological: Vec<StepIx>,
    /// Links declared as disruptions.
    pub disrupted: FxHashSet<Link>,
    /// Whether the plan bridges (has `bridge`/`unbridge` steps): then every node that
    /// supports chains takes them around its mode's steps, and MODEL §11's rule applies.
    pub bridged: bool,
}

impl PlanOrder {
    /// Check `plan` against `fleet` and build its partial order. `doc` is the plan's
    /// source, used to place errors (pass a document with empty text when there is none).
    pub fn resolve(plan: &Plan, fleet: &Fleet, doc: &Document<'_>) -> Result<PlanOrder, CoreError> {
        use PathPart::{Index, Key};
        // Again here, for plans that were built in memory rather than parsed: the
        // messages below quote node ids.
        plan.check_ids(doc)?;
        if plan.ca != fleet.ca {
            return Err(doc.error_in(
                &[Key("ca")],
                format!(
                    "the plan rotates `{}` but the topology rotates `{}`",
                    plan.ca, fleet.ca
                ),
            ));
        }
        let n = plan.steps.len();
        let bridged = plan.steps.iter().any(|s| s.action.is_bridge());
        let mut by_id: FxHashMap<u64, StepIx> = FxHashMap::default();
        by_id.reserve(n);
        let mut step_node = Vec::with_capacity(n);
        let mut step_rank = Vec::with_capacity(n);
        let mut node_steps: Vec<Vec<StepIx>> = vec![Vec::new(); fleet.len()];
        for (i, step) in plan.steps.iter().enumerate() {
            // Waves are numbered from 0 and none is empty in a plan without gaps, so a
            // wave number at or past the step count is a typo (and would make the
            // executor size its per-wave tallies by it).
            if step.wave as usize >= n {
                return Err(doc.error_in(
                    &[Key("steps"), Index(i), Key("wave")],
                    format!(
                        "step {} is in wave {}, but a plan of {n} steps has waves 0 to {} at most",
                        step.id,
                        step.wave,
                        n - 1
                    ),
                ));
            }
            if by_id.insert(step.id, i as StepIx).is_some() {
                return Err(doc.error_in(
                    &[Key("steps"), Index(i), Key("id")],
                    format!("duplicate step id {}", step.id),
                ));
            }
            let Some(node) = fleet.node(&step.node) else {
                return Err(doc.error_in(
                    &[Key("steps"), Index(i), Key("node")],
                    format!("`{}` is not a target node of the topology", step.node),
                ));
            };
            let profile = fleet.profile(node);
            let mode = profile.mode;
            let expected_steps = profile.steps(bridged);
            let taken = &mut node_steps[node as usize];
            let expected = expected_steps.get(taken.len());
            if expected != Some(&step.action) {
                let message = if step.action.is_bridge() && !profile.chains {
                    format!(
                        "`{}` has `chains: false`: it cannot send bridges, so it takes no `{}` step",
                        step.node, step.action
                    )
                } else {
                    match expected {
                        Some(next) => format!(
                            "`{}` is a {}: its next step is `{next}`, not `{}`",
                            step.node,
                            kind(mode, bridged, profile.chains),
                            step.action
                        ),
                        None => format!(
                            "`{}` is a {} and already has all its steps ({})",
                            step.node,
                            kind(mode, bridged, profile.chains),
                            steps_list(expected_steps)
                        ),
                    }
                };
                return Err(doc.error_in(&[Key("steps"), Index(i), Key("action")], message));
            }
            step_rank.push(taken.len() as u8);
            taken.push(i as StepIx);
            step_node.push(node);
        }
        for (node, taken) in node_steps.iter().enumerate() {
            let profile = fleet.profile(node as NodeIx);
            let expected_steps = profile.steps(bridged);
            if taken.len() != expected_steps.len() {
                return Err(doc.error_in(
                    &[Key("steps")],
                    format!(
                        "{} `{}` must have the steps {} but has {}",
                        kind(profile.mode, bridged, profile.chains),
                        fleet.id(node as NodeIx),
                        steps_list(expected_steps),
                        taken.len()
                    ),
                ));
            }
        }
        let mut preds: Vec<Vec<StepIx>> = Vec::with_capacity(n);
        for (i, step) in plan.steps.iter().enumerate() {
            let mut p = Vec::with_capacity(step.after.len() + 1);
            let rank = step_rank[i] as usize;
            if rank > 0 {
                p.push(node_steps[step_node[i] as usize][rank - 1]);
            }
            for (k, id) in step.after.iter().enumerate() {
                match by_id.get(id) {
                    Some(&j) => p.push(j),
                    None => {
                        return Err(doc.error_in(
                            &[Key("steps"), Index(i), Key("after"), Index(k)],
                            format!(
                                "step {} waits for step {id}, which is not in the plan",
                                step.id
                            ),
                        ));
                    }
                }
            }
            p.sort_unstable();
            p.dedup();
            preds.push(p);
        }
        let topological = topological_order(&preds).map_err(|cycle| {
            let ids: Vec<String> = cycle
                .iter()
                .map(|&s| plan.steps[s as usize].id.to_string())
                .collect();
            let first = cycle.first().copied().unwrap_or(0) as usize;
            doc.error_in(
                &[Key("steps"), Index(first), Key("after")],
                format!(
                    "the prerequisites form a cycle: steps {} (counting each node's own order)",
                    ids.join(" -> ")
                ),
            )
        })?;
        for (i, s) in plan.steps.iter().enumerate() {
            for &p in &preds[i] {
                if plan.steps[p as usize].wave >= s.wave {
                    return Err(doc.error_in(
                        &[Key("steps"), Index(i), Key("wave")],
                        format!(
                            "step {} is in wave {} but must come after step {} (wave {})",
                            s.id, s.wave, plan.steps[p as usize].id, plan.steps[p as usize].wave
                        ),
                    ));
                }
            }
        }
        let mut disrupted = FxHashSet::default();
        for (i, d) in plan.disruptions.iter().enumerate() {
            let link = fleet.node(&d.client).zip(fleet.node(&d.server));
            match link.map(|(client, server)| Link { client, server }) {
                Some(link) if fleet.links.contains(&link) => {
                    disrupted.insert(link);
                }
                _ => {
                    return Err(doc.error_in(
                        &[Key("disruptions"), Index(i)],
                        format!(
                            "`{} -> {}` is not a link of the rotated CA",
                            d.client, d.server
                        ),
                    ));
                }
            }
        }
        Ok(PlanOrder {
            step_node,
            step_rank,
            node_steps,
            preds,
            topological,
            disrupted,
            bridged,
        })
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.step_node.len()
    }

    /// Whether the plan has no steps.
    pub fn is_empty(&self) -> bool {
        self.step_node.is_empty()
    }

    /// For every step, the length of the longest chain of predecessors before it.
    pub fn levels(&self) -> Vec<u32> {
        let mut level = vec![0u32; self.len()];
        for &s in &self.topological {
            let l = self.preds[s as usize]
                .iter()
                .map(|&p| level[p as usize] + 1)
                .max()
                .unwrap_or(0);
            level[s as usize] = l;
        }
        level
    }
}

fn steps_list(steps: &[crate::state::Action]) -> String {
    let names: Vec<&str> = steps.iter().map(|a| a.as_str()).collect();
    names.join(", ")
}

/// How a node is described in errors: its mode, and whether it bridges in this plan.
fn kind(mode: crate::state::Mode, bridged: bool, chains: bool) -> String {
    if bridged && chains {
        format!("{mode} node in a bridge plan")
    } else {
        format!("{mode} node")
    }
}

/// Kahn's algorithm over predecessor lists; on a cycle, returns the steps of one cycle.
fn topological_order(preds: &[Vec<StepIx>]) -> Result<Vec<StepIx>, Vec<StepIx>> {
    let n = preds.len();
    let mut remaining: Vec<u32> = preds.iter().map(|p| p.len() as u32).collect();
    let mut succ_count = vec![0u32; n + 1];
    for p in preds {
        for &q in p {
            succ_count[q as usize + 1] += 1;
        }
    }
    for i in 0..n {
        succ_count[i + 1] += succ_count[i];
    }
    let offsets = succ_count;
    let mut fill = offsets.clone();
    let mut succ = vec![0 as StepIx; offsets[n] as usize];
    for (s, p) in preds.iter().enumerate() {
        for &q in p {
            succ[fill[q as usize] as usize] = s as StepIx;
            fill[q as usize] += 1;
        }
    }
    let mut order: Vec<StepIx> = (0..n as StepIx)
        .filter(|&s| remaining[s as usize] == 0)
        .collect();
    let mut head = 0;
    while head < order.len() {
        let s = order[head] as usize;
        head += 1;
        for &t in &succ[offsets[s] as usize..offsets[s + 1] as usize] {
            remaining[t as usize] -= 1;
            if remaining[t as usize] == 0 {
                order.push(t);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk predecessors among the unfinished steps until one repeats: that is a cycle.
    let start = (0..n).find(|&s| remaining[s] > 0).unwrap_or(0) as StepIx;
    let mut seen = FxHashMap::default();
    let mut path = Vec::new();
    let mut at = start;
    loop {
        if let Some(&pos) = seen.get(&at) {
            let mut cycle: Vec<StepIx> = path[pos..].to_vec();
            cycle.reverse();
            return Err(cycle);
        }
        seen.insert(at, path.len());
        path.push(at);
        match preds[at as usize]
            .iter()
            .find(|&&p| remaining[p as usize] > 0)
        {
            Some(&p) => at = p,
            None => return Err(path),
        }
    }
}
