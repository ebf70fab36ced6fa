//! Placing each step in the earliest wave its prerequisites allow (the longest chain
//! before it), and writing the plan file of MODEL §8.

use crate::fleet::Fleet;
use crate::plan::{PLAN_FORMAT, Plan, Step};

use super::cycles::Breaking;
use super::prereq::Prerequisites;

/// Earliest wave of every step (longest chain of prerequisites before it), by Kahn's
/// algorithm over the successor lists. The graph is acyclic once cycles are broken.
pub(crate) fn earliest_waves(graph: &Prerequisites) -> Vec<u32> {
    let n = graph.step_count();
    let mut waiting = vec![0u32; n];
    for &t in &graph.succ {
        waiting[t as usize] += 1;
    }
    let mut wave = vec![0u32; n];
    let mut ready: Vec<u32> = (0..n as u32)
        .filter(|&s| waiting[s as usize] == 0)
        .collect();
    let mut head = 0;
    while head < ready.len() {
        let s = ready[head];
        head += 1;
        let next = wave[s as usize] + 1;
        for &t in graph.successors(s) {
            let t = t as usize;
            wave[t] = wave[t].max(next);
            waiting[t] -= 1;
            if waiting[t] == 0 {
                ready.push(t as u32);
            }
        }
    }
    debug_assert_eq!(
        head, n,
        "prerequisites must be acyclic after breaking cycles"
    );
    wave
}

pub(crate) fn waves_plan(
    fleet: &Fleet,
    graph: &Prerequisites,
    breaking: Breaking,
    strategy: &str,
) -> Plan {
    let wave = earliest_waves(graph);
    let n = graph.step_count();
    let mut step_node = vec![0u32; n];
    for node in 0..fleet.len() {
        for s in graph.base[node]..graph.base[node + 1] {
            step_node[s as usize] = node as u32;
        }
    }
    // Ids follow (wave, node, rank): readable, and a node's steps stay in order.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by_key(|&s| (wave[s as usize], s));
    let mut id_of = vec![0u64; n];
    for (id, &s) in order.iter().enumerate() {
        id_of[s as usize] = id as u64;
    }
    let mut after: Vec<Vec<u64>> = graph
        .cross_in
        .iter()
        .map(|&c| Vec::with_capacity(c as usize))
        .collect();
    for s in 0..n as u32 {
        for &t in graph.successors(s) {
            if step_node[t as usize] != step_node[s as usize] {
                after[t as usize].push(id_of[s as usize]);
            }
        }
    }
    let steps = order
        .iter()
        .map(|&s| {
            let node = step_node[s as usize];
            let rank = s - graph.base[node as usize];
            let mut prereqs = std::mem::take(&mut after[s as usize]);
            prereqs.sort_unstable();
            // Two links between the same nodes can ask for the same prerequisite.
            prereqs.dedup();
            Step {
                id: id_of[s as usize],
                node: fleet.id(node).to_string(),
                action: fleet.steps(node, graph.bridged)[rank as usize],
                wave: wave[s as usize],
                after: prereqs,
            }
        })
        .collect();
    Plan {
        format: PLAN_FORMAT.to_string(),
        ca: fleet.ca.clone(),
        strategy: Some(strategy.to_string()),
        cycle_breaking: Some(breaking.method.as_str().to_string()),
        steps,
        disruptions: breaking.disruptions,
        comparison: Vec::new(),
    }
}
