//! Golden tests: plan and verify every example fleet with the built binary.
//!
//! The counts of the small examples were worked out by hand from MODEL §4/§5 (the
//! derivations are in the comments at the top of each example file).

mod common;

use common::{rollover, rollover_with_stdin, scratch, sorted, waves};
use serde_json::Value;

const EXAMPLES: [&str; 7] = [
    "examples/mesh.yaml",
    "examples/mixed.yaml",
    "examples/ring.yaml",
    "examples/claim-unsafe.yaml",
    "examples/plant-300.yaml",
    "examples/fleet-120.yaml",
    "examples/printers.yaml",
];

fn plan_ok(args: &[&str]) -> common::Run {
    let run = rollover(args);
    assert_eq!(run.code, 0, "rollover {args:?}: {}", run.stderr);
    assert!(run.stderr.is_empty(), "no noise on stderr: {}", run.stderr);
    run
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn mesh_is_three_waves_without_disruption() {
    let run = plan_ok(&["plan", "examples/mesh.yaml"]);
    // 12 links listed, one repeated: 11 distinct, the self-link cache -> cache included.
    assert_eq!(run.last_line(), "8 nodes, 11 links, 3 waves, 0 disruptions");
    assert!(run.stdout.contains("disruptions: none\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("cycle breaking: none"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("verdict: safe"), "{}", run.stdout);
    let nodes = [
        "edge-proxy",
        "api-gateway",
        "auth",
        "orders",
        "catalog",
        "payments",
        "inventory",
        "cache",
    ];
    let expected: Vec<Vec<String>> = ["stage", "present", "retire"]
        .iter()
        .map(|a| {
            let steps: Vec<String> = nodes.iter().map(|n| format!("{a} {n}")).collect();
            let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
            sorted(&steps)
        })
        .collect();
    assert_eq!(waves(&run.stdout), expected);
}

#[test]
fn mixed_plans_the_executor_and_the_atomic_devices_by_hand() {
    let run = plan_ok(&["plan", "examples/mixed.yaml"]);
    // 6 listed nodes + @executor; 6 listed rotated links + 6 control links.
    assert_eq!(run.last_line(), "7 nodes, 12 links, 4 waves, 0 disruptions");
    assert!(
        run.stdout
            .contains("links under other CAs (not rotated, left untouched): 1\n"),
        "{}",
        run.stdout
    );
    assert_eq!(
        waves(&run.stdout),
        vec![
            sorted(&[
                "stage historian",
                "stage scada",
                "stage hmi-1",
                "stage @executor"
            ]),
            sorted(&[
                "switch plc-1",
                "switch meter-7",
                "present scada",
                "present hmi-1",
                "present @executor",
            ]),
            sorted(&["switch plc-2", "present historian", "retire hmi-1"]),
            sorted(&[
                "retire scada",
                "retire historian",
                "retire @executor",
                "finalize plc-1",
                "finalize plc-2",
                "finalize meter-7",
            ]),
        ]
    );
    let plan = json(&plan_ok(&["plan", "examples/mixed.yaml", "--format", "json"]).stdout);
    let executor: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["node"] == "@executor")
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(executor, ["stage", "present", "retire"]);
}

/// Waves of the ring plan, by hand, for whichever single ring link is cut: the
/// remaining ring is a chain of switches (each server after its client), the panel
/// switches before rtu-1, and each device finalizes after its servers switched.
fn ring_waves_by_hand(cut: (&str, &str)) -> u32 {
    match cut {
        // Chain panel, rtu-1, rtu-2, rtu-3, rtu-4 (switch waves 0-4); rtu-3 finalizes
        // after rtu-4 switched: wave 5.
        ("rtu-4", "rtu-1") => 6,
        // Chains of 4 switches starting after the cut (waves 0-3); the last device's
        // client finalizes in wave 4. The panel switches in wave 0 and never lengthens
        // them.
        ("rtu-1", "rtu-2") | ("rtu-2", "rtu-3") | ("rtu-3", "rtu-4") => 5,
        other => panic!("{other:?} is not a ring link"),
    }
}

#[test]
fn ring_declares_exactly_one_ring_link_and_never_the_panel() {
    let plan = json(&plan_ok(&["plan", "examples/ring.yaml", "-f", "json"]).stdout);
    let disruptions = plan["disruptions"].as_array().unwrap();
    assert_eq!(disruptions.len(), 1, "{disruptions:?}");
    let cut = (
        disruptions[0]["client"].as_str().unwrap(),
        disruptions[0]["server"].as_str().unwrap(),
    );
    assert_ne!(cut, ("panel", "rtu-1"), "the panel's link is on no cycle");
    assert_eq!(plan["cycle_breaking"], "exact");
    let waves = ring_waves_by_hand(cut);
    assert_eq!(
        waves, 5,
        "ties between one-link cuts go to the one with fewest waves"
    );

    let run = plan_ok(&["plan", "examples/ring.yaml"]);
    assert_eq!(
        run.last_line(),
        format!("5 nodes, 5 links, {waves} waves, 1 disruptions")
    );
    let line = format!(
        "  {} -> {}: atomic nodes {{rtu-1, rtu-2, rtu-3, rtu-4}}",
        cut.0, cut.1
    );
    assert!(run.stdout.contains(&line), "{}", run.stdout);
    assert!(run.stdout.contains("disruptions (1):\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("panel -> rtu-1"), "{}", run.stdout);
    assert!(
        run.stdout.contains("cycle breaking: exact"),
        "{}",
        run.stdout
    );

    // The order format starts with a node whose switch has no prerequisite: the panel,
    // or the ring node right after the cut.
    let order = plan_ok(&["plan", "examples/ring.yaml", "-f", "order"]).stdout;
    let first = order.lines().next().unwrap_or_default();
    assert!(first == "panel" || first == cut.1, "{order}");
    let mut nodes: Vec<&str> = order.lines().collect();
    nodes.sort();
    assert_eq!(nodes, ["panel", "rtu-1", "rtu-2", "rtu-3", "rtu-4"]);
}

#[test]
fn claim_order_of_claim_unsafe_is_unsafe_and_waves_is_safe() {
    let waves_run = plan_ok(&["plan", "examples/claim-unsafe.yaml"]);
    assert_eq!(
        waves_run.last_line(),
        "4 nodes, 3 links, 3 waves, 0 disruptions"
    );
    let claim = plan_ok(&["plan", "examples/claim-unsafe.yaml", "--strategy", "claim"]);
    // One step at a time: 2 atomic x 2 steps + 2 bundle x 3 steps = 10 waves.
    assert_eq!(
        claim.last_line(),
        "4 nodes, 3 links, 10 waves, 0 disruptions"
    );
    assert!(
        claim.stdout.contains("verdict: UNSAFE: 2 undeclared"),
        "{}",
        claim.stdout
    );

    let plan = plan_ok(&[
        "plan",
        "examples/claim-unsafe.yaml",
        "--strategy",
        "claim",
        "--format",
        "json",
    ])
    .stdout;
    let path = scratch("claim_unsafe", "claim.plan.json", &plan);
    let verify = rollover(&["verify", "examples/claim-unsafe.yaml", &path]);
    assert_eq!(verify.code, 1, "{verify:?}");
    assert!(
        verify.stdout.starts_with("UNSAFE: 2 undeclared"),
        "{}",
        verify.stdout
    );
    // Each meter finalizes (trusting only new) before the collector presents new.
    for meter in ["meter-1", "meter-2"] {
        let line = verify
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("  {meter} -> collector: ")))
            .unwrap_or_else(|| panic!("{meter} -> collector is listed: {}", verify.stdout));
        assert!(line.contains(&format!("(finalize {meter})")), "{line}");
        assert!(line.contains("(present collector)"), "{line}");
        assert!(
            line.ends_with("server presents old, client trusts only new"),
            "{line}"
        );
    }
    let verdict = json(
        &rollover_with_stdin(
            &[
                "verify",
                "examples/claim-unsafe.yaml",
                "-",
                "--format",
                "json",
            ],
            &plan,
        )
        .stdout,
    );
    assert_eq!(verdict["safe"], false);
    assert_eq!(verdict["undeclared_count"], 2);
    assert_eq!(verdict["waves"], 10);
    let mut broken: Vec<String> = verdict["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} -> {}",
                b["client"].as_str().unwrap(),
                b["server"].as_str().unwrap()
            )
        })
        .collect();
    broken.sort();
    assert_eq!(broken, ["meter-1 -> collector", "meter-2 -> collector"]);
    for b in verdict["broken"].as_array().unwrap() {
        assert_eq!(b["steps"].as_array().unwrap().len(), 2, "{b}");
        assert!(!b["reason"].as_str().unwrap().is_empty(), "{b}");
    }
}

