//! The agent's step state machine (MODEL §3), pure: which step may come next, which
//! one may be undone, and which [`CredentialSet`] a node holds after its first `done`
//! steps, built from its old and new generation.
//!
//! The state table itself is core's ([`Mode::state_after`]); this module only turns
//! its root sets into certificates and keys, so the agent and the verifier can never
//! disagree on what a step means.

use rollover_core::state::{Action, Mode, NodeState, Root, RootSet};
use rollover_pki::{CertificateDer, CredentialSet, HeldLeaf};

/// One generation of the rotated CA as a node holds it: the root and the node's own
/// leaf from it (with the node's key).
#[derive(Clone, Debug)]
pub struct Generation {
    /// The root certificate (DER).
    pub root: CertificateDer<'static>,
    /// The node's leaf issued by `root`, with its key.
    pub leaf: HeldLeaf,
}

/// A step that may not be taken (or undone) now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The action belongs to the other mode.
    #[error("{mode} node cannot {action}")]
    WrongMode {
        /// The node's mode.
        mode: Mode,
        /// The refused action.
        action: Action,
    },
    /// The action is not the node's next step.
    #[error("{action} is out of order: {}", next_text(*.next))]
    OutOfOrder {
        /// The refused action.
        action: Action,
        /// The node's next step, `None` when all are done.
        next: Option<Action>,
    },
    /// The action is not the node's last applied step.
    #[error("cannot undo {action}: {}", last_text(*.last))]
    NotLast {
        /// The action asked to be undone.
        action: Action,
        /// The node's last applied step, `None` when none is.
        last: Option<Action>,
    },
    /// A state that needs the new generation, without one.
    #[error("no new generation to use for {0}")]
    NoNewGeneration(NodeState),
    /// A `bridge` or `unbridge` step (MODEL §11), which this agent cannot take yet.
    #[error("{0} steps (the bridge strategy) are not supported by this agent yet")]
    BridgeUnsupported(Action),
}

fn next_text(next: Option<Action>) -> String {
    match next {
        Some(action) => format!("the node's next step is {action}"),
        None => "the node has taken all its steps".into(),
    }
}

fn last_text(last: Option<Action>) -> String {
    match last {
        Some(action) => format!("the node's last applied step is {action}"),
        None => "the node has applied no step".into(),
    }
}

/// The node's next step after its first `done` steps (`None` once all are done).
pub fn next_action(mode: Mode, done: usize) -> Option<Action> {
    mode.steps().get(done).copied()
}

/// The node's last applied step after its first `done` steps.
pub fn last_action(mode: Mode, done: usize) -> Option<Action> {
    done.checked_sub(1)
        .and_then(|i| mode.steps().get(i))
        .copied()
}

/// Checks that `action` is the node's next step; returns the new number of steps done.
pub fn check_apply(mode: Mode, done: usize, action: Action) -> Result<usize, StepError> {
    if action.is_bridge() {
        return Err(StepError::BridgeUnsupported(action));
    }
    if action.mode() != Some(mode) {
        return Err(StepError::WrongMode { mode, action });
    }
    let next = next_action(mode, done);
    if next != Some(action) {
        return Err(StepError::OutOfOrder { action, next });
    }
    Ok(done + 1)
}

/// Checks that `action` is the node's last applied step; returns the new number of
/// steps done (the state before that step).
pub fn check_undo(mode: Mode, done: usize, action: Action) -> Result<usize, StepError> {
    if action.is_bridge() {
        return Err(StepError::BridgeUnsupported(action));
    }
    if action.mode() != Some(mode) {
        return Err(StepError::WrongMode { mode, action });
    }
    let last = last_action(mode, done);
    if last != Some(action) {
        return Err(StepError::NotLast { action, last });
    }
    Ok(done - 1)
}

/// MODEL §3's state of a node of `mode` after its first `done` steps.
pub fn state(mode: Mode, done: usize) -> NodeState {
    mode.state_after(done)
}

