//! Readable output on a non-terminal: a simulation of a plan that breaks hundreds of
//! links summarises its warnings instead of printing one line each; `--quiet` prints
//! the verdict alone, `-v` every log line.

mod common;

use common::{rollover, rollover_with_stdin};

/// Simulate the naive plan of `example` (every node switches at once), piped.
fn simulate_naive(example: &str, extra: &[&str]) -> common::Run {
    let plan = rollover(&["plan", example, "--strategy", "naive", "-f", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let mut args = vec!["simulate", example, "--plan", "-"];
    args.extend_from_slice(extra);
    let run = rollover_with_stdin(&args, &plan.stdout);
    assert_eq!(run.code, 1, "the naive plan breaks links: {}", run.stderr);
    run
}

#[test]
fn a_naive_simulation_of_the_plant_prints_fewer_than_40_lines() {
    let run = simulate_naive("examples/plant-300.yaml", &[]);
    let lines = run.stdout.lines().count() + run.stderr.lines().count();
    eprintln!("{lines} lines:\n{}{}", run.stdout, run.stderr);
    assert!(lines < 40, "{lines} lines");
    assert!(
        run.stdout.contains("failures (first 10 of "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("FAIL: ")
    );
    // The warnings were counted, and a few shown.
    assert!(
        run.stderr.contains("warning(s) logged during the run"),
        "{}",
        run.stderr
    );
}

#[test]
fn quiet_prints_the_verdict_alone() {
    let run = simulate_naive("examples/mixed.yaml", &["--quiet"]);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.starts_with("FAIL: "), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn verbose_prints_every_warning_as_it_happens() {
    let normal = simulate_naive("examples/mixed.yaml", &[]);
    let held: usize = normal
        .stderr
        .lines()
        .find_map(|l| l.split_once(" warning(s) logged during the run"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no warning summary: {}", normal.stderr));
    let verbose = simulate_naive("examples/mixed.yaml", &["-v"]);
    let warnings = verbose
        .stderr
        .lines()
        .filter(|l| l.contains("WARN"))
        .count();
    assert!(held > 0 && warnings > 0, "held {held}, printed {warnings}");
    assert!(
        verbose.stderr.lines().any(|l| l.contains("INFO")),
        "-v shows info lines: {}",
        verbose.stderr
    );
    assert!(!verbose.stderr.contains("warning(s) logged during the run"));
}
