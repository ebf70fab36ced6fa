//! Core <-> wire conversions: every example fleet, its plans and verdicts survive
//! core -> wire (encoded and decoded as bytes) -> core unchanged, and malformed wire
//! input is rejected with the field named.

use std::path::{Path, PathBuf};

use prost::Message;
use rollover_core::{Fleet, PLAN_FORMAT, Plan, PlanOptions, Strategy, Topology, Verdict};
use rollover_proto::convert::{ConvertError, SourceError, plan_from_source, topology_from_source};
use rollover_proto::v1;

/// The repository's example fleets: (path, text).
fn examples() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    assert!(
        out.len() >= 5,
        "example fleets not found under {}",
        root.display()
    );
    out
}

/// The examples that are valid topologies, parsed.
fn topologies() -> Vec<(String, Topology)> {
    examples()
        .into_iter()
        .filter_map(|(path, text)| {
            let name = path.display().to_string();
            Topology::parse(&name, &text).ok().map(|t| (name, t))
        })
        .collect()
}

/// Through the wire: core -> message -> bytes -> message -> core.
fn over_the_wire<C, W>(value: &C) -> C
where
    for<'a> W: From<&'a C> + Message + Default,
    C: TryFrom<W, Error = ConvertError>,
{
    let bytes = W::from(value).encode_to_vec();
    let decoded = W::decode(bytes.as_slice()).expect("decodes");
    C::try_from(decoded).expect("converts back")
}

fn document(origin: &str, text: &str, format: v1::DocumentFormat) -> v1::Document {
    v1::Document {
        text: text.to_string(),
        format: format as i32,
        origin: origin.to_string(),
    }
}

fn topology_doc(origin: &str, text: &str) -> v1::TopologySource {
    v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(document(
            origin,
            text,
            v1::DocumentFormat::Unspecified,
        ))),
    }
}

fn structured_topology(t: v1::Topology) -> v1::TopologySource {
    v1::TopologySource {
        source: Some(v1::topology_source::Source::Topology(t)),
    }
}

fn structured_plan(p: v1::Plan) -> v1::PlanSource {
    v1::PlanSource {
        source: Some(v1::plan_source::Source::Plan(p)),
    }
}

fn convert_error(e: SourceError) -> ConvertError {
    match e {
        SourceError::Convert(e) => e,
        SourceError::Core(e) => panic!("expected a conversion error, got {e}"),
    }
}

fn input_error(e: SourceError) -> rollover_core::InputError {
    match e {
        SourceError::Core(e) => e.as_input().expect("an input error").clone(),
        SourceError::Convert(e) => panic!("expected a core input error, got {e}"),
    }
}

#[test]
fn every_example_topology_round_trips() {
    let topologies = topologies();
    assert!(topologies.len() >= 5);
    let mut addresses = 0;
    let mut controls = 0;
    for (name, topology) in &topologies {
        assert_eq!(
            &over_the_wire::<Topology, v1::Topology>(topology),
            topology,
            "{name}"
        );
        // And as a structured source, which also checks it.
        let source = structured_topology(v1::Topology::from(topology));
        assert_eq!(&topology_from_source(&source).unwrap(), topology, "{name}");
        addresses += topology
            .nodes
            .iter()
            .filter(|n| n.address.is_some())
            .count();
        controls += usize::from(topology.control.is_some());
    }
    assert!(addresses > 0, "some example must exercise node addresses");
    assert!(
        controls > 0,
        "some example must exercise the control channel"
    );
}

#[test]
fn every_plan_of_every_example_round_trips() {
    for (name, topology) in topologies() {
        let fleet = Fleet::new(&topology);
        for strategy in [Strategy::Waves, Strategy::Claim] {
            let options = PlanOptions {
                strategy,
                start: None,
            };
            let Ok(plan) = rollover_core::plan(&fleet, &options) else {
                continue;
            };
            assert_eq!(
                over_the_wire::<Plan, v1::Plan>(&plan),
                plan,
                "{name} {strategy:?}"
            );
            let wire = v1::Plan::from(&plan);
            assert_eq!(wire.strategy.as_deref(), Some(strategy.as_str()));
            assert!(wire.cycle_breaking.is_some());
            assert_eq!(plan_from_source(&structured_plan(wire)).unwrap(), plan);

            let verdict = rollover_core::verify_plan(&topology, &plan).unwrap();
            assert_eq!(
                over_the_wire::<Verdict, v1::Verdict>(&verdict),
                verdict,
                "{name}"
            );
        }
    }
}