/// The credentials of a node in `state`: `t_srv`, `t_cli` and `held` list the old
/// generation before the new one; `presents` points at the leaf of `state.presents`.
pub fn credential_set(
    state: NodeState,
    old: &Generation,
    new: Option<&Generation>,
) -> Result<CredentialSet, StepError> {
    let pick = |root: Root| match root {
        Root::Old => Ok(old),
        Root::New => new.ok_or(StepError::NoNewGeneration(state)),
    };
    let members = |set: RootSet| -> Result<Vec<&Generation>, StepError> {
        [Root::Old, Root::New]
            .into_iter()
            .filter(|r| set.contains(*r))
            .map(pick)
            .collect()
    };
    let roots = |set: RootSet| -> Result<Vec<CertificateDer<'static>>, StepError> {
        Ok(members(set)?.into_iter().map(|g| g.root.clone()).collect())
    };
    let held_roots: Vec<Root> = [Root::Old, Root::New]
        .into_iter()
        .filter(|r| state.held.contains(*r))
        .collect();
    Ok(CredentialSet {
        server_roots: roots(state.t_srv)?,
        client_roots: roots(state.t_cli)?,
        held: members(state.held)?
            .into_iter()
            .map(|g| g.leaf.clone())
            .collect(),
        presents: held_roots.iter().position(|r| *r == state.presents),
        ..CredentialSet::default()
    })
}

#[cfg(test)]
mod tests {
    use rollover_core::state::handshake;
    use rollover_pki::{
        KeyAlg, LiveCredentials, NodeKey, RootCa, Validity, fingerprint, handshake_in_memory,
    };

    use super::*;

    fn root(generation: u32) -> RootCa {
        RootCa::generate(
            "corp-root",
            generation,
            KeyAlg::EcdsaP256,
            Validity::default(),
        )
        .unwrap()
    }

    fn generation(root: &RootCa, id: &str) -> Generation {
        let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
        let cert = root
            .issue_leaf(&key.csr_der(id).unwrap(), id, Validity::default())
            .unwrap();
        Generation {
            root: root.cert_der().clone(),
            leaf: HeldLeaf::new(cert, key),
        }
    }

    /// Which generations (by root) a list of certificates names.
    fn named(certs: &[CertificateDer<'static>], old: &RootCa, new: &RootCa) -> Vec<&'static str> {
        certs
            .iter()
            .map(|c| match fingerprint(c) {
                f if f == old.fingerprint() => "old",
                f if f == new.fingerprint() => "new",
                _ => "?",
            })
            .collect()
    }

    #[test]
    fn steps_go_in_order_and_only_in_their_mode() {
        assert_eq!(check_apply(Mode::Bundle, 0, Action::Stage), Ok(1));
        assert_eq!(check_apply(Mode::Bundle, 1, Action::Present), Ok(2));
        assert_eq!(check_apply(Mode::Bundle, 2, Action::Retire), Ok(3));
        assert_eq!(check_apply(Mode::Atomic, 0, Action::Switch), Ok(1));
        assert_eq!(check_apply(Mode::Atomic, 1, Action::Finalize), Ok(2));

        let err = check_apply(Mode::Atomic, 0, Action::Stage).unwrap_err();
        assert_eq!(err.to_string(), "atomic node cannot stage");
        let err = check_apply(Mode::Bundle, 0, Action::Switch).unwrap_err();
        assert_eq!(err.to_string(), "bundle node cannot switch");
        let err = check_apply(Mode::Bundle, 0, Action::Present).unwrap_err();
        assert_eq!(
            err.to_string(),
            "present is out of order: the node's next step is stage"
        );
        let err = check_apply(Mode::Bundle, 3, Action::Retire).unwrap_err();
        assert_eq!(
            err.to_string(),
            "retire is out of order: the node has taken all its steps"
        );
        assert!(check_apply(Mode::Bundle, 1, Action::Stage).is_err());
    }

    #[test]
    fn only_the_last_step_can_be_undone() {
        assert_eq!(check_undo(Mode::Bundle, 2, Action::Present), Ok(1));
        assert_eq!(check_undo(Mode::Atomic, 2, Action::Finalize), Ok(1));
        assert_eq!(check_undo(Mode::Atomic, 1, Action::Switch), Ok(0));
        let err = check_undo(Mode::Bundle, 2, Action::Stage).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot undo stage: the node's last applied step is present"
        );
        let err = check_undo(Mode::Bundle, 0, Action::Stage).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot undo stage: the node has applied no step"
        );
        assert!(matches!(
            check_undo(Mode::Atomic, 1, Action::Stage),
            Err(StepError::WrongMode { .. })
        ));
    }

