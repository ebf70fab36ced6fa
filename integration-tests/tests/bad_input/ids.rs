//! Node ids at the edge (issue 25 item 4): Plan, Verify and StartRotation refuse a
//! megabyte id, an id holding a terminal escape or a newline and a 254-byte id as
//! INVALID_ARGUMENT naming the field, before any planning, whether the topology is a
//! structured message or a document, and a step naming such a node likewise; a 253-byte
//! id is planned. Each refusal's time is printed (`-- --nocapture`).

use std::time::{Duration, Instant};

use rollover_executor::ExecutorConfig;
use rollover_integration_tests::{bounded, refused, start_executor, start_planner};
use rollover_proto::v1;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::planner_service_client::PlannerServiceClient;
use tonic::Code;

use crate::fuzz::*;
use crate::inputs::*;

/// A refusal of a megabyte request over loopback; measured at a few milliseconds, the
/// bound is loose for a shared CI machine.
const REFUSAL_LIMIT: Duration = Duration::from_secs(1);

/// The bad ids: (name, id, how it is written in a YAML double-quoted scalar).
fn bad_ids() -> Vec<(&'static str, String, String)> {
    let huge = "x".repeat(1 << 20);
    let long = "y".repeat(254);
    vec![
        ("a 1 MB id", huge.clone(), huge),
        (
            "an OSC title escape",
            "a\u{1b}]0;title\u{7}".into(),
            "a\\e]0;title\\a".into(),
        ),
        ("a newline", "a\nb".into(), "a\\nb".into()),
        ("a 254-byte id", long.clone(), long),
    ]
}

/// The seed topology with node `gw` (nodes[0]) renamed, structured.
fn structured(id: &str) -> v1::TopologySource {
    let mut t = v1::Topology::from(&core_topology());
    t.nodes[0].id = id.into();
    v1::TopologySource {
        source: Some(v1::topology_source::Source::Topology(t)),
    }
}

/// The same as a YAML document.
fn yaml(written: &str) -> v1::TopologySource {
    let text = TOPOLOGY_YAML.replacen("{id: gw,", &format!("{{id: \"{written}\","), 1);
    v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(document(
            text,
            v1::DocumentFormat::Yaml,
            "fleet.yaml",
        ))),
    }
}

/// The seed plan with its first step's node renamed.
fn plan_naming(id: &str) -> v1::PlanSource {
    let mut p = v1::Plan::from(&core_plan());
    p.steps[0].node = id.into();
    v1::PlanSource {
        source: Some(v1::plan_source::Source::Plan(p)),
    }
}

fn seed_plan() -> v1::PlanSource {
    v1::PlanSource {
        source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&core_plan()))),
    }
}

/// Checks a refusal: INVALID_ARGUMENT, in time, naming `field`, not repeating `id`.
fn check<T: std::fmt::Debug>(
    what: &str,
    result: &Result<T, tonic::Status>,
    took: Duration,
    field: &str,
    id: &str,
) {
    assert_eq!(refused(what, result), Code::InvalidArgument, "{what}");
    let Err(status) = result else { unreachable!() };
    let message = status.message();
    assert!(
        message.contains(field),
        "{what}: expected {field}: {message}"
    );
    assert!(
        !message.contains(id),
        "{what}: the id is repeated: {message:.300}"
    );
    assert!(took < REFUSAL_LIMIT, "{what}: {took:?}");
    println!("{what}: refused in {took:?}: {message}");
}

#[test]
fn bad_node_ids_are_refused_before_planning_naming_the_field() {
    let rt = runtime();
    let _in_runtime = rt.enter();
    let state = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let planner = start_planner().await;
        let config = ExecutorConfig::new(state.path())
            .planner_url(&planner.addr)
            .expect("planner url");
        let (server, executor) = start_executor(config).await;
        let mut p = PlannerServiceClient::new(planner.channel());
        let mut e = ExecutorServiceClient::new(server.channel());
        for (name, id, written) in bad_ids() {
            let forms = [
                ("structured", structured(&id), "topology.nodes[0].id"),
                ("document", yaml(&written), "field `nodes[0].id`"),
            ];
            for (form, topology, field) in forms {
                let what = format!("Plan, {form}, {name}");
                let started = Instant::now();
                let result = bounded(
                    &what,
                    CALL_LIMIT,
                    p.plan(v1::PlanRequest {
                        topology: Some(topology.clone()),
                        ..Default::default()
                    }),
                )
                .await;
                check(&what, &result, started.elapsed(), field, &id);

                let what = format!("Verify, {form}, {name}");
                let started = Instant::now();
                let result = bounded(
                    &what,
                    CALL_LIMIT,
                    p.verify(v1::VerifyRequest {
                        topology: Some(topology.clone()),
                        plan: Some(seed_plan()),
                    }),
                )
                .await;
                check(&what, &result, started.elapsed(), field, &id);

                // No plan: the executor would ask the planner; the id is refused first.
                let what = format!("StartRotation, {form}, {name}");
                let started = Instant::now();
                let result = bounded(
                    &what,
                    CALL_LIMIT,
                    e.start_rotation(v1::StartRotationRequest {
                        topology: Some(topology),
                        ..Default::default()
                    }),
                )
                .await;
                check(&what, &result, started.elapsed(), field, &id);
            }
            // A good topology, and a plan whose first step names the bad id.
            let topology = Some(structured("gw"));
            let what = format!("Verify, a step naming {name}");
            let started = Instant::now();
            let result = p
                .verify(v1::VerifyRequest {
                    topology: topology.clone(),
                    plan: Some(plan_naming(&id)),
                })
                .await;
            check(&what, &result, started.elapsed(), "plan.steps[0].node", &id);
            let what = format!("StartRotation, a step naming {name}");
            let started = Instant::now();
            let result = e
                .start_rotation(v1::StartRotationRequest {
                    topology,
                    plan: Some(plan_naming(&id)),
                    ..Default::default()
                })
                .await;
            check(&what, &result, started.elapsed(), "plan.steps[0].node", &id);
        }
        // At the limit: planned.
        let longest = "z".repeat(253);
        let plan = p
            .plan(v1::PlanRequest {
                topology: Some(structured(&longest)),
                ..Default::default()
            })
            .await
            .expect("a 253-byte id is planned")
            .into_inner()
            .plan
            .expect("a plan");
        assert!(plan.steps.iter().any(|s| s.node == longest));
        assert!(executor.list_rotations(true).is_empty(), "nothing started");
        server.stop().await;
        executor.shutdown();
        planner.stop().await;
    });
}
