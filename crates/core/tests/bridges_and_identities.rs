//! Property tests for single-identity nodes (MODEL §12) and bridges (MODEL §11), on
//! random fleets mixing modes, identities and `chains: false` nodes:
//!
//! * `waves` plans verify safe, have exactly the fewest waves under §4 + §12, and
//!   declare only the links §12 and §5 force (each single-identity client of an
//!   atomic server, then a minimum cut of the remaining atomic cycles);
//! * `bridge` plans verify safe, have exactly the fewest waves under §11, at most 5
//!   waves and no disruption when every node supports chains, and disrupt only links
//!   with a `chains: false` end otherwise;
//! * the verifier agrees link for link with a brute-force walk over every reachable
//!   global state on small fleets, for planned, flattened and weakened plans;
//! * mutants: plans built from the model's prerequisites minus one §12 (or §11) rule
//!   are found unsafe on some fleets, by the verifier and the brute force alike.
//!
//! The node states, the handshake rule with bridges and the prerequisites are written
//! out again here from MODEL.md, independently of the crate's own state table.

#![allow(clippy::needless_range_loop)] // node and step indices index several tables at once

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rollover_core::topology::{Control, LinkSpec, NodeSpec};
use rollover_core::{
    Action, Document, Fleet, Identity, Mode, PLAN_FORMAT, Plan, PlanOrder, Step, Topology,
    plan_bridge, plan_waves, verify,
};

// ---------------------------------------------------------------------------------
// Random fleets

