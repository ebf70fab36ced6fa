//! Property tests on random fleets (MODEL §4, §5): every `waves` plan verifies safe, has
//! exactly the fewest waves, and declares disruptions only where a cycle forces them;
//! and the verifier agrees link for link with a brute-force walk over every
//! interleaving on small fleets, for safe and deliberately broken plans alike.
//!
//! Everything the tests compare against is recomputed here from MODEL.md directly,
//! not taken from the planner or verifier.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use proptest::prelude::*;
use rollover_core::topology::{Control, LinkSpec, NodeSpec};
use rollover_core::{
    Document, Fleet, Mode, Plan, PlanOrder, Topology, handshake, plan_waves, planner, verify,
};

/// A random fleet: node modes, links (with self-links, repeats and foreign-CA links)
/// and maybe a control channel in the rotated CA.
fn fleet_strategy(max_nodes: usize, max_links_per_node: usize) -> impl Strategy<Value = Topology> {
    (1..=max_nodes, 0.0f64..1.0, any::<bool>()).prop_flat_map(move |(n, atomic_share, control)| {
        let modes = proptest::collection::vec(proptest::bool::weighted(atomic_share), n);
        let links = proptest::collection::vec(
            (0..n, 0..n, proptest::bool::weighted(0.1)),
            0..=(n * max_links_per_node).max(1),
        );
        (modes, links).prop_map(move |(modes, links)| Topology {
            ca: "root".into(),
            nodes: modes
                .iter()
                .enumerate()
                .map(|(i, &atomic)| {
                    NodeSpec::new(
                        format!("n{i}"),
                        if atomic { Mode::Atomic } else { Mode::Bundle },
                    )
                })
                .collect(),
            links: links
                .iter()
                .map(|&(c, s, foreign)| LinkSpec {
                    client: format!("n{c}"),
                    server: format!("n{s}"),
                    ca: foreign.then(|| "elsewhere".to_string()),
                })
                .collect(),
            control: control.then(|| Control { ca: "root".into() }),
        })
    })
}

/// Steps of every node by (node, rank), as MODEL §3 lists them.
struct Steps {
    index: HashMap<(String, usize), usize>,
    count: usize,
}

fn steps_of(fleet: &Fleet) -> Steps {
    let mut index = HashMap::new();
    for (n, id) in fleet.ids.iter().enumerate() {
        for rank in 0..fleet.modes[n].steps().len() {
            let next = index.len();
            index.insert((id.clone(), rank), next);
        }
    }
    let count = index.len();
    Steps { index, count }
}

/// MODEL §4 written out literally, minus the declared disruptions.
fn model_prerequisites(fleet: &Fleet, plan: &Plan) -> (Steps, Vec<(usize, usize)>) {
    let steps = steps_of(fleet);
    let disrupted: HashSet<(&str, &str)> = plan
        .disruptions
        .iter()
        .map(|d| (d.client.as_str(), d.server.as_str()))
        .collect();
    let first = |n: usize| (fleet.ids[n].clone(), 0);
    let shows = |n: usize| match fleet.modes[n] {
        Mode::Bundle => (fleet.ids[n].clone(), 1),
        Mode::Atomic => (fleet.ids[n].clone(), 0),
    };
    let mut edges = Vec::new();
    for (n, id) in fleet.ids.iter().enumerate() {
        for rank in 1..fleet.modes[n].steps().len() {
            edges.push((
                steps.index[&(id.clone(), rank - 1)],
                steps.index[&(id.clone(), rank)],
            ));
        }
    }
    for l in &fleet.links {
        let (c, s) = (l.client as usize, l.server as usize);
        if c == s || disrupted.contains(&(fleet.ids[c].as_str(), fleet.ids[s].as_str())) {
            continue;
        }
        // present(s)/switch(s) after first(c).
        edges.push((steps.index[&first(c)], steps.index[&shows(s)]));
        // retire(s) after first(c), for bundle servers.
        if fleet.modes[s] == Mode::Bundle {
            edges.push((
                steps.index[&first(c)],
                steps.index[&(fleet.ids[s].clone(), 2)],
            ));
        }
        // retire(c) / finalize(c) after shows(s).
        let last = fleet.modes[c].steps().len() - 1;
        edges.push((
            steps.index[&shows(s)],
            steps.index[&(fleet.ids[c].clone(), last)],
        ));
    }
    (steps, edges)
}

