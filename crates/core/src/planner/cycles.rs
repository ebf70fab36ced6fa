//! Breaking prerequisite cycles (MODEL §5, §12).
//!
//! Only links that keep their order prerequisites can close a cycle (all links under
//! `waves`; under `bridge`, links with a `chains: false` end).
//!
//! A link from a single-identity client to an atomic server is a cycle by itself
//! (MODEL §12): `switch(s)` must wait for the client to show its new leaf, which must
//! wait for `s` to trust new, which `switch(s)` does. Each is declared, and no other
//! choice can spare it.
//!
//! Once those are gone, a cycle needs a step that both waits for another node and is
//! waited for by one; only `switch` is both, so every remaining cycle runs through
//! links between atomic nodes, where `switch(s)` waits for `switch(c)`. Each strongly
//! connected part of that atomic link graph is made acyclic by declaring a minimum
//! feedback arc set of its links as disruptions:
//!
//! * **exact** for parts of at most [`EXACT_LIMIT`] nodes: a dynamic programme over
//!   subsets finds the node order with the fewest backward links (O(2ⁿ·n));
//! * **heuristic** beyond: the greedy order of Eades, Lin and Smyth (1993): repeatedly
//!   take sinks to the back, sources to the front, else the node with the largest
//!   out-minus-in degree to the front; the links that point backwards are dropped,
//!   then each is put back if it closes no cycle with the links kept (within a work
//!   budget), so no declared disruption is superfluous.
//!
//! Either way the remaining links of the part follow one order, so they are acyclic,
//! and no link outside a cycle is ever declared.

use rustc_hash::FxHashSet;

use crate::fleet::{Fleet, Link, NodeIx};
use crate::plan::Disruption;
use crate::state::Mode;

/// Largest strongly connected part solved exactly.
pub const EXACT_LIMIT: usize = 16;

/// How the disruptions were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CycleMethod {
    /// There was no cycle.
    None,
    /// Every cycle was broken by an exact minimum.
    Exact,
    /// At least one part was too large and used the heuristic.
    Heuristic,
}

impl CycleMethod {
    /// The name written in plan files.
    pub fn as_str(self) -> &'static str {
        match self {
            CycleMethod::None => "none",
            CycleMethod::Exact => "exact",
            CycleMethod::Heuristic => "heuristic",
        }
    }
}

/// The chosen disruptions.
pub(crate) struct Breaking {
    pub disrupted: FxHashSet<Link>,
    pub disruptions: Vec<Disruption>,
    pub method: CycleMethod,
}

/// What bridges would do for a declared link, for its reason.
fn bridge_note(fleet: &Fleet, link: Link) -> String {
    if fleet.bridgeable(link) {
        "; bridges (`--strategy bridge`) would keep it up".to_string()
    } else {
        let end = if fleet.chains[link.client as usize] {
            link.server
        } else {
            link.client
        };
        format!(
            "; bridges cannot help: `{}` has `chains: false`",
            fleet.id(end)
        )
    }
}

