//! An agent exporting its credentials for a workload (MODEL §12): files at start
//! and after every step, the reload command after them, a failed reload failing
//! the step and leaving the node (and its files) as they were, and probes that
//! present the workload's single identity.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use rollover_agent::export::{CERT_FILE, KEY_FILE, TRUST_CLIENTS_FILE, TRUST_SERVERS_FILE};
use rollover_agent::{Agent, AgentConfig, AgentHandle, ControlCreds, Export};
use rollover_core::state::{Action, Mode};
use rollover_pki::{RootCa, Validity, fingerprint};

fn certs(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    pem::parse_many(text)
        .unwrap()
        .iter()
        .map(|p| fingerprint(p.contents()))
        .collect()
}

struct Exported {
    agent: AgentHandle,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Exported {
    fn file(&self, name: &str) -> std::path::PathBuf {
        self.out.join(name)
    }

    fn reloads(&self) -> usize {
        fs::read_to_string(self.file("reloads.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

/// Node `id` exporting to `<dir>/out`; its reload command appends to
/// `out/reloads.log`, and fails with a message on stderr while `out/fail` exists.
async fn exported(id: &str, old: &RootCa, control: ControlCreds) -> Exported {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    rollover_agent::bootstrap(&state, id, Mode::Bundle, old, Validity::default()).unwrap();
    let export = Export::new(&out).reload(
        "if [ -e \"$ROLLOVER_EXPORT_DIR/fail\" ]; then echo 'nginx: [emerg] cannot load certificate' >&2; exit 1; fi; \
         echo reloaded >> \"$ROLLOVER_EXPORT_DIR/reloads.log\"",
    );
    let agent = Agent::start_with_export(
        AgentConfig {
            id: id.into(),
            mode: Mode::Bundle,
            state_dir: state,
            state_files: None,
            data_listen: localhost(),
            control_listen: localhost(),
            control,
            limits: rollover_agent::DEFAULT_LIMITS,
            chains: true,
        },
        Some(export),
    )
    .await
    .unwrap();
    Exported {
        agent,
        out,
        _dir: dir,
    }
}

#[tokio::test]
async fn files_follow_every_step_and_a_failed_reload_fails_the_step_and_changes_nothing() {
    bounded(async {
        let control_ca = root("control", 1);
        let (old, new) = (root(CA, 1), root(CA, 2));
        let node = exported(
            "web-1",
            &old,
            ControlCreds::Separate(control_creds("web-1", &control_ca)),
        )
        .await;
        let (o, n) = (old.fingerprint(), new.fingerprint());
        let exec = Executor {
            creds: control_creds(executor_id(), &control_ca),
            new_root: new,
            old_fingerprint: old.fingerprint(),
        };
        // At start: the old generation, and one reload.
        assert_eq!(certs(&node.file(TRUST_CLIENTS_FILE)), vec![o.clone()]);
        assert_eq!(certs(&node.file(TRUST_SERVERS_FILE)), vec![o.clone()]);
        let first_leaf = certs(&node.file(CERT_FILE));
        assert_eq!(first_leaf.len(), 1);
        assert_eq!(node.reloads(), 1);
        // It tells CheckFleet that it presents one leaf to every peer (MODEL §12).
        let state = exec.state(&node.agent).await.unwrap();
        assert_eq!(
            state.identity(),
            rollover_proto::v1::NodeIdentity::Single,
            "{state:?}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(node.file(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        exec.step(&node.agent, 1, Action::Stage, false)
            .await
            .unwrap();
        assert_eq!(
            certs(&node.file(TRUST_CLIENTS_FILE)),
            vec![o.clone(), n.clone()]
        );
        assert_eq!(
            certs(&node.file(TRUST_SERVERS_FILE)),
            vec![o.clone(), n.clone()]
        );
        assert_eq!(
            certs(&node.file(CERT_FILE)),
            first_leaf,
            "stage keeps presenting the old leaf"
        );
        assert_eq!(node.reloads(), 2);

        // A reload that exits 1: the step fails with its stderr, the node and its
        // files stay as they were.
        fs::write(node.file("fail"), "").unwrap();
        let key_before = fs::read(node.file(KEY_FILE)).unwrap();
        let applied = node.agent.applied_count();
        let err = exec
            .step(&node.agent, 2, Action::Present, false)
            .await
            .unwrap_err();
        assert!(err.message().contains("exited with status 1"), "{err:?}");
        assert!(
            err.message()
                .contains("nginx: [emerg] cannot load certificate"),
            "{err:?}"
        );
        assert_eq!(node.agent.applied_count(), applied);
        assert_eq!(certs(&node.file(CERT_FILE)), first_leaf);
        assert_eq!(fs::read(node.file(KEY_FILE)).unwrap(), key_before);
        assert_eq!(node.reloads(), 2);

        // Fixed: the same step applies, the new leaf and its key are exported.
        fs::remove_file(node.file("fail")).unwrap();
        exec.step(&node.agent, 2, Action::Present, false)
            .await
            .unwrap();
        let new_leaf = certs(&node.file(CERT_FILE));
        assert_ne!(new_leaf, first_leaf);
        assert_eq!(node.agent.state().presented_leaf_fingerprint, new_leaf[0]);
        assert_ne!(fs::read(node.file(KEY_FILE)).unwrap(), key_before);
        assert_eq!(node.reloads(), 3);

        exec.step(&node.agent, 3, Action::Retire, false)
            .await
            .unwrap();
        assert_eq!(certs(&node.file(TRUST_CLIENTS_FILE)), vec![n.clone()]);
        assert_eq!(certs(&node.file(TRUST_SERVERS_FILE)), vec![n.clone()]);
        assert_eq!(node.reloads(), 4);

        // Undo rewrites them too.
        exec.step(&node.agent, 3, Action::Retire, true)
            .await
            .unwrap();
        assert_eq!(certs(&node.file(TRUST_CLIENTS_FILE)), vec![o, n]);
        assert_eq!(node.reloads(), 5);
    })
    .await;
}

#[tokio::test]
async fn probes_from_an_exported_node_present_only_the_workloads_leaf() {
    bounded(async {
        let control_ca = root("control", 1);
        let (old, new) = (root(CA, 1), root(CA, 2));
        let separate = |id: &str| ControlCreds::Separate(control_creds(id, &control_ca));
        let workload = exported("curl-1", &old, separate("curl-1")).await;
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let multi = start_agent(
            dirs[0].path(),
            "app-1",
            Mode::Bundle,
            &old,
            separate("app-1"),
        )
        .await;
        let server = start_agent(
            dirs[1].path(),
            "web-1",
            Mode::Bundle,
            &old,
            separate("web-1"),
        )
        .await;
        let exec = Executor {
            creds: control_creds(executor_id(), &control_ca),
            new_root: new,
            old_fingerprint: old.fingerprint(),
        };
        // Both clients stage (they hold both leaves, present the old one); the
        // server goes all the way to the new root only.
        for client in [&workload.agent, &multi] {
            exec.step(client, 1, Action::Stage, false).await.unwrap();
        }
        for (i, action) in [Action::Stage, Action::Present, Action::Retire]
            .into_iter()
            .enumerate()
        {
            exec.step(&server, i as u64 + 1, action, false)
                .await
                .unwrap();
        }
        // A multi-identity client picks its new leaf from the server's hints...
        let answer = exec.probe(&multi, &server).await;
        assert!(answer.ok, "{answer:?}");
        // ...a workload cannot: it presents its one (old) leaf, and is refused.
        let answer = exec.probe(&workload.agent, &server).await;
        assert!(!answer.ok, "{answer:?}");
        assert_eq!(
            answer.local_presented_fingerprint,
            certs(&workload.file(CERT_FILE))[0]
        );
        // Once it presents the new leaf, it is accepted.
        exec.step(&workload.agent, 2, Action::Present, false)
            .await
            .unwrap();
        let answer = exec.probe(&workload.agent, &server).await;
        assert!(answer.ok, "{answer:?}");
    })
    .await;
}