/// Longest chain (in steps) of an acyclic edge list, or None on a cycle.
fn longest_chain(count: usize, edges: &[(usize, usize)]) -> Option<usize> {
    let mut indeg = vec![0usize; count];
    let mut out = vec![Vec::new(); count];
    for &(a, b) in edges {
        indeg[b] += 1;
        out[a].push(b);
    }
    let mut depth = vec![1usize; count];
    let mut queue: VecDeque<usize> = (0..count).filter(|&s| indeg[s] == 0).collect();
    let mut seen = 0;
    while let Some(s) = queue.pop_front() {
        seen += 1;
        for &t in &out[s] {
            depth[t] = depth[t].max(depth[s] + 1);
            indeg[t] -= 1;
            if indeg[t] == 0 {
                queue.push_back(t);
            }
        }
    }
    (seen == count).then(|| depth.into_iter().max().unwrap_or(0))
}

/// Atomic-to-atomic arcs (the only place cycles can live), excluding `skip`.
fn atomic_arcs(fleet: &Fleet, skip: &HashSet<(String, String)>) -> Vec<(usize, usize)> {
    fleet
        .links
        .iter()
        .map(|l| (l.client as usize, l.server as usize))
        .filter(|&(c, s)| {
            c != s
                && fleet.modes[c] == Mode::Atomic
                && fleet.modes[s] == Mode::Atomic
                && !skip.contains(&(fleet.ids[c].clone(), fleet.ids[s].clone()))
        })
        .collect()
}

fn acyclic(n: usize, arcs: &[(usize, usize)]) -> bool {
    longest_chain(n, arcs).is_some()
}

fn reaches(n: usize, arcs: &[(usize, usize)], from: usize, to: usize) -> bool {
    let mut out = vec![Vec::new(); n];
    for &(a, b) in arcs {
        out[a].push(b);
    }
    let mut seen = vec![false; n];
    let mut stack = vec![from];
    while let Some(x) = stack.pop() {
        if x == to {
            return true;
        }
        if !std::mem::replace(&mut seen[x], true) {
            stack.extend(&out[x]);
        }
    }
    false
}

/// Fewest arcs whose removal makes `arcs` acyclic, by trying every subset in order of
/// size (only called with few arcs).
fn brute_force_min_cut(n: usize, arcs: &[(usize, usize)]) -> usize {
    for k in 0..=arcs.len() {
        let mut found = false;
        for_each_subset(arcs.len(), k, &mut |chosen| {
            if !found {
                let rest: Vec<_> = arcs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !chosen.contains(i))
                    .map(|(_, a)| *a)
                    .collect();
                found = acyclic(n, &rest);
            }
        });
        if found {
            return k;
        }
    }
    arcs.len()
}

fn for_each_subset(n: usize, k: usize, f: &mut dyn FnMut(&[usize])) {
    fn go(start: usize, n: usize, k: usize, acc: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
        if acc.len() == k {
            f(acc);
            return;
        }
        for i in start..n {
            acc.push(i);
            go(i + 1, n, k, acc, f);
            acc.pop();
        }
    }
    go(0, n, k, &mut Vec::new(), f);
}

