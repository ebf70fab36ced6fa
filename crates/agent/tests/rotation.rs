//! Real agents on 127.0.0.1 driven through a rotation by an `@executor` test client
//! over mTLS, probing every link after every step.

mod common;

use common::{Executor, bounded, control_creds, root, start_agent};
use rollover_agent::{AgentHandle, ControlCreds};
use rollover_core::state::{Action, Mode};
use rollover_pki::{CredentialSet, HeldLeaf, LiveCredentials, NodeKey, Validity};
use rollover_transport::connect_tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Bundle `a` and `b`, atomic `m`; links `a -> b`, `a -> m`, `b -> m`, `m -> a`.
struct Fleet {
    _dirs: tempfile::TempDir,
    a: AgentHandle,
    b: AgentHandle,
    m: AgentHandle,
    exec: Executor,
    old: rollover_pki::RootCa,
}

impl Fleet {
    async fn start() -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let (old, new, control) = (root(common::CA, 1), root(common::CA, 2), root("control", 1));
        // Each agent gets its own control leaf (CN = its id) from the control CA.
        let start = |id: &'static str, mode| {
            let dir = dirs.path().join(id);
            let creds = ControlCreds::Separate(control_creds(id, &control));
            let old = &old;
            async move { start_agent(&dir, id, mode, old, creds).await }
        };
        let a = start("a", Mode::Bundle).await;
        let b = start("b", Mode::Bundle).await;
        let m = start("m", Mode::Atomic).await;
        let exec = Executor {
            creds: control_creds(common::executor_id(), &control),
            new_root: new,
            old_fingerprint: old.fingerprint(),
        };
        Self {
            _dirs: dirs,
            a,
            b,
            m,
            exec,
            old,
        }
    }

    fn links(&self) -> [(&AgentHandle, &AgentHandle); 4] {
        [
            (&self.a, &self.b),
            (&self.a, &self.m),
            (&self.b, &self.m),
            (&self.m, &self.a),
        ]
    }

    /// Probes every link; all must be up.
    async fn all_links_up(&self, after: &str) {
        for (c, s) in self.links() {
            let p = self.exec.probe(c, s).await;
            assert!(p.ok, "after {after}: {} -> {}: {}", c.id(), s.id(), p.error);
            assert_eq!(p.peer_presented_fingerprint.len(), 64);
            assert_eq!(p.local_presented_fingerprint.len(), 64);
        }
    }
}