    #[test]
    fn sets_follow_model_section_3() {
        let (old_ca, new_ca) = (root(1), root(2));
        let (old, new) = (generation(&old_ca, "n"), generation(&new_ca, "n"));
        let expect = |mode: Mode, done: usize, want: [&[&str]; 3], presents: &str| {
            let set = credential_set(state(mode, done), &old, Some(&new)).unwrap();
            assert_eq!(named(&set.server_roots, &old_ca, &new_ca), want[0]);
            assert_eq!(named(&set.client_roots, &old_ca, &new_ca), want[1]);
            let held: Vec<_> = set
                .held
                .iter()
                .map(|l| {
                    if l.is_issued_by(&old.root) {
                        "old"
                    } else {
                        "new"
                    }
                })
                .collect();
            assert_eq!(held, want[2], "{mode} after {done}");
            let shown = &set.held[set.presents.unwrap()];
            assert!(shown.is_issued_by(if presents == "old" {
                &old.root
            } else {
                &new.root
            }));
        };
        let (o, n, b): (&[&str], &[&str], &[&str]) = (&["old"], &["new"], &["old", "new"]);
        expect(Mode::Bundle, 0, [o, o, o], "old");
        expect(Mode::Bundle, 1, [b, b, b], "old");
        expect(Mode::Bundle, 2, [b, b, b], "new");
        expect(Mode::Bundle, 3, [n, n, n], "new");
        expect(Mode::Atomic, 0, [o, o, o], "old");
        expect(Mode::Atomic, 1, [n, b, b], "new");
        expect(Mode::Atomic, 2, [n, n, n], "new");

        // Before the rotation, no new generation is needed; after the first step it is.
        credential_set(state(Mode::Bundle, 0), &old, None).unwrap();
        assert!(matches!(
            credential_set(state(Mode::Bundle, 1), &old, None),
            Err(StepError::NoNewGeneration(_))
        ));
    }

    #[test]
    fn real_handshakes_between_states_follow_the_rule() {
        let (old_ca, new_ca) = (root(1), root(2));
        let states: Vec<(Mode, usize)> = [Mode::Bundle, Mode::Atomic]
            .into_iter()
            .flat_map(|m| (0..=m.steps().len()).map(move |d| (m, d)))
            .collect();
        let node = |id: &str, mode: Mode, done: usize| {
            let (old, new) = (generation(&old_ca, id), generation(&new_ca, id));
            LiveCredentials::new(credential_set(state(mode, done), &old, Some(&new)).unwrap())
                .unwrap()
        };
        let clients: Vec<_> = states.iter().map(|&(m, d)| node("c", m, d)).collect();
        let servers: Vec<_> = states.iter().map(|&(m, d)| node("s", m, d)).collect();
        let mut outcomes = [0; 2];
        for (ci, &(cm, cd)) in states.iter().enumerate() {
            for (si, &(sm, sd)) in states.iter().enumerate() {
                let want = handshake(state(cm, cd), state(sm, sd)).is_ok();
                let got = handshake_in_memory(
                    clients[ci].client_config(),
                    servers[si].server_config(),
                    "s",
                );
                assert_eq!(got.is_ok(), want, "{cm}@{cd} -> {sm}@{sd}: {got:?}");
                outcomes[usize::from(want)] += 1;
            }
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    }

    #[test]
    fn undo_returns_the_previous_set() {
        let (old_ca, new_ca) = (root(1), root(2));
        let (old, new) = (generation(&old_ca, "n"), generation(&new_ca, "n"));
        for mode in [Mode::Bundle, Mode::Atomic] {
            for (i, &action) in mode.steps().iter().enumerate() {
                let done = check_apply(mode, i, action).unwrap();
                let back = check_undo(mode, done, action).unwrap();
                assert_eq!(back, i);
                let before = credential_set(state(mode, i), &old, Some(&new)).unwrap();
                let after_undo = credential_set(state(mode, back), &old, Some(&new)).unwrap();
                assert_eq!(
                    named(&before.server_roots, &old_ca, &new_ca),
                    named(&after_undo.server_roots, &old_ca, &new_ca)
                );
                assert_eq!(before.presents, after_undo.presents);
                assert_eq!(before.held.len(), after_undo.held.len());
            }
        }
    }
}
