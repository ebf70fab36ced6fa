//! Edges: a message over a server's size limit, a watcher asking for events past a
//! finished rotation's end, and control calls while a rotation waits on agents that
//! never answer.

use std::time::Duration;

use rollover_agent::ControlCreds;
use rollover_core::Mode;
use rollover_executor::ExecutorConfig;
use rollover_integration_tests::{
    CA, EXECUTOR_ID, bounded, check_clear, creds, refused, root, serving, start_agent,
    start_executor, start_planner,
};
use rollover_proto::v1;
use rollover_proto::v1::agent_service_client::AgentServiceClient;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::planner_service_client::PlannerServiceClient;
use tonic::{Code, Status};

use crate::executor::*;
use crate::fuzz::*;
use crate::inputs::*;

/// The agent keeps tonic's 4 MiB request limit: a step just over it is refused
/// clearly (OUT_OF_RANGE, "message length too large"), and the agent serves on. The planner and the executor raise
/// their limit to `MAX_MESSAGE_BYTES` (256 MiB, too big to send here): a request
/// over the default 4 MiB reaches them and is judged on its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_limit_are_refused_clearly() {
    const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;
    let dirs = tempfile::tempdir().expect("tempdir");
    let (old, control) = (root(CA, 1), root("control", 1));
    let agent = start_agent(
        &dirs.path().join("a"),
        "a",
        Mode::Bundle,
        &old,
        ControlCreds::Separate(creds("a", &control)),
    )
    .await;
    let channel = rollover_transport::tls_channel(
        &agent.control_addr().to_string(),
        creds(EXECUTOR_ID, &control),
        "a",
    )
    .expect("channel");
    let mut client = AgentServiceClient::new(channel.clone());
    let big = v1::ApplyStepRequest {
        rotation_id: "r".into(),
        step_id: 1,
        action: v1::StepAction::Stage as i32,
        new_root_der: vec![0x30; DEFAULT_LIMIT + 1024],
        ..Default::default()
    };
    let result = bounded("oversized ApplyStep", CALL_LIMIT, client.apply_step(big)).await;
    // tonic answers an over-limit message with OUT_OF_RANGE (grpc-go and C++ say
    // RESOURCE_EXHAUSTED); either way the message says what happened.
    assert_eq!(refused("oversized ApplyStep", &result), Code::OutOfRange);
    let message = result.unwrap_err().message().to_string();
    assert!(message.contains("too large"), "{message}");
    // Just under the limit: read, and refused for what it says.
    let under = v1::ApplyStepRequest {
        rotation_id: "r".into(),
        step_id: 1,
        action: v1::StepAction::Stage as i32,
        new_root_der: vec![0x30; DEFAULT_LIMIT - 1024],
        ..Default::default()
    };
    let result = bounded("large ApplyStep", CALL_LIMIT, client.apply_step(under)).await;
    assert_ne!(refused("large ApplyStep", &result), Code::OutOfRange);
    assert!(serving(channel, "rollover.v1.AgentService").await);
    assert!(client.get_state(v1::GetStateRequest {}).await.is_ok());
    assert_eq!(agent.applied_count(), 0);
    agent.shutdown().await;

    let garbage = "x".repeat(DEFAULT_LIMIT + 1024);
    let topology = v1::TopologySource {
        source: Some(v1::topology_source::Source::Document(document(
            garbage,
            v1::DocumentFormat::Yaml,
            "big.yaml",
        ))),
    };
    let planner = start_planner().await;
    let mut client = PlannerServiceClient::new(planner.channel());
    let result = bounded(
        "large Plan",
        CALL_LIMIT,
        client.plan(v1::PlanRequest {
            topology: Some(topology.clone()),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(refused("large Plan", &result), Code::InvalidArgument);
    assert!(serving(planner.channel(), "rollover.v1.PlannerService").await);

    let state = tempfile::tempdir().expect("tempdir");
    let (server, executor) = start_executor(ExecutorConfig::new(state.path())).await;
    let mut client = ExecutorServiceClient::new(server.channel());
    let result = bounded(
        "large StartRotation",
        CALL_LIMIT,
        client.start_rotation(v1::StartRotationRequest {
            topology: Some(topology),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        refused("large StartRotation", &result),
        Code::InvalidArgument
    );
    assert!(serving(server.channel(), "rollover.v1.ExecutorService").await);
    server.stop().await;
    executor.shutdown();
    planner.stop().await;
}

// ---------------------------------------------------------------------------------
// Watching past the end

/// A watcher that reconnects after the Finished event (last sequence + 1), or asks
/// for events past the end, gets a stream that ends: no event can ever come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_finished_rotation_from_past_its_end_ends() {
    let state = tempfile::tempdir().expect("tempdir");
    let (server, executor) = start_executor(ExecutorConfig::new(state.path())).await;
    let mut client = ExecutorServiceClient::new(server.channel());
    let id = client
        .start_rotation(empty_rotation())
        .await
        .expect("an empty fleet")
        .into_inner()
        .rotation_id;
    let status = wait_terminal(&executor, &id).await;
    assert_eq!(
        status.state,
        v1::RotationState::Succeeded as i32,
        "{status:?}"
    );
    let last = status.last_sequence;
    assert!(last >= 1);
    for from in [0, 1, last, last + 1, last + 100, u64::MAX] {
        let result = bounded(
            "WatchRotation",
            CALL_LIMIT,
            watch(client.clone(), executor.clone(), id.clone(), from),
        )
        .await;
        check_clear("WatchRotation", &result);
        assert!(result.is_ok(), "from {from}: {result:?}");
    }
    server.stop().await;
    executor.shutdown();
}

// ---------------------------------------------------------------------------------
// Control while agents hang

/// An agent address that accepts TCP connections and never says a word: every call
/// to it waits for its timeout.
async fn silent_agent() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

/// Pause, Resume, Rollback and Abort answer at once while the rotation is still
/// asking its (silent) agents for their state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_calls_answer_while_the_agents_hang() {
    let (address, silent) = silent_agent().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut config = ExecutorConfig::new(state.path());
    config.own_creds = Some(creds(EXECUTOR_ID, &root(CA, 1)));
    let (server, executor) = start_executor(config).await;
    let mut client = ExecutorServiceClient::new(server.channel());
    let mut topology = core_topology();
    for node in &mut topology.nodes {
        node.address = Some(address.clone());
    }
    let request = |topology: &rollover_core::Topology| v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                topology,
            ))),
        }),
        plan: Some(v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&core_plan()))),
        }),
        options: None,
        request_id: String::new(),
    };
    let quick = Duration::from_secs(3);
    let id = client
        .start_rotation(request(&topology))
        .await
        .expect("start")
        .into_inner()
        .rotation_id;
    let status = |r: Result<Option<v1::RotationStatus>, Status>| {
        v1::RotationState::try_from(r.expect("answer").expect("a rotation").state).expect("state")
    };
    let paused = bounded(
        "Pause during preparation",
        quick,
        client.pause(v1::PauseRequest {
            rotation_id: id.clone(),
            reason: "hold".into(),
        }),
    )
    .await;
    assert_eq!(
        status(paused.map(|r| r.into_inner().rotation)),
        v1::RotationState::Paused
    );
    let resumed = bounded(
        "Resume during preparation",
        quick,
        client.resume(v1::ResumeRequest {
            rotation_id: id.clone(),
        }),
    )
    .await;
    assert_ne!(
        status(resumed.map(|r| r.into_inner().rotation)),
        v1::RotationState::Paused
    );
    let aborted = bounded(
        "Abort during preparation",
        quick,
        client.abort(v1::AbortRequest {
            rotation_id: id.clone(),
            reason: "agents hang".into(),
        }),
    )
    .await;
    assert_eq!(
        status(aborted.map(|r| r.into_inner().rotation)),
        v1::RotationState::Aborted
    );

    let id = client
        .start_rotation(request(&topology))
        .await
        .expect("start")
        .into_inner()
        .rotation_id;
    let rolled_back = bounded(
        "Rollback during preparation",
        quick,
        client.rollback(v1::RollbackRequest {
            rotation_id: id.clone(),
            reason: "agents hang".into(),
        }),
    )
    .await;
    let state = status(rolled_back.map(|r| r.into_inner().rotation));
    assert!(
        matches!(
            state,
            v1::RotationState::RollingBack | v1::RotationState::RolledBack
        ),
        "{state:?}"
    );
    let status = wait_terminal(&executor, &id).await;
    assert_eq!(
        status.state,
        v1::RotationState::RolledBack as i32,
        "{status:?}"
    );
    server.stop().await;
    executor.shutdown();
    silent.abort();
}
