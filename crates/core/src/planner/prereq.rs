//! The prerequisites of MODEL §4, §11 and §12 as a graph on steps.
//!
//! For a link `c -> s` (not a self-link, not disrupted) that keeps its order
//! prerequisites (every link under `waves`; under `bridge`, links with a
//! `chains: false` end):
//!
//! * §4: `s` starts showing the new leaf (present/switch) only after `c` took its first
//!   step (stage/switch), and `c` drops the old root (retire/finalize) only after `s`
//!   shows the new leaf. "retire(s) after first(c)" is implied through present(s).
//! * §12, when `c` has a single identity: `c` shows its new leaf (as a client too) only
//!   after `s` took its first step, and `s` narrows `t_srv` to `{new}` (retire/switch)
//!   only after `c` shows its new leaf.
//!
//! For a link whose ends both support chains, under `bridge` (§11): every mode step of
//! either end comes after the other end's `bridge` (the first mode step suffices, a
//! node's own steps being ordered), and each end's `unbridge` after the other end's
//! first mode step.
//!
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
    /// Whether nodes that support chains take `bridge`/`unbridge` steps.
    pub bridged: bool,
}

/// Index, among a node's mode steps, of its first step (stage or switch).
fn first_rank(_mode: Mode) -> u32 {
    0
}

/// Index of the mode step where a node starts presenting the new leaf.
fn shows_rank(mode: Mode) -> u32 {
    match mode {
        Mode::Bundle => 1,
        Mode::Atomic => 0,
    }
}

/// Index of the mode step where a node drops the old root.
fn last_rank(mode: Mode) -> u32 {
    mode.steps().len() as u32 - 1
}

/// Index of the mode step where a node stops trusting old clients (`t_srv = {new}`).
fn narrow_rank(mode: Mode) -> u32 {
    match mode {
        Mode::Bundle => 2,
        Mode::Atomic => 0,
    }
}

impl Prerequisites {
    /// The graph for a fleet; `bridged` selects the bridge strategy's steps and
    /// prerequisites. Links in `disrupted` add no prerequisite.
    pub fn build(fleet: &Fleet, disrupted: &FxHashSet<Link>, bridged: bool) -> Prerequisites {
        let mut base = Vec::with_capacity(fleet.len() + 1);
        // Offset of the first mode step within each node's steps: 1 after `bridge`.
        let mut shift = Vec::with_capacity(fleet.len());
        let mut total = 0u32;
        for node in 0..fleet.len() as NodeIx {
            base.push(total);
            let steps = fleet.steps(node, bridged);
            shift.push(u32::from(steps.len() != fleet.mode(node).steps().len()));
            total += steps.len() as u32;
        }
        base.push(total);
        let mode_step = |n: NodeIx, rank: u32| base[n as usize] + shift[n as usize] + rank;
        let bridge_step = |n: NodeIx| base[n as usize];
        let unbridge_step = |n: NodeIx| base[n as usize + 1] - 1;

        let mut cross: Vec<(u32, u32)> = Vec::with_capacity(fleet.links.len() * 2);
        for l in &fleet.links {
            if l.is_self() || disrupted.contains(l) {
                continue;
            }
            let (c, s) = (l.client, l.server);
            let (cm, sm) = (fleet.mode(c), fleet.mode(s));
            if bridged && fleet.bridgeable(*l) {
                cross.extend([
                    (bridge_step(c), mode_step(s, 0)),
                    (bridge_step(s), mode_step(c, 0)),
                    (mode_step(s, first_rank(sm)), unbridge_step(c)),
                    (mode_step(c, first_rank(cm)), unbridge_step(s)),
                ]);
                continue;
            }
            cross.extend([
                (mode_step(c, first_rank(cm)), mode_step(s, shows_rank(sm))),
                (mode_step(s, shows_rank(sm)), mode_step(c, last_rank(cm))),
            ]);
            if fleet.single(c) {
                cross.extend([
                    (mode_step(s, first_rank(sm)), mode_step(c, shows_rank(cm))),
                    (mode_step(c, shows_rank(cm)), mode_step(s, narrow_rank(sm))),
                ]);
            }
        }

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
            bridged,
        }
    }

    pub fn step_count(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn successors(&self, step: u32) -> &[u32] {
        &self.succ[self.offsets[step as usize] as usize..self.offsets[step as usize + 1] as usize]
    }
}
