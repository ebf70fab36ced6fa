//! Security properties of the running services (issue 6, item 5), over real agents,
//! planner and executor on 127.0.0.1:
//!
//! * (a) an agent takes control calls from `@executor` only: another identity valid
//!   under the control CA is PERMISSION_DENIED on every method, a client of another
//!   CA (or with no certificate) does not get through the handshake;
//! * (b) the executor refuses an agent presenting another node's certificate, and a
//!   topology pointing a node at another node's agent fails naming the node, with no
//!   step applied anywhere;
//! * (c) a CSR for another node's name is refused by `RootCa::issue_leaf`, and by the
//!   executor when an agent answers for the wrong node;
//! * (d) expired and not-yet-valid certificates are refused in real handshakes over
//!   TCP, on both sides;
//! * (e) state files are owner-only: agent state dir 0700, files 0600, the
//!   executor's state dir 0700 and journal 0600;
//! * (f) no RPC message type can carry a private key, and none of the responses of a
//!   full rotation contains one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::future::BoxFuture;
use prost::Message;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorSet};
use rollover_agent::{AgentHandle, ControlCreds};
use rollover_core::Mode;
use rollover_executor::journal::{DocKind, Journal, MemJournal};
use rollover_executor::{AgentApi, AgentConnector, AgentError, ExecutorConfig, GrpcConnector};
use rollover_integration_tests::{
    CA, EXECUTOR_ID, KeyNeedles, bounded, creds, quick_retry, root, start_agent, start_executor,
    start_planner,
};
use rollover_pki::{CredentialSet, HeldLeaf, LiveCredentials, NodeKey, PkiError, RootCa, Validity};
use rollover_proto::v1;
use rollover_proto::v1::agent_service_client::AgentServiceClient;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::planner_service_client::PlannerServiceClient;
use rollover_proto::v1::rotation_event::Event;
use rollover_transport::{connect_tls, tls_channel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(30);

fn agent_client(
    agent: &AgentHandle,
    as_: Arc<LiveCredentials>,
) -> AgentServiceClient<tonic::transport::Channel> {
    AgentServiceClient::new(
        tls_channel(&agent.control_addr().to_string(), as_, agent.id()).expect("channel"),
    )
}

/// Waits (bounded) until `condition` holds: a server counts a handshake once its
/// own side of it has ended, which may be just after the client saw the outcome.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    bounded(what, LIMIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Every Agent method, called as `caller`: the results, by method name.
async fn every_method(
    agent: &AgentHandle,
    caller: Arc<LiveCredentials>,
    new: &RootCa,
) -> Vec<(&'static str, Result<(), tonic::Status>)> {
    // A fresh channel per call: a refused handshake closes the connection.
    let c = || agent_client(agent, caller.clone());
    vec![
        (
            "GetState",
            c().get_state(v1::GetStateRequest {}).await.map(drop),
        ),
        (
            "CreateCsr",
            c().create_csr(v1::CreateCsrRequest {
                ca_name: CA.into(),
                generation: 2,
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        (
            "ApplyStep",
            c().apply_step(v1::ApplyStepRequest {
                rotation_id: "r".into(),
                step_id: 1,
                action: v1::StepAction::Stage as i32,
                new_root_der: new.cert_der().to_vec(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        (
            "Probe",
            c().probe(v1::ProbeRequest {
                peer_id: agent.id().into(),
                peer_address: agent.data_addr().to_string(),
                workload: false,
            })
            .await
            .map(drop),
        ),
    ]
}

/// How the server at `addr` refuses `creds`' client certificate: with TLS 1.3 the
/// client's side of the handshake completes and the server's alert arrives on the
/// first read (nothing is written, so it cannot be lost to a reset).
async fn refusal(addr: &str, creds: &LiveCredentials, server_id: &str) -> String {
    let mut tls = connect_tls(addr, creds.client_config(), server_id)
        .await
        .expect("the client's side of the handshake completes");
    let mut buf = [0u8; 16];
    match tls.read(&mut buf).await {
        Ok(n) => panic!("{addr} accepted the client and sent {n} bytes"),
        Err(e) => format!("{e:?}"),
    }
}

// ---------------------------------------------------------------------------------
// (a) Who may call an agent

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_take_control_calls_from_the_executor_only() {
    bounded("test", LIMIT, async {
        let dirs = tempfile::tempdir().expect("tempdir");
        let (old, new, control) = (root(CA, 1), root(CA, 2), root("control", 1));
        // A separate control CA...
        let a = start_agent(
            &dirs.path().join("a"),
            "a",
            Mode::Bundle,
            &old,
            ControlCreds::Separate(creds("a", &control)),
        )
        .await;
        // ...and control in the rotated CA, where every node's data-plane leaf is
        // valid under the control CA too.
        let gw = start_agent(
            &dirs.path().join("gw"),
            "gw",
            Mode::Bundle,
            &old,
            ControlCreds::Rotated,
        )
        .await;
        let db = start_agent(
            &dirs.path().join("db"),
            "db",
            Mode::Bundle,
            &old,
            ControlCreds::Rotated,
        )
        .await;

        let insiders = [
            (
                "another identity of the control CA",
                &a,
                creds("mallory", &control),
            ),
            ("the agent's own identity", &a, creds("a", &control)),
            ("an executor look-alike", &a, creds("@executor ", &control)),
            (
                "a peer node's data-plane credentials",
                &gw,
                db.credentials(),
            ),
            (
                "a peer node's identity, freshly issued",
                &gw,
                creds("db", &old),
            ),
        ];
        for (who, agent, caller) in insiders {
            for (method, result) in every_method(agent, caller, &new).await {
                let status = result.expect_err(who);
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "{who}: {method}: {status:?}"
                );
                assert!(
                    status.message().contains(EXECUTOR_ID),
                    "{who}: {method}: {}",
                    status.message()
                );
            }
        }

        // Clients outside the control CA do not get through the handshake. With
        // TLS 1.3 the client learns it on its first read: a gRPC call fails with the
        // alert, or with the connection closed under it, depending on timing; the
        // agent counts each refused handshake, and a raw handshake followed by a read
        // always sees the alert.
        let mut rogue = rollover_agent::single_root_credentials(
            EXECUTOR_ID,
            &root("control", 9),
            Validity::default(),
        )
        .expect("leaf");
        rogue.client_roots = vec![control.cert_der().clone()];
        let mut anonymous = rogue.clone();
        anonymous.held.clear();
        anonymous.presents = None;
        let outsiders = [
            ("@executor of another CA", rogue, "UnknownCA"),
            (
                "a client with no certificate",
                anonymous,
                "CertificateRequired",
            ),
        ];
        for (who, set, alert) in outsiders {
            let before = a.metrics();
            let caller = LiveCredentials::new(set).expect("credentials");
            for (method, result) in every_method(&a, caller.clone(), &new).await {
                let status = result.expect_err(who);
                assert!(
                    matches!(
                        status.code(),
                        Code::Unknown | Code::Unavailable | Code::Cancelled
                    ),
                    "{who}: {method}: a transport failure, not an answer: {status:?}"
                );
            }
            eventually("the refused handshakes are counted", || {
                a.metrics().control_handshakes_failed >= before.control_handshakes_failed + 4
            })
            .await;
            let after = a.metrics();
            assert_eq!(
                after.control_handshakes_failed,
                before.control_handshakes_failed + 4,
                "{who}"
            );
            assert_eq!(
                after.control_handshakes_ok, before.control_handshakes_ok,
                "{who}"
            );
            let err = refusal(&a.control_addr().to_string(), &caller, "a").await;
            assert!(err.contains(alert), "{who}: {err}");
            // The client sees the alert before the agent has counted it: wait for
            // this fifth refusal, so the next caller's `before` starts after it.
            eventually("the raw handshake's refusal is counted", || {
                a.metrics().control_handshakes_failed >= before.control_handshakes_failed + 5
            })
            .await;
            assert_eq!(
                a.metrics().control_handshakes_failed,
                before.control_handshakes_failed + 5,
                "{who}: the raw handshake"
            );
        }

        // Nothing changed; the executor itself gets through.
        for agent in [&a, &gw] {
            assert_eq!(agent.applied_count(), 0);
            assert_eq!(agent.state().server_roots, vec![old.fingerprint()]);
        }
        let exec = creds(EXECUTOR_ID, &control);
        assert!(every_method(&a, exec, &new).await[0].1.is_ok());
        let exec = creds(EXECUTOR_ID, &old);
        assert!(every_method(&gw, exec, &new).await[0].1.is_ok());
        for agent in [a, gw, db] {
            agent.shutdown().await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------
// (b) An agent answering for another node

/// Two agents with control in the rotated CA, and an executor (with its planner)
/// whose `@executor` leaf comes from the same root.
struct Pair {
    a: AgentHandle,
    b: AgentHandle,
    old: RootCa,
    _dirs: tempfile::TempDir,
}

async fn pair() -> Pair {
    let dirs = tempfile::tempdir().expect("tempdir");
    let old = root(CA, 1);
    let a = start_agent(
        &dirs.path().join("a"),
        "a",
        Mode::Bundle,
        &old,
        ControlCreds::Rotated,
    )
    .await;
    let b = start_agent(
        &dirs.path().join("b"),
        "b",
        Mode::Bundle,
        &old,
        ControlCreds::Rotated,
    )
    .await;
    Pair {
        a,
        b,
        old,
        _dirs: dirs,
    }
}

fn topology(nodes: &[(&str, String)], control: bool) -> v1::Topology {
    v1::Topology {
        ca: CA.into(),
        nodes: nodes
            .iter()
            .map(|(id, address)| v1::Node {
                id: (*id).into(),
                mode: v1::NodeMode::Bundle as i32,
                address: Some(address.clone()),
                ..Default::default()
            })
            .collect(),
        links: vec![v1::Link {
            client: nodes[0].0.into(),
            server: nodes[nodes.len() - 1].0.into(),
            ca: None,
        }],
        control: control.then(|| v1::Control { ca: CA.into() }),
    }
}

fn start(topology: v1::Topology) -> v1::StartRotationRequest {
    v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(topology)),
        }),
        plan: None,
        options: Some(v1::RotationOptions {
            probe: true,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// Waits until the rotation stops moving (paused or over) and returns its status.
async fn settle(
    client: &mut ExecutorServiceClient<tonic::transport::Channel>,
    id: &str,
) -> v1::RotationStatus {
    loop {
        let status = client
            .get_rotation(v1::GetRotationRequest {
                rotation_id: id.into(),
                include_plan: false,
            })
            .await
            .expect("status")
            .into_inner()
            .rotation
            .unwrap();
        use v1::RotationState as S;
        if [
            S::Paused,
            S::Succeeded,
            S::Failed,
            S::Aborted,
            S::RolledBack,
        ]
        .iter()
        .any(|s| *s as i32 == status.state)
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_refuses_an_agent_with_another_nodes_certificate() {
    bounded("test", LIMIT, async {
        let p = pair().await;
        let exec = creds(EXECUTOR_ID, &p.old);

        // Dialling b's agent as node a: b's certificate does not name a.
        let failed_before = p.b.metrics().control_handshakes_failed;
        let channel =
            tls_channel(&p.b.control_addr().to_string(), exec.clone(), "a").expect("channel");
        let status = AgentServiceClient::new(channel)
            .get_state(v1::GetStateRequest {})
            .await
            .expect_err("b's agent is not a's");
        assert!(
            format!("{status:?}").contains("NotValidForName"),
            "{status:?}"
        );
        eventually("b counts the aborted handshake", || {
            p.b.metrics().control_handshakes_failed > failed_before
        })
        .await;
        // The same raw handshake, as a probe of the data plane would make it.
        let err = connect_tls(&p.b.data_addr().to_string(), exec.client_config(), "a")
            .await
            .expect_err("b's data plane is not a's");
        assert!(err.to_string().contains("not valid for name"), "{err}");

        // A topology that swaps the two agents' addresses: the rotation stops at its
        // preparation, naming a node, and no agent is touched.
        let planner = start_planner().await;
        let state = tempfile::tempdir().expect("tempdir");
        let mut config = ExecutorConfig::new(state.path())
            .planner_url(&planner.addr)
            .expect("planner");
        config.own_creds = Some(exec.clone());
        config.retry = quick_retry();
        let (server, executor) = start_executor(config).await;
        let mut client = ExecutorServiceClient::new(server.channel());
        let swapped = topology(
            &[
                ("a", p.b.control_addr().to_string()),
                ("b", p.a.control_addr().to_string()),
            ],
            true,
        );
        let id = client
            .start_rotation(start(swapped))
            .await
            .expect("accepted: the addresses are only dialled later")
            .into_inner()
            .rotation_id;
        let status = settle(&mut client, &id).await;
        assert_eq!(status.state, v1::RotationState::Failed as i32, "{status:?}");
        let error = status.error.unwrap_or_default();
        assert!(
            error.contains("`a`:") && error.contains("`b`:"),
            "the error names both nodes: {error}"
        );
        assert!(error.contains("not valid for name"), "{error}");
        assert_eq!(status.steps_done, 0);
        for agent in [&p.a, &p.b] {
            assert_eq!(agent.applied_count(), 0, "{}", agent.id());
            assert_eq!(agent.state().server_roots, vec![p.old.fingerprint()]);
        }
        // The executor kept its own credentials.
        assert_eq!(exec.current().server_roots, vec![p.old.cert_der().clone()]);
        server.stop().await;
        executor.shutdown();
        planner.stop().await;
        p.a.shutdown().await;
        p.b.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------
// (c) CSRs for another node's name

/// Reaches node `b`'s agent (correctly authenticated as `b`) whatever node it is
/// asked for: an agent answering for the wrong node.
struct Misrouted(GrpcConnector);

impl AgentConnector for Misrouted {
    fn connect(
        &self,
        _node_id: &str,
        address: Option<&str>,
    ) -> Result<Arc<dyn AgentApi>, AgentError> {
        self.0.connect("b", address)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrs_for_another_nodes_name_are_refused() {
    bounded("test", LIMIT, async {
        // Directly: a CSR names its node, and the issuer checks the name.
        let ca = root(CA, 2);
        let key = NodeKey::generate(Default::default()).expect("key");
        let csr = key.csr_der("b").expect("csr");
        match ca.issue_leaf(&csr, "a", Validity::default()) {
            Err(PkiError::CsrCommonName { expected, found }) => {
                assert_eq!(expected, "a");
                assert_eq!(found, ["b"]);
            }
            other => panic!("a CSR of b issued for a: {other:?}"),
        }
        assert!(ca.issue_leaf(&csr, "b", Validity::default()).is_ok());

        // End to end: the executor rotates node `a`, but the agent that answers is
        // `b`'s; `b`'s CSR is refused for `a` and no step is applied.
        let dirs = tempfile::tempdir().expect("tempdir");
        let (old, control) = (root(CA, 1), root("control", 1));
        let b = start_agent(
            &dirs.path().join("b"),
            "b",
            Mode::Bundle,
            &old,
            ControlCreds::Separate(creds("b", &control)),
        )
        .await;
        let exec = creds(EXECUTOR_ID, &control);
        let state = tempfile::tempdir().expect("tempdir");
        let planner = start_planner().await;
        let mut config = ExecutorConfig::new(state.path())
            .planner_url(&planner.addr)
            .expect("planner");
        config.own_creds = Some(exec.clone());
        config.connector = Some(Arc::new(Misrouted(GrpcConnector::tls(exec))));
        config.retry = quick_retry();
        let (server, executor) = start_executor(config).await;
        let mut client = ExecutorServiceClient::new(server.channel());
        let id = client
            .start_rotation(start(topology(
                &[("a", b.control_addr().to_string())],
                false,
            )))
            .await
            .expect("accepted")
            .into_inner()
            .rotation_id;
        let status = settle(&mut client, &id).await;
        assert_eq!(status.state, v1::RotationState::Paused as i32, "{status:?}");
        let reason = status.paused_reason.unwrap_or_default();
        assert!(reason.contains("the CSR of `a` was refused"), "{reason}");
        assert!(
            reason.contains("\"b\""),
            "the refusal names what the CSR said: {reason}"
        );
        assert_eq!(status.steps_done, 0);
        assert_eq!(b.applied_count(), 0);
        assert_eq!(b.state().server_roots, vec![old.fingerprint()]);
        server.stop().await;
        executor.shutdown();
        planner.stop().await;
        b.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------
// (d) Certificates out of their validity period

fn window(from_secs: i64, to_secs: i64) -> Validity {
    let at = |s: i64| {
        let d = Duration::from_secs(s.unsigned_abs());
        if s < 0 {
            SystemTime::now() - d
        } else {
            SystemTime::now() + d
        }
    };
    Validity {
        not_before: at(from_secs),
        not_after: at(to_secs),
    }
}

/// A ping over a raw mTLS connection to `addr` with `creds`' client side, expecting
/// `server_id`: `Ok` only if `pong` comes back.
async fn ping(addr: &str, creds: &LiveCredentials, server_id: &str) -> Result<(), String> {
    let mut tls = connect_tls(addr, creds.client_config(), server_id)
        .await
        .map_err(|e| format!("{e:?}"))?;
    tls.write_all(b"ping\n")
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .await
        .map_err(|e| format!("{e:?}"))?;
    if answer == "pong\n" {
        Ok(())
    } else {
        Err(format!("answer {answer:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_certificates_are_refused_over_tcp() {
    bounded("test", LIMIT, async {
        let dirs = tempfile::tempdir().expect("tempdir");
        let (old, control) = (root(CA, 1), root("control", 1));
        let exec = creds(EXECUTOR_ID, &control);
        let v = start_agent(
            &dirs.path().join("v"),
            "v",
            Mode::Bundle,
            &old,
            ControlCreds::Separate(creds("v", &control)),
        )
        .await;

        // Agents whose own leaf is expired, or not valid yet.
        let cases = [
            ("expired", window(-7200, -3600), ["expired", "expired"]),
            (
                "not yet valid",
                window(3600, 7200),
                ["notvalidyet", "not valid yet"],
            ),
        ];
        for (what, validity, error) in cases {
            let id = if what == "expired" { "e" } else { "f" };
            let dir = dirs.path().join(id);
            rollover_agent::bootstrap(&dir, id, Mode::Bundle, &old, validity).expect("bootstrap");
            let agent = start_agent(
                &dir,
                id,
                Mode::Bundle,
                &old,
                ControlCreds::Separate(creds(id, &control)),
            )
            .await;

            // A valid client refuses the server's certificate...
            let err = ping(&agent.data_addr().to_string(), &v.credentials(), id)
                .await
                .expect_err(what);
            let names = |text: &str| error.iter().any(|e| text.to_lowercase().contains(e));
            assert!(names(&err), "{what} server: {err}");
            let answer = agent_client(&v, exec.clone())
                .probe(v1::ProbeRequest {
                    peer_id: id.into(),
                    peer_address: agent.data_addr().to_string(),
                    workload: false,
                })
                .await
                .expect("probe")
                .into_inner();
            assert!(!answer.ok, "{what} server");
            assert!(names(&answer.error), "{what} server: {}", answer.error);

            // ...and a valid server refuses it as a client (the alert arrives on
            // the client's first read).
            let failed_before = v.metrics().data_handshakes_failed;
            let err = refusal(&v.data_addr().to_string(), &agent.credentials(), "v").await;
            assert!(err.contains("CertificateExpired"), "{what} client: {err}");
            // The server counts it once its side of the handshake has ended.
            eventually("the refused handshake is counted", || {
                v.metrics().data_handshakes_failed > failed_before
            })
            .await;
            let answer = agent_client(&agent, exec.clone())
                .probe(v1::ProbeRequest {
                    peer_id: "v".into(),
                    peer_address: v.data_addr().to_string(),
                    workload: false,
                })
                .await
                .expect("probe")
                .into_inner();
            assert!(!answer.ok, "{what} client");
            agent.shutdown().await;
        }

        // The same client and server, in their validity period, do talk.
        ping(&v.data_addr().to_string(), &v.credentials(), "v")
            .await
            .expect("a valid certificate on both sides");

        // A leaf out of its period is refused even when the root is trusted and the
        // key matches: a raw set, not through bootstrap.
        let key = NodeKey::generate(Default::default()).expect("key");
        let stale = old
            .issue_leaf(&key.csr_der("c").expect("csr"), "c", window(-7200, -1))
            .expect("leaf");
        let client = LiveCredentials::new(CredentialSet {
            server_roots: vec![old.cert_der().clone()],
            client_roots: vec![old.cert_der().clone()],
            held: vec![HeldLeaf::new(stale, key)],
            presents: Some(0),
            ..CredentialSet::default()
        })
        .expect("credentials");
        let err = refusal(&v.data_addr().to_string(), &client, "v").await;
        assert!(err.contains("CertificateExpired"), "{err}");
        v.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------
// (e) Owner-only state

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Every directory under `dir` (itself included) is 0700 and every file 0600.
fn assert_owner_only(dir: &Path) -> usize {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files += assert_owner_only(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            files += 1;
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_owner_only() {
    bounded("test", LIMIT, async {
        let dirs = tempfile::tempdir().expect("tempdir");
        let (old, new, control) = (root(CA, 1), root(CA, 2), root("control", 1));
        // Directories made by someone else, readable by all: tightened.
        let (agent_dir, executor_dir) = (dirs.path().join("agent"), dirs.path().join("executor"));
        for dir in [&agent_dir, &executor_dir] {
            std::fs::create_dir(dir).expect("mkdir");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        rollover_agent::bootstrap(&agent_dir, "a", Mode::Bundle, &old, Validity::default())
            .expect("bootstrap");
        rollover_agent::bootstrap_control(&agent_dir, "a", &control, Validity::default())
            .expect("control");
        assert!(
            assert_owner_only(&agent_dir) >= 4,
            "node.json, a key, control.json, its key"
        );
        let a = start_agent(&agent_dir, "a", Mode::Bundle, &old, ControlCreds::StateDir).await;
        // A CSR and a step rewrite the state: still owner-only.
        let mut c = agent_client(&a, creds(EXECUTOR_ID, &control));
        let csr = c
            .create_csr(v1::CreateCsrRequest {
                ca_name: CA.into(),
                generation: 2,
                ..Default::default()
            })
            .await
            .expect("csr")
            .into_inner()
            .csr_der;
        let leaf = new
            .issue_leaf(&csr, "a", Validity::default())
            .expect("leaf");
        let applied = c
            .apply_step(v1::ApplyStepRequest {
                rotation_id: "r".into(),
                step_id: 1,
                action: v1::StepAction::Stage as i32,
                new_root_der: new.cert_der().to_vec(),
                issued_leaf_der: leaf.to_vec(),
                old_root_fingerprint: old.fingerprint(),
                undo: false,
                ..Default::default()
            })
            .await
            .expect("stage")
            .into_inner();
        assert!(applied.applied);
        assert!(assert_owner_only(&agent_dir) >= 5, "two keys now");
        a.shutdown().await;

        // The executor's journal holds the new roots' keys: owner-only too.
        let (server, executor) = start_executor(ExecutorConfig::new(&executor_dir)).await;
        let journal = executor_dir.join("executor.redb");
        assert!(journal.is_file());
        assert_owner_only(&executor_dir);
        server.stop().await;
        executor.shutdown();
    })
    .await;
}

// ---------------------------------------------------------------------------------
// (f) No private key on the wire

/// Every message type reachable from an RPC's request or response, by full name.
fn reachable(set: &FileDescriptorSet) -> Vec<(String, DescriptorProto)> {
    let mut all = std::collections::BTreeMap::new();
    fn collect(
        prefix: &str,
        messages: &[DescriptorProto],
        all: &mut std::collections::BTreeMap<String, DescriptorProto>,
    ) {
        for m in messages {
            let name = format!("{prefix}.{}", m.name());
            collect(&name, &m.nested_type, all);
            all.insert(name, m.clone());
        }
    }
    for file in &set.file {
        collect(
            &format!(".{}", file.package()),
            &file.message_type,
            &mut all,
        );
    }
    let mut todo: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "rollover.v1")
        .flat_map(|f| &f.service)
        .flat_map(|s| &s.method)
        .flat_map(|m| [m.input_type().to_string(), m.output_type().to_string()])
        .collect();
    assert!(
        todo.len() >= 2 * 14,
        "every method of the three services: {todo:?}"
    );
    let mut seen = std::collections::BTreeMap::new();
    while let Some(name) = todo.pop() {
        if seen.contains_key(&name) {
            continue;
        }
        let message = all
            .get(&name)
            .unwrap_or_else(|| panic!("unknown type {name}"))
            .clone();
        for field in &message.field {
            if field.r#type() == Type::Message {
                todo.push(field.type_name().to_string());
            }
        }
        seen.insert(name, message);
    }
    seen.into_iter().collect()
}

#[test]
fn no_rpc_message_type_can_carry_a_private_key() {
    let set =
        FileDescriptorSet::decode(rollover_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let messages = reachable(&set);
    // The only bytes on the wire: a CSR and certificates, each DER (the bridges of
    // MODEL §11 are CA certificates; their keys stay with the executor).
    let allowed = [
        ".rollover.v1.CreateCsrResponse.csr_der",
        ".rollover.v1.ApplyStepRequest.new_root_der",
        ".rollover.v1.ApplyStepRequest.issued_leaf_der",
        ".rollover.v1.ApplyStepRequest.bridge_new_der",
        ".rollover.v1.ApplyStepRequest.bridge_old_der",
    ];
    let mut bytes_fields = Vec::new();
    for (name, message) in &messages {
        for field in &message.field {
            let full = format!("{name}.{}", field.name());
            let lower = field.name().to_lowercase();
            for bad in ["key", "secret", "private", "pem", "pkcs", "seed"] {
                assert!(!lower.contains(bad), "{full} looks like key material");
            }
            if field.r#type() == Type::Bytes {
                bytes_fields.push(full);
            }
        }
    }
    assert_eq!(
        bytes_fields.len(),
        allowed.len(),
        "bytes fields: {bytes_fields:?}"
    );
    for field in &bytes_fields {
        assert!(
            allowed.contains(&field.as_str()),
            "{field} is not a CSR or a certificate"
        );
    }
    // Every rollover.v1 message is reachable, so the walk saw them all.
    let own: usize = set
        .file
        .iter()
        .filter(|f| f.package() == "rollover.v1")
        .map(|f| f.message_type.len())
        .sum();
    let reached = messages
        .iter()
        .filter(|(n, _)| n.starts_with(".rollover.v1."))
        .count();
    assert_eq!(reached, own, "messages no RPC uses");
}

/// Encoded messages, each with what it was.
type Messages = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// The agents of a rotation as the executor sees them, recording every answer.
struct Recording {
    inner: GrpcConnector,
    answers: Messages,
}

struct RecordingAgent {
    inner: Arc<dyn AgentApi>,
    node: String,
    answers: Messages,
}

impl RecordingAgent {
    fn keep<T: Message>(&self, what: &str, result: &Result<T, AgentError>) {
        if let Ok(answer) = result {
            self.answers
                .lock()
                .expect("answers")
                .push((format!("{what} of {}", self.node), answer.encode_to_vec()));
        }
    }
}

impl AgentApi for RecordingAgent {
    fn get_state(&self) -> BoxFuture<'_, Result<v1::AgentState, AgentError>> {
        Box::pin(async move {
            let r = self.inner.get_state().await;
            self.keep("GetState", &r);
            r
        })
    }

    fn create_csr(
        &self,
        request: v1::CreateCsrRequest,
    ) -> BoxFuture<'_, Result<v1::CreateCsrResponse, AgentError>> {
        Box::pin(async move {
            let r = self.inner.create_csr(request).await;
            self.keep("CreateCsr", &r);
            r
        })
    }

    fn apply_step(
        &self,
        request: v1::ApplyStepRequest,
    ) -> BoxFuture<'_, Result<v1::ApplyStepResponse, AgentError>> {
        Box::pin(async move {
            // What the executor sends travels too.
            self.answers.lock().expect("answers").push((
                format!("ApplyStep request to {}", self.node),
                request.encode_to_vec(),
            ));
            let r = self.inner.apply_step(request).await;
            self.keep("ApplyStep", &r);
            r
        })
    }

    fn probe(
        &self,
        request: v1::ProbeRequest,
    ) -> BoxFuture<'_, Result<v1::ProbeResponse, AgentError>> {
        Box::pin(async move {
            let r = self.inner.probe(request).await;
            self.keep("Probe", &r);
            r
        })
    }
}

impl AgentConnector for Recording {
    fn connect(
        &self,
        node_id: &str,
        address: Option<&str>,
    ) -> Result<Arc<dyn AgentApi>, AgentError> {
        Ok(Arc::new(RecordingAgent {
            inner: self.inner.connect(node_id, address)?,
            node: node_id.into(),
            answers: self.answers.clone(),
        }))
    }
}

/// The `PRIVATE KEY` PEM text of every file under `dir`.
fn key_files(dir: &Path) -> Vec<String> {
    let mut pems = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            pems.extend(key_files(&path));
        } else {
            let text = std::fs::read_to_string(&path).expect("read");
            if text.contains("PRIVATE KEY") {
                pems.push(text);
            }
        }
    }
    pems
}

fn pems_of(set: &CredentialSet) -> Vec<String> {
    set.held.iter().map(|leaf| leaf.key.to_pem()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_of_a_full_rotation_carries_a_private_key() {
    bounded("test", LIMIT, async {
        let dirs = tempfile::tempdir().expect("tempdir");
        let old = root(CA, 1);
        let gw = start_agent(
            &dirs.path().join("gw"),
            "gw",
            Mode::Bundle,
            &old,
            ControlCreds::Rotated,
        )
        .await;
        let m = start_agent(
            &dirs.path().join("m"),
            "m",
            Mode::Atomic,
            &old,
            ControlCreds::Rotated,
        )
        .await;
        let exec = creds(EXECUTOR_ID, &old);
        let exec_base = pems_of(&exec.current());
        let planner = start_planner().await;
        let journal = Arc::new(MemJournal::default());
        let answers = Arc::new(Mutex::new(Vec::new()));
        let mut config = ExecutorConfig::new(dirs.path().join("executor"))
            .planner_url(&planner.addr)
            .expect("planner");
        config.own_creds = Some(exec.clone());
        config.journal = Some(journal.clone());
        config.connector = Some(Arc::new(Recording {
            inner: GrpcConnector::tls(exec.clone()),
            answers: answers.clone(),
        }));
        let (server, executor) = start_executor(config).await;
        let record = |what: &str, bytes: Vec<u8>| {
            answers
                .lock()
                .expect("answers")
                .push((what.to_string(), bytes))
        };

        let topology = v1::Topology {
            ca: CA.into(),
            nodes: [(&gw, Mode::Bundle), (&m, Mode::Atomic)]
                .iter()
                .map(|(agent, mode)| v1::Node {
                    id: agent.id().into(),
                    mode: v1::NodeMode::from(*mode) as i32,
                    address: Some(agent.control_addr().to_string()),
                    ..Default::default()
                })
                .collect(),
            links: vec![v1::Link {
                client: "gw".into(),
                server: "m".into(),
                ca: None,
            }],
            control: Some(v1::Control { ca: CA.into() }),
        };
        let source = v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(topology.clone())),
        };

        // The planner's answers.
        let mut planner_client = PlannerServiceClient::new(planner.channel());
        let plan = planner_client
            .plan(v1::PlanRequest {
                topology: Some(source.clone()),
                ..Default::default()
            })
            .await
            .expect("plan")
            .into_inner();
        record("Plan", plan.encode_to_vec());
        let verdict = planner_client
            .verify(v1::VerifyRequest {
                topology: Some(source.clone()),
                plan: Some(v1::PlanSource {
                    source: Some(v1::plan_source::Source::Plan(
                        plan.plan.clone().expect("plan"),
                    )),
                }),
            })
            .await
            .expect("verify")
            .into_inner()
            .verdict
            .unwrap();
        assert!(verdict.safe);
        record("Verify", verdict.encode_to_vec());

        // The rotation, watched to its end, and every status call on the way.
        let mut client = ExecutorServiceClient::new(server.channel());
        let started = client
            .start_rotation(start(topology))
            .await
            .expect("start")
            .into_inner();
        record("StartRotation", started.encode_to_vec());
        let id = started.rotation_id;
        let mut events = client
            .watch_rotation(v1::WatchRotationRequest {
                rotation_id: id.clone(),
                from_sequence: 0,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut outcome = None;
        while let Some(event) = events.next().await {
            let event = event.expect("event").event.expect("an event");
            record("RotationEvent", event.encode_to_vec());
            if let Some(Event::Finished(f)) = &event.event {
                outcome = Some(f.outcome);
            }
        }
        assert_eq!(outcome, Some(v1::RotationState::Succeeded as i32));
        let status = client
            .get_rotation(v1::GetRotationRequest {
                rotation_id: id.clone(),
                include_plan: true,
            })
            .await
            .expect("status")
            .into_inner()
            .rotation
            .unwrap();
        record("GetRotation", status.encode_to_vec());
        let list = client
            .list_rotations(v1::ListRotationsRequest {
                active_only: false,
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("list")
            .into_inner();
        record("ListRotations", list.encode_to_vec());
        for agent in [&gw, &m] {
            let mut c = agent_client(agent, exec.clone());
            let state = c
                .get_state(v1::GetStateRequest {})
                .await
                .expect("state")
                .into_inner()
                .state
                .unwrap();
            record("GetState", state.encode_to_vec());
            let probe = c
                .probe(v1::ProbeRequest {
                    peer_id: "m".into(),
                    peer_address: m.data_addr().to_string(),
                    workload: false,
                })
                .await
                .expect("probe")
                .into_inner();
            assert!(probe.ok || agent.id() == "m", "{probe:?}");
            record("Probe", probe.encode_to_vec());
        }

        // Every private key involved: the nodes' (old and new, from their state
        // directories), the executor's (before and after), both roots'.
        let new_root = journal
            .document(&id, DocKind::NewRoot)
            .expect("journal")
            .expect("the new root is journaled");
        let new_root = String::from_utf8(new_root).expect("PEM");
        let mut pems = key_files(dirs.path().join("gw").as_path());
        pems.extend(key_files(dirs.path().join("m").as_path()));
        pems.extend(exec_base);
        pems.extend(pems_of(&exec.current()));
        pems.push(old.to_pem());
        pems.push(new_root);
        let needles = KeyNeedles::new(pems.iter().map(String::as_str));
        assert!(needles.keys() >= 8, "keys: {}", needles.keys());

        let answers = std::mem::take(&mut *answers.lock().expect("answers"));
        let kinds: std::collections::BTreeSet<&str> = answers
            .iter()
            .map(|(what, _)| what.split(' ').next().unwrap_or_default())
            .collect();
        for kind in [
            "GetState",
            "CreateCsr",
            "ApplyStep",
            "Probe",
            "RotationEvent",
            "StartRotation",
            "GetRotation",
        ] {
            assert!(kinds.contains(kind), "no {kind} recorded: {kinds:?}");
        }
        for (what, bytes) in answers.iter() {
            if let Some(found) = needles.find(bytes) {
                panic!("{what} carries private key material ({found})");
            }
        }
        eprintln!(
            "security: {} messages of a full rotation checked against {} private keys",
            answers.len(),
            needles.keys()
        );
        server.stop().await;
        executor.shutdown();
        planner.stop().await;
        gw.shutdown().await;
        m.shutdown().await;
    })
    .await;
}
