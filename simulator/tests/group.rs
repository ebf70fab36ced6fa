//! Executor groups on a real PostgreSQL (issue 11): simulated rotations whose leader
//! is killed or cut off its database mid-rotation finish on another executor with
//! every invariant of a chaotic run kept (each step applied exactly once per node,
//! no journal entry lost, no undeclared failure, every node on the new key).
//!
//! Needs `ROLLOVER_TEST_POSTGRES` (`.ci/postgres.sh start`); skips loudly without it,
//! and fails instead when `CI=true`.

use rollover_core::Topology;
use rollover_journal_postgres::testing::fresh_database;
use rollover_simulator::{ChaosSpec, GroupOptions, SimOptions, simulate};

fn example(name: &str) -> Topology {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    Topology::parse(&path, &text).unwrap()
}

async fn run_group(url: &str, spec: &str, seed: u64) -> rollover_simulator::SimOutcome {
    simulate(
        &example("mixed.yaml"),
        SimOptions {
            seed,
            probe_rate: 50,
            chaos: Some(spec.parse::<ChaosSpec>().unwrap()),
            group: Some(GroupOptions::new(url, 3)),
            ..SimOptions::default()
        },
    )
    .await
    .expect("the simulation finishes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_cut_off_leader_is_replaced_and_the_rotation_finishes() {
    let Some(url) = fresh_database("sim_group_failover") else {
        return;
    };
    for (spec, seed) in [
        ("leader-crash=2,postgres-cut=1", 1),
        ("leader-crash=1,postgres-cut=2", 2),
    ] {
        let outcome = run_group(&url, spec, seed).await;
        let chaos = outcome
            .chaos
            .clone()
            .expect("a group run reports its counts");
        eprintln!("{spec} seed {seed}: {}", chaos.summary());
        assert!(chaos.violations.is_empty(), "{:?}", chaos.violations);
        assert!(outcome.passed(), "{:?}", outcome.report.outcome);
        assert_eq!(chaos.executors, 3);
        assert!(
            chaos.leader_changes >= 3,
            "three faults, three new leaders: {}",
            chaos.leader_changes
        );
        assert_eq!(chaos.faults_by_kind.values().sum::<u64>(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_faults_need_a_group_and_a_group_has_no_single_executor_crash() {
    let refused = simulate(
        &example("mixed.yaml"),
        SimOptions {
            chaos: Some("leader-crash=1".parse().unwrap()),
            ..SimOptions::default()
        },
    )
    .await;
    let e = refused.expect_err("refused").to_string();
    assert!(e.contains("need an executor group"), "{e}");
    let refused = simulate(
        &example("mixed.yaml"),
        SimOptions {
            chaos: Some("executor-crash=1".parse().unwrap()),
            group: Some(GroupOptions::new("postgres://nobody@127.0.0.1:1/none", 2)),
            ..SimOptions::default()
        },
    )
    .await;
    let e = refused.expect_err("refused").to_string();
    assert!(e.contains("leader-crash"), "{e}");
}

/// Issue 25: the leader's database dropped in short blips (shorter than its lease),
/// or slow on every query, strands nothing: the rotation succeeds, every invariant
/// holds, and at every event the leader calls the rotation terminal only when its
/// journal does (a violation otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_blips_and_slow_queries_never_strand_the_rotation() {
    let Some(url) = fresh_database("sim_group_blips") else {
        return;
    };
    for (spec, seed) in [("postgres-blip=3", 1), ("postgres-slow=200ms", 2)] {
        let outcome = run_group(&url, spec, seed).await;
        let chaos = outcome
            .chaos
            .clone()
            .expect("a group run reports its counts");
        eprintln!("{spec} seed {seed}: {}", chaos.summary());
        assert!(
            chaos.violations.is_empty(),
            "{spec}: {:?}",
            chaos.violations
        );
        assert!(outcome.passed(), "{spec}: {:?}", outcome.report.outcome);
        assert_eq!(
            outcome.report.outcome, "succeeded: every step done",
            "{spec}"
        );
    }
}