/// Choose the disruptions; `bridged` selects the bridge strategy, under which only
/// links with a `chains: false` end keep order prerequisites.
pub(crate) fn break_cycles(fleet: &Fleet, bridged: bool) -> Breaking {
    let n = fleet.len();
    let mut breaking = Breaking {
        disrupted: FxHashSet::default(),
        disruptions: Vec::new(),
        method: CycleMethod::None,
    };
    // Atomic-to-atomic links with a multi-identity client, as adjacency lists; links
    // from a single-identity client to an atomic server are cycles of their own.
    let mut adjacency: Vec<Vec<NodeIx>> = vec![Vec::new(); n];
    for &l in &fleet.links {
        if l.is_self() || fleet.mode(l.server) != Mode::Atomic || (bridged && fleet.bridgeable(l)) {
            continue;
        }
        if fleet.single(l.client) {
            let reason = format!(
                "`{c}` presents one certificate as client and server (identity: single) and \
                 `{s}` is atomic: `{s}` stops trusting old clients when it switches, and \
                 `{c}` may show its new leaf only once `{s}` trusts new, so no order keeps \
                 this link up{note}",
                c = fleet.id(l.client),
                s = fleet.id(l.server),
                note = bridge_note(fleet, l)
            );
            if breaking.disrupted.insert(l) {
                breaking.disruptions.push(Disruption {
                    client: fleet.id(l.client).to_string(),
                    server: fleet.id(l.server).to_string(),
                    reason,
                });
                breaking.method = breaking.method.max(CycleMethod::Exact);
            }
        } else if fleet.mode(l.client) == Mode::Atomic {
            adjacency[l.client as usize].push(l.server);
        }
    }
    let mut incoming: Vec<Vec<NodeIx>> = vec![Vec::new(); n];
    for (u, targets) in adjacency.iter().enumerate() {
        for &v in targets {
            incoming[v as usize].push(u as NodeIx);
        }
    }
    // Longest chain of switches ending at each node, filled in topological order of the
    // parts (Tarjan emits them sinks first) so ties between equally small cuts can be
    // broken towards fewer waves.
    let mut depth = vec![0u32; n];
    let mut parts = strongly_connected(&adjacency);
    parts.reverse();
    for part in parts {
        let entry: Vec<u32> = part
            .iter()
            .map(|&v| {
                incoming[v as usize]
                    .iter()
                    .filter(|u| part.binary_search(u).is_err())
                    .map(|&u| depth[u as usize] + 1)
                    .max()
                    .unwrap_or(1)
            })
            .collect();
        if part.len() < 2 {
            depth[part[0] as usize] = entry[0];
            continue;
        }
        let (backward, method) = if part.len() <= EXACT_LIMIT {
            let minimum = exact_minimum(&part, &adjacency);
            let best = shallowest_cut(&part, &adjacency, &entry, minimum);
            (best, CycleMethod::Exact)
        } else {
            (
                greedy_order_backward(&part, &adjacency),
                CycleMethod::Heuristic,
            )
        };
        breaking.method = breaking.method.max(method);
        for (v, d) in part_depths(&part, &adjacency, &entry, &backward).unwrap_or_default() {
            depth[v as usize] = d;
        }
        let total_links: usize = part
            .iter()
            .map(|&u| {
                adjacency[u as usize]
                    .iter()
                    .filter(|v| part.contains(v))
                    .count()
            })
            .sum();
        let names = node_list(fleet, &part);
        for link in backward {
            let reason = format!(
                "atomic nodes {names} form a prerequisite cycle (each may switch only after \
                 its clients did); no order keeps all {total_links} of their links up, and \
                 dropping this one is part of the {} choice of the fewest links to drop{}",
                match method {
                    CycleMethod::Exact => "exact",
                    _ => "heuristic",
                },
                bridge_note(fleet, link)
            );
            breaking.disruptions.push(Disruption {
                client: fleet.id(link.client).to_string(),
                server: fleet.id(link.server).to_string(),
                reason,
            });
            breaking.disrupted.insert(link);
        }
    }
    breaking
}

fn node_list(fleet: &Fleet, part: &[NodeIx]) -> String {
    const SHOWN: usize = 6;
    let mut names: Vec<&str> = part.iter().take(SHOWN).map(|&n| fleet.id(n)).collect();
    names.sort_unstable();
    let more = part.len().saturating_sub(SHOWN);
    if more > 0 {
        format!("{{{}, and {more} more}}", names.join(", "))
    } else {
        format!("{{{}}}", names.join(", "))
    }
}

/// Tarjan's algorithm, iterative (deep chains must not overflow the stack).
fn strongly_connected(adjacency: &[Vec<NodeIx>]) -> Vec<Vec<NodeIx>> {
    const UNSEEN: u32 = u32::MAX;
    let n = adjacency.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<NodeIx> = Vec::new();
    let mut parts = Vec::new();
    let mut next = 0u32;
    let mut call: Vec<(NodeIx, usize)> = Vec::new();
    for root in 0..n as NodeIx {
        if index[root as usize] != UNSEEN || adjacency[root as usize].is_empty() {
            continue;
        }
        call.push((root, 0));
        index[root as usize] = next;
        low[root as usize] = next;
        next += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        while let Some(top) = call.last_mut() {
            let v = top.0;
            if let Some(&w) = adjacency[v as usize].get(top.1) {
                top.1 += 1;
                if index[w as usize] == UNSEEN {
                    index[w as usize] = next;
                    low[w as usize] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w as usize] = true;
                    call.push((w, 0));
                } else if on_stack[w as usize] {
                    low[v as usize] = low[v as usize].min(index[w as usize]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                low[parent as usize] = low[parent as usize].min(low[v as usize]);
            }
            if low[v as usize] == index[v as usize] {
                let mut part = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    part.push(w);
                    if w == v {
                        break;
                    }
                }
                part.sort_unstable();
                parts.push(part);
            }
        }
    }
    parts
}

