//! The Planner over real gRPC: served on 127.0.0.1:0 and called with the generated
//! `PlannerServiceClient`, health and reflection clients.

mod common;

use common::*;
use rollover_core::{Plan, Topology};
use rollover_proto::v1;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn steps_of(plan: &v1::Plan, node: &str) -> Vec<v1::StepAction> {
    plan.steps
        .iter()
        .filter(|s| s.node == node)
        .map(|s| s.action())
        .collect()
}

fn wave_count(plan: &v1::Plan) -> u32 {
    plan.steps.iter().map(|s| s.wave + 1).max().unwrap_or(0)
}

#[tokio::test]
async fn mixed_fleet_plan_verifies_safe() {
    let served = Served::start().await;
    let mut client = served.client().await;

    let plan = client
        .plan(plan_request(
            topology_doc("examples/mixed.yaml", MIXED),
            v1::Strategy::Unspecified,
            None,
        ))
        .await
        .expect("plans")
        .into_inner()
        .plan
        .expect("a plan");
    assert_eq!(plan.format, "rollover-plan/1");
    assert_eq!(plan.ca, "plant-device-ca");
    assert_eq!(plan.strategy.as_deref(), Some("waves"));
    assert_eq!(plan.cycle_breaking.as_deref(), Some("none"));
    assert!(plan.disruptions.is_empty());
    assert_eq!(wave_count(&plan), 4, "the example's expected summary");
    use v1::StepAction::*;
    for atomic in ["plc-1", "plc-2", "meter-7"] {
        assert_eq!(steps_of(&plan, atomic), [Switch, Finalize], "{atomic}");
    }
    // The control channel is in the rotated CA: the executor is a planned bundle node.
    assert_eq!(steps_of(&plan, "@executor"), [Stage, Present, Retire]);
    assert_eq!(plan.steps.len(), 3 * 4 + 2 * 3);

    // Verify it, structured: the topology as a message, the plan as received.
    let topology = Topology::parse("mixed.yaml", MIXED).unwrap();
    let verdict = client
        .verify(v1::VerifyRequest {
            topology: topology_msg(v1::Topology::from(&topology)),
            plan: plan_msg(plan.clone()),
        })
        .await
        .expect("verifies")
        .into_inner()
        .verdict
        .unwrap();
    assert!(verdict.safe, "{verdict:?}");
    assert_eq!(verdict.waves, 4);
    assert_eq!(verdict.links_checked, 12);
    assert_eq!((verdict.undeclared_count, verdict.declared_count), (0, 0));
    assert!(verdict.broken.is_empty());

    // And as documents, the plan written as a plan file.
    let plan_file = Plan::try_from(plan).unwrap().to_json();
    let again = client
        .verify(v1::VerifyRequest {
            topology: topology_doc("examples/mixed.yaml", MIXED),
            plan: plan_doc("plan.json", &plan_file),
        })
        .await
        .expect("verifies")
        .into_inner()
        .verdict
        .unwrap();
    assert_eq!(again, verdict);
    served.stop().await;
}

#[tokio::test]
async fn atomic_ring_gets_exactly_one_disruption() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let plan = client
        .plan(plan_request(
            topology_doc("examples/ring.yaml", RING),
            v1::Strategy::Waves,
            None,
        ))
        .await
        .expect("plans")
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(plan.disruptions.len(), 1, "{:?}", plan.disruptions);
    let d = &plan.disruptions[0];
    assert!(
        d.client.starts_with("rtu-") && d.server.starts_with("rtu-"),
        "{d:?}"
    );
    assert!(!d.reason.is_empty());
    assert_eq!(plan.cycle_breaking.as_deref(), Some("exact"));

    let verdict = client
        .verify(v1::VerifyRequest {
            topology: topology_doc("examples/ring.yaml", RING),
            plan: plan_msg(plan),
        })
        .await
        .unwrap()
        .into_inner()
        .verdict
        .unwrap();
    assert!(verdict.safe, "{verdict:?}");
    assert_eq!(verdict.declared_count, 1);
    assert_eq!(verdict.undeclared_count, 0);
}