/// Every link that breaks in some reachable global state: a walk over all cuts of the
/// plan's partial order (each node's step count), from the initial state.
fn brute_force_broken(fleet: &Fleet, plan: &Plan) -> BTreeSet<(String, String)> {
    let node_of: HashMap<&str, usize> = fleet
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // (node, rank) of every step id, and each step's cross prerequisites.
    let mut rank_seen = vec![0usize; fleet.len()];
    let mut where_is: HashMap<u64, (usize, usize)> = HashMap::new();
    for s in &plan.steps {
        let n = node_of[s.node.as_str()];
        where_is.insert(s.id, (n, rank_seen[n]));
        rank_seen[n] += 1;
    }
    let mut needs: HashMap<(usize, usize), Vec<(usize, usize)>> = HashMap::new();
    for s in &plan.steps {
        needs.insert(
            where_is[&s.id],
            s.after.iter().map(|a| where_is[a]).collect(),
        );
    }
    let disrupted: HashSet<(&str, &str)> = plan
        .disruptions
        .iter()
        .map(|d| (d.client.as_str(), d.server.as_str()))
        .collect();
    let mut broken = BTreeSet::new();
    let start = vec![0usize; fleet.len()];
    let mut seen = HashSet::from([start.clone()]);
    let mut queue = VecDeque::from([start]);
    while let Some(done) = queue.pop_front() {
        for l in &fleet.links {
            let (c, s) = (l.client as usize, l.server as usize);
            let ok = handshake(
                fleet.modes[c].state_after(done[c]),
                fleet.modes[s].state_after(done[s]),
            )
            .is_ok();
            if !ok && !disrupted.contains(&(fleet.ids[c].as_str(), fleet.ids[s].as_str())) {
                broken.insert((fleet.ids[c].clone(), fleet.ids[s].clone()));
            }
        }
        for n in 0..fleet.len() {
            let rank = done[n];
            if rank == fleet.modes[n].steps().len() {
                continue;
            }
            if needs[&(n, rank)].iter().all(|&(m, r)| done[m] > r) {
                let mut next = done.clone();
                next[n] += 1;
                if seen.insert(next.clone()) {
                    queue.push_back(next);
                }
            }
        }
    }
    broken
}

fn verifier_broken(fleet: &Fleet, plan: &Plan) -> BTreeSet<(String, String)> {
    let order =
        PlanOrder::resolve(plan, fleet, &Document::new("<test>", "")).expect("plan resolves");
    let verdict = verify(fleet, plan, &order);
    assert_eq!(verdict.undeclared_count, verdict.broken.len());
    assert_eq!(verdict.safe, verdict.broken.is_empty());
    verdict
        .broken
        .into_iter()
        .map(|b| (b.client, b.server))
        .collect()
}

/// Drop every cross-node prerequisite; keep waves consistent with each node's own order.
fn all_in_one_wave(plan: &Plan) -> Plan {
    let mut plan = plan.clone();
    let mut rank: HashMap<String, u32> = HashMap::new();
    for s in &mut plan.steps {
        s.after.clear();
        let r = rank.entry(s.node.clone()).or_insert(0);
        s.wave = *r;
        *r += 1;
    }
    plan
}

