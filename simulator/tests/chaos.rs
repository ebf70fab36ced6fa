//! The chaos suite (issue 6): seeded rotations of three fleets with crashed agents,
//! a crashed executor, lost, late, duplicated calls, partitions and stranded nodes;
//! after every run the invariants of `rollover_simulator::chaos::invariants` must hold.

use std::time::Instant;

use rollover_core::Topology;
use rollover_core::synth::{FleetShape, layered_fleet};
use rollover_simulator::{ChaosReport, ChaosSpec, SimOptions, simulate};

/// A moderate mix of every fault kind.
const SPEC: &str = "agent-crash=0.05,strand=0.01,executor-crash=2,drop=0.03,delay=20ms,partition=0.01,duplicate=0.03";

/// The seeds every fleet is run with.
const SEEDS: [u64; 20] = [
    1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765, 10946,
];

fn example(name: &str) -> Topology {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Topology::parse(&path, &text).unwrap()
}

fn fleets() -> Vec<(&'static str, Topology)> {
    vec![
        // Constrained devices and the control channel in the rotated CA.
        ("mixed", example("mixed.yaml")),
        ("mesh", example("mesh.yaml")),
        (
            "layered-40",
            layered_fleet(&FleetShape {
                nodes: 40,
                fan_out: 3,
                atomic_share: 0.3,
                control: true,
                seed: 6,
            }),
        ),
    ]
}

async fn run(name: &str, topology: &Topology, seed: u64, spec: &ChaosSpec) -> ChaosReport {
    let started = Instant::now();
    let outcome = simulate(
        topology,
        SimOptions {
            seed,
            probe_rate: 50,
            chaos: Some(spec.clone()),
            ..SimOptions::default()
        },
    )
    .await;
    let mut report = match outcome {
        Ok(outcome) => outcome.chaos.expect("a chaotic run reports its chaos"),
        Err(e) => ChaosReport {
            runs: 1,
            violations: vec![format!("seed {seed}: the simulation did not finish: {e}")],
            ..ChaosReport::default()
        },
    };
    for v in &mut report.violations {
        *v = format!("{name} {v}");
    }
    eprintln!(
        "{name:>10} seed {seed:>5}: {:>4} faults, {} violations, {:.1} s",
        report.faults(),
        report.violations.len(),
        started.elapsed().as_secs_f64()
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaotic_rotations_keep_every_invariant() {
    // RUST_LOG=rollover_simulator::chaos=info shows every fault as it is injected.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let spec: ChaosSpec = SPEC.parse().unwrap();
    let started = Instant::now();
    let mut total = ChaosReport::default();
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEEDS") {
        Ok(s) => s.split(',').map(|s| s.trim().parse().unwrap()).collect(),
        Err(_) => SEEDS.to_vec(),
    };
    for (name, topology) in fleets() {
        for &seed in &seeds {
            total.merge(&run(name, &topology, seed, &spec).await);
        }
    }
    eprint!("{}", total.summary());
    eprintln!("chaos suite: {:.1} s", started.elapsed().as_secs_f64());
    assert!(total.violations.is_empty(), "{}", total.summary());
    assert_eq!(total.runs, 3 * seeds.len() as u64);
    if seeds.len() >= SEEDS.len() {
        // Every kind of fault was injected, and each had its effect.
        for kind in [
            "agent-crash",
            "strand",
            "executor-crash",
            "drop-request",
            "drop-answer",
            "delay",
            "partition",
            "duplicate",
        ] {
            assert!(
                total.faults_by_kind.get(kind).copied().unwrap_or(0) > 0,
                "no {kind} injected: {}",
                total.summary()
            );
        }
        assert!(total.agent_restarts > 0 && total.executor_restarts > 0);
        assert!(
            total.resumed_pauses > 0,
            "no stranded node paused a rotation"
        );
    }
}

/// The negative control: chaos does not hide a real failure. The naive plan breaks
/// links on the mixed plant; under chaos the run must still report them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_does_not_excuse_an_unsafe_plan() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let topology = example("mixed.yaml");
    let plan = rollover_core::plan_naive(&rollover_core::Fleet::new(&topology));
    let outcome = simulate(
        &topology,
        SimOptions {
            seed: 3,
            plan: Some(plan),
            probe_rate: 0,
            chaos: Some(SPEC.parse().unwrap()),
            ..SimOptions::default()
        },
    )
    .await
    .expect("the simulation runs");
    let chaos = outcome.chaos.as_ref().unwrap();
    assert!(outcome.report.failed_undeclared > 0);
    assert!(!outcome.passed());
    assert!(
        chaos
            .violations
            .iter()
            .any(|v| v.contains("undeclared handshake failures")),
        "{}",
        chaos.summary()
    );
}

#[test]
fn a_bad_spec_names_its_term() {
    let e = "agent-crash=0.05,meteor=1"
        .parse::<ChaosSpec>()
        .unwrap_err();
    assert!(e.to_string().contains("unknown fault kind `meteor`"), "{e}");
    let e = "drop=1.5".parse::<ChaosSpec>().unwrap_err();
    assert!(e.to_string().contains("`drop=1.5`"), "{e}");
}