#[test]
fn ring_disruptions_and_unsafe_claim_witnesses_round_trip() {
    let all = topologies();
    let find = |suffix: &str| {
        all.iter()
            .find(|(name, _)| name.ends_with(suffix))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no example {suffix}"))
    };

    let ring = find("examples/ring.yaml");
    let plan = rollover_core::plan_waves(&Fleet::new(&ring));
    assert_eq!(plan.disruptions.len(), 1);
    let wire = v1::Plan::from(&plan);
    assert_eq!(wire.disruptions[0].reason, plan.disruptions[0].reason);
    assert_eq!(Plan::try_from(wire).unwrap(), plan);

    let unsafe_fleet = find("examples/claim-unsafe.yaml");
    let claim = rollover_core::plan(
        &Fleet::new(&unsafe_fleet),
        &PlanOptions {
            strategy: Strategy::Claim,
            start: None,
        },
    )
    .unwrap();
    let verdict = rollover_core::verify_plan(&unsafe_fleet, &claim).unwrap();
    assert!(!verdict.safe && !verdict.broken.is_empty());
    let wire = v1::Verdict::from(&verdict);
    assert_eq!(wire.undeclared_count as usize, verdict.broken.len());
    let b = &wire.broken[0];
    assert_eq!(b.steps.len(), 2);
    assert_ne!(b.steps[0].action, v1::StepAction::Unspecified as i32);
    let core = &verdict.broken[0].steps;
    assert_eq!(
        b.description,
        format!(
            "{} {} may run before {} {}",
            core[0].node, core[0].action, core[1].node, core[1].action
        )
    );
    assert_eq!(Verdict::try_from(wire).unwrap(), verdict);
}

#[test]
fn documents_parse_with_core_and_keep_file_line_and_field() {
    let (path, text) = examples()
        .into_iter()
        .find(|(p, _)| p.ends_with("examples/bad.yaml"))
        .expect("examples/bad.yaml");
    let origin = path.display().to_string();
    let e = input_error(topology_from_source(&topology_doc(&origin, &text)).unwrap_err());
    assert_eq!(e.file, origin);
    assert_eq!(e.line, Some(8), "{e}");
    assert_eq!(e.field, "nodes[1].mode", "{e}");
    let status = tonic::Status::from(SourceError::Core(e.clone().into()));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains(":8:"), "{}", status.message());
    assert!(
        status.message().contains("nodes[1].mode"),
        "{}",
        status.message()
    );

    // A document without an origin is named `<topology>`.
    let e = input_error(topology_from_source(&topology_doc("", &text)).unwrap_err());
    assert!(e.to_string().starts_with("<topology>:8:"), "{e}");
}

#[test]
fn explicit_document_format_is_honoured() {
    let (_, mixed) = topologies()
        .into_iter()
        .find(|(n, _)| n.ends_with("examples/mixed.yaml"))
        .unwrap();
    // No extension in the origin; the text starts with `{` anyway, but say JSON.
    let json = mixed.to_json();
    let source = v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(document(
            "stdin",
            &json,
            v1::DocumentFormat::Json,
        ))),
    };
    assert_eq!(topology_from_source(&source).unwrap(), mixed);

    // A JSON parser reports JSON errors: a YAML text declared as JSON fails to parse.
    let source = v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(document(
            "stdin",
            "ca: r\n",
            v1::DocumentFormat::Json,
        ))),
    };
    assert!(topology_from_source(&source).is_err());

    // An unknown format value names the field.
    let mut doc = document("x", "ca: r\n", v1::DocumentFormat::Yaml);
    doc.format = 7;
    let source = v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(doc)),
    };
    let e = convert_error(topology_from_source(&source).unwrap_err());
    assert_eq!(e.to_string(), "document.format: unknown enum value 7");

    // Plans too: a plan file's text, and its format tag checked with a line.
    let plan = rollover_core::plan_waves(&Fleet::new(&mixed));
    let source = v1::PlanSource {
        source: Some(v1::plan_source::Source::Document(document(
            "plan.json",
            &plan.to_json(),
            v1::DocumentFormat::Unspecified,
        ))),
    };
    assert_eq!(plan_from_source(&source).unwrap(), plan);
    let wrong = plan.to_json().replace(PLAN_FORMAT, "rollover-plan/0");
    let source = v1::PlanSource {
        source: Some(v1::plan_source::Source::Document(document(
            "",
            &wrong,
            v1::DocumentFormat::Json,
        ))),
    };
    let e = input_error(plan_from_source(&source).unwrap_err());
    assert_eq!((e.field.as_str(), e.line), ("format", Some(2)), "{e}");
}

#[test]
fn structured_input_is_checked_like_a_file() {
    let node = |id: &str, mode: v1::NodeMode| v1::Node {
        id: id.into(),
        mode: mode as i32,
        address: None,
        ..Default::default()
    };
    let mut t = v1::Topology {
        ca: "r".into(),
        nodes: vec![
            node("a", v1::NodeMode::Unspecified),
            node("b", v1::NodeMode::Atomic),
        ],
        links: vec![v1::Link {
            client: "a".into(),
            server: "b".into(),
            ca: None,
        }],
        control: None,
    };
    // UNSPECIFIED in a topology means BUNDLE.
    let core = topology_from_source(&structured_topology(t.clone())).unwrap();
    assert_eq!(core.nodes[0].mode, rollover_core::Mode::Bundle);

    t.nodes[1].mode = 9;
    let e = convert_error(topology_from_source(&structured_topology(t.clone())).unwrap_err());
    assert_eq!(
        e.to_string(),
        "topology.nodes[1].mode: unknown enum value 9"
    );

    t.nodes[1] = node("a", v1::NodeMode::Atomic);
    let e = input_error(topology_from_source(&structured_topology(t.clone())).unwrap_err());
    assert_eq!(
        (e.field.as_str(), e.file.as_str()),
        ("nodes[1].id", "<topology>")
    );
    assert!(e.message.contains("duplicate"), "{e}");

    let e = convert_error(topology_from_source(&v1::TopologySource { source: None }).unwrap_err());
    assert_eq!(e.field, "source");
    let e = convert_error(plan_from_source(&v1::PlanSource { source: None }).unwrap_err());
    assert_eq!(e.field, "source");
}