/// Most cut sets tried when choosing among equally small ones.
const TIE_BREAK_CANDIDATES: u64 = 4096;

/// Among the cut sets as small as `minimum`, the one leaving the shortest chain of
/// switches through the part (fewer waves); `minimum` itself when there are too many
/// to try or none is shorter.
fn shallowest_cut(
    part: &[NodeIx],
    adjacency: &[Vec<NodeIx>],
    entry: &[u32],
    minimum: Vec<Link>,
) -> Vec<Link> {
    let arcs: Vec<Link> = part
        .iter()
        .flat_map(|&u| {
            adjacency[u as usize]
                .iter()
                .filter(|v| part.binary_search(v).is_ok())
                .map(move |&v| Link {
                    client: u,
                    server: v,
                })
        })
        .collect();
    let k = minimum.len();
    let depth_of = |cut: &[Link]| {
        part_depths(part, adjacency, entry, cut).map(|d| d.iter().map(|x| x.1).max().unwrap_or(0))
    };
    let Some(mut best_depth) = depth_of(&minimum) else {
        return minimum;
    };
    if binomial(arcs.len() as u64, k as u64) > TIE_BREAK_CANDIDATES {
        return minimum;
    }
    let mut best = minimum;
    let mut chosen = Vec::with_capacity(k);
    let mut indices: Vec<usize> = (0..k).collect();
    loop {
        chosen.clear();
        chosen.extend(indices.iter().map(|&i| arcs[i]));
        if let Some(d) = depth_of(&chosen)
            && d < best_depth
        {
            best_depth = d;
            best = chosen.clone();
        }
        // Next combination of k indices out of arcs.len(), in lexicographic order.
        let Some(pos) = (0..k).rev().find(|&p| indices[p] < arcs.len() - k + p) else {
            break;
        };
        indices[pos] += 1;
        for q in pos + 1..k {
            indices[q] = indices[q - 1] + 1;
        }
    }
    best
}

