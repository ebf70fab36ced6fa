//! `rollover check` compares what each agent says it can do with what the topology
//! declares (MODEL §11 `chains`, §12 `identity`), across separate processes (planner,
//! executor, four agents):
//!
//! * an agent started with `--no-chains` whose node the topology leaves at `chains:
//!   true`, and an agent exporting its credentials (`--export`, one leaf for every peer)
//!   whose node is declared `identity: multi`: `check` exits 1 naming both, with what
//!   each side says and how to fix it, and `rotate` refuses to start;
//! * the topology fixed (and two harmless differences the other way round, which are
//!   notes, not problems): `check` exits 0, and the fleet rotates in waves, then with
//!   bridges.

mod procs;

use std::time::Duration;

use procs::{fleet_with_root, run, strings, text};
use serde_json::Value;

fn rollover(args: &[&str]) -> (i32, String, String) {
    let out = run(&strings(args), Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The entries of `report[field]` about `node`.
fn about<'a>(report: &'a Value, field: &str, node: &str) -> Vec<&'a Value> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field}: {report:#}"))
        .iter()
        .filter(|p| p["node"] == node)
        .collect()
}

#[test]
fn check_compares_each_agents_chains_and_identity_with_the_topology() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut fleet, _root) = fleet_with_root(tmp.path());
    let url = fleet.executor_url.clone();
    let topology = fleet.topology.to_str().unwrap().to_string();
    let check_json = || {
        let (code, out, err) = rollover(&["check", "--executor", &url, &topology, "-f", "json"]);
        let report: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        (code, report)
    };

    // As started, every agent matches the topology's defaults.
    let (code, report) = check_json();
    assert_eq!(code, 0, "{report:#}");

    // `plc-1` cannot build chains, `gw` exports one leaf to its workload; the topology
    // still says neither.
    fleet.kill("plc-1");
    fleet.add_agent_args("plc-1", &["--no-chains"]);
    fleet.restart("plc-1");
    fleet.kill("gw");
    let export = tmp.path().join("gw-export");
    fleet.add_agent_args("gw", &["--export", export.to_str().unwrap()]);
    fleet.restart("gw");

    let (code, report) = check_json();
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        report["problems"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    let plc = about(&report, "problems", "plc-1");
    assert_eq!(plc.len(), 1, "{report:#}");
    assert_eq!(plc[0]["kind"], "chains mismatch", "{report:#}");
    let message = plc[0]["message"].as_str().unwrap();
    for said in [
        "`chains: true`",
        "--no-chains",
        "declare `chains: false` for `plc-1`",
    ] {
        assert!(message.contains(said), "{said:?} not in {message}");
    }
    let gw = about(&report, "problems", "gw");
    assert_eq!(gw.len(), 1, "{report:#}");
    assert_eq!(gw[0]["kind"], "identity mismatch", "{report:#}");
    let message = gw[0]["message"].as_str().unwrap();
    for said in [
        "`identity: multi`",
        "--export",
        "declare `identity: single` for `gw`",
    ] {
        assert!(message.contains(said), "{said:?} not in {message}");
    }
    let reported = about(&report, "nodes", "plc-1");
    assert_eq!(reported[0]["chains"], false, "{report:#}");
    let reported = about(&report, "nodes", "gw");
    assert_eq!(reported[0]["identity"], "single", "{report:#}");

    // The text report names both too, and `rotate` refuses to start.
    let (code, out, _) = rollover(&["check", "--executor", &url, &topology]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2 problem(s)"), "{out}");
    assert!(out.contains("chains mismatch: `plc-1`"), "{out}");
    assert!(out.contains("identity mismatch: `gw`"), "{out}");
    let (code, out, err) = rollover(&["rotate", "--executor", &url, &topology]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("nothing started"), "{err}");
    assert!(err.contains("`plc-1`") && err.contains("`gw`"), "{err}");
    assert!(!out.contains("accepted"), "{out}");

    // Fixed: `plc-1` declared `chains: false`, `gw` `identity: single`. Declared the
    // other way round (more cautious than the agents need), `historian` and `meter-7`
    // are notes, not problems.
    let yaml = std::fs::read_to_string(&fleet.topology).unwrap();
    let yaml = yaml
        .replacen("{id: plc-1, ", "{id: plc-1, chains: false, ", 1)
        .replacen("{id: gw, ", "{id: gw, identity: single, ", 1)
        .replacen("{id: historian, ", "{id: historian, identity: single, ", 1)
        .replacen("{id: meter-7, ", "{id: meter-7, chains: false, ", 1);
    std::fs::write(&fleet.topology, yaml).unwrap();
    let (code, report) = check_json();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["notes"].as_array().unwrap().len(), 2, "{report:#}");
    let note = about(&report, "notes", "historian");
    let message = note[0]["message"].as_str().unwrap();
    assert!(message.contains("`identity: single`"), "{message}");
    let note = about(&report, "notes", "meter-7");
    let message = note[0]["message"].as_str().unwrap();
    assert!(message.contains("`chains: false`"), "{message}");

    // ... and the fleet rotates, the pre-flight check included: in waves (the executor
    // then holds the key of the root the agents are on), then with bridges, which
    // `plc-1` (and `meter-7`, as declared) take no part in.
    for strategy in ["waves", "bridge"] {
        let (code, out, err) = rollover(&[
            "rotate",
            "--executor",
            &url,
            &topology,
            "--strategy",
            strategy,
        ]);
        assert_eq!(code, 0, "{strategy}: {out}\n{err}");
        assert!(out.contains("finished: SUCCEEDED"), "{strategy}: {out}");
        assert!(err.contains("note: `historian`"), "{strategy}: {err}");
        assert!(!out.contains("(bridge plc-1)"), "{strategy}: {out}");
        if strategy == "bridge" {
            assert!(out.contains("(bridge gw)"), "{out}");
        }
    }
}