fn fleet_strategy(
    max_nodes: usize,
    max_links_per_node: usize,
    single_share: f64,
    no_chains_share: f64,
) -> impl Strategy<Value = Topology> {
    (1..=max_nodes, 0.0f64..1.0, any::<bool>()).prop_flat_map(move |(n, atomic_share, control)| {
        let nodes = proptest::collection::vec(
            (
                proptest::bool::weighted(atomic_share),
                proptest::bool::weighted(single_share),
                proptest::bool::weighted(no_chains_share),
            ),
            n,
        );
        let links = proptest::collection::vec(
            (0..n, 0..n, proptest::bool::weighted(0.1)),
            0..=(n * max_links_per_node).max(1),
        );
        (nodes, links).prop_map(move |(nodes, links)| Topology {
            ca: "root".into(),
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, &(atomic, single, no_chains))| NodeSpec {
                    chains: !no_chains,
                    identity: if single {
                        Identity::Single
                    } else {
                        Identity::Multi
                    },
                    ..NodeSpec::new(
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

// ---------------------------------------------------------------------------------
// The model, restated

const O: u8 = 1;
const N: u8 = 2;
const BOTH: u8 = 3;

/// (t_srv, t_cli, held, presents, sends bridges)
type State = (u8, u8, u8, u8, bool);

fn single(fleet: &Fleet, n: usize) -> bool {
    fleet.identities[n] == Identity::Single
}

/// Whether node `n` takes bridge steps in a plan that bridges.
fn bridges(fleet: &Fleet, n: usize, bridged: bool) -> bool {
    bridged && fleet.chains[n]
}

/// Number of steps of node `n`.
fn step_count(fleet: &Fleet, n: usize, bridged: bool) -> usize {
    let mode_steps = match fleet.modes[n] {
        Mode::Bundle => 3,
        Mode::Atomic => 2,
    };
    mode_steps + if bridges(fleet, n, bridged) { 2 } else { 0 }
}

/// MODEL §3 / §11 / §12: the state of node `n` after its first `done` steps.
fn state(fleet: &Fleet, n: usize, bridged: bool, done: usize) -> State {
    let b = bridges(fleet, n, bridged);
    let total = step_count(fleet, n, bridged);
    let (mode_done, sends) = if b {
        (
            done.saturating_sub(1).min(total - 2),
            done >= 1 && done < total,
        )
    } else {
        (done, false)
    };
    let (t_srv, t_cli, held, presents) = match (fleet.modes[n], mode_done) {
        (_, 0) => (O, O, O, O),
        (Mode::Bundle, 1) => (BOTH, BOTH, BOTH, O),
        (Mode::Bundle, 2) => (BOTH, BOTH, BOTH, N),
        (Mode::Atomic, 1) => (N, BOTH, BOTH, N),
        _ => (N, N, N, N),
    };
    let held = if single(fleet, n) { presents } else { held };
    (t_srv, t_cli, held, presents, sends)
}

/// MODEL §11's acceptance.
fn accepts(trusted: u8, chains: bool, root: u8, bridges: bool) -> bool {
    let issuer = if root == N { O } else { N };
    trusted & root != 0 || (chains && bridges && trusted & issuer != 0)
}

/// MODEL §11's handshake rule (§2's when nothing is sent).
fn link_ok(c: State, c_chains: bool, s: State, s_chains: bool) -> bool {
    accepts(c.1, c_chains, s.3, s.4)
        && [O, N]
            .into_iter()
            .any(|h| c.2 & h != 0 && accepts(s.0, s_chains, h, c.4))
}

// ---------------------------------------------------------------------------------
// The model's prerequisites

/// Which rules to leave out, for mutants.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Drop {
    /// §12: shows(c) after first(s).
    shows_after_first: bool,
    /// §12: narrow(s) after shows(c).
    narrow_after_shows: bool,
    /// §11: mode steps after the peer's bridge.
    after_bridge: bool,
    /// §11: unbridge after the peer's first mode step.
    unbridge_after_first: bool,
}

struct Graph {
    /// Dense step index of (node, rank).
    base: Vec<usize>,
    count: usize,
    edges: Vec<(usize, usize)>,
}

fn model_graph(
    fleet: &Fleet,
    disrupted: &HashSet<(usize, usize)>,
    bridged: bool,
    drop: Drop,
) -> Graph {
    let mut base = Vec::new();
    let mut count = 0;
    for n in 0..fleet.len() {
        base.push(count);
        count += step_count(fleet, n, bridged);
    }
    let shift = |n: usize| usize::from(bridges(fleet, n, bridged));
    let mode = |n: usize, rank: usize| base[n] + shift(n) + rank;
    let first = |n: usize| mode(n, 0);
    let shows = |n: usize| match fleet.modes[n] {
        Mode::Bundle => mode(n, 1),
        Mode::Atomic => mode(n, 0),
    };
    let last = |n: usize| match fleet.modes[n] {
        Mode::Bundle => mode(n, 2),
        Mode::Atomic => mode(n, 1),
    };
    let narrow = |n: usize| match fleet.modes[n] {
        Mode::Bundle => mode(n, 2),
        Mode::Atomic => mode(n, 0),
    };
    let mut edges = Vec::new();
    for n in 0..fleet.len() {
        for r in 1..step_count(fleet, n, bridged) {
            edges.push((base[n] + r - 1, base[n] + r));
        }
    }
    for l in &fleet.links {
        let (c, s) = (l.client as usize, l.server as usize);
        if c == s || disrupted.contains(&(c, s)) {
            continue;
        }
        if bridged && fleet.chains[c] && fleet.chains[s] {
            let mode_steps = |n: usize| step_count(fleet, n, bridged) - 2;
            if !drop.after_bridge {
                for r in 0..mode_steps(s) {
                    edges.push((base[c], mode(s, r)));
                }
                for r in 0..mode_steps(c) {
                    edges.push((base[s], mode(c, r)));
                }
            }
            if !drop.unbridge_after_first {
                let unbridge = |n: usize| base[n] + step_count(fleet, n, bridged) - 1;
                edges.push((first(s), unbridge(c)));
                edges.push((first(c), unbridge(s)));
            }
            continue;
        }
        // MODEL §4.
        edges.push((first(c), shows(s)));
        if fleet.modes[s] == Mode::Bundle {
            edges.push((first(c), last(s)));
        }
        edges.push((shows(s), last(c)));
        // MODEL §12.
        if single(fleet, c) {
            if !drop.shows_after_first {
                edges.push((first(s), shows(c)));
            }
            if !drop.narrow_after_shows {
                edges.push((shows(c), narrow(s)));
            }
        }
    }
    Graph { base, count, edges }
}

/// Longest chain (in steps) per step of an acyclic graph, or None on a cycle.
fn depths(count: usize, edges: &[(usize, usize)]) -> Option<Vec<usize>> {
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
    (seen == count).then_some(depth)
}

fn longest_chain(g: &Graph) -> Option<usize> {
    depths(g.count, &g.edges).map(|d| d.into_iter().max().unwrap_or(0))
}

fn declared(fleet: &Fleet, plan: &Plan) -> HashSet<(usize, usize)> {
    plan.disruptions
        .iter()
        .map(|d| {
            (
                fleet.node(&d.client).expect("declared client") as usize,
                fleet.node(&d.server).expect("declared server") as usize,
            )
        })
        .collect()
}

/// A plan whose `after` lists are exactly the model graph's cross-node edges, with
/// waves from the longest chains. `None` when the graph has a cycle.
fn plan_from_graph(fleet: &Fleet, g: &Graph, bridged: bool, disruptions: &Plan) -> Option<Plan> {
    let depth = depths(g.count, &g.edges)?;
    let mut node_of = vec![0usize; g.count];
    for n in 0..fleet.len() {
        for r in 0..step_count(fleet, n, bridged) {
            node_of[g.base[n] + r] = n;
        }
    }
    let mut after: Vec<Vec<u64>> = vec![Vec::new(); g.count];
    for &(a, b) in &g.edges {
        if node_of[a] != node_of[b] && !after[b].contains(&(a as u64)) {
            after[b].push(a as u64);
        }
    }
    let steps = (0..g.count)
        .map(|s| {
            let n = node_of[s];
            let rank = s - g.base[n];
            Step {
                id: s as u64,
                node: fleet.ids[n].clone(),
                action: fleet.profile(n as u32).steps(bridged)[rank],
                wave: depth[s] as u32 - 1,
                after: std::mem::take(&mut after[s]),
            }
        })
        .collect();
    Some(Plan {
        format: PLAN_FORMAT.into(),
        ca: fleet.ca.clone(),
        strategy: Some("model".into()),
        cycle_breaking: None,
        steps,
        disruptions: disruptions.disruptions.clone(),
        comparison: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------
// Brute force and the verifier

/// Every undeclared link that breaks in some reachable global state.
fn brute_force_broken(fleet: &Fleet, plan: &Plan) -> BTreeSet<(String, String)> {
    let bridged = plan.steps.iter().any(|s| s.action.is_bridge());
    let mut rank_seen = vec![0usize; fleet.len()];
    let mut where_is: HashMap<u64, (usize, usize)> = HashMap::new();
    for s in &plan.steps {
        let n = fleet.node(&s.node).expect("plan node") as usize;
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
    let disrupted = declared(fleet, plan);
    let mut broken = BTreeSet::new();
    let start = vec![0usize; fleet.len()];
    let mut seen = HashSet::from([start.clone()]);
    let mut queue = VecDeque::from([start]);
    while let Some(done) = queue.pop_front() {
        for l in &fleet.links {
            let (c, s) = (l.client as usize, l.server as usize);
            if disrupted.contains(&(c, s)) {
                continue;
            }
            let ok = link_ok(
                state(fleet, c, bridged, done[c]),
                fleet.chains[c],
                state(fleet, s, bridged, done[s]),
                fleet.chains[s],
            );
            if !ok {
                broken.insert((fleet.ids[c].clone(), fleet.ids[s].clone()));
            }
        }
        for n in 0..fleet.len() {
            let rank = done[n];
            if rank == step_count(fleet, n, bridged) {
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
    assert_eq!(verdict.safe, verdict.broken.is_empty());
    verdict
        .broken
        .into_iter()
        .map(|b| (b.client, b.server))
        .collect()
}

/// Drop every cross-node prerequisite; keep waves consistent with each node's order.
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

// ---------------------------------------------------------------------------------
// Cuts

fn acyclic(n: usize, arcs: &[(usize, usize)]) -> bool {
    depths(n, arcs).is_some()
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

fn brute_force_min_cut(n: usize, arcs: &[(usize, usize)]) -> usize {
    fn go(i: usize, k: usize, n: usize, arcs: &[(usize, usize)], cut: &mut Vec<bool>) -> bool {
        if k == 0 {
            let rest: Vec<_> = arcs
                .iter()
                .zip(cut.iter())
                .filter(|(_, c)| !**c)
                .map(|(a, _)| *a)
                .collect();
            return acyclic(n, &rest);
        }
        for j in i..arcs.len() {
            cut[j] = true;
            if go(j + 1, k - 1, n, arcs, cut) {
                return true;
            }
            cut[j] = false;
        }
        false
    }
    (0..=arcs.len())
        .find(|&k| go(0, k, n, arcs, &mut vec![false; arcs.len()]))
        .unwrap_or(arcs.len())
}

/// Links that must go whatever the order: a single-identity client of an atomic
/// server (MODEL §12), among links that keep order prerequisites.
fn forced(fleet: &Fleet, bridged: bool) -> HashSet<(usize, usize)> {
    fleet
        .links
        .iter()
        .map(|l| (l.client as usize, l.server as usize))
        .filter(|&(c, s)| {
            c != s
                && single(fleet, c)
                && fleet.modes[s] == Mode::Atomic
                && !(bridged && fleet.chains[c] && fleet.chains[s])
        })
        .collect()
}

/// Atomic-to-atomic arcs with a multi-identity client that keep order prerequisites.
fn cyclable(fleet: &Fleet, bridged: bool, skip: &HashSet<(usize, usize)>) -> Vec<(usize, usize)> {
    fleet
        .links
        .iter()
        .map(|l| (l.client as usize, l.server as usize))
        .filter(|&(c, s)| {
            c != s
                && !single(fleet, c)
                && fleet.modes[c] == Mode::Atomic
                && fleet.modes[s] == Mode::Atomic
                && !(bridged && fleet.chains[c] && fleet.chains[s])
                && !skip.contains(&(c, s))
        })
        .collect()
}

/// The plan declares exactly the forced links plus an irredundant cut of the atomic
/// cycles, minimum when small enough to check by brute force.
fn check_disruptions(fleet: &Fleet, plan: &Plan, bridged: bool) -> Result<(), TestCaseError> {
    let declared = declared(fleet, plan);
    prop_assert_eq!(declared.len(), plan.disruptions.len(), "declared twice");
    let forced = forced(fleet, bridged);
    prop_assert!(forced.is_subset(&declared), "a forced link is not declared");
    let all = cyclable(fleet, bridged, &HashSet::new());
    let rest = cyclable(fleet, bridged, &declared);
    prop_assert!(acyclic(fleet.len(), &rest));
    let cut: Vec<_> = declared.difference(&forced).copied().collect();
    for &(c, s) in &cut {
        prop_assert!(
            all.contains(&(c, s)),
            "declared link {c}->{s} is in no cycle"
        );
        prop_assert!(
            reaches(fleet.len(), &rest, s, c),
            "declared {c}->{s} is redundant"
        );
    }
    if all.len() <= 12 {
        prop_assert_eq!(cut.len(), brute_force_min_cut(fleet.len(), &all));
    }
    for d in &plan.disruptions {
        let note = if fleet.chains[fleet.node(&d.client).unwrap() as usize]
            && fleet.chains[fleet.node(&d.server).unwrap() as usize]
        {
            "bridges (`--strategy bridge`) would keep it up"
        } else {
            "bridges cannot help"
        };
        prop_assert!(d.reason.contains(note), "{}", d.reason);
    }
    Ok(())
}

fn resolve_and_verify(fleet: &Fleet, plan: &Plan) -> rollover_core::Verdict {
    let order =
        PlanOrder::resolve(plan, fleet, &Document::new("<test>", "")).expect("own plan resolves");
    verify(fleet, plan, &order)
}

// ---------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn waves_plans_with_single_identities_are_safe_and_minimal(
        topology in fleet_strategy(200, 4, 0.4, 0.2)
    ) {
        let fleet = Fleet::new(&topology);
        let plan = plan_waves(&fleet);
        let verdict = resolve_and_verify(&fleet, &plan);
        prop_assert!(verdict.safe, "unsafe: {:?}", verdict.broken.first());
        let g = model_graph(&fleet, &declared(&fleet, &plan), false, Drop::default());
        let bound = longest_chain(&g).expect("acyclic once disruptions are dropped");
        prop_assert_eq!(plan.wave_count() as usize, bound);
        prop_assert_eq!(verdict.waves as usize, bound);
        check_disruptions(&fleet, &plan, false)?;
    }

    #[test]
    fn bridge_plans_are_safe_and_minimal(topology in fleet_strategy(200, 4, 0.4, 0.2)) {
        let fleet = Fleet::new(&topology);
        let plan = plan_bridge(&fleet);
        let verdict = resolve_and_verify(&fleet, &plan);
        prop_assert!(verdict.safe, "unsafe: {:?}", verdict.broken.first());
        let g = model_graph(&fleet, &declared(&fleet, &plan), true, Drop::default());
        let bound = longest_chain(&g).expect("acyclic once disruptions are dropped");
        prop_assert_eq!(plan.wave_count() as usize, bound);
        prop_assert_eq!(verdict.waves as usize, bound);
        check_disruptions(&fleet, &plan, true)?;
        // Never more disruptions than `waves`.
        prop_assert!(plan.disruptions.len() <= plan_waves(&fleet).disruptions.len());
    }

    #[test]
    fn with_chains_everywhere_bridges_take_five_waves_and_break_nothing(
        topology in fleet_strategy(300, 4, 0.4, 0.0)
    ) {
        let fleet = Fleet::new(&topology);
        let plan = plan_bridge(&fleet);
        prop_assert!(plan.disruptions.is_empty());
        prop_assert!(plan.wave_count() <= 5, "{} waves", plan.wave_count());
        prop_assert!(resolve_and_verify(&fleet, &plan).safe);
    }

    #[test]
    fn verifier_matches_brute_force_on_small_fleets(
        topology in fleet_strategy(5, 3, 0.4, 0.3),
        cut in any::<usize>(),
    ) {
        let fleet = Fleet::new(&topology);
        prop_assume!(fleet.len() <= 6);
        for plan in [plan_waves(&fleet), plan_bridge(&fleet)] {
            prop_assert!(brute_force_broken(&fleet, &plan).is_empty(), "{:?}", plan.strategy);
            prop_assert_eq!(verifier_broken(&fleet, &plan), brute_force_broken(&fleet, &plan));
            let flat = all_in_one_wave(&plan);
            prop_assert_eq!(verifier_broken(&fleet, &flat), brute_force_broken(&fleet, &flat));
            if let Some(weaker) = without_prerequisite(&plan, cut) {
                prop_assert_eq!(verifier_broken(&fleet, &weaker), brute_force_broken(&fleet, &weaker));
            }
        }
    }
}

/// Build plans from the model's prerequisites minus one rule on many random small
/// fleets; the full rules are always safe, each mutant is unsafe on some fleets, and
/// the verifier and the brute force agree on every one.
fn mutant_counts(bridged: bool, drops: &[Drop]) -> Vec<usize> {
    let mut runner = TestRunner::new(Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(11),
        ..Config::default()
    });
    let strategy = fleet_strategy(5, 3, 0.5, if bridged { 0.25 } else { 0.0 });
    let mut unsafe_counts = vec![0usize; drops.len()];
    let mut fleets = 0;
    while fleets < 300 {
        let topology = strategy.new_tree(&mut runner).expect("a fleet").current();
        let fleet = Fleet::new(&topology);
        if fleet.len() > 6 {
            continue;
        }
        fleets += 1;
        let reference = if bridged {
            plan_bridge(&fleet)
        } else {
            plan_waves(&fleet)
        };
        let disrupted = declared(&fleet, &reference);
        let full = model_graph(&fleet, &disrupted, bridged, Drop::default());
        let plan = plan_from_graph(&fleet, &full, bridged, &reference).expect("acyclic");
        assert!(brute_force_broken(&fleet, &plan).is_empty(), "{topology:?}");
        assert!(verifier_broken(&fleet, &plan).is_empty(), "{topology:?}");
        for (i, drop) in drops.iter().enumerate() {
            let g = model_graph(&fleet, &disrupted, bridged, *drop);
            let Some(mutant) = plan_from_graph(&fleet, &g, bridged, &reference) else {
                continue;
            };
            let brute = brute_force_broken(&fleet, &mutant);
            assert_eq!(
                verifier_broken(&fleet, &mutant),
                brute,
                "{drop:?} {topology:?}"
            );
            if !brute.is_empty() {
                unsafe_counts[i] += 1;
            }
        }
    }
    unsafe_counts
}

#[test]
fn each_single_identity_prerequisite_is_needed() {
    let drops = [
        Drop {
            shows_after_first: true,
            ..Drop::default()
        },
        Drop {
            narrow_after_shows: true,
            ..Drop::default()
        },
    ];
    let counts = mutant_counts(false, &drops);
    println!("section 12 mutants unsafe on {counts:?} of 300 fleets");
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn each_bridge_prerequisite_is_needed() {
    let drops = [
        Drop {
            after_bridge: true,
            ..Drop::default()
        },
        Drop {
            unbridge_after_first: true,
            ..Drop::default()
        },
    ];
    let counts = mutant_counts(true, &drops);
    println!("section 11 mutants unsafe on {counts:?} of 300 fleets");
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
}

#[test]
fn a_single_identity_client_of_an_atomic_server_is_declared_with_the_bridge_note() {
    let t = Topology::parse(
        "t.yaml",
        "ca: r\nnodes:\n  - {id: curl, identity: single}\n  - {id: meter, mode: atomic}\n  - {id: gw}\nlinks:\n  - {client: curl, server: meter}\n  - {client: gw, server: meter}\n",
    )
    .unwrap();
    let fleet = Fleet::new(&t);
    let plan = plan_waves(&fleet);
    assert_eq!(plan.disruptions.len(), 1);
    let d = &plan.disruptions[0];
    assert_eq!((d.client.as_str(), d.server.as_str()), ("curl", "meter"));
    assert!(d.reason.contains("identity: single"), "{}", d.reason);
    assert!(d.reason.contains("--strategy bridge"), "{}", d.reason);
    assert!(resolve_and_verify(&fleet, &plan).safe);
    // Planned as if curl picked its leaf per server, the link breaks.
    let mut multi = plan.clone();
    multi.disruptions.clear();
    let broken = verifier_broken(&fleet, &multi);
    assert!(
        broken.contains(&("curl".into(), "meter".into())),
        "{broken:?}"
    );
    // With bridges nothing is declared, and the plan is safe.
    let bridge = plan_bridge(&fleet);
    assert!(bridge.disruptions.is_empty());
    assert!(resolve_and_verify(&fleet, &bridge).safe);
    assert!(bridge.steps.iter().any(|s| s.action == Action::Bridge));
}

#[test]
fn a_bridge_plan_missing_a_prerequisite_is_unsafe() {
    let t = Topology::parse(
        "t.yaml",
        "ca: r\nnodes:\n  - {id: a, mode: atomic}\n  - {id: b, mode: atomic}\nlinks:\n  - {client: a, server: b}\n",
    )
    .unwrap();
    let fleet = Fleet::new(&t);
    let plan = plan_bridge(&fleet);
    assert!(resolve_and_verify(&fleet, &plan).safe);
    let total: usize = plan.steps.iter().map(|s| s.after.len()).sum();
    assert_eq!(total, 4, "two bridges before switches, two unbridges after");
    for k in 0..total {
        let weaker = without_prerequisite(&plan, k).unwrap();
        let broken = verifier_broken(&fleet, &weaker);
        assert_eq!(broken, brute_force_broken(&fleet, &weaker));
        assert!(
            !broken.is_empty(),
            "dropping prerequisite {k} went unnoticed"
        );
    }
}
