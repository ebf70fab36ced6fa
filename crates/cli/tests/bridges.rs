//! The bridge strategy and single-identity nodes through the built binary (MODEL §11,
//! §12): the ring and the 60-device chain planned both ways, verified, and a bridge
//! plan with one prerequisite removed found unsafe; the mixed and single-identity
//! example fleets; the comparison line and its JSON figures; `simulate --strategy
//! bridge` with real handshakes on the ring and on mixed fleets with `chains: false`
//! nodes.

mod common;

use common::{rollover, scratch};
use serde_json::Value;

fn plan_ok(args: &[&str]) -> common::Run {
    let run = rollover(args);
    assert_eq!(run.code, 0, "rollover {args:?}: {}", run.stderr);
    assert!(run.stderr.is_empty(), "no noise on stderr: {}", run.stderr);
    run
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Plan `topology` as JSON with `strategy`, write it to a scratch file, verify it and
/// return (plan, verify exit code, verify stdout).
fn plan_and_verify(test: &str, topology: &str, strategy: &str) -> (Value, i32, String) {
    let text = plan_ok(&["plan", topology, "--strategy", strategy, "-f", "json"]).stdout;
    let path = scratch(test, &format!("{strategy}.plan.json"), &text);
    let run = rollover(&["verify", topology, &path]);
    (json(&text), run.code, run.stdout)
}

fn waves_of(plan: &Value) -> u64 {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["wave"].as_u64().unwrap() + 1)
        .max()
        .unwrap_or(0)
}

#[test]
fn ring_of_five_bridges_without_disruption() {
    let waves = plan_ok(&["plan", "examples/ring-5.yaml"]);
    assert_eq!(
        waves.last_line(),
        "5 nodes, 5 links, 6 waves, 1 disruptions"
    );
    assert!(
        waves.stdout.contains(
            "bridge strategy would take 4 waves and 0 disruptions (here: 6 waves, 1 disruptions)\n"
        ),
        "{}",
        waves.stdout
    );
    assert!(
        waves
            .stdout
            .contains("bridges (`--strategy bridge`) would keep it up"),
        "{}",
        waves.stdout
    );
    let bridge = plan_ok(&["plan", "examples/ring-5.yaml", "--strategy", "bridge"]);
    assert_eq!(
        bridge.last_line(),
        "5 nodes, 5 links, 4 waves, 0 disruptions"
    );
    assert!(
        bridge.stdout.contains("disruptions: none\n"),
        "{}",
        bridge.stdout
    );
    assert!(bridge.stdout.contains("verdict: safe"), "{}", bridge.stdout);
    assert!(
        bridge.stdout.starts_with(
            "rotation of CA `ring-root`: 5 target nodes, strategy `bridge`\n\
             wave 0: bridge dev-1, bridge dev-2, bridge dev-3, bridge dev-4, bridge dev-5\n"
        ),
        "{}",
        bridge.stdout
    );

    let (plan, code, out) = plan_and_verify("ring5", "examples/ring-5.yaml", "bridge");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("safe"), "{out}");
    assert_eq!(plan["strategy"], "bridge");
    assert_eq!(plan["disruptions"].as_array().unwrap().len(), 0);
    assert_eq!(waves_of(&plan), 4);
}

#[test]
fn chain_of_sixty_takes_four_waves_with_bridges_against_sixty_one() {
    let waves = plan_ok(&["plan", "examples/chain-60.yaml"]);
    assert_eq!(
        waves.last_line(),
        "60 nodes, 59 links, 61 waves, 0 disruptions"
    );
    assert!(
        waves.stdout.contains(
            "bridge strategy would take 4 waves and 0 disruptions (here: 61 waves, 0 disruptions)\n"
        ),
        "{}",
        waves.stdout
    );
    let bridge = plan_ok(&["plan", "examples/chain-60.yaml", "--strategy", "bridge"]);
    assert_eq!(
        bridge.last_line(),
        "60 nodes, 59 links, 4 waves, 0 disruptions"
    );
    // No comparison line after a bridge plan.
    assert!(!bridge.stdout.contains("would take"), "{}", bridge.stdout);

    for strategy in ["waves", "bridge"] {
        let (plan, code, out) = plan_and_verify("chain60", "examples/chain-60.yaml", strategy);
        assert_eq!(code, 0, "{strategy}: {out}");
        assert!(out.starts_with("safe"), "{strategy}: {out}");
        assert_eq!(waves_of(&plan), if strategy == "waves" { 61 } else { 4 });
    }
}