#[tokio::test]
async fn bad_document_is_invalid_argument_naming_line_and_field() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let status = client
        .plan(plan_request(
            topology_doc("examples/bad.yaml", BAD),
            v1::Strategy::Unspecified,
            None,
        ))
        .await
        .expect_err("bad.yaml has an unknown mode");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(message.starts_with("examples/bad.yaml:8:"), "{message}");
    assert!(message.contains("nodes[1].mode"), "{message}");
    assert!(message.contains("dual"), "{message}");

    // Verify rejects it the same way.
    let status = client
        .verify(v1::VerifyRequest {
            topology: topology_doc("examples/bad.yaml", BAD),
            plan: plan_doc("plan.json", "{}"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("nodes[1].mode"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn plan_document_that_does_not_fit_names_its_line() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let topology = Topology::parse("ring.yaml", RING).unwrap();
    let plan = rollover_core::plan_waves(&rollover_core::Fleet::new(&topology));
    // Point step 2 (line-located in the pretty JSON) at a node the topology lacks.
    let mut wrong = plan.clone();
    wrong.steps[2].node = "ghost".into();
    let text = wrong.to_json();
    let line = text
        .lines()
        .position(|l| l.contains("\"ghost\""))
        .map(|i| i as u64 + 1)
        .unwrap();
    let status = client
        .verify(v1::VerifyRequest {
            topology: topology_doc("ring.yaml", RING),
            plan: plan_doc("wrong.json", &text),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let message = status.message();
    assert!(
        message.starts_with(&format!("wrong.json:{line}:")),
        "{message}"
    );
    assert!(message.contains("steps[2].node"), "{message}");

    // The same plan as a message: the field is named, the origin is `<plan>`.
    let status = client
        .verify(v1::VerifyRequest {
            topology: topology_doc("ring.yaml", RING),
            plan: plan_msg(v1::Plan::from(&wrong)),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("<plan>: field `steps[2].node`"),
        "{}",
        status.message()
    );

    // And an unspecified action in a structured plan names the field.
    let mut wire = v1::Plan::from(&plan);
    wire.steps[3].action = v1::StepAction::Unspecified as i32;
    let status = client
        .verify(v1::VerifyRequest {
            topology: topology_doc("ring.yaml", RING),
            plan: plan_msg(wire),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "plan.steps[3].action: unspecified");
}

#[tokio::test]
async fn claim_strategy_start_node_is_checked_and_unsafe_claim_is_an_answer() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let topology = || topology_doc("examples/claim-unsafe.yaml", CLAIM_UNSAFE);

    let status = client
        .plan(plan_request(
            topology(),
            v1::Strategy::Claim,
            Some("nowhere"),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("`nowhere`"),
        "{}",
        status.message()
    );

    // `start` is only for the claim strategy.
    let status = client
        .plan(plan_request(
            topology(),
            v1::Strategy::Waves,
            Some("meter-1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // A known start node plans; the claim's order is unsafe here, and Verify says so
    // as a normal answer.
    let plan = client
        .plan(plan_request(
            topology(),
            v1::Strategy::Claim,
            Some("meter-1"),
        ))
        .await
        .expect("plans")
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(plan.strategy.as_deref(), Some("claim"));
    let verdict = client
        .verify(v1::VerifyRequest {
            topology: topology(),
            plan: plan_msg(plan),
        })
        .await
        .expect("an unsafe plan is not an error")
        .into_inner()
        .verdict
        .unwrap();
    assert!(!verdict.safe);
    assert!(!verdict.broken.is_empty());
    assert_eq!(verdict.undeclared_count as usize, verdict.broken.len());
    for b in &verdict.broken {
        assert_eq!(b.server, "collector", "{b:?}");
        assert_eq!(b.steps.len(), 2);
        assert!(b.description.contains(" may run before "), "{b:?}");
        assert!(!b.reason.is_empty());
    }
}

#[tokio::test]
async fn missing_and_unknown_fields_are_invalid_argument() {
    let served = Served::start().await;
    let mut client = served.client().await;
    let status = client
        .plan(plan_request(None, v1::Strategy::Waves, None))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "topology: missing")
    );
    let mut request = plan_request(topology_doc("r.yaml", RING), v1::Strategy::Waves, None);
    request.strategy = 17;
    let status = client.plan(request).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "strategy: unknown enum value 17")
    );
    let status = client
        .plan(plan_request(
            Some(v1::TopologySource { source: None }),
            v1::Strategy::Waves,
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("source: missing"),
        "{}",
        status.message()
    );
    let status = client
        .verify(v1::VerifyRequest {
            topology: topology_doc("r.yaml", RING),
            plan: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "plan: missing")
    );
}

#[tokio::test]
async fn health_reports_serving_then_stops() {
    let served = Served::start().await;
    let mut health = HealthClient::new(served.channel().await);
    for service in ["", "rollover.v1.PlannerService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of `{service}`: {e}"))
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "`{service}`");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "rollover.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    served.stop().await;
}

/// Both reflection versions answer, and list exactly what the planner serves.
#[tokio::test]
async fn reflection_v1_and_v1alpha_list_only_the_planner() {
    let served = Served::start().await;
    let want = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "rollover.v1.PlannerService",
    ];

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = ServerReflectionClient::new(served.channel().await)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected v1 reflection response {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, want, "v1");

    use tonic_reflection::pb::v1alpha as alpha;
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let response =
        alpha::server_reflection_client::ServerReflectionClient::new(served.channel().await)
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .expect("one response");
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected v1alpha reflection response {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, want, "v1alpha");
    served.stop().await;
}