/// Remove the `k`-th prerequisite (counted over all steps' `after` lists).
fn without_prerequisite(plan: &Plan, k: usize) -> Option<Plan> {
    let total: usize = plan.steps.iter().map(|s| s.after.len()).sum();
    if total == 0 {
        return None;
    }
    let mut k = k % total;
    let mut plan = plan.clone();
    for s in &mut plan.steps {
        if k < s.after.len() {
            s.after.remove(k);
            break;
        }
        k -= s.after.len();
    }
    Some(plan)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn waves_plans_are_safe_minimal_and_disrupt_only_cycles(topology in fleet_strategy(300, 4)) {
        let fleet = Fleet::new(&topology);
        let plan = plan_waves(&fleet);
        let order = PlanOrder::resolve(&plan, &fleet, &Document::new("<test>", "")).expect("own plan resolves");
        let verdict = verify(&fleet, &plan, &order);
        prop_assert!(verdict.safe, "unsafe: {:?}", verdict.broken.first());

        // Fewest waves: the longest chain of MODEL §4's prerequisites.
        let (steps, edges) = model_prerequisites(&fleet, &plan);
        let bound = longest_chain(steps.count, &edges).expect("acyclic once disruptions are dropped");
        prop_assert_eq!(plan.wave_count() as usize, bound);
        prop_assert_eq!(verdict.waves as usize, bound);

        // Disruptions only on cycles of atomic links, and none of them redundant.
        let declared: HashSet<(String, String)> = plan
            .disruptions
            .iter()
            .map(|d| (d.client.clone(), d.server.clone()))
            .collect();
        prop_assert_eq!(declared.len(), plan.disruptions.len());
        let all_atomic = atomic_arcs(&fleet, &HashSet::new());
        let rest = atomic_arcs(&fleet, &declared);
        prop_assert!(acyclic(fleet.len(), &rest));
        for (c, s) in &declared {
            let (c, s) = (fleet.node(c).unwrap() as usize, fleet.node(s).unwrap() as usize);
            prop_assert!(all_atomic.contains(&(c, s)), "declared link is not atomic-to-atomic");
            prop_assert!(reaches(fleet.len(), &rest, s, c), "re-adding {c}->{s} closes no cycle: redundant");
        }
        if all_atomic.len() <= 14 {
            prop_assert_eq!(declared.len(), brute_force_min_cut(fleet.len(), &all_atomic));
        }
        // Never worse than the claim's literal order.
        let claim = planner::plan(&fleet, &planner::PlanOptions { strategy: planner::Strategy::Claim, start: None }).unwrap();
        prop_assert!(plan.wave_count() <= claim.wave_count());
    }

    #[test]
    fn verifier_matches_brute_force_on_small_fleets(topology in fleet_strategy(6, 3), cut in any::<usize>()) {
        let fleet = Fleet::new(&topology);
        prop_assume!(fleet.len() <= 7);
        let plan = plan_waves(&fleet);
        prop_assert_eq!(verifier_broken(&fleet, &plan), brute_force_broken(&fleet, &plan));
        prop_assert!(brute_force_broken(&fleet, &plan).is_empty());

        let flat = all_in_one_wave(&plan);
        prop_assert_eq!(verifier_broken(&fleet, &flat), brute_force_broken(&fleet, &flat));

        if let Some(weaker) = without_prerequisite(&plan, cut) {
            prop_assert_eq!(verifier_broken(&fleet, &weaker), brute_force_broken(&fleet, &weaker));
        }
        let claim = planner::plan(&fleet, &planner::PlanOptions { strategy: planner::Strategy::Claim, start: None }).unwrap();
        prop_assert_eq!(verifier_broken(&fleet, &claim), brute_force_broken(&fleet, &claim));
    }
}

#[test]
fn removing_a_needed_prerequisite_is_caught() {
    // gw -> meter (atomic): meter may switch only after gw staged.
    let t = Topology::parse(
        "t.yaml",
        "ca: r\nnodes:\n  - {id: gw}\n  - {id: meter, mode: atomic}\nlinks:\n  - {client: gw, server: meter}\n",
    )
    .unwrap();
    let fleet = Fleet::new(&t);
    let plan = plan_waves(&fleet);
    assert!(verifier_broken(&fleet, &plan).is_empty());
    let flat = all_in_one_wave(&plan);
    let broken = verifier_broken(&fleet, &flat);
    assert_eq!(
        broken,
        BTreeSet::from([("gw".to_string(), "meter".to_string())])
    );
    assert_eq!(broken, brute_force_broken(&fleet, &flat));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A linearized plan is one interleaving of the original: it resolves, keeps every
    /// step, and is safe whenever the original is (its broken links are a subset).
    #[test]
    fn linearized_plans_are_interleavings(topology in fleet_strategy(6, 3), seed in any::<u64>()) {
        let fleet = Fleet::new(&topology);
        for plan in [plan_waves(&fleet), rollover_core::plan_naive(&fleet)] {
            let order = PlanOrder::resolve(&plan, &fleet, &Document::new("<test>", "")).unwrap();
            let chain = rollover_core::linearize(&plan, &order, seed);
            prop_assert_eq!(chain.steps.len(), plan.steps.len());
            let broken_chain = verifier_broken(&fleet, &chain);
            prop_assert!(broken_chain.is_subset(&verifier_broken(&fleet, &plan)));
            prop_assert_eq!(broken_chain, brute_force_broken(&fleet, &chain));
        }
    }
}