#[test]
fn json_waves_plan_carries_both_figures_and_stays_a_valid_plan() {
    let text = plan_ok(&["plan", "examples/chain-60.yaml", "-f", "json"]).stdout;
    let plan = json(&text);
    assert_eq!(
        plan["comparison"],
        serde_json::json!([
            {"strategy": "waves", "waves": 61, "disruptions": 0},
            {"strategy": "bridge", "waves": 4, "disruptions": 0}
        ])
    );
    let path = scratch("figures", "waves.plan.json", &text);
    let run = rollover(&["verify", "examples/chain-60.yaml", &path]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let bridge = json(
        &plan_ok(&[
            "plan",
            "examples/chain-60.yaml",
            "--strategy",
            "bridge",
            "-f",
            "json",
        ])
        .stdout,
    );
    assert!(bridge.get("comparison").is_none(), "{bridge}");
}

/// Remove every `after` entry of the ring's bridge plan in turn: each removal makes it
/// unsafe, and `verify` exits 1 naming a broken link.
#[test]
fn bridge_plan_with_a_prerequisite_removed_is_unsafe() {
    for topology in ["examples/ring-5.yaml", "examples/chain-60.yaml"] {
        let text = plan_ok(&["plan", topology, "--strategy", "bridge", "-f", "json"]).stdout;
        let plan = json(&text);
        let steps = plan["steps"].as_array().unwrap();
        // The first step with a prerequisite, and a step in the middle of the plan.
        let with_after: Vec<usize> = (0..steps.len())
            .filter(|&i| !steps[i]["after"].as_array().unwrap().is_empty())
            .collect();
        assert!(!with_after.is_empty());
        for &i in [with_after[0], with_after[with_after.len() / 2]].iter() {
            let mut weaker = plan.clone();
            let after = weaker["steps"][i]["after"].as_array_mut().unwrap();
            after.remove(0);
            let path = scratch(
                "bridge-unsafe",
                &format!("{}-{i}.json", topology.replace('/', "_")),
                &serde_json::to_string_pretty(&weaker).unwrap(),
            );
            let run = rollover(&["verify", topology, &path]);
            assert_eq!(
                run.code, 1,
                "{topology} step {i}: {}{}",
                run.stdout, run.stderr
            );
            assert!(run.stdout.starts_with("UNSAFE"), "{}", run.stdout);
        }
    }
}

#[test]
fn mixed_fleet_keeps_order_on_links_that_cannot_use_bridges() {
    let (plan, code, out) = plan_and_verify("mixed", "examples/bridge-mixed.yaml", "bridge");
    assert_eq!(code, 0, "{out}");
    let steps = plan["steps"].as_array().unwrap();
    // PLCs (`chains: false`) take no bridge steps; everyone else does.
    for s in steps {
        let node = s["node"].as_str().unwrap();
        if s["action"] == "bridge" || s["action"] == "unbridge" {
            assert!(!node.starts_with("plc-"), "{s}");
        }
    }
    let bridged: Vec<&str> = steps
        .iter()
        .filter(|s| s["action"] == "bridge")
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(bridged.len(), 8, "{bridged:?}");
    // The PLC ring still needs one link declared, and bridges cannot help it.
    let disruptions = plan["disruptions"].as_array().unwrap();
    assert_eq!(disruptions.len(), 1, "{disruptions:?}");
    assert!(
        disruptions[0]["client"]
            .as_str()
            .unwrap()
            .starts_with("plc-")
    );
    let reason = disruptions[0]["reason"].as_str().unwrap();
    assert!(reason.contains("bridges cannot help"), "{reason}");

    let (waves, code, out) = plan_and_verify("mixed", "examples/bridge-mixed.yaml", "waves");
    assert_eq!(code, 0, "{out}");
    assert_eq!((waves_of(&plan), waves_of(&waves)), (6, 8));
}

#[test]
fn a_fleet_with_probe_addresses_simulates_on_its_agents() {
    // The example's `probe:` addresses are nginx endpoints nobody runs here: the
    // simulation's own agents stand in for the workloads, and the executor's probes
    // go to them.
    let run = rollover(&["simulate", "examples/single-identity.yaml"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("PASS: 0 undeclared failures"),
        "{}",
        run.stdout
    );
}

#[test]
fn single_identity_fleet_declares_its_atomic_server_link_unless_bridged() {
    let run = plan_ok(&["plan", "examples/single-identity.yaml"]);
    assert!(
        run.stdout.contains("disruptions (1):\n  curl-3 -> meter: "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("identity: single"), "{}", run.stdout);
    assert!(run.stdout.contains("verdict: safe"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("bridge strategy would take 5 waves and 0 disruptions"),
        "{}",
        run.stdout
    );
    for strategy in ["waves", "bridge"] {
        let (_, code, out) = plan_and_verify("single", "examples/single-identity.yaml", strategy);
        assert_eq!(code, 0, "{strategy}: {out}");
    }
    // The same waves plan without the single-identity prerequisites (every node read as
    // multi-identity) is unsafe on the real fleet.
    let text = std::fs::read_to_string(common::root().join("examples/single-identity.yaml"))
        .unwrap()
        .replace("identity: single", "identity: multi");
    let multi = scratch("single", "as-multi.yaml", &text);
    let plan = plan_ok(&["plan", &multi, "-f", "json"]).stdout;
    let path = scratch("single", "as-multi.plan.json", &plan);
    let run = rollover(&["verify", "examples/single-identity.yaml", &path]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("curl-3 -> meter"), "{}", run.stdout);
}

#[test]
fn bad_identity_chains_and_probe_exit_2_naming_the_line() {
    for (text, field) in [
        (
            "ca: r\nnodes:\n  - {id: a, identity: dual}\n",
            "nodes[0].identity",
        ),
        (
            "ca: r\nnodes:\n  - {id: a, chains: perhaps}\n",
            "nodes[0].chains",
        ),
        (
            "ca: r\nnodes:\n  - {id: a, probe: \"nginx\"}\n",
            "nodes[0].probe",
        ),
    ] {
        let path = scratch("bad-node", "bad.yaml", text);
        let run = rollover(&["plan", &path]);
        assert_eq!(run.code, 2, "{text}: {}", run.stderr);
        assert!(run.stderr.contains("bad.yaml:3:"), "{}", run.stderr);
        assert!(run.stderr.contains(field), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn dot_and_order_render_bridge_plans() {
    let dot = plan_ok(&[
        "plan",
        "examples/ring-5.yaml",
        "--strategy",
        "bridge",
        "-f",
        "dot",
    ])
    .stdout;
    assert!(dot.starts_with("digraph"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 5, "{dot}");
    let order = plan_ok(&[
        "plan",
        "examples/bridge-mixed.yaml",
        "--strategy",
        "bridge",
        "-f",
        "order",
    ])
    .stdout;
    let mut nodes: Vec<&str> = order.lines().collect();
    nodes.sort();
    assert_eq!(nodes.len(), 11, "{order}");
}

/// `rollover simulate TOPOLOGY --strategy bridge`: exit status and the JSON report.
fn simulate_bridged(test: &str, topology: &str) -> (i32, Value, String) {
    let report = scratch(test, "sim.json", "");
    let run = rollover(&[
        "simulate",
        topology,
        "--strategy",
        "bridge",
        "--report",
        &report,
    ]);
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    (run.code, json(&text), run.stdout)
}

/// Every handshake succeeded (after every step, in the background and at the end),
/// every node ends on the new root only, sending no bridge, and the old root is
/// refused by every node.
fn assert_spotless(name: &str, code: i32, r: &Value, out: &str) {
    assert_eq!(code, 0, "{name}: {out}");
    assert_eq!(r["strategy"], "bridge", "{name}");
    assert_eq!(r["handshakes_failed"], 0, "{name}: {out}");
    assert_eq!(r["declared_disruptions"], 0, "{name}");
    assert_eq!(r["all_new"], true, "{name}: {out}");
    assert_eq!(r["nodes_on_new_only"], r["nodes"], "{name}: {out}");
    assert!(r["old_key_checks"].as_u64().unwrap() > 0, "{name}");
    assert_eq!(r["old_key_refused"], r["old_key_checks"], "{name}: {out}");
    assert_eq!(r["links_probed_every_step"], 1.0, "{name}: {out}");
    assert!(r["probes_after_steps"].as_u64().unwrap() > 0, "{name}");
}

#[test]
fn simulated_bridged_ring_fails_no_handshake() {
    let (code, r, out) = simulate_bridged("sim-ring", "examples/ring-5.yaml");
    assert_spotless("ring-5", code, &r, &out);
    assert_eq!(
        (r["nodes"].as_u64(), r["waves"].as_u64()),
        (Some(5), Some(4))
    );
    assert!(out.contains("strategy `bridge`"), "{out}");
}

#[test]
fn simulated_bridged_mixed_fleet_with_chains_false_nodes_fails_no_handshake() {
    // An acyclic mixed fleet: a chain of atomic devices where every third cannot build
    // chains, a bundle hub that is a client of each, and a `chains: false` bundle
    // gateway both ways with the hub. The links with a `chains: false` end keep the
    // plain order; nothing may fail.
    let mut text = String::from("ca: mixed-root\nnodes:\n");
    for i in 0..9 {
        let chains = if i % 3 == 1 { ", chains: false" } else { "" };
        text.push_str(&format!("  - {{id: dev-{i}, mode: atomic{chains}}}\n"));
    }
    text.push_str("  - {id: hub, mode: bundle}\n");
    text.push_str("  - {id: gateway, mode: bundle, chains: false}\n");
    text.push_str("links:\n");
    for i in 0..8 {
        text.push_str(&format!("  - {{client: dev-{i}, server: dev-{}}}\n", i + 1));
    }
    for i in 0..9 {
        text.push_str(&format!("  - {{client: hub, server: dev-{i}}}\n"));
    }
    text.push_str("  - {client: gateway, server: hub}\n  - {client: hub, server: gateway}\n");
    let topology = scratch("sim-mixed", "mixed.yaml", &text);
    let (plan, code, out) = plan_and_verify("sim-mixed", &topology, "bridge");
    assert_eq!(code, 0, "{out}");
    let mut unbridged: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "switch" || s["action"] == "stage")
        .map(|s| s["node"].as_str().unwrap())
        .filter(|n| {
            !plan["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["action"] == "bridge" && s["node"] == *n)
        })
        .collect();
    unbridged.sort();
    assert_eq!(
        unbridged,
        ["dev-1", "dev-4", "dev-7", "gateway"],
        "chains: false nodes take no bridge step"
    );
    let (code, r, out) = simulate_bridged("sim-mixed", &topology);
    assert_spotless("mixed", code, &r, &out);
    assert_eq!(r["nodes"], 11);
}

#[test]
fn simulated_bridged_mixed_example_fails_only_its_declared_ring_link() {
    // examples/bridge-mixed.yaml: its `chains: false` ring of PLCs must lose one link,
    // declared; every other link (bridged or not) stays up.
    let (code, r, out) = simulate_bridged("sim-bridge-mixed", "examples/bridge-mixed.yaml");
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["failed_undeclared"], 0, "{out}");
    assert_eq!(r["declared_disruptions"], 1, "{out}");
    assert_eq!(r["all_new"], true, "{out}");
    assert_eq!(r["old_key_refused"], r["old_key_checks"], "{out}");
}
