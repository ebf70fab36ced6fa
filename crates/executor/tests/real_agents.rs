//! End to end on 127.0.0.1:0: the real planner, real agents (mTLS control channel
//! anchored in the rotated CA, so `@executor` is a planned node) and the executor.

use std::sync::Arc;
use std::time::Duration;

use rollover_agent::{Agent, AgentConfig, AgentHandle, ControlCreds};
use rollover_core::Mode;
use rollover_core::topology::{Control, LinkSpec, NodeSpec, Topology};
use rollover_executor::rotation::Control as Ctl;
use rollover_executor::{Executor, ExecutorConfig, RetryPolicy};
use rollover_pki::{KeyAlg, LiveCredentials, RootCa, Validity};
use rollover_proto::v1;
use v1::RotationState as S;

struct Fleet {
    old: RootCa,
    agents: Vec<AgentHandle>,
    topology: Topology,
    _dirs: Vec<tempfile::TempDir>,
}

const NODES: [(&str, Mode); 6] = [
    ("gw", Mode::Bundle),
    ("meter-1", Mode::Atomic),
    ("meter-2", Mode::Atomic),
    ("api", Mode::Bundle),
    ("db", Mode::Bundle),
    ("cache", Mode::Atomic),
];
const LINKS: [(&str, &str); 7] = [
    ("gw", "meter-1"),
    ("gw", "meter-2"),
    ("api", "gw"),
    ("api", "db"),
    ("api", "cache"),
    ("meter-1", "db"),
    ("db", "db"),
];

async fn fleet() -> Fleet {
    let old = RootCa::generate("corp", 1, KeyAlg::default(), Validity::default()).unwrap();
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for (id, mode) in NODES {
        let dir = tempfile::tempdir().unwrap();
        rollover_agent::bootstrap(dir.path(), id, mode, &old, Validity::default()).unwrap();
        let handle = Agent::start(AgentConfig {
            id: id.into(),
            mode,
            state_dir: dir.path().to_path_buf(),
            state_files: None,
            data_listen: "127.0.0.1:0".parse().unwrap(),
            control_listen: "127.0.0.1:0".parse().unwrap(),
            control: ControlCreds::Rotated,
            limits: rollover_agent::DEFAULT_LIMITS,
            chains: true,
        })
        .await
        .unwrap();
        nodes.push(NodeSpec {
            address: Some(handle.control_addr().to_string()),
            ..NodeSpec::new(id, mode)
        });
        agents.push(handle);
        dirs.push(dir);
    }
    let topology = Topology {
        ca: "corp".into(),
        nodes,
        links: LINKS
            .iter()
            .map(|(c, s)| LinkSpec {
                client: c.to_string(),
                server: s.to_string(),
                ca: None,
            })
            .collect(),
        control: Some(Control { ca: "corp".into() }),
    };
    Fleet {
        old,
        agents,
        topology,
        _dirs: dirs,
    }
}

async fn planner() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(rollover_planner::serve(listener, std::future::pending()));
    addr
}

fn executor_creds(old: &RootCa) -> Arc<LiveCredentials> {
    let set =
        rollover_agent::single_root_credentials("@executor", old, Validity::default()).unwrap();
    LiveCredentials::new(set).unwrap()
}

fn config(dir: &std::path::Path, planner: &str, creds: Arc<LiveCredentials>) -> ExecutorConfig {
    let mut c = ExecutorConfig::new(dir).planner_url(planner).unwrap();
    c.own_creds = Some(creds);
    c.retry = RetryPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: 8,
    };
    c
}

