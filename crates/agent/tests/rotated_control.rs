//! MODEL §6: the control channel anchored in the rotated CA. The agents' control
//! servers use their data-plane credentials, and the test executor is the virtual
//! bundle node `@executor`, a client of every agent, taking its own steps locally
//! in their planned place. Every call uses a fresh connection, so each one proves the
//! control link still handshakes.

mod common;

use common::{Executor, bounded, root, start_agent};
use rollover_agent::ControlCreds;
use rollover_agent::machine::{Generation, credential_set, state};
use rollover_core::state::{Action, Mode};
use rollover_pki::{HeldLeaf, LiveCredentials, NodeKey, RootCa, Validity};

fn generation(ca: &RootCa, id: &str) -> Generation {
    let key = NodeKey::generate(Default::default()).unwrap();
    let cert = ca
        .issue_leaf(&key.csr_der(id).unwrap(), id, Validity::default())
        .unwrap();
    Generation {
        root: ca.cert_der().clone(),
        leaf: HeldLeaf::new(cert, key),
    }
}

#[tokio::test]
async fn the_executor_rotates_its_own_control_channel() {
    bounded(async {
        let dirs = tempfile::tempdir().unwrap();
        let (old, new) = (root(common::CA, 1), root(common::CA, 2));
        let a = start_agent(
            &dirs.path().join("a"),
            "a",
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

        let me = common::executor_id();
        let (mine_old, mine_new) = (generation(&old, me), generation(&new, me));
        let my_set = |done: usize| {
            credential_set(
                state(Mode::Bundle, false, done),
                &mine_old,
                Some(&mine_new),
                None,
                true,
            )
            .unwrap()
        };
        let exec = Executor {
            creds: LiveCredentials::new(my_set(0)).unwrap(),
            new_root: new,
            old_fingerprint: old.fingerprint(),
        };
        let old_only = LiveCredentials::new(my_set(0)).unwrap();

        // Links: @executor -> a, @executor -> m, a -> m. A safe order (MODEL §4).
        enum Who<'a> {
            Me(usize),
            Agent(&'a rollover_agent::AgentHandle, Action),
        }
        let plan = [
            Who::Me(1),
            Who::Agent(&a, Action::Stage),
            Who::Agent(&m, Action::Switch),
            Who::Agent(&a, Action::Present),
            Who::Me(2),
            Who::Agent(&a, Action::Retire),
            Who::Agent(&m, Action::Finalize),
            Who::Me(3),
        ];
        for (step_id, who) in (0u64..).zip(plan) {
            let what = match who {
                Who::Me(done) => {
                    exec.creds.swap(my_set(done)).unwrap();
                    format!("@executor step {done}")
                }
                Who::Agent(agent, action) => {
                    let r = exec.step(agent, step_id, action, false).await.unwrap();
                    assert!(r.applied);
                    format!("{action} {}", agent.id())
                }
            };
            for agent in [&a, &m] {
                exec.state(agent).await.unwrap_or_else(|e| {
                    panic!("after {what}: control link to {}: {e}", agent.id())
                });
            }
            let p = exec.probe(&a, &m).await;
            assert!(p.ok, "after {what}: a -> m: {}", p.error);
        }

        // The old control identity no longer gets in.
        let stale = Executor {
            creds: old_only,
            new_root: root(common::CA, 3),
            old_fingerprint: String::new(),
        };
        assert!(stale.state(&a).await.is_err());
        assert!(stale.state(&m).await.is_err());
        a.shutdown().await;
        m.shutdown().await;
    })
    .await;
}