#[test]
fn malformed_plans_and_verdicts_name_the_field() {
    let topology =
        Topology::parse("t.yaml", "ca: r\nlinks:\n  - {client: a, server: b}\n").unwrap();
    let plan = rollover_core::plan_waves(&Fleet::new(&topology));
    let mut wire = v1::Plan::from(&plan);
    assert!(wire.steps.len() > 3);
    wire.steps[3].action = v1::StepAction::Unspecified as i32;
    assert_eq!(
        Plan::try_from(wire.clone()).unwrap_err().to_string(),
        "steps[3].action: unspecified"
    );
    let e = convert_error(plan_from_source(&structured_plan(wire)).unwrap_err());
    assert_eq!(e.to_string(), "plan.steps[3].action: unspecified");
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "plan.steps[3].action: unspecified");

    // A structured plan may leave the format tag out, but not give another one.
    let mut wire = v1::Plan::from(&plan);
    wire.format.clear();
    assert_eq!(
        plan_from_source(&structured_plan(wire.clone())).unwrap(),
        plan
    );
    wire.format = "rollover-plan/2".into();
    let e = convert_error(plan_from_source(&structured_plan(wire)).unwrap_err());
    assert_eq!(e.field, "plan.format");

    let mut verdict = v1::Verdict {
        safe: false,
        waves: 3,
        broken: vec![v1::BrokenLink {
            client: "a".into(),
            server: "b".into(),
            steps: vec![v1::StepRef {
                id: 0,
                node: "a".into(),
                action: v1::StepAction::Stage as i32,
            }],
            description: String::new(),
            reason: "r".into(),
        }],
        undeclared_count: 1,
        declared_count: 0,
        links_checked: 1,
    };
    assert_eq!(
        Verdict::try_from(verdict.clone()).unwrap_err().to_string(),
        "broken[0].steps: expected exactly 2 steps, found 1"
    );
    let mut second = verdict.broken[0].steps[0].clone();
    second.action = 0;
    verdict.broken[0].steps.push(second);
    assert_eq!(
        Verdict::try_from(verdict).unwrap_err().to_string(),
        "broken[0].steps[1].action: unspecified"
    );
}

/// Core's node id rule holds on the wire too: a structured topology's node ids and
/// link ends, and a structured plan's step nodes and disruption ends, are refused while
/// converting, naming the field and not quoting the id.
#[test]
fn bad_node_ids_are_refused_while_converting() {
    let topology =
        Topology::parse("t.yaml", "ca: r\nlinks:\n  - {client: a, server: b}\n").unwrap();
    let plan = rollover_core::plan_waves(&Fleet::new(&topology));
    let huge = "x".repeat(1 << 20);
    for bad in [
        huge.as_str(),
        "a\u{1b}]0;title\u{7}",
        "a\nb",
        &"y".repeat(254),
    ] {
        let mut t = v1::Topology::from(&topology);
        t.nodes.push(v1::Node {
            id: bad.into(),
            ..Default::default()
        });
        let e = convert_error(topology_from_source(&structured_topology(t)).unwrap_err());
        assert_eq!(e.field, "topology.nodes[0].id", "{e}");
        assert!(!e.problem.contains(bad), "{e}");
        let mut t = v1::Topology::from(&topology);
        t.links[0].server = bad.into();
        let e = convert_error(topology_from_source(&structured_topology(t)).unwrap_err());
        assert_eq!(e.field, "topology.links[0].server", "{e}");
        let mut p = v1::Plan::from(&plan);
        p.steps[2].node = bad.into();
        let e = convert_error(plan_from_source(&structured_plan(p)).unwrap_err());
        assert_eq!(e.field, "plan.steps[2].node", "{e}");
        let mut p = v1::Plan::from(&plan);
        p.disruptions.push(v1::Disruption {
            client: "a".into(),
            server: bad.into(),
            reason: "r".into(),
        });
        let e = convert_error(plan_from_source(&structured_plan(p)).unwrap_err());
        assert_eq!(e.field, "plan.disruptions[0].server", "{e}");
    }
    let mut t = v1::Topology::from(&topology);
    t.links[0].server = "b".repeat(253);
    assert!(topology_from_source(&structured_topology(t)).is_ok());
}