fn request(topology: &Topology) -> v1::StartRotationRequest {
    v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                topology,
            ))),
        }),
        plan: None,
        options: Some(v1::RotationOptions {
            max_concurrency: 2,
            probe: true,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

async fn wait_for(executor: &Executor, id: &str, states: &[S]) -> v1::RotationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = executor.get_rotation(id, false).unwrap();
        if states.iter().any(|s| *s as i32 == status.state) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "stuck: {status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn roots(agent: &AgentHandle) -> (Vec<String>, Vec<String>) {
    let s = agent.state();
    (s.server_roots, s.client_roots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_real_agents_through_a_restart_and_applies_each_step_once() {
    let fleet = fleet().await;
    let planner = planner().await;
    let dir = tempfile::tempdir().unwrap();
    let executor =
        Executor::open(config(dir.path(), &planner, executor_creds(&fleet.old))).unwrap();
    let id = executor
        .start_rotation(request(&fleet.topology))
        .await
        .unwrap()
        .rotation_id;
    loop {
        let s = executor.get_rotation(&id, false).unwrap();
        assert_ne!(s.state, S::Paused as i32, "{s:?}");
        if s.steps_done >= 6 || s.state == S::Succeeded as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Kill the executor; restart it with its bootstrap credentials: the journal
    // restores its rotated identity.
    executor.shutdown();
    drop(executor);
    let executor =
        Executor::open(config(dir.path(), &planner, executor_creds(&fleet.old))).unwrap();
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    assert_eq!(status.probes_failed, 0, "{status:?}");
    let old = fleet.old.fingerprint();
    for agent in &fleet.agents {
        let steps = agent.mode().steps().len() as u64;
        assert_eq!(agent.applied_count(), steps, "{}", agent.id());
        let (srv, cli) = roots(agent);
        assert_eq!(srv.len(), 1, "{}: {srv:?}", agent.id());
        assert_eq!(srv, cli);
        assert_ne!(srv[0], old, "{} still on the old root", agent.id());
    }
    executor.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_then_rollback_returns_every_agent_to_the_old_root() {
    let fleet = fleet().await;
    let planner = planner().await;
    let dir = tempfile::tempdir().unwrap();
    let executor =
        Executor::open(config(dir.path(), &planner, executor_creds(&fleet.old))).unwrap();
    let id = executor
        .start_rotation(request(&fleet.topology))
        .await
        .unwrap()
        .rotation_id;
    let paused = executor
        .control(&id, Ctl::Pause("hold".into()))
        .await
        .unwrap();
    assert_eq!(paused.state, S::Paused as i32);
    executor.control(&id, Ctl::Resume).await.unwrap();
    loop {
        let s = executor.get_rotation(&id, false).unwrap();
        if s.steps_done >= 8 || s.state == S::Succeeded as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    executor
        .control(&id, Ctl::Rollback("test".into()))
        .await
        .unwrap();
    let status = wait_for(&executor, &id, &[S::RolledBack, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::RolledBack as i32, "{status:?}");
    let old = fleet.old.fingerprint();
    for agent in &fleet.agents {
        let (srv, cli) = roots(agent);
        assert_eq!(srv, vec![old.clone()], "{}", agent.id());
        assert_eq!(cli, vec![old.clone()], "{}", agent.id());
    }
    executor.shutdown();
}

fn bridge_request(topology: &Topology) -> v1::StartRotationRequest {
    let mut r = request(topology);
    if let Some(o) = r.options.as_mut() {
        o.strategy = v1::Strategy::Bridge as i32;
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_strategy_is_refused_without_the_old_roots_key() {
    let fleet = fleet().await;
    let planner = planner().await;
    let dir = tempfile::tempdir().unwrap();
    let executor =
        Executor::open(config(dir.path(), &planner, executor_creds(&fleet.old))).unwrap();
    let err = tonic::Status::from(
        executor
            .start_rotation(bridge_request(&fleet.topology))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("--ca-key"), "{}", err.message());
    assert!(
        err.message().contains("holds no root key"),
        "{}",
        err.message()
    );
    assert!(executor.list_rotations(false).is_empty());
    executor.shutdown();
    drop(executor);

    // The key of another root of the same CA is no better: `b_new` must be signed by
    // the root the nodes (and `@executor`) are on.
    let other = RootCa::generate("corp", 7, KeyAlg::default(), Validity::default()).unwrap();
    let mut c = config(dir.path(), &planner, executor_creds(&fleet.old));
    c.root_keys = vec![Arc::new(other)];
    let executor = Executor::open(c).unwrap();
    let err = tonic::Status::from(
        executor
            .start_rotation(bridge_request(&fleet.topology))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&fleet.old.fingerprint()),
        "names the root whose key is missing: {}",
        err.message()
    );
    assert!(err.message().contains("--ca-key"), "{}", err.message());
    assert!(executor.list_rotations(false).is_empty());
    for agent in &fleet.agents {
        assert_eq!(agent.applied_count(), 0, "{}", agent.id());
    }
    executor.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_rotation_through_a_restart_keeps_every_probe_up() {
    let fleet = fleet().await;
    let planner = planner().await;
    let dir = tempfile::tempdir().unwrap();
    let with_key = || {
        let mut c = config(dir.path(), &planner, executor_creds(&fleet.old));
        c.root_keys = vec![Arc::new(RootCa::from_pem(&fleet.old.to_pem()).unwrap())];
        c
    };
    let executor = Executor::open(with_key()).unwrap();
    let started = executor
        .start_rotation(bridge_request(&fleet.topology))
        .await
        .unwrap();
    let plan = started.plan.unwrap();
    let bridges = plan
        .steps
        .iter()
        .filter(|s| s.action == v1::StepAction::Bridge as i32)
        .count();
    assert_eq!(bridges, NODES.len() + 1, "every node and @executor bridge");
    let id = started.rotation_id;
    loop {
        let s = executor.get_rotation(&id, false).unwrap();
        assert_ne!(s.state, S::Paused as i32, "{s:?}");
        if s.steps_done >= 12 || s.state == S::Succeeded as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Restarted mid-rotation, the executor takes the bridges from its journal.
    executor.shutdown();
    drop(executor);
    let executor = Executor::open(with_key()).unwrap();
    let status = wait_for(&executor, &id, &[S::Succeeded, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::Succeeded as i32, "{status:?}");
    assert_eq!(status.probes_failed, 0, "{status:?}");
    assert!(status.probes_total > 0, "{status:?}");
    let old = fleet.old.fingerprint();
    for agent in &fleet.agents {
        let steps = agent.mode().bridged_steps().len() as u64;
        assert_eq!(agent.applied_count(), steps, "{}", agent.id());
        let (srv, cli) = roots(agent);
        assert_eq!(srv.len(), 1, "{}: {srv:?}", agent.id());
        assert_eq!(srv, cli);
        assert_ne!(srv[0], old, "{} still on the old root", agent.id());
        assert!(agent.state().sent_bridges.is_empty(), "{}", agent.id());
    }
    executor.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_rollback_returns_every_agent_to_the_old_root_without_bridges() {
    let fleet = fleet().await;
    let planner = planner().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &planner, executor_creds(&fleet.old));
    c.root_keys = vec![Arc::new(RootCa::from_pem(&fleet.old.to_pem()).unwrap())];
    let executor = Executor::open(c).unwrap();
    let id = executor
        .start_rotation(bridge_request(&fleet.topology))
        .await
        .unwrap()
        .rotation_id;
    let mut saw_bridges = false;
    loop {
        let s = executor.get_rotation(&id, false).unwrap();
        saw_bridges |= fleet
            .agents
            .iter()
            .any(|a| a.state().sent_bridges.len() == 2);
        if s.steps_done >= 10 || s.state == S::Succeeded as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(saw_bridges, "agents send both bridges once bridged");
    executor
        .control(&id, Ctl::Rollback("test".into()))
        .await
        .unwrap();
    let status = wait_for(&executor, &id, &[S::RolledBack, S::Failed, S::Paused]).await;
    assert_eq!(status.state, S::RolledBack as i32, "{status:?}");
    assert_eq!(status.probes_failed, 0, "{status:?}");
    let old = fleet.old.fingerprint();
    for agent in &fleet.agents {
        let (srv, cli) = roots(agent);
        assert_eq!(srv, vec![old.clone()], "{}", agent.id());
        assert_eq!(cli, vec![old.clone()], "{}", agent.id());
        assert!(agent.state().sent_bridges.is_empty(), "{}", agent.id());
    }
    executor.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_strategy_without_the_fleets_root_key_fails_before_any_step() {
    // The control channel under its own CA (no `@executor` in the fleet): StartRotation
    // cannot tell which root the nodes are on, so the executor learns it from their
    // states while preparing, and stops there, naming the root whose key it lacks.
    let fleet = fleet().await;
    let planner = planner().await;
    let dir = tempfile::tempdir().unwrap();
    let mut topology = fleet.topology.clone();
    topology.control = None;
    let other = RootCa::generate("corp", 7, KeyAlg::default(), Validity::default()).unwrap();
    let mut c = config(dir.path(), &planner, executor_creds(&fleet.old));
    c.root_keys = vec![Arc::new(other)];
    let executor = Executor::open(c).unwrap();
    let id = executor
        .start_rotation(bridge_request(&topology))
        .await
        .unwrap()
        .rotation_id;
    let status = wait_for(&executor, &id, &[S::Failed, S::Paused, S::Succeeded]).await;
    assert_eq!(status.state, S::Failed as i32, "{status:?}");
    let error = status.error.unwrap_or_default();
    assert!(error.contains(&fleet.old.fingerprint()), "{error}");
    assert!(error.contains("--ca-key"), "{error}");
    assert_eq!(status.steps_done, 0);
    for agent in &fleet.agents {
        assert_eq!(agent.applied_count(), 0, "{}", agent.id());
        assert!(agent.state().sent_bridges.is_empty(), "{}", agent.id());
    }
    executor.shutdown();
}
