//! `rollover simulate --journal postgres://... --executors N`: the executor is a group
//! on a real PostgreSQL (`ROLLOVER_TEST_POSTGRES`, from `.ci/postgres.sh`); the leader
//! is killed mid-rotation and the JSON counts name the group's size and its changes
//! of leader. Without a group, leader faults are bad input.

mod common;

use common::rollover;

#[test]
fn a_simulated_group_survives_its_leader_and_counts_the_change() {
    let Some(url) = rollover_journal_postgres::testing::fresh_database("cli_sim_group") else {
        return;
    };
    let run = rollover(&[
        "simulate",
        "examples/mixed.yaml",
        "--journal",
        &url,
        "--executors",
        "2",
        "--chaos",
        "leader-crash=1",
        "--probe-rate",
        "50",
        "-f",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let counts: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(counts["executors"], 2, "{counts}");
    assert!(counts["leader_changes"].as_u64().unwrap() >= 1, "{counts}");
    assert_eq!(counts["faults_by_kind"]["leader-crash"], 1, "{counts}");
    assert_eq!(
        counts["violations"].as_array().unwrap().len(),
        0,
        "{counts}"
    );
}

#[test]
fn group_flags_in_the_wrong_combination_are_bad_input() {
    for (args, needle) in [
        (&["--chaos", "leader-crash=1"][..], "need an executor group"),
        (&["--chaos", "postgres-cut=2"][..], "--journal postgres://"),
        (
            &[
                "--journal",
                "postgres://u@127.0.0.1:1/db",
                "--chaos",
                "executor-crash=1",
            ][..],
            "use leader-crash",
        ),
        (
            &["--journal", "mysql://u@127.0.0.1/db"][..],
            "expected postgres://",
        ),
        (&["--seeds", "2"][..], "--seeds needs --chaos or --journal"),
        (&["--executors", "2"][..], "--journal"),
    ] {
        let mut full = vec!["simulate", "examples/mixed.yaml"];
        full.extend_from_slice(args);
        let run = rollover(&full);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}