#[test]
fn plant_300_plans_without_disruption_and_verifies_safe() {
    let text = std::fs::read_to_string(common::root().join("examples/plant-300.yaml")).unwrap();
    // Count the file independently of the core: listed nodes, and distinct links of
    // the rotated CA (those without their own `ca:`), plus one control link per node.
    let nodes = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- {id: "))
        .count();
    let atomic = text.lines().filter(|l| l.contains("mode: atomic")).count();
    let mut rotated: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- {client: ") && !l.contains(" ca: "))
        .collect();
    let listed_links = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- {client: "))
        .count();
    rotated.sort();
    rotated.dedup();
    assert_eq!(nodes, 300);
    assert!(
        (90..=110).contains(&atomic),
        "about a third atomic: {atomic}"
    );
    assert!((1000..=1500).contains(&listed_links), "{listed_links}");
    assert!(
        listed_links > rotated.len(),
        "some links are under other CAs"
    );
    assert!(text.contains("control: {ca: plant-device-ca}"));

    let run = plan_ok(&["plan", "examples/plant-300.yaml"]);
    // 7 waves is what the planner reached (the longest prerequisite chain); a
    // regression value, not a hand count.
    assert_eq!(
        run.last_line(),
        format!(
            "{} nodes, {} links, 7 waves, 0 disruptions",
            nodes + 1,
            rotated.len() + nodes
        )
    );
    assert!(run.stdout.contains("verdict: safe"), "{}", run.stdout);
    let plan = plan_ok(&["plan", "examples/plant-300.yaml", "-f", "json"]).stdout;
    let verdict = json(
        &rollover_with_stdin(
            &["verify", "examples/plant-300.yaml", "-", "-f", "json"],
            &plan,
        )
        .stdout,
    );
    assert_eq!(verdict["safe"], true);
    assert_eq!(verdict["waves"], 7);
    assert_eq!(verdict["links_checked"], rotated.len() + nodes);
}

#[test]
fn every_plan_re_verifies_safe() {
    for example in EXAMPLES {
        let plan = plan_ok(&["plan", example, "--format", "json"]).stdout;
        assert_eq!(json(&plan)["format"], "rollover-plan/1");
        let path = scratch(
            "re_verify",
            &format!("{}.json", example.replace('/', "_")),
            &plan,
        );
        let run = rollover(&["verify", example, &path]);
        assert_eq!(run.code, 0, "{example}: {run:?}");
        assert!(
            run.stdout.starts_with("safe: no undeclared link can break"),
            "{example}: {}",
            run.stdout
        );
    }
}

#[test]
fn dot_has_one_edge_per_rotated_link() {
    for example in EXAMPLES {
        let summary = plan_ok(&["plan", example]).last_line().to_string();
        let links: usize = summary
            .split(", ")
            .nth(1)
            .and_then(|s| s.strip_suffix(" links"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{summary}"));
        let disruptions: usize = summary
            .rsplit(", ")
            .next()
            .and_then(|s| s.strip_suffix(" disruptions"))
            .and_then(|n| n.parse().ok())
            .unwrap();
        let dot = plan_ok(&["plan", example, "--format", "dot"]).stdout;
        assert!(dot.starts_with("digraph "), "{example}");
        assert!(dot.trim_end().ends_with('}'), "{example}");
        assert_eq!(
            dot.matches('{').count(),
            dot.matches('}').count(),
            "{example}"
        );
        assert_eq!(dot.matches('"').count() % 2, 0, "{example}");
        let edges: Vec<&str> = dot.lines().filter(|l| l.contains("\" -> \"")).collect();
        // An edge stands for one link (`wN`), or on a large fleet for all the links
        // between two wave groups (`N link(s), wN..., D disrupted`).
        let label = |l: &str| -> String {
            let (_, rest) = l.split_once("[label=\"").expect("a label");
            rest.split('"').next().unwrap().to_string()
        };
        let count = |text: &str, suffix: &str| -> usize {
            text.split(", ")
                .find_map(|part| part.strip_suffix(suffix))
                .map_or(0, |n| n.parse().expect("a count"))
        };
        let grey: Vec<&&str> = edges.iter().filter(|l| l.contains("color=grey")).collect();
        let rotated: Vec<String> = edges
            .iter()
            .filter(|l| !l.contains("color=grey"))
            .map(|l| label(l))
            .collect();
        let drawn: usize = rotated
            .iter()
            .map(|l| {
                if l.starts_with('w') {
                    1
                } else {
                    count(l, " link(s)")
                }
            })
            .sum();
        // `@executor`'s links are collapsed into its note, which counts them.
        let collapsed: usize = dot
            .lines()
            .find(|l| l.starts_with("  \"@executor\" [shape=note"))
            .map(|l| {
                let (_, rest) = l.split_once("client of every target: ").expect("a count");
                rest.split(' ').next().unwrap().parse().unwrap()
            })
            .unwrap_or(0);
        assert!(
            !dot.lines().any(|l| l.starts_with("  \"@executor\" -> ")),
            "{example}: no executor edge by default"
        );
        assert_eq!(drawn + collapsed, links, "{example}");
        assert!(
            grey.iter()
                .all(|l| label(l).contains(':') || !l.contains("link(s)")),
            "{example}"
        );
        let red: usize = edges
            .iter()
            .filter(|l| l.contains("style=dashed, color=red"))
            .map(|l| {
                let text = label(l);
                if text.starts_with('w') {
                    1
                } else {
                    count(&text, " disrupted")
                }
            })
            .sum();
        assert_eq!(red, disruptions, "{example}");
    }
}

#[test]
fn dot_marks_modes_disruptions_and_foreign_links() {
    let dot = plan_ok(&["plan", "examples/mixed.yaml", "-f", "dot"]).stdout;
    assert!(dot.contains("\"plc-1\" [shape=box];"), "{dot}");
    assert!(
        dot.contains("\"@executor\" [shape=note, peripheries=2, label=\"@executor\\nclient of every target: 6 link(s)"),
        "{dot}"
    );
    assert!(dot.contains("subgraph cluster_w1 {"), "{dot}");
    assert!(
        dot.contains("\"historian\" -> \"erp\" [label=\"corp-ca\", color=grey, fontcolor=grey];"),
        "{dot}"
    );
    // scada -> plc-2: plc-2 switches in wave 2 (after plc-1 switched in wave 1).
    assert!(
        dot.contains("\"scada\" -> \"plc-2\" [label=\"w2\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("\"hmi-1\" -> \"scada\" [label=\"w1\"];"),
        "{dot}"
    );
}

#[test]
fn order_lists_every_node_once_by_first_wave() {
    let order = plan_ok(&["plan", "examples/mixed.yaml", "-f", "order"]).stdout;
    let nodes: Vec<&str> = order.lines().collect();
    assert_eq!(nodes.len(), 7);
    // Bundle nodes stage in wave 0 (plan order), then plc-1 and meter-7 switch in
    // wave 1, then plc-2 in wave 2.
    assert_eq!(&nodes[4..], ["plc-1", "meter-7", "plc-2"]);
    let mut first: Vec<&str> = nodes[..4].to_vec();
    first.sort();
    assert_eq!(first, ["@executor", "historian", "hmi-1", "scada"]);
}

#[test]
fn bad_example_is_rejected_naming_line_and_field() {
    let run = rollover(&["plan", "examples/bad.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with("error: examples/bad.yaml:8:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("field `nodes[1].mode`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("dual"), "{}", run.stderr);
}

#[test]
fn output_file_and_stdin() {
    let out = scratch("output_file", "mesh.plan.json", "");
    let run = plan_ok(&["plan", "examples/mesh.yaml", "-f", "json", "-o", &out]);
    assert!(run.stdout.is_empty());
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(json(&written)["ca"], "mesh-root");

    let mesh = std::fs::read_to_string(common::root().join("examples/mesh.yaml")).unwrap();
    let run = rollover_with_stdin(&["plan", "-"], &mesh);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.last_line(), "8 nodes, 11 links, 3 waves, 0 disruptions");
    let run = rollover_with_stdin(&["plan", "-"], "ca: r\nnodes:\n  - {id: a, mode: x}\n");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("error: <stdin>:3:"),
        "{}",
        run.stderr
    );
}

#[test]
fn start_names_a_target_and_only_for_claim() {
    let run = plan_ok(&[
        "plan",
        "examples/claim-unsafe.yaml",
        "--strategy",
        "claim",
        "--start",
        "historian",
        "-f",
        "order",
    ]);
    assert_eq!(run.stdout.lines().count(), 4);
    let run = rollover(&[
        "plan",
        "examples/mesh.yaml",
        "--strategy",
        "claim",
        "--start",
        "nobody",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`nobody`"), "{}", run.stderr);
    let run = rollover(&["plan", "examples/mesh.yaml", "--start", "auth"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("claim"), "{}", run.stderr);
}

#[test]
fn help_explains_every_command_with_an_example() {
    for args in [&["--help"][..], &["plan", "--help"], &["verify", "--help"]] {
        let run = rollover(args);
        assert_eq!(run.code, 0, "{args:?}");
        assert!(
            run.stdout.contains("Examples:\n  rollover "),
            "{args:?}: {}",
            run.stdout
        );
    }
    let run = rollover(&["plan", "--help"]);
    assert!(
        run.stdout
            .contains("N nodes, L links, W waves, D disruptions")
    );
    let run = rollover(&[]);
    assert_eq!(run.code, 2, "no command is a usage error");
}

/// The 300-node plant's default DOT stays small enough for Graphviz to lay out in a
/// second (`--full`, 1,294 edges, takes it 40 s to minutes): `@executor`'s 300 links
/// are one note, and, beyond 300 edges, one box per wave group and one edge per pair
/// of groups.
#[test]
fn dot_of_the_plant_is_summarised_by_wave_group() {
    let edges = |dot: &str| dot.lines().filter(|l| l.contains("\" -> \"")).count();
    let dot = plan_ok(&["plan", "examples/plant-300.yaml", "-f", "dot"]).stdout;
    eprintln!("default: {} edges, {} bytes", edges(&dot), dot.len());
    assert!(edges(&dot) <= 60, "{} edges:\n{dot}", edges(&dot));
    assert!(dot.len() < 20_000, "{} bytes", dot.len());
    for wave in 1..6 {
        assert!(
            dot.contains(&format!("\"@wave {wave}\" [shape=box")),
            "wave {wave}: {dot}"
        );
    }
    // Every node is named in its box, and the title says how to see everything.
    assert!(dot.contains("plc-a1-01"), "{dot}");
    assert!(
        dot.contains("--full") && dot.contains("--focus NODE"),
        "{dot}"
    );
    assert!(dot.contains("\"@executor\" [shape=note"), "executor note");

    let full = plan_ok(&["plan", "examples/plant-300.yaml", "-f", "dot", "--full"]).stdout;
    assert_eq!(edges(&full), 1294, "every link but @executor's");
    let focused = plan_ok(&[
        "plan",
        "examples/plant-300.yaml",
        "-f",
        "dot",
        "--focus",
        "plc-a1-01",
        "--depth",
        "1",
    ])
    .stdout;
    assert!(
        focused.contains("subgraph cluster_w"),
        "a focus is drawn in full"
    );
    assert!(edges(&focused) < 60, "{focused}");
    let run = rollover(&["plan", "examples/plant-300.yaml", "--full"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--format dot"), "{}", run.stderr);
}

#[test]
fn dot_focus_draws_a_neighbourhood_and_names_unknown_nodes() {
    let dot = plan_ok(&[
        "plan",
        "examples/mixed.yaml",
        "-f",
        "dot",
        "--focus",
        "plc-2",
        "--depth",
        "1",
    ])
    .stdout;
    assert!(
        dot.contains("\"plc-2\" [shape=box, penwidth=3, style=bold];"),
        "{dot}"
    );
    assert!(dot.contains("\"scada\" -> \"plc-2\""), "{dot}");
    assert!(!dot.contains("\"erp\""), "{dot}");
    let all = plan_ok(&[
        "plan",
        "examples/mixed.yaml",
        "-f",
        "dot",
        "--focus",
        "@executor",
    ])
    .stdout;
    assert_eq!(all.matches("\"@executor\" -> ").count(), 6, "{all}");

    let run = rollover(&[
        "plan",
        "examples/mixed.yaml",
        "-f",
        "dot",
        "--focus",
        "nope",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("`--focus nope`: no such node"),
        "{}",
        run.stderr
    );
    let run = rollover(&["plan", "examples/mixed.yaml", "--focus", "plc-2"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--format dot"), "{}", run.stderr);
}
