//! The executor under the barrage: StartRotation and the control calls (status,
//! watch, pause, resume, rollback, abort) refuse bad input clearly; with the helpers
//! that start and wait on rotations, shared with `edges.rs`.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use proptest::sample::select;
use prost::Message;
use rollover_agent::{AgentHandle, ControlCreds};
use rollover_core::{Fleet, Mode};
use rollover_executor::{Executor, ExecutorConfig};
use rollover_integration_tests::{
    CA, EXECUTOR_ID, Tally, bounded, creds, quick_retry, refused, root, serving, start_agent,
    start_executor, start_planner,
};
use rollover_pki::RootCa;
use rollover_proto::v1;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::rotation_event::Event;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::fuzz::*;
use crate::inputs::*;

/// The executor's barrage must not rotate its own identity away (a topology whose
/// control channel is in the rotated CA and names no reachable agent would do just
/// that, legitimately): such requests are sent as dry runs.
pub(crate) fn never_rotating_the_executor(
    mut request: v1::StartRotationRequest,
) -> v1::StartRotationRequest {
    let planned = match request.topology.as_ref().and_then(|t| t.source.as_ref()) {
        Some(v1::topology_source::Source::Topology(t)) => t.control.is_some(),
        Some(v1::topology_source::Source::Document(d)) => d.text.contains("control"),
        None => false,
    };
    if planned {
        request.options.get_or_insert_with(Default::default).dry_run = true;
    }
    request
}

/// A control call of the executor, typed.
#[derive(Debug, Clone)]
pub(crate) enum Control {
    Get(String, bool),
    List(bool),
    Watch(String, u64),
    Pause(String, String),
    Resume(String),
    Abort(String, String),
    Rollback(String, String),
}

pub(crate) fn control(known: Vec<String>) -> BoxedStrategy<Control> {
    let known = select(known);
    let id = prop_oneof![
        3 => known.clone(),
        2 => word(),
        1 => known.clone().prop_map(|id| format!("{id}x")),
        1 => known.prop_map(|id| id.to_uppercase()),
    ];
    let reason = || prop_oneof![4 => word(), 1 => Just("r".repeat(64 * 1024))];
    let sequence = prop_oneof![Just(0u64), Just(1), 2u64..40, Just(u64::MAX), any::<u64>()];
    prop_oneof![
        (id.clone(), any::<bool>()).prop_map(|(id, p)| Control::Get(id, p)),
        any::<bool>().prop_map(Control::List),
        (id.clone(), sequence).prop_map(|(id, s)| Control::Watch(id, s)),
        (id.clone(), reason()).prop_map(|(id, r)| Control::Pause(id, r)),
        id.clone().prop_map(Control::Resume),
        (id.clone(), reason()).prop_map(|(id, r)| Control::Abort(id, r)),
        (id, reason()).prop_map(|(id, r)| Control::Rollback(id, r)),
    ]
    .boxed()
}

/// Watches `id` from `from`; when the rotation is already over, the stream must end
/// by itself (it can never get another event).
pub(crate) async fn watch(
    mut client: ExecutorServiceClient<Channel>,
    executor: Executor,
    id: String,
    from: u64,
) -> Result<(), Status> {
    let mut stream = client
        .watch_rotation(v1::WatchRotationRequest {
            rotation_id: id.clone(),
            from_sequence: from,
        })
        .await?
        .into_inner();
    let status = executor.get_rotation(&id, false)?;
    if v1::RotationState::is_terminal_value(status.state) {
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = stream.next().await {
                event?;
            }
            Ok::<_, Status>(())
        })
        .await;
        match drained {
            Ok(result) => result?,
            Err(_) => panic!(
                "WatchRotation({id:?}, from {from}) of a finished rotation ({status:?}) never ends"
            ),
        }
    }
    Ok(())
}

/// A rotation of a fleet with no nodes, with its (empty) plan: nothing to do.
pub(crate) fn empty_rotation() -> v1::StartRotationRequest {
    v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology {
                ca: "empty".into(),
                ..Default::default()
            })),
        }),
        plan: Some(v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan {
                format: rollover_core::PLAN_FORMAT.into(),
                ca: "empty".into(),
                ..Default::default()
            })),
        }),
        options: None,
        request_id: String::new(),
    }
}

