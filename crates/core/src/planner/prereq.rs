//! The prerequisites of MODEL §4 as a graph on steps.
//!
//! For a link `c -> s` (not a self-link, not disrupted): `s` starts showing the new
//! leaf (present/switch) only after `c` took its first step (stage/switch), and `c`
//! drops the old root (retire/finalize) only after `s` shows the new leaf. The rule
//! "retire(s) after first(c)" is implied through present(s) and adds no edge.
//! A node's own steps are chained in order.

use rustc_hash::FxHashSet;

use crate::fleet::{Fleet, Link, NodeIx};
use crate::state::Mode;

/// Steps of a fleet, densely numbered node by node, with prerequisite edges in
/// compressed form.
pub(crate) struct Prerequisites {
    /// First step index of each node; node `n` owns `base[n]..base[n + 1]`.
    pub base: Vec<u32>,
    /// Successor lists: `succ[offsets[s]..offsets[s + 1]]`.
    pub offsets: Vec<u32>,
    pub succ: Vec<u32>,
    /// Cross-node predecessor count per step (for `after` lists).
    pub cross_in: Vec<u32>,
}

/// Index, among a node's steps, of its first step (stage or switch).
fn first_rank(_mode: Mode) -> u32 {
    0
}

/// Index of the step where a node starts presenting the new leaf.
fn shows_rank(mode: Mode) -> u32 {
    match mode {
        Mode::Bundle => 1,
        Mode::Atomic => 0,
    }
}

/// Index of the step where a node drops the old root.
fn last_rank(mode: Mode) -> u32 {
    mode.steps().len() as u32 - 1
}

impl Prerequisites {
    pub fn build(fleet: &Fleet, disrupted: &FxHashSet<Link>) -> Prerequisites {
        let mut base = Vec::with_capacity(fleet.len() + 1);
        let mut total = 0u32;
        for &mode in &fleet.modes {
            base.push(total);
            total += mode.steps().len() as u32;
        }
        base.push(total);
        let step = |n: NodeIx, rank: u32| base[n as usize] + rank;

        let cross: Vec<(u32, u32)> = fleet
            .links
            .iter()
            .filter(|l| !l.is_self() && !disrupted.contains(l))
            .flat_map(|l| {
                let (cm, sm) = (fleet.mode(l.client), fleet.mode(l.server));
                [
                    (
                        step(l.client, first_rank(cm)),
                        step(l.server, shows_rank(sm)),
                    ),
                    (
                        step(l.server, shows_rank(sm)),
                        step(l.client, last_rank(cm)),
                    ),
                ]
            })
            .collect();

        let n = total as usize;
        let mut offsets = vec![0u32; n + 1];
        let mut cross_in = vec![0u32; n];
        for &(from, to) in &cross {
            offsets[from as usize + 1] += 1;
            cross_in[to as usize] += 1;
        }
        for node in 0..fleet.len() {
            for s in base[node]..base[node + 1] - 1 {
                offsets[s as usize + 1] += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut succ = vec![0u32; offsets[n] as usize];
        let mut push = |from: u32, to: u32| {
            succ[fill[from as usize] as usize] = to;
            fill[from as usize] += 1;
        };
        for node in 0..fleet.len() {
            for s in base[node]..base[node + 1] - 1 {
                push(s, s + 1);
            }
        }
        for (from, to) in cross {
            push(from, to);
        }
        Prerequisites {
            base,
            offsets,
            succ,
            cross_in,
        }
    }

    pub fn step_count(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn successors(&self, step: u32) -> &[u32] {
        &self.succ[self.offsets[step as usize] as usize..self.offsets[step as usize + 1] as usize]
    }
}
