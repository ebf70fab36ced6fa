//! The executor against an in-memory fleet of fake agents that enforce MODEL §3 and
//! check the handshake rule on every undeclared link after every applied step, with
//! the real planner over gRPC.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use rollover_core::{Fleet, PlanOrder};
use rollover_executor::rotation::Control;
use rollover_executor::{Executor, ServeOptions};
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

async fn planner() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(rollover_planner::serve(listener, std::future::pending()));
    addr
}

fn request(topology: &rollover_core::Topology, probe: bool, max: u32) -> v1::StartRotationRequest {
    v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                topology,
            ))),
        }),
        plan: None,
        options: Some(v1::RotationOptions {
            max_concurrency: max,
            probe,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn events(executor: &Executor, id: &str) -> Vec<v1::RotationEvent> {
    let stream = executor.watch(id, 0).unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        stream.map(|e| e.unwrap()).collect(),
    )
    .await
    .expect("the event stream ends after Finished")
}

use v1::RotationState as S;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_a_mixed_fleet_with_probes_and_a_contiguous_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(30, 7);
    let world = World::new(&topology);
    let executor = Executor::open(
        config(dir.path(), &world)
            .planner_url(&planner().await)
            .unwrap(),
    )
    .unwrap();
    let started = executor
        .start_rotation(request(&topology, true, 4))
        .await
        .unwrap();
    let id = started.rotation_id;
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    assert_eq!(status.steps_done, status.steps_total);
    assert_eq!(status.current_wave, status.waves_total);
    assert!(
        status.probes_total > 0 && status.probes_failed == 0,
        "{status:?}"
    );
    world.assert_all(true);
    world.assert_applied_once();

    let log = events(&executor, &id).await;
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1);
        assert_eq!(e.rotation_id, id);
    }
    let done = log
        .iter()
        .filter(|e| matches!(&e.event, Some(Event::StepDone(d)) if !d.undo))
        .count();
    assert_eq!(done as u32, status.steps_total);
    assert!(matches!(
        log.last().unwrap().event,
        Some(Event::Finished(v1::Finished { outcome, .. })) if outcome == S::Succeeded as i32
    ));
    // Every step's probes came before anything that depends on it was started.
    let plan: rollover_core::Plan = started.plan.unwrap().try_into().unwrap();
    let fleet = Fleet::new(&topology);
    let order = PlanOrder::resolve(&plan, &fleet, &rollover_core::Document::new("p", "")).unwrap();
    let pos =
        |pred: &dyn Fn(&Event) -> bool| log.iter().position(|e| pred(e.event.as_ref().unwrap()));
    for (i, step) in plan.steps.iter().enumerate() {
        let started_at =
            pos(&|e| matches!(e, Event::StepStarted(s) if s.step.as_ref().unwrap().id == step.id))
                .unwrap();
        for &p in &order.preds[i] {
            let pid = plan.steps[p as usize].id;
            let last_probe = log.iter().rposition(
                |e| matches!(&e.event, Some(Event::ProbeResult(r)) if r.after_step_id == Some(pid)),
            );
            let done_at =
                pos(&|e| matches!(e, Event::StepDone(d) if d.step.as_ref().unwrap().id == pid))
                    .unwrap();
            assert!(
                done_at < started_at,
                "step {} started before {pid} was done",
                step.id
            );
            if let Some(probe_at) = last_probe {
                assert!(
                    probe_at < started_at,
                    "step {} started before {pid}'s probes",
                    step.id
                );
            }
        }
    }
    let text = executor.metrics().render();
    assert!(
        text.contains(&format!(
            "rollover_executor_steps_done_total{{undo=\"false\"}} {}",
            status.steps_total
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_resumes_from_its_journal_and_applies_nothing_twice() {
    for (seed, kill_after) in [(1u64, 3u32), (2, 11), (3, 25)] {
        let dir = tempfile::tempdir().unwrap();
        let topology = mixed_topology(20, seed);
        let world = World::new(&topology);
        *world.delay.lock().unwrap() = Duration::from_millis(2);
        // Lost answers: applied on the agent, retried by the executor.
        for node in ["n1", "n5"] {
            world
                .lose_answer_once
                .lock()
                .unwrap()
                .insert(node.to_string());
        }
        let planner = planner().await;
        let executor =
            Executor::open(config(dir.path(), &world).planner_url(&planner).unwrap()).unwrap();
        let id = executor
            .start_rotation(request(&topology, seed % 2 == 0, 3))
            .await
            .unwrap()
            .rotation_id;
        loop {
            let s = executor.get_rotation(&id, false).unwrap();
            if s.steps_done >= kill_after || s.state == S::Succeeded as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let before = executor.get_rotation(&id, false).unwrap();
        executor.shutdown();
        drop(executor);
        let executor =
            Executor::open(config(dir.path(), &world).planner_url(&planner).unwrap()).unwrap();
        let status = wait_for(&executor, &id, &[S::Succeeded, S::Failed, S::Paused]).await;
        assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
        assert!(status.last_sequence > before.last_sequence);
        world.assert_all(true);
        world.assert_applied_once();
        let log = events(&executor, &id).await;
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.sequence, i as u64 + 1, "no gaps across the restart");
        }
        executor.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_dispatch_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(15, 3);
    let world = World::new(&topology);
    *world.delay.lock().unwrap() = Duration::from_millis(3);
    let executor = Executor::open(
        config(dir.path(), &world)
            .planner_url(&planner().await)
            .unwrap(),
    )
    .unwrap();
    let id = executor
        .start_rotation(request(&topology, false, 1))
        .await
        .unwrap()
        .rotation_id;
    let paused = executor
        .control(&id, Control::Pause("maintenance window".into()))
        .await
        .unwrap();
    assert_eq!(paused.state, S::Paused as i32);
    assert_eq!(paused.paused_reason.as_deref(), Some("maintenance window"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a = executor.get_rotation(&id, false).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = executor.get_rotation(&id, false).unwrap();
    assert_eq!(a.steps_done, b.steps_done, "nothing runs while paused");
    assert_eq!(b.steps_running, 0);
    assert!(b.steps_done < b.steps_total);
    let resumed = executor.control(&id, Control::Resume).await.unwrap();
    assert_ne!(resumed.state, S::Paused as i32);
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Failed]).await;
    assert_eq!(status.state, S::Succeeded as i32);
    world.assert_all(true);
    let log = events(&executor, &id).await;
    assert!(
        log.iter().any(
            |e| matches!(&e.event, Some(Event::Paused(p)) if p.reason == "maintenance window")
        )
    );
    assert!(
        log.iter()
            .any(|e| matches!(e.event, Some(Event::Resumed(_))))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_every_node_to_the_old_root_in_reverse_order() {
    for probe in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let topology = mixed_topology(20, 11);
        let world = World::new(&topology);
        *world.delay.lock().unwrap() = Duration::from_millis(2);
        let executor = Executor::open(
            config(dir.path(), &world)
                .planner_url(&planner().await)
                .unwrap(),
        )
        .unwrap();
        let id = executor
            .start_rotation(request(&topology, probe, 4))
            .await
            .unwrap()
            .rotation_id;
        loop {
            let s = executor.get_rotation(&id, false).unwrap();
            if s.steps_done >= 15 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let s = executor
            .control(&id, Control::Rollback("test".into()))
            .await
            .unwrap();
        assert_eq!(s.state, S::RollingBack as i32);
        let status = wait_for(&executor, &id, &[S::RolledBack, S::Failed, S::Paused]).await;
        assert_eq!(status.state, S::RolledBack as i32, "{status:?}");
        assert_eq!(status.steps_done, 0);
        world.assert_all(false);
        let log = events(&executor, &id).await;
        assert!(
            log.iter()
                .any(|e| matches!(&e.event, Some(Event::StepDone(d)) if d.undo))
        );
        // A second rollback is a no-op; pausing a rolled-back rotation is refused.
        executor
            .control(&id, Control::Rollback(String::new()))
            .await
            .unwrap();
        let e = tonic::Status::from(
            executor
                .control(&id, Control::Pause(String::new()))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_probe_pauses_with_the_link_and_resume_reprobes() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(10, 5);
    let world = World::new(&topology);
    let fleet = Fleet::new(&topology);
    let link = fleet
        .links
        .iter()
        .find(|l| Some(l.client) != fleet.executor && !l.is_self())
        .unwrap();
    let (c, s) = (
        fleet.id(link.client).to_string(),
        fleet.id(link.server).to_string(),
    );
    world
        .fail_probe_once
        .lock()
        .unwrap()
        .insert((c.clone(), s.clone()));
    let executor = Executor::open(
        config(dir.path(), &world)
            .planner_url(&planner().await)
            .unwrap(),
    )
    .unwrap();
    let id = executor
        .start_rotation(request(&topology, true, 0))
        .await
        .unwrap()
        .rotation_id;
    let paused = wait_for(&executor, &id, &[S::Paused, S::Succeeded]).await;
    assert_eq!(paused.state, S::Paused as i32);
    let reason = paused.paused_reason.unwrap();
    assert!(
        reason.contains(&format!("{c} -> {s}")) && reason.contains("BadCertificate"),
        "{reason}"
    );
    assert_eq!(paused.probes_failed, 1);
    executor.control(&id, Control::Resume).await.unwrap();
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Failed]).await;
    assert_eq!(status.state, S::Succeeded as i32);
    world.assert_all(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_unknown_ids_and_unsafe_plans() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(8, 9);
    let world = World::new(&topology);
    let executor = Executor::open(config(dir.path(), &world)).unwrap();
    let e = tonic::Status::from(
        executor
            .start_rotation(v1::StartRotationRequest::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("topology"), "{}", e.message());
    // No planner and no plan.
    let e = tonic::Status::from(
        executor
            .start_rotation(request(&topology, false, 0))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let e = tonic::Status::from(executor.get_rotation("nope", false).unwrap_err());
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = tonic::Status::from(executor.control("nope", Control::Resume).await.unwrap_err());
    assert_eq!(e.code(), tonic::Code::NotFound);

    // A bad plan names the field.
    let mut bad = request(&topology, false, 0);
    bad.plan = Some(v1::PlanSource {
        source: Some(v1::plan_source::Source::Document(v1::Document {
            text: "{\"format\": \"rollover-plan/1\", \"ca\": \"other\", \"steps\": []}".into(),
            format: 0,
            origin: "p.json".into(),
        })),
    });
    let e = tonic::Status::from(executor.start_rotation(bad).await.unwrap_err());
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("ca"), "{}", e.message());

    // An unsafe given plan is refused at once, naming the links it would break;
    // nothing starts, nothing is journaled, no agent is called.
    let fleet = Fleet::new(&topology);
    let naive = rollover_core::planner::plan_naive(&fleet);
    let order = PlanOrder::resolve(&naive, &fleet, &rollover_core::Document::new("p", "")).unwrap();
    let verdict = rollover_core::verify(&fleet, &naive, &order);
    assert!(!verdict.safe);
    let mut unsafe_req = request(&topology, false, 0);
    unsafe_req.plan = Some(v1::PlanSource {
        source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&naive))),
    });
    let e = tonic::Status::from(executor.start_rotation(unsafe_req).await.unwrap_err());
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("plan: unsafe"), "{}", e.message());
    let broken = &verdict.broken[0];
    assert!(
        e.message()
            .contains(&format!("{} -> {}", broken.client, broken.server)),
        "{}",
        e.message()
    );
    assert_eq!(
        world
            .applied
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .sum::<u64>(),
        0
    );
    assert_eq!(executor.list_rotations(false).len(), 0);
}

/// The CA of [`mixed_topology`].
fn ca_of(topology: &rollover_core::Topology) -> &str {
    &topology.ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_active_rotation_per_ca_even_when_started_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(12, 21);
    let world = World::new(&topology);
    *world.delay.lock().unwrap() = Duration::from_millis(3);
    let planner = planner().await;
    let executor =
        Executor::open(config(dir.path(), &world).planner_url(&planner).unwrap()).unwrap();

    // Eight StartRotation at once (each asks the planner first): exactly one is admitted.
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let (executor, req) = (executor.clone(), request(&topology, false, 1));
            tokio::spawn(async move { executor.start_rotation(req).await })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for start in starts {
        match start.await.unwrap() {
            Ok(r) => admitted.push(r.rotation_id),
            Err(e) => refused.push(tonic::Status::from(e)),
        }
    }
    assert_eq!(admitted.len(), 1, "{refused:?}");
    let first = admitted.pop().unwrap();
    assert_eq!(refused.len(), 7);
    for e in &refused {
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains(&first) && e.message().contains(ca_of(&topology)),
            "{}",
            e.message()
        );
        assert!(
            ["PENDING", "RUNNING"]
                .iter()
                .any(|s| e.message().contains(&format!("{first} is {s}"))),
            "{}",
            e.message()
        );
    }
    assert_eq!(
        executor.list_rotations(false).len(),
        1,
        "the refused left nothing"
    );

    // Paused and rolling back count as active too.
    while executor.get_rotation(&first, false).unwrap().steps_done < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    executor
        .control(&first, Control::Pause("hold".into()))
        .await
        .unwrap();
    let e = tonic::Status::from(
        executor
            .start_rotation(request(&topology, false, 1))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains(&format!("{first} is PAUSED")),
        "{}",
        e.message()
    );
    executor
        .control(&first, Control::Rollback("test".into()))
        .await
        .unwrap();
    let status = wait_for(&executor, &first, &[S::RolledBack, S::Failed]).await;
    assert_eq!(status.state, S::RolledBack as i32, "{status:?}");
    world.assert_all(false);

    // After the rollback, the next one starts cleanly, with a new generation. Slow agents keep it
    // running while a third start is tried (unlimited concurrency would otherwise finish it first).
    *world.delay.lock().unwrap() = Duration::from_millis(300);
    let second = executor
        .start_rotation(request(&topology, true, 0))
        .await
        .unwrap()
        .rotation_id;
    let e = tonic::Status::from(
        executor
            .start_rotation(request(&topology, false, 1))
            .await
            .unwrap_err(),
    );
    assert!(e.message().contains(&second), "{}", e.message());
    *world.delay.lock().unwrap() = Duration::from_millis(3);
    let status = wait_for(&executor, &second, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    world.assert_all(true);
    let generations = world.csr_generations.lock().unwrap().clone();
    let distinct: std::collections::BTreeSet<u32> = generations.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        2,
        "one generation per rotation: {generations:?}"
    );
    assert!(generations.last() > generations.first(), "{generations:?}");
    executor.shutdown();
    drop(executor);

    // After a restart, finished rotations report their real wave.
    let executor =
        Executor::open(config(dir.path(), &world).planner_url(&planner).unwrap()).unwrap();
    let done = executor.get_rotation(&second, false).unwrap();
    assert_eq!(done.state, S::Succeeded as i32);
    assert_eq!(done.current_wave, done.waves_total, "{done:?}");
    assert_eq!(done.steps_done, done.steps_total);
    let undone = executor.get_rotation(&first, false).unwrap();
    assert_eq!(
        (undone.current_wave, undone.steps_done),
        (0, 0),
        "{undone:?}"
    );
    executor.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_rotation_is_not_rolled_back_under_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(8, 22);
    let world = World::new(&topology);
    let executor = Executor::open(
        config(dir.path(), &world)
            .planner_url(&planner().await)
            .unwrap(),
    )
    .unwrap();
    let first = executor
        .start_rotation(request(&topology, false, 0))
        .await
        .unwrap()
        .rotation_id;
    wait_for(&executor, &first, &[S::Succeeded]).await;
    // The next one pauses on its first step (the fake agents finished the first
    // rotation and take no new one): active, so the first cannot be rolled back.
    let second = executor
        .start_rotation(request(&topology, false, 1))
        .await
        .unwrap()
        .rotation_id;
    wait_for(&executor, &second, &[S::Paused]).await;
    let e = tonic::Status::from(
        executor
            .control(&first, Control::Rollback(String::new()))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains(&second), "{}", e.message());
    *world.delay.lock().unwrap() = Duration::from_millis(3);
    executor
        .control(&second, Control::Abort(String::new()))
        .await
        .unwrap();
    // Once it ended (having changed nothing), the first can be rolled back.
    executor
        .control(&first, Control::Rollback(String::new()))
        .await
        .unwrap();
    let status = wait_for(&executor, &first, &[S::RolledBack, S::Failed]).await;
    assert_eq!(status.state, S::RolledBack as i32, "{status:?}");
    world.assert_all(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_service_runs_a_given_plan_document() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(12, 4);
    let world = World::new(&topology);
    let executor = Executor::open(config(dir.path(), &world)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rollover_executor::serve(
        listener,
        executor,
        ServeOptions {
            tls: None,
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    let fleet = Fleet::new(&topology);
    let plan = rollover_core::plan_waves(&fleet);
    let mut client =
        v1::executor_service_client::ExecutorServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
    let mut req = request(&topology, true, 0);
    req.plan = Some(v1::PlanSource {
        source: Some(v1::plan_source::Source::Document(v1::Document {
            text: plan.to_json(),
            format: v1::DocumentFormat::Json as i32,
            origin: "plan.json".into(),
        })),
    });
    let id = client
        .start_rotation(req)
        .await
        .unwrap()
        .into_inner()
        .rotation_id;
    let mut stream = client
        .watch_rotation(v1::WatchRotationRequest {
            rotation_id: id.clone(),
            from_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(e) = stream.next().await {
        last = Some(e.unwrap().event.unwrap());
    }
    assert!(
        matches!(last.unwrap().event, Some(Event::Finished(f)) if f.outcome == S::Succeeded as i32)
    );
    let status = client
        .get_rotation(v1::GetRotationRequest {
            rotation_id: id.clone(),
            include_plan: true,
        })
        .await
        .unwrap()
        .into_inner()
        .rotation
        .unwrap();
    assert_eq!(status.plan.unwrap().steps.len(), plan.steps.len());
    // Replay from the middle.
    let tail: Vec<_> = client
        .watch_rotation(v1::WatchRotationRequest {
            rotation_id: id.clone(),
            from_sequence: status.last_sequence - 1,
        })
        .await
        .unwrap()
        .into_inner()
        .collect()
        .await;
    assert_eq!(tail.len(), 2);
    let list = client
        .list_rotations(v1::ListRotationsRequest {
            active_only: false,
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.rotations.len(), 1);
    let e = client
        .pause(v1::PauseRequest {
            rotation_id: "missing".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    world.assert_all(true);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Rotate `topology` over `world` (probes off, 4 at once) as the leader of `epoch`;
/// the rotation's id and its status once it succeeded, failed or paused.
async fn rotate_as_leader(
    topology: &rollover_core::Topology,
    world: &std::sync::Arc<World>,
    epoch: u64,
) -> (String, v1::RotationStatus) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), world)
        .planner_url(&planner().await)
        .unwrap();
    config.leader_epoch = epoch;
    let executor = Executor::open(config).unwrap();
    let id = executor
        .start_rotation(request(topology, false, 4))
        .await
        .unwrap()
        .rotation_id;
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Failed, S::Paused]).await;
    (id, status)
}

/// A leading executor's epoch (its lease's fencing token) goes with every call that
/// changes an agent, so agents can refuse a deposed leader's late calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_csr_and_apply_step_carries_the_leader_epoch() {
    let topology = mixed_topology(12, 3);
    let world = World::new(&topology);
    let (id, status) = rotate_as_leader(&topology, &world, 7).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    let calls = world.fencing.lock().unwrap().clone();
    let count = |call: &str| calls.iter().filter(|(c, ..)| *c == call).count();
    assert!(count("CreateCsr") > 0 && count("ApplyStep") > count("CreateCsr"));
    for (call, rotation, epoch) in &calls {
        assert_eq!((rotation.as_str(), *epoch), (id.as_str(), 7), "{call}");
    }
}

/// A deposed leader whose calls agents refuse by epoch (ABORTED) stops: each refused
/// step is sent once, not retried, nothing is applied, and the rotation pauses naming
/// the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_refused_by_epoch_stops_without_retrying() {
    let topology = mixed_topology(12, 3);
    let world = World::new(&topology);
    world.newest_epoch.store(5, Ordering::SeqCst);
    let (_, status) = rotate_as_leader(&topology, &world, 4).await;
    assert_eq!(status.state, S::Paused as i32, "{status:?}");
    let reason = status.paused_reason.clone().unwrap_or_default();
    assert!(reason.contains("stale leader"), "{reason}");
    let applies = world
        .fencing
        .lock()
        .unwrap()
        .iter()
        .filter(|(call, ..)| *call == "ApplyStep")
        .count();
    assert!(
        (1..=4).contains(&applies),
        "at most one call per step in flight, none retried: {applies}"
    );
    assert_eq!(
        world
            .applied
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .sum::<u64>(),
        0
    );
}

/// Issue 25: StartRotation compares the agents with the topology itself, whoever
/// calls it (not only `rotate`'s CheckFleet): an exporting agent under a node the
/// topology declares `identity: multi` is refused, naming the node and the fix; the
/// refusal can be skipped only by name (`skip_agent_checks`), which the status shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_rotation_refuses_agents_that_contradict_the_topology() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(12, 5);
    let world = World::new(&topology);
    let exporter = topology
        .nodes
        .iter()
        .find(|n| n.identity == rollover_core::Identity::Multi && n.id != "@executor")
        .expect("a multi-identity node")
        .id
        .clone();
    world.exporting.lock().unwrap().insert(exporter.clone());
    let executor = Executor::open(
        config(dir.path(), &world)
            .planner_url(&planner().await)
            .unwrap(),
    )
    .unwrap();
    let refused = executor
        .start_rotation(request(&topology, false, 4))
        .await
        .expect_err("refused");
    let status = tonic::Status::from(refused);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(&format!("`{exporter}`"))
            && status.message().contains("identity: single"),
        "names the node and the fix: {}",
        status.message()
    );
    assert!(executor.list_rotations(false).is_empty(), "nothing started");

    let mut skipping = request(&topology, false, 4);
    skipping.options.as_mut().unwrap().skip_agent_checks = true;
    let id = executor.start_rotation(skipping).await.unwrap().rotation_id;
    let status = executor.get_rotation(&id, false).unwrap();
    assert!(
        status.options.unwrap().skip_agent_checks,
        "journaled and shown"
    );
    wait_for(&executor, &id, &[S::Succeeded, S::Failed, S::Paused]).await;
}

/// `topology` under another CA name, over the same agents (no control channel: it
/// stays with the original CA).
fn renamed(topology: &rollover_core::Topology, ca: &str) -> rollover_core::Topology {
    let mut t = topology.clone();
    t.ca = ca.into();
    t.control = None;
    t
}

/// `topology`'s shape over other agents (every id prefixed) of another CA.
fn elsewhere(
    topology: &rollover_core::Topology,
    prefix: &str,
    ca: &str,
) -> rollover_core::Topology {
    let mut t = renamed(topology, ca);
    let rename = |id: &mut String| {
        if !id.starts_with('@') {
            *id = format!("{prefix}{id}");
        }
    };
    t.nodes.iter_mut().for_each(|n| rename(&mut n.id));
    for link in &mut t.links {
        rename(&mut link.client);
        rename(&mut link.server);
    }
    t
}

/// Agents of two fake worlds: a node is the first's if it knows it.
struct TwoWorlds(std::sync::Arc<World>, std::sync::Arc<World>);

impl rollover_executor::AgentConnector for TwoWorlds {
    fn connect(
        &self,
        node_id: &str,
        address: Option<&str>,
    ) -> Result<std::sync::Arc<dyn rollover_executor::AgentApi>, rollover_executor::AgentError>
    {
        let world = match self.0.fleet.node(node_id) {
            Some(_) => &self.0,
            None => &self.1,
        };
        FakeConnector(world.clone()).connect(node_id, address)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rotates_once_at_a_time_whatever_its_ca_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(12, 33);
    let other = elsewhere(&topology, "b-", "other-root");
    let (world, other_world) = (World::new(&topology), World::new(&other));
    *other_world.root.lock().unwrap() = "another-old-root".into();
    // Slow agents keep the first rotation active while the others are tried.
    *world.delay.lock().unwrap() = Duration::from_millis(20);
    let mut c = config(dir.path(), &world)
        .planner_url(&planner().await)
        .unwrap();
    c.connector = Some(std::sync::Arc::new(TwoWorlds(
        world.clone(),
        other_world.clone(),
    )));
    let executor = Executor::open(c).unwrap();
    let first = executor
        .start_rotation(request(&topology, false, 1))
        .await
        .unwrap()
        .rotation_id;

    // The same agents under the CA's name written otherwise, or under another CA
    // altogether: refused, naming the first rotation (and, for the node overlap, some
    // of the shared nodes).
    let upper = topology.ca.to_uppercase();
    for ca in [upper.as_str(), "another-root"] {
        let e = tonic::Status::from(
            executor
                .start_rotation(request(&renamed(&topology, ca), false, 1))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{ca}: {e:?}");
        assert!(e.message().contains(&first), "{ca}: {}", e.message());
        if ca == "another-root" {
            assert!(
                e.message()
                    .contains("of its target node(s) are targets of active rotation")
                    && e.message().contains(&format!("`{}`", topology.nodes[0].id)),
                "{}",
                e.message()
            );
        }
    }
    // CheckFleet sees it too.
    let check = executor
        .check_fleet(v1::CheckFleetRequest {
            topology: request(&renamed(&topology, "another-root"), false, 1).topology,
        })
        .await
        .unwrap();
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.kind == v1::FleetProblemKind::ActiveRotation as i32
                && p.message.contains(&first)),
        "{:?}",
        check.problems
    );
    assert_eq!(
        executor.list_rotations(false).len(),
        1,
        "the refused left nothing"
    );

    // Other agents of another CA: admitted alongside.
    let beside = executor
        .start_rotation(request(&other, false, 0))
        .await
        .unwrap()
        .rotation_id;
    let status = wait_for(&executor, &beside, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    other_world.assert_all(true);

    // Once the first has ended (rolled back here, so the agents are back at the start),
    // the same agents under the upper-case name are admitted and rotate.
    while executor.get_rotation(&first, false).unwrap().steps_done < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    executor
        .control(&first, Control::Rollback("test".into()))
        .await
        .unwrap();
    let status = wait_for(&executor, &first, &[S::RolledBack, S::Failed]).await;
    assert_eq!(status.state, S::RolledBack as i32, "{status:?}");
    *world.delay.lock().unwrap() = Duration::ZERO;
    let second = executor
        .start_rotation(request(&renamed(&topology, &upper), false, 0))
        .await
        .unwrap()
        .rotation_id;
    let status = wait_for(&executor, &second, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    world.assert_all(true);

    executor.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_the_root_another_rotation_replaces_are_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(8, 34);
    // Other agents, another name, but on the same root (`old-root`): the same CA.
    let other = elsewhere(&topology, "b-", "renamed-root");
    let (world, other_world) = (World::new(&topology), World::new(&other));
    *world.delay.lock().unwrap() = Duration::from_millis(30);
    let mut c = config(dir.path(), &world)
        .planner_url(&planner().await)
        .unwrap();
    c.connector = Some(std::sync::Arc::new(TwoWorlds(
        world.clone(),
        other_world.clone(),
    )));
    let executor = Executor::open(c).unwrap();
    let first = executor
        .start_rotation(request(&topology, false, 1))
        .await
        .unwrap()
        .rotation_id;
    wait_for(&executor, &first, &[S::Running]).await;
    // Admitted (disjoint nodes, another name), but it fails in preparation, having
    // changed nothing.
    let second = executor
        .start_rotation(request(&other, false, 0))
        .await
        .unwrap()
        .rotation_id;
    let status = wait_for(&executor, &second, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Failed as i32, "{status:?}");
    let error = status.error.clone().unwrap_or_default();
    assert!(
        error.contains(&first) && error.contains("is replacing"),
        "{error}"
    );
    assert_eq!(status.steps_done, 0);
    other_world.assert_all(false);
    let status = wait_for(&executor, &first, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    executor.shutdown();
}