#[tokio::test]
async fn full_rotation_keeps_every_link_up() {
    bounded(async {
        let f = Fleet::start().await;
        f.all_links_up("start").await;

        // A safe order for these links (MODEL §4).
        let plan: [(&AgentHandle, Action); 8] = [
            (&f.a, Action::Stage),
            (&f.b, Action::Stage),
            (&f.m, Action::Switch),
            (&f.a, Action::Present),
            (&f.b, Action::Present),
            (&f.a, Action::Retire),
            (&f.b, Action::Retire),
            (&f.m, Action::Finalize),
        ];
        for (step_id, (agent, action)) in (0u64..).zip(plan) {
            let before = agent.applied_count();
            let r = f.exec.step(agent, step_id, action, false).await.unwrap();
            assert!(r.applied, "{action} on {}", agent.id());
            assert_eq!(agent.applied_count(), before + 1);
            assert_eq!(r.state.unwrap(), agent.state());
            f.all_links_up(&format!("{action} {}", agent.id())).await;

            // A repeat changes nothing and is not counted.
            let again = f.exec.step(agent, step_id, action, false).await.unwrap();
            assert!(!again.applied);
            assert_eq!(agent.applied_count(), before + 1);
        }

        // Every node now trusts, holds and presents the new root only.
        let new_fp = f.exec.new_root.fingerprint();
        for agent in [&f.a, &f.b, &f.m] {
            let state = f.exec.state(agent).await.unwrap();
            assert_eq!(state.server_roots, vec![new_fp.clone()], "{}", agent.id());
            assert_eq!(state.client_roots, vec![new_fp.clone()]);
            assert_eq!(state.held_leaves.len(), 1);
            assert_eq!(state.held_leaves[0].issuer_root_fingerprint, new_fp);
            assert_eq!(
                state.presented_leaf_fingerprint,
                state.held_leaves[0].fingerprint
            );
            assert_eq!(
                state.data_address.as_deref(),
                Some(&*agent.data_addr().to_string())
            );
            assert!(agent.metrics().data_handshakes_ok > 0);
            // What CheckFleet compares with the topology: chains, one leaf per server.
            assert_eq!(state.chains, Some(true));
            assert_eq!(state.identity(), rollover_proto::v1::NodeIdentity::Multi);
        }
        let m = f.a.metrics();
        assert!(m.probes_ok >= 16 && m.probes_failed == 0, "{m:?}");
        assert_eq!(m.applies, 3);

        // A client holding only an old-root leaf is refused by the data plane (it
        // trusts both roots, so only the server's refusal can stop it).
        let key = NodeKey::generate(Default::default()).unwrap();
        let old_leaf = f
            .old
            .issue_leaf(
                &key.csr_der("intruder").unwrap(),
                "intruder",
                Validity::default(),
            )
            .unwrap();
        let intruder = LiveCredentials::new(CredentialSet {
            server_roots: vec![],
            client_roots: vec![f.old.cert_der().clone(), f.exec.new_root.cert_der().clone()],
            held: vec![HeldLeaf::new(old_leaf, key)],
            presents: None,
            ..CredentialSet::default()
        })
        .unwrap();
        let refused_before = f.b.metrics().data_handshakes_failed;
        let addr = f.b.data_addr().to_string();
        let outcome = async {
            let mut tls = connect_tls(&addr, intruder.client_config(), "b").await?;
            tls.write_all(b"ping\n").await?;
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await?;
            Ok::<_, Box<dyn std::error::Error>>(buf)
        }
        .await;
        match outcome {
            Err(e) => assert!(e.to_string().contains("alert"), "{e}"),
            Ok(buf) => assert_ne!(buf, b"pong\n", "old-root client got an answer"),
        }
        assert_eq!(f.b.metrics().data_handshakes_failed, refused_before + 1);

        f.a.shutdown().await;
        f.b.shutdown().await;
        f.m.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn steps_out_of_mode_or_order_are_refused() {
    bounded(async {
        let f = Fleet::start().await;
        let err = f
            .exec
            .step(&f.m, 0, Action::Stage, false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(err.message(), "atomic node cannot stage");
        let err = f
            .exec
            .step(&f.a, 0, Action::Switch, false)
            .await
            .unwrap_err();
        assert_eq!(err.message(), "bundle node cannot switch");
        let err = f
            .exec
            .step(&f.a, 1, Action::Present, false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("out of order"), "{err}");
        let err = f
            .exec
            .step(&f.a, 1, Action::Present, true)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert_eq!(f.a.applied_count(), 0);
        assert_eq!(f.m.applied_count(), 0);

        // A leaf for a key the node never made is refused.
        let key = NodeKey::generate(Default::default()).unwrap();
        let foreign = f
            .exec
            .new_root
            .issue_leaf(&key.csr_der("a").unwrap(), "a", Validity::default())
            .unwrap();
        let mut client = f.exec.client(&f.a);
        let err = client
            .apply_step(rollover_proto::v1::ApplyStepRequest {
                rotation_id: common::ROTATION.into(),
                step_id: 0,
                action: rollover_proto::v1::StepAction::Stage.into(),
                new_root_der: f.exec.new_root.cert_der().to_vec(),
                issued_leaf_der: foreign.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("CreateCsr"), "{err}");

        // A wrong old root fingerprint is refused.
        let wrong = Executor {
            creds: f.exec.creds.clone(),
            new_root: root(common::CA, 2),
            old_fingerprint: "00".repeat(32),
        };
        let err = wrong.step(&f.a, 0, Action::Stage, false).await.unwrap_err();
        assert!(err.message().contains("old_root_fingerprint"), "{err}");
        assert_eq!(f.a.applied_count(), 0);
    })
    .await;
}

#[tokio::test]
async fn control_calls_from_other_identities_are_refused() {
    bounded(async {
        let dirs = tempfile::tempdir().unwrap();
        let (old, new, control) = (root(common::CA, 1), root(common::CA, 2), root("control", 1));
        let agent = start_agent(
            &dirs.path().join("a"),
            "a",
            Mode::Bundle,
            &old,
            ControlCreds::Separate(control_creds("a", &control)),
        )
        .await;
        let mallory = Executor {
            creds: control_creds("mallory", &control),
            new_root: new,
            old_fingerprint: old.fingerprint(),
        };
        let err = mallory.state(&agent).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        // Health (like reflection) answers any client of the control CA.
        let channel = rollover_transport::tls_channel(
            &agent.control_addr().to_string(),
            mallory.creds.clone(),
            "a",
        )
        .unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "rollover.v1.AgentService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
        let err = mallory
            .step(&agent, 0, Action::Stage, false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        assert_eq!(agent.applied_count(), 0);

        // A client whose leaf comes from another CA does not get through the
        // handshake (it trusts the agent, so only the agent's refusal can stop it).
        let mut rogue_set = rollover_agent::single_root_credentials(
            common::executor_id(),
            &root("control", 9),
            Validity::default(),
        )
        .unwrap();
        rogue_set.client_roots = vec![control.cert_der().clone()];
        let outsider = Executor {
            creds: LiveCredentials::new(rogue_set).unwrap(),
            new_root: root(common::CA, 2),
            old_fingerprint: String::new(),
        };
        let err = outsider.state(&agent).await.unwrap_err();
        assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");
        assert!(agent.metrics().control_handshakes_failed >= 1);
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn undo_returns_the_previous_state() {
    bounded(async {
        let f = Fleet::start().await;
        let initial = f.a.state();
        f.exec.step(&f.a, 0, Action::Stage, false).await.unwrap();
        let staged = f.a.state();
        f.exec.step(&f.a, 3, Action::Present, false).await.unwrap();

        // Only the last step can be undone.
        let err = f.exec.step(&f.a, 0, Action::Stage, true).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

        let r = f.exec.step(&f.a, 3, Action::Present, true).await.unwrap();
        assert!(r.applied);
        let mut back = r.state.unwrap();
        assert_eq!(back.applied_step_count, 3);
        back.applied_step_count = staged.applied_step_count;
        assert_eq!(back, staged);
        // The undo is idempotent too.
        assert!(
            !f.exec
                .step(&f.a, 3, Action::Present, true)
                .await
                .unwrap()
                .applied
        );

        let mut back = f
            .exec
            .step(&f.a, 0, Action::Stage, true)
            .await
            .unwrap()
            .state
            .unwrap();
        back.applied_step_count = 0;
        assert_eq!(back, initial);
        assert_eq!(f.a.applied_count(), 4);

        // The rotation can be taken up again, and finished, and even its retire undone
        // (the old generation is kept until the next rotation starts).
        for (id, action) in [
            (0, Action::Stage),
            (3, Action::Present),
            (5, Action::Retire),
        ] {
            assert!(f.exec.step(&f.a, id, action, false).await.unwrap().applied);
        }
        let retired = f.a.state();
        assert_eq!(retired.server_roots, [f.exec.new_root.fingerprint()]);
        let r = f.exec.step(&f.a, 5, Action::Retire, true).await.unwrap();
        let mut presenting = r.state.unwrap();
        assert_eq!(presenting.server_roots.len(), 2);
        assert_eq!(presenting.held_leaves.len(), 2);
        presenting.applied_step_count = 0;
        assert_eq!(
            presenting.presented_leaf_fingerprint,
            retired.presented_leaf_fingerprint
        );
    })
    .await;
}

#[tokio::test]
async fn a_restarted_agent_keeps_its_state() {
    bounded(async {
        let node = common::LoneAgent::new();
        let (dir, exec) = (&node.dir, &node.exec);
        let agent = node.start().await;
        exec.step(&agent, 0, Action::Stage, false).await.unwrap();
        exec.step(&agent, 3, Action::Present, false).await.unwrap();
        let before = agent.state();
        agent.shutdown().await;

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(dir), 0o700);
            assert_eq!(mode(&dir.join("keys")), 0o700);
            assert_eq!(mode(&dir.join("node.json")), 0o600);
            assert_eq!(mode(&dir.join("control-key.pem")), 0o600);
            let keys: Vec<_> = std::fs::read_dir(dir.join("keys")).unwrap().collect();
            assert_eq!(keys.len(), 2, "old and new key, nothing else");
            for key in keys {
                assert_eq!(mode(&key.unwrap().path()), 0o600);
            }
        }

        let agent = node.start().await;
        let mut after = exec.state(&agent).await.unwrap();
        assert_eq!(after.data_address, Some(agent.data_addr().to_string()));
        after.data_address = before.data_address.clone();
        assert_eq!(after, before);
        assert_eq!(agent.applied_count(), 2);
        // Applied step ids survive: repeats are still repeats.
        assert!(
            !exec
                .step(&agent, 3, Action::Present, false)
                .await
                .unwrap()
                .applied
        );
        // The keys survive: the rotation goes on.
        assert!(
            exec.step(&agent, 5, Action::Retire, false)
                .await
                .unwrap()
                .applied
        );
        assert_eq!(agent.applied_count(), 3);

        // A mismatching id or mode is refused.
        let err = rollover_agent::Agent::start(rollover_agent::AgentConfig {
            id: "a".into(),
            mode: Mode::Atomic,
            state_dir: dir.clone(),
            state_files: None,
            data_listen: common::localhost(),
            control_listen: common::localhost(),
            control: ControlCreds::StateDir,
            limits: rollover_agent::DEFAULT_LIMITS,
            chains: true,
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("mode"), "{err}");
        agent.shutdown().await;
    })
    .await;
}
