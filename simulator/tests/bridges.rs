//! The bridge strategy (MODEL §11) in real TLS: every rotated link handshaken after
//! every step with the agents' live rustls configs, which send their bridges and
//! verify peers through the ones they receive. Bridged fleets must see no failed
//! handshake at all, end on the new root only, sending no bridge, and refuse the old
//! root; `chains: false` nodes keep the plain order on their links.

use rollover_core::topology::{Control, LinkSpec, NodeSpec};
use rollover_core::{Fleet, Mode, Strategy, Topology};
use rollover_simulator::{ChaosSpec, SimOptions, SimOutcome, simulate};

fn example(name: &str) -> Topology {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Topology::parse(&path, &text).unwrap()
}

fn bridged(seed: u64) -> SimOptions {
    SimOptions {
        seed,
        probe_rate: 100,
        strategy: Strategy::Bridge,
        ..SimOptions::default()
    }
}

async fn run(topology: &Topology, options: SimOptions) -> SimOutcome {
    simulate(topology, options)
        .await
        .expect("the simulation runs")
}

/// No failure of any kind, every node on the new root only (and sending no bridge),
/// the old root refused everywhere, every link probed after every step.
fn assert_spotless(name: &str, outcome: &SimOutcome) {
    let r = &outcome.report;
    assert_eq!(r.handshakes_failed, 0, "{name}: {:#?}", r.failures);
    assert_eq!(r.declared_disruptions, 0, "{name}");
    assert!(r.all_new, "{name}: not all new: {r:#?}");
    assert_eq!(r.nodes_on_new_only as usize, r.nodes, "{name}");
    assert_eq!(r.links_probed_every_step, 1.0, "{name}: coverage");
    assert_eq!(r.final_failed, 0, "{name}");
    assert!(r.old_key_checks > 0, "{name}");
    assert_eq!(r.old_key_refused, r.old_key_checks, "{name}");
    assert!(r.probes_after_steps > 0, "{name}");
    assert!(outcome.verdict.safe, "{name}");
    assert_eq!(r.strategy, "bridge", "{name}");
}

fn node(id: String, mode: Mode, chains: bool) -> NodeSpec {
    let mut n = NodeSpec::new(id, mode);
    n.chains = chains;
    n
}

fn link(client: &str, server: &str) -> LinkSpec {
    LinkSpec {
        client: client.into(),
        server: server.into(),
        ca: None,
    }
}

/// `n` atomic devices, each a client of the next.
fn atomic_chain(n: usize) -> Topology {
    let id = |i: usize| format!("dev-{i}");
    Topology {
        ca: "chain-root".into(),
        nodes: (0..n).map(|i| node(id(i), Mode::Atomic, true)).collect(),
        links: (0..n - 1).map(|i| link(&id(i), &id(i + 1))).collect(),
        control: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_ring_rotates_with_no_failed_handshake() {
    let topology = example("ring-5.yaml");
    let outcome = run(&topology, bridged(1)).await;
    assert_spotless("ring-5", &outcome);
    assert_eq!(outcome.report.nodes, 5);
    // Without bridges the ring must lose a link; with them, none.
    let steps = outcome.plan.steps.len();
    assert_eq!(
        steps,
        5 * 4,
        "bridge, switch, finalize, unbridge per device"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_atomic_devices_rotates_in_a_few_waves() {
    let topology = atomic_chain(12);
    let outcome = run(&topology, bridged(2)).await;
    assert_spotless("chain-12", &outcome);
    assert!(
        outcome.verdict.waves <= 5,
        "bridge plans have a fixed number of waves, got {}",
        outcome.verdict.waves
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_bridges_its_own_control_channel() {
    // The control channel is anchored in the rotated CA: `@executor` is a bundle node,
    // a client of every device, bridged like them, its steps applied locally.
    let mut topology = example("ring-5.yaml");
    topology.control = Some(Control {
        ca: topology.ca.clone(),
    });
    let outcome = run(&topology, bridged(3)).await;
    assert_spotless("ring-5 + @executor", &outcome);
    assert_eq!(outcome.report.nodes, 6);
    assert!(
        outcome
            .plan
            .steps
            .iter()
            .any(|s| s.node == "@executor" && s.action.as_str() == "bridge")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_false_nodes_keep_their_links_up_in_a_mixed_fleet() {
    // A chain of atomic devices where every third cannot build chains, with a bundle
    // hub as a client of all of them: links with a `chains: false` end keep the plain
    // order, every other link only waits for bridges. Acyclic: nothing may fail.
    let n = 9;
    let id = |i: usize| format!("dev-{i}");
    let mut nodes: Vec<NodeSpec> = (0..n)
        .map(|i| node(id(i), Mode::Atomic, i % 3 != 1))
        .collect();
    nodes.push(node("hub".into(), Mode::Bundle, true));
    nodes.push(node("legacy-hub".into(), Mode::Bundle, false));
    let mut links: Vec<LinkSpec> = (0..n - 1).map(|i| link(&id(i), &id(i + 1))).collect();
    for i in 0..n {
        links.push(link("hub", &id(i)));
    }
    links.push(link("legacy-hub", "hub"));
    links.push(link("hub", "legacy-hub"));
    let topology = Topology {
        ca: "mixed-root".into(),
        nodes,
        links,
        control: None,
    };
    let fleet = Fleet::new(&topology);
    assert_eq!(fleet.chains.iter().filter(|c| !**c).count(), 4);
    let outcome = run(&topology, bridged(4)).await;
    assert_spotless("mixed chains", &outcome);
    // chains:false nodes take no bridge step (they could not send one).
    for step in &outcome.plan.steps {
        if let Some(ix) = fleet.node(&step.node) {
            assert!(
                fleet.chains[ix as usize] || step.action.as_str() != "bridge",
                "{step:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chains_false_ring_fails_only_on_its_declared_link() {
    // examples/bridge-mixed.yaml: sensors that chain, and a ring of PLCs that cannot:
    // bridges cannot help the ring, whose one declared link may fail; nothing else.
    let topology = example("bridge-mixed.yaml");
    let outcome = run(&topology, bridged(5)).await;
    let r = &outcome.report;
    assert_eq!(r.failed_undeclared, 0, "{:#?}", r.failures);
    assert!(r.all_new, "{r:#?}");
    assert_eq!(r.old_key_refused, r.old_key_checks);
    assert_eq!(r.declared_disruptions, 1);
    assert!(r.failures.iter().all(|f| f.declared), "{:#?}", r.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_rotations_survive_crashes_lost_and_duplicated_calls() {
    // Agents killed after steps (restarting on their state, bridges included), the
    // executor killed and reopened on its journal (bridges read back, not reissued),
    // calls lost or sent twice: every invariant holds and no undeclared link fails.
    let spec: ChaosSpec = "agent-crash=0.2,executor-crash=2,drop=0.05,duplicate=0.05"
        .parse()
        .unwrap();
    let mut topology = example("ring-5.yaml");
    topology.control = Some(Control {
        ca: topology.ca.clone(),
    });
    for seed in 1..=4 {
        let outcome = run(
            &topology,
            SimOptions {
                chaos: Some(spec.clone()),
                ..bridged(seed)
            },
        )
        .await;
        let chaos = outcome.chaos.as_ref().expect("a chaotic run reports");
        assert!(chaos.violations.is_empty(), "seed {seed}: {chaos:#?}");
        assert!(chaos.faults() > 0, "seed {seed}");
        assert_eq!(outcome.report.failed_undeclared, 0, "seed {seed}");
        assert!(outcome.report.all_new, "seed {seed}");
    }
}