/// Wait until the rotation has ended (not merely paused).
pub(crate) async fn wait_ended(executor: &Executor, id: &str) -> v1::RotationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = executor.get_rotation(id, false).expect("known rotation");
        let state = v1::RotationState::try_from(status.state).expect("state");
        if state.is_terminal() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation {id} stuck: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn wait_terminal(executor: &Executor, id: &str) -> v1::RotationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = executor.get_rotation(id, false).expect("known rotation");
        let state = v1::RotationState::try_from(status.state).expect("state");
        if state.is_terminal() || state == v1::RotationState::Paused {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation {id} stuck: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two real agents rotated by the executor: bundle `gw`, atomic `m`, `gw -> m`; the
/// control channel is in the rotated CA.
pub(crate) struct RealFleet {
    pub(crate) agents: Vec<AgentHandle>,
    pub(crate) topology: v1::Topology,
    pub(crate) old: RootCa,
    pub(crate) _dirs: tempfile::TempDir,
}

pub(crate) async fn real_fleet() -> RealFleet {
    let dirs = tempfile::tempdir().expect("tempdir");
    let old = root(CA, 1);
    let mut agents = Vec::new();
    let mut nodes = Vec::new();
    for (id, mode) in [("gw", Mode::Bundle), ("m", Mode::Atomic)] {
        let agent = start_agent(&dirs.path().join(id), id, mode, &old, ControlCreds::Rotated).await;
        nodes.push(v1::Node {
            id: id.into(),
            mode: v1::NodeMode::from(mode) as i32,
            address: Some(agent.control_addr().to_string()),
            ..Default::default()
        });
        agents.push(agent);
    }
    let topology = v1::Topology {
        ca: CA.into(),
        nodes,
        links: vec![v1::Link {
            client: "gw".into(),
            server: "m".into(),
            ca: None,
        }],
        control: Some(v1::Control { ca: CA.into() }),
    };
    RealFleet {
        agents,
        topology,
        old,
        _dirs: dirs,
    }
}

#[test]
fn executor_refuses_bad_input_clearly_and_keeps_serving() {
    let rt = runtime();
    let _in_runtime = rt.enter();
    let state = tempfile::tempdir().expect("tempdir");
    let (planner, fleet, executor_server, executor) = rt.block_on(async {
        let planner = start_planner().await;
        let fleet = real_fleet().await;
        let mut config = ExecutorConfig::new(state.path())
            .planner_url(&planner.addr)
            .expect("planner url");
        config.own_creds = Some(creds(EXECUTOR_ID, &fleet.old));
        config.retry = quick_retry();
        config.probe_timeout = Duration::from_secs(2);
        let (server, executor) = start_executor(config).await;
        (planner, fleet, server, executor)
    });
    let client = ExecutorServiceClient::new(executor_server.channel())
        .max_decoding_message_size(rollover_executor::MAX_MESSAGE_BYTES);
    let tally = Tally::default();
    let seeds = input_seeds();

    // Rotations to aim control calls at: one failed (its agents are unreachable),
    // one with nothing to do, one paused. One rotation per CA: each of the CA is over
    // before the next one starts.
    let known: Vec<String> = rt.block_on(async {
        let mut c = client.clone();
        let failed = c
            .start_rotation(seeds[0].start_request())
            .await
            .expect("valid start")
            .into_inner()
            .rotation_id;
        let empty = c
            .start_rotation(empty_rotation())
            .await
            .expect("an empty fleet")
            .into_inner()
            .rotation_id;
        for id in [&failed, &empty] {
            wait_ended(&executor, id).await;
        }
        // An unsafe given plan is refused before anything starts.
        let unsafe_plan = rollover_core::plan_naive(&Fleet::new(&core_topology()));
        let verdict = rollover_core::verify_plan(&core_topology(), &unsafe_plan).expect("plan");
        assert!(
            !verdict.safe,
            "the naive plan of the seed topology is unsafe"
        );
        let mut unsafe_start = seeds[0].clone();
        unsafe_start.plan = Some(v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&unsafe_plan))),
        });
        let result = c.start_rotation(unsafe_start.start_request()).await;
        assert_eq!(refused("an unsafe plan", &result), Code::InvalidArgument);
        // Abort answers with the rotation's final state.
        for _ in 0..10 {
            let id = c
                .start_rotation(seeds[0].start_request())
                .await
                .expect("a start once the previous one ended")
                .into_inner()
                .rotation_id;
            let status = c
                .abort(v1::AbortRequest {
                    rotation_id: id,
                    reason: "test".into(),
                })
                .await
                .expect("abort")
                .into_inner()
                .rotation
                .unwrap();
            assert_eq!(
                status.state,
                v1::RotationState::Aborted as i32,
                "{status:?}"
            );
        }
        let paused = c
            .start_rotation(seeds[0].start_request())
            .await
            .expect("a start once the previous one ended")
            .into_inner()
            .rotation_id;
        c.pause(v1::PauseRequest {
            rotation_id: paused.clone(),
            reason: "test".into(),
        })
        .await
        .expect("pause");
        vec![failed, paused, empty]
    });

    rt.block_on(async {
        let mut c = client.clone();
        let before = executor.list_rotations(false).len();
        for case in named_cases() {
            if let Some(code) = case.start {
                let result = c.start_rotation(case.inputs.start_request()).await;
                assert_eq!(
                    refused(case.name, &result),
                    code,
                    "StartRotation: {}",
                    case.name
                );
                tally.count(&result);
            }
        }
        assert_eq!(
            executor.list_rotations(false).len(),
            before,
            "a refused start left a rotation"
        );
        let id_cases = [
            ("an empty rotation id", String::new(), Code::InvalidArgument),
            (
                "an unknown rotation id",
                "r-unknown".to_string(),
                Code::NotFound,
            ),
            (
                "a known id, changed",
                format!("{}x", known[0]),
                Code::NotFound,
            ),
        ];
        for (name, id, code) in id_cases {
            let results = [
                c.get_rotation(v1::GetRotationRequest {
                    rotation_id: id.clone(),
                    include_plan: true,
                })
                .await
                .map(drop),
                c.pause(v1::PauseRequest {
                    rotation_id: id.clone(),
                    reason: "r".into(),
                })
                .await
                .map(drop),
                c.resume(v1::ResumeRequest {
                    rotation_id: id.clone(),
                })
                .await
                .map(drop),
                c.abort(v1::AbortRequest {
                    rotation_id: id.clone(),
                    reason: "r".into(),
                })
                .await
                .map(drop),
                c.rollback(v1::RollbackRequest {
                    rotation_id: id.clone(),
                    reason: "r".into(),
                })
                .await
                .map(drop),
                c.watch_rotation(v1::WatchRotationRequest {
                    rotation_id: id.clone(),
                    from_sequence: 0,
                })
                .await
                .map(drop),
            ];
            for result in results {
                assert_eq!(refused(name, &result), code, "{name}: {result:?}");
                tally.count(&result);
            }
        }
        // Resume, Pause and Abort of a finished rotation do not apply to it.
        let finished = &known[2];
        let results = [
            c.resume(v1::ResumeRequest {
                rotation_id: finished.clone(),
            })
            .await
            .map(drop),
            c.pause(v1::PauseRequest {
                rotation_id: finished.clone(),
                reason: "r".into(),
            })
            .await
            .map(drop),
            c.abort(v1::AbortRequest {
                rotation_id: finished.clone(),
                reason: "r".into(),
            })
            .await
            .map(drop),
        ];
        for result in results {
            assert_eq!(
                refused("control of a finished rotation", &result),
                Code::FailedPrecondition
            );
            tally.count(&result);
        }
    });
    let c = client.clone();
    drive(
        &rt,
        "StartRotation (typed)",
        1000,
        mutated_inputs(),
        &tally,
        |inputs| {
            let mut c = c.clone();
            let request = never_rotating_the_executor(inputs.start_request());
            Some(Box::pin(async move {
                c.start_rotation(request).await.map(drop)
            }))
        },
    );
    let start_seeds = seeds
        .iter()
        .map(|s| s.start_request().encode_to_vec())
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "StartRotation (bytes)",
        1000,
        request_bytes(start_seeds),
        &tally,
        |bytes| {
            let request = never_rotating_the_executor(decoded(&bytes)?);
            let mut c = c.clone();
            Some(Box::pin(async move {
                c.start_rotation(request).await.map(drop)
            }))
        },
    );
    let (c, e) = (client.clone(), executor.clone());
    drive(
        &rt,
        "control calls (typed)",
        2000,
        control(known.clone()),
        &tally,
        |call| {
            let (mut c, e) = (c.clone(), e.clone());
            Some(Box::pin(async move {
                match call {
                    Control::Get(id, plan) => c
                        .get_rotation(v1::GetRotationRequest {
                            rotation_id: id,
                            include_plan: plan,
                        })
                        .await
                        .map(drop),
                    Control::List(active_only) => c
                        .list_rotations(v1::ListRotationsRequest {
                            active_only,
                            page_size: 0,
                            page_token: String::new(),
                        })
                        .await
                        .map(drop),
                    Control::Watch(id, from) => watch(c, e, id, from).await,
                    Control::Pause(id, reason) => c
                        .pause(v1::PauseRequest {
                            rotation_id: id,
                            reason,
                        })
                        .await
                        .map(drop),
                    Control::Resume(id) => c
                        .resume(v1::ResumeRequest { rotation_id: id })
                        .await
                        .map(drop),
                    Control::Abort(id, reason) => c
                        .abort(v1::AbortRequest {
                            rotation_id: id,
                            reason,
                        })
                        .await
                        .map(drop),
                    Control::Rollback(id, reason) => c
                        .rollback(v1::RollbackRequest {
                            rotation_id: id,
                            reason,
                        })
                        .await
                        .map(drop),
                }
            }))
        },
    );
    // Each control request type from bytes (ids are mostly unknown here).
    let id_seeds = |f: &dyn Fn(String) -> Vec<u8>| known.iter().cloned().map(f).collect::<Vec<_>>();
    macro_rules! control_bytes {
        ($name:literal, $ty:ty, $seed:expr, $method:ident) => {{
            let c = client.clone();
            drive(
                &rt,
                $name,
                250,
                request_bytes(id_seeds(&$seed)),
                &tally,
                |bytes| {
                    let request = decoded::<$ty>(&bytes)?;
                    let mut c = c.clone();
                    Some(Box::pin(async move { c.$method(request).await.map(drop) }))
                },
            );
        }};
    }
    control_bytes!(
        "GetRotation (bytes)",
        v1::GetRotationRequest,
        |id| v1::GetRotationRequest {
            rotation_id: id,
            include_plan: true
        }
        .encode_to_vec(),
        get_rotation
    );
    control_bytes!(
        "ListRotations (bytes)",
        v1::ListRotationsRequest,
        |_| v1::ListRotationsRequest {
            active_only: true,
            page_size: 0,
            page_token: String::new(),
        }
        .encode_to_vec(),
        list_rotations
    );
    control_bytes!(
        "Pause (bytes)",
        v1::PauseRequest,
        |id| v1::PauseRequest {
            rotation_id: id,
            reason: "r".into()
        }
        .encode_to_vec(),
        pause
    );
    control_bytes!(
        "Resume (bytes)",
        v1::ResumeRequest,
        |id| v1::ResumeRequest { rotation_id: id }.encode_to_vec(),
        resume
    );
    control_bytes!(
        "Abort (bytes)",
        v1::AbortRequest,
        |id| v1::AbortRequest {
            rotation_id: id,
            reason: "r".into()
        }
        .encode_to_vec(),
        abort
    );
    control_bytes!(
        "Rollback (bytes)",
        v1::RollbackRequest,
        |id| v1::RollbackRequest {
            rotation_id: id,
            reason: "r".into()
        }
        .encode_to_vec(),
        rollback
    );
    let (c, e) = (client.clone(), executor.clone());
    let watch_seeds = id_seeds(&|id| {
        v1::WatchRotationRequest {
            rotation_id: id,
            from_sequence: 1,
        }
        .encode_to_vec()
    });
    drive(
        &rt,
        "WatchRotation (bytes)",
        250,
        request_bytes(watch_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::WatchRotationRequest>(&bytes)?;
            let (c, e) = (c.clone(), e.clone());
            Some(Box::pin(watch(
                c,
                e,
                request.rotation_id,
                request.from_sequence,
            )))
        },
    );

    // Still serving, and a real rotation of real agents succeeds through it.
    rt.block_on(async {
        assert!(executor_server.is_running());
        assert!(serving(executor_server.channel(), "rollover.v1.ExecutorService").await);
        let mut c = client.clone();
        let id = c
            .start_rotation(v1::StartRotationRequest {
                topology: Some(v1::TopologySource {
                    source: Some(v1::topology_source::Source::Topology(
                        fleet.topology.clone(),
                    )),
                }),
                plan: None,
                options: Some(v1::RotationOptions {
                    probe: true,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("a valid StartRotation after the barrage")
            .into_inner()
            .rotation_id;
        let mut events = c
            .watch_rotation(v1::WatchRotationRequest {
                rotation_id: id.clone(),
                from_sequence: 0,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut last = None;
        bounded("the real rotation", Duration::from_secs(30), async {
            while let Some(event) = events.next().await {
                last = Some(event.expect("event").event.expect("an event"));
            }
        })
        .await;
        match last.and_then(|e| e.event) {
            Some(Event::Finished(f)) => {
                assert_eq!(f.outcome, v1::RotationState::Succeeded as i32, "{f:?}")
            }
            other => panic!("the stream ended without Finished: {other:?}"),
        }
        for agent in &fleet.agents {
            assert_eq!(
                agent.applied_count(),
                agent.mode().steps().len() as u64,
                "{}",
                agent.id()
            );
            assert_ne!(agent.state().server_roots, vec![fleet.old.fingerprint()]);
        }
        executor_server.stop().await;
        executor.shutdown();
        planner.stop().await;
    });
    tally.report("executor (StartRotation, WatchRotation, GetRotation, ListRotations, Pause, Resume, Abort, Rollback)");
}