fn binomial(n: u64, k: u64) -> u64 {
    (0..k).fold(1u64, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// Longest chain of switches ending at each node of `part` once `cut` is dropped,
/// starting from `entry` (chains arriving from outside); `None` if cycles remain.
fn part_depths(
    part: &[NodeIx],
    adjacency: &[Vec<NodeIx>],
    entry: &[u32],
    cut: &[Link],
) -> Option<Vec<(NodeIx, u32)>> {
    let k = part.len();
    let mut waiting = vec![0usize; k];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &u) in part.iter().enumerate() {
        for &v in &adjacency[u as usize] {
            let Ok(j) = part.binary_search(&v) else {
                continue;
            };
            if cut.contains(&Link {
                client: u,
                server: v,
            }) {
                continue;
            }
            out[i].push(j);
            waiting[j] += 1;
        }
    }
    let mut depth = entry.to_vec();
    let mut ready: Vec<usize> = (0..k).filter(|&i| waiting[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &j in &out[i] {
            depth[j] = depth[j].max(depth[i] + 1);
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(j);
            }
        }
    }
    (seen == k).then(|| part.iter().copied().zip(depth).collect())
}

/// Links inside `part` pointing backwards in the node order that minimises them.
fn exact_minimum(part: &[NodeIx], adjacency: &[Vec<NodeIx>]) -> Vec<Link> {
    let k = part.len();
    let local = |v: NodeIx| part.binary_search(&v).ok();
    // out_mask[i]: local targets of part[i].
    let out_mask: Vec<u32> = part
        .iter()
        .map(|&u| {
            adjacency[u as usize]
                .iter()
                .filter_map(|&v| local(v))
                .fold(0u32, |m, j| m | 1 << j)
        })
        .collect();
    let full = (1usize << k) - 1;
    // best[mask]: fewest backward links when the nodes of `mask` come first.
    let mut best = vec![u32::MAX; full + 1];
    let mut choice = vec![0u8; full + 1];
    best[0] = 0;
    for mask in 0..full {
        let here = best[mask];
        if here == u32::MAX {
            continue;
        }
        for (i, &out) in out_mask.iter().enumerate() {
            if mask & (1 << i) != 0 {
                continue;
            }
            // Placing i after `mask`: its links into `mask` point backwards.
            let cost = here + (out & mask as u32).count_ones();
            let next = mask | 1 << i;
            if cost < best[next] {
                best[next] = cost;
                choice[next] = i as u8;
            }
        }
    }
    let mut order = Vec::with_capacity(k);
    let mut mask = full;
    while mask != 0 {
        let i = choice[mask] as usize;
        order.push(i);
        mask &= !(1 << i);
    }
    order.reverse();
    backward_links(part, &order, &out_mask)
}

fn backward_links(part: &[NodeIx], order: &[usize], out_mask: &[u32]) -> Vec<Link> {
    let mut position = vec![0usize; part.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut links = Vec::new();
    for (i, &out) in out_mask.iter().enumerate() {
        for (j, &pos_j) in position.iter().enumerate() {
            if out & (1 << j) != 0 && pos_j < position[i] {
                links.push(Link {
                    client: part[i],
                    server: part[j],
                });
            }
        }
    }
    links
}

/// The Eades–Lin–Smyth greedy order; returns the links pointing backwards in it.
fn greedy_order_backward(part: &[NodeIx], adjacency: &[Vec<NodeIx>]) -> Vec<Link> {
    let k = part.len();
    let local = |v: NodeIx| part.binary_search(&v).ok();
    let out: Vec<Vec<usize>> = part
        .iter()
        .map(|&u| {
            let mut v: Vec<usize> = adjacency[u as usize]
                .iter()
                .filter_map(|&w| local(w))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let mut inc: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (u, targets) in out.iter().enumerate() {
        for &v in targets {
            inc[v].push(u);
        }
    }
    let mut out_deg: Vec<i64> = out.iter().map(|v| v.len() as i64).collect();
    let mut in_deg: Vec<i64> = inc.iter().map(|v| v.len() as i64).collect();
    let mut alive = vec![true; k];
    let mut front = Vec::with_capacity(k);
    let mut back = Vec::with_capacity(k);
    let mut left = k;
    let remove =
        |v: usize, alive: &mut Vec<bool>, out_deg: &mut Vec<i64>, in_deg: &mut Vec<i64>| {
            alive[v] = false;
            for &w in &out[v] {
                in_deg[w] -= 1;
            }
            for &u in &inc[v] {
                out_deg[u] -= 1;
            }
        };
    while left > 0 {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for v in 0..k {
                if alive[v] && out_deg[v] == 0 {
                    back.push(v);
                    remove(v, &mut alive, &mut out_deg, &mut in_deg);
                    left -= 1;
                    progressed = true;
                } else if alive[v] && in_deg[v] == 0 {
                    front.push(v);
                    remove(v, &mut alive, &mut out_deg, &mut in_deg);
                    left -= 1;
                    progressed = true;
                }
            }
        }
        if let Some(v) = (0..k)
            .filter(|&v| alive[v])
            .max_by_key(|&v| (out_deg[v] - in_deg[v], std::cmp::Reverse(v)))
        {
            front.push(v);
            remove(v, &mut alive, &mut out_deg, &mut in_deg);
            left -= 1;
        }
    }
    back.reverse();
    front.extend(back);
    let mut position = vec![0usize; k];
    for (pos, &i) in front.iter().enumerate() {
        position[i] = pos;
    }
    let mut backward: Vec<(usize, usize)> = Vec::new();
    for (u, targets) in out.iter().enumerate() {
        for &v in targets {
            if position[v] < position[u] {
                backward.push((u, v));
            }
        }
    }
    if backward.len() * out.iter().map(Vec::len).sum::<usize>() <= IRREDUNDANT_BUDGET {
        backward = irredundant(&out, backward);
    }
    backward
        .into_iter()
        .map(|(u, v)| Link {
            client: part[u],
            server: part[v],
        })
        .collect()
}

/// Work budget (dropped links × links) for making a heuristic choice irredundant.
const IRREDUNDANT_BUDGET: usize = 50_000_000;

/// Put back every dropped link that closes no cycle with the links kept so far, so no
/// declared disruption is superfluous.
fn irredundant(out: &[Vec<usize>], dropped: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let k = out.len();
    let dropped_set: FxHashSet<(usize, usize)> = dropped.iter().copied().collect();
    let mut kept: Vec<Vec<usize>> = out
        .iter()
        .enumerate()
        .map(|(u, t)| {
            t.iter()
                .copied()
                .filter(|&v| !dropped_set.contains(&(u, v)))
                .collect()
        })
        .collect();
    let mut mark = vec![0u32; k];
    let mut epoch = 0u32;
    let mut still = Vec::new();
    for (u, v) in dropped {
        // Adding u -> v closes a cycle iff v already reaches u.
        epoch += 1;
        let mut stack = vec![v];
        let mut closes = false;
        while let Some(x) = stack.pop() {
            if x == u {
                closes = true;
                break;
            }
            if mark[x] != epoch {
                mark[x] = epoch;
                stack.extend(&kept[x]);
            }
        }
        if closes {
            still.push((u, v));
        } else {
            kept[u].push(v);
        }
    }
    still
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjacency(n: usize, arcs: &[(u32, u32)]) -> Vec<Vec<NodeIx>> {
        let mut adj = vec![Vec::new(); n];
        for &(a, b) in arcs {
            adj[a as usize].push(b);
        }
        adj
    }

    #[test]
    fn ring_needs_one_link_and_two_rings_sharing_an_arc_need_one() {
        let adj = adjacency(3, &[(0, 1), (1, 2), (2, 0)]);
        let parts = strongly_connected(&adj);
        assert_eq!(parts, vec![vec![0, 1, 2]]);
        assert_eq!(exact_minimum(&parts[0], &adj).len(), 1);
        // 0->1->2->0 and 0->1->3->0 share 0->1.
        let adj = adjacency(4, &[(0, 1), (1, 2), (2, 0), (1, 3), (3, 0)]);
        let part = strongly_connected(&adj)
            .into_iter()
            .find(|p| p.len() == 4)
            .unwrap();
        assert_eq!(exact_minimum(&part, &adj).len(), 1);
    }

    #[test]
    fn ties_between_minimum_cuts_go_to_the_shallowest() {
        // Ring 1->2->3->4->1 fed by 0->1. Cutting 4->1 leaves the chain 0,1,2,3,4 (five
        // switches); cutting 1->2 leaves 2,3,4,1 after 0->1 (four).
        let adj = adjacency(5, &[(1, 2), (2, 3), (3, 4), (4, 1), (0, 1)]);
        let part = vec![1, 2, 3, 4];
        let entry = [2, 1, 1, 1];
        let worst = vec![Link {
            client: 4,
            server: 1,
        }];
        let chosen = shallowest_cut(&part, &adj, &entry, worst);
        assert_eq!(
            chosen,
            vec![Link {
                client: 1,
                server: 2
            }]
        );
    }

    #[test]
    fn greedy_breaks_every_cycle() {
        // A complete tournament-like digraph on 20 nodes: both directions everywhere.
        let mut arcs = Vec::new();
        for a in 0..20u32 {
            for b in 0..20u32 {
                if a != b {
                    arcs.push((a, b));
                }
            }
        }
        let adj = adjacency(20, &arcs);
        let part: Vec<NodeIx> = (0..20).collect();
        let cut: FxHashSet<(u32, u32)> = greedy_order_backward(&part, &adj)
            .into_iter()
            .map(|l| (l.client, l.server))
            .collect();
        assert_eq!(cut.len(), 190, "exactly one of each pair of opposite links");
        let rest: Vec<(u32, u32)> = arcs.into_iter().filter(|a| !cut.contains(a)).collect();
        let rest_adj = adjacency(20, &rest);
        assert!(strongly_connected(&rest_adj).iter().all(|p| p.len() == 1));
    }
}
