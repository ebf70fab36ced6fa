//! The agent's step state machine (MODEL §3, with the `bridge`/`unbridge` steps of
//! §11), pure: which step may come next, which one may be undone, and which
//! [`CredentialSet`] a node holds after its first `done` steps, built from its old and
//! new generation and the rotation's bridges.
//!
//! A rotation is *bridged* when its first step is `bridge`; its steps are then the
//! mode's wrapped in `bridge` and `unbridge`. The state table itself is core's
//! ([`Profile::state_after`]); this module only turns its root sets into certificates
//! and keys, so the agent and the verifier can never disagree on what a step means.

use rollover_core::state::{Action, Mode, NodeState, Profile, Root, RootSet};
use rollover_pki::{Bridges, CertificateDer, CredentialSet, HeldLeaf};

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
    /// A state that sends bridges, without them.
    #[error("no bridges to send in {0}")]
    NoBridges(NodeState),
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

/// The steps of a node of `mode` in a rotation, bridged or not.
pub fn steps(mode: Mode, bridged: bool) -> &'static [Action] {
    Profile::of(mode).steps(bridged)
}

/// The node's next step after its first `done` steps (`None` once all are done).
pub fn next_action(mode: Mode, bridged: bool, done: usize) -> Option<Action> {
    steps(mode, bridged).get(done).copied()
}

/// The node's last applied step after its first `done` steps.
pub fn last_action(mode: Mode, bridged: bool, done: usize) -> Option<Action> {
    done.checked_sub(1)
        .and_then(|i| steps(mode, bridged).get(i))
        .copied()
}

/// A step of the other mode is refused whatever the order (`bridge` and `unbridge`
/// belong to both).
fn check_mode(mode: Mode, action: Action) -> Result<(), StepError> {
    match action.mode() {
        Some(m) if m != mode => Err(StepError::WrongMode { mode, action }),
        _ => Ok(()),
    }
}

/// Checks that `action` is the node's next step; returns the new number of steps done.
pub fn check_apply(
    mode: Mode,
    bridged: bool,
    done: usize,
    action: Action,
) -> Result<usize, StepError> {
    check_mode(mode, action)?;
    let next = next_action(mode, bridged, done);
    if next != Some(action) {
        return Err(StepError::OutOfOrder { action, next });
    }
    Ok(done + 1)
}

/// Checks that `action` is the node's last applied step; returns the new number of
/// steps done (the state before that step).
pub fn check_undo(
    mode: Mode,
    bridged: bool,
    done: usize,
    action: Action,
) -> Result<usize, StepError> {
    check_mode(mode, action)?;
    let last = last_action(mode, bridged, done);
    if last != Some(action) {
        return Err(StepError::NotLast { action, last });
    }
    Ok(done - 1)
}

/// MODEL §3's (and §11's) state of a node of `mode` after its first `done` steps.
pub fn state(mode: Mode, bridged: bool, done: usize) -> NodeState {
    Profile::of(mode).state_after(bridged, done)
}

/// The credentials of a node in `state`: `t_srv`, `t_cli` and `held` list the old
/// generation before the new one; `presents` points at the leaf of `state.presents`;
/// `sends` lists `b_new` before `b_old`. `chains` is whether the node builds chains
/// (the agent's configuration).
pub fn credential_set(
    state: NodeState,
    old: &Generation,
    new: Option<&Generation>,
    bridges: Option<&Bridges>,
    chains: bool,
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
        sends: match (state.sends.is_empty(), bridges) {
            (true, _) => Vec::new(),
            (false, None) => return Err(StepError::NoBridges(state)),
            (false, Some(b)) => [(Root::New, &b.b_new), (Root::Old, &b.b_old)]
                .into_iter()
                .filter(|(r, _)| state.sends.contains(*r))
                .map(|(_, cert)| cert.clone())
                .collect(),
        },
        chains,
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
        assert_eq!(check_apply(Mode::Bundle, false, 0, Action::Stage), Ok(1));
        assert_eq!(check_apply(Mode::Bundle, false, 1, Action::Present), Ok(2));
        assert_eq!(check_apply(Mode::Bundle, false, 2, Action::Retire), Ok(3));
        assert_eq!(check_apply(Mode::Atomic, false, 0, Action::Switch), Ok(1));
        assert_eq!(check_apply(Mode::Atomic, false, 1, Action::Finalize), Ok(2));

        let err = check_apply(Mode::Atomic, false, 0, Action::Stage).unwrap_err();
        assert_eq!(err.to_string(), "atomic node cannot stage");
        let err = check_apply(Mode::Bundle, false, 0, Action::Switch).unwrap_err();
        assert_eq!(err.to_string(), "bundle node cannot switch");
        let err = check_apply(Mode::Bundle, false, 0, Action::Present).unwrap_err();
        assert_eq!(
            err.to_string(),
            "present is out of order: the node's next step is stage"
        );
        let err = check_apply(Mode::Bundle, false, 3, Action::Retire).unwrap_err();
        assert_eq!(
            err.to_string(),
            "retire is out of order: the node has taken all its steps"
        );
        assert!(check_apply(Mode::Bundle, false, 1, Action::Stage).is_err());
    }

    #[test]
    fn only_the_last_step_can_be_undone() {
        assert_eq!(check_undo(Mode::Bundle, false, 2, Action::Present), Ok(1));
        assert_eq!(check_undo(Mode::Atomic, false, 2, Action::Finalize), Ok(1));
        assert_eq!(check_undo(Mode::Atomic, false, 1, Action::Switch), Ok(0));
        let err = check_undo(Mode::Bundle, false, 2, Action::Stage).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot undo stage: the node's last applied step is present"
        );
        let err = check_undo(Mode::Bundle, false, 0, Action::Stage).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot undo stage: the node has applied no step"
        );
        assert!(matches!(
            check_undo(Mode::Atomic, false, 1, Action::Stage),
            Err(StepError::WrongMode { .. })
        ));
    }

    #[test]
    fn sets_follow_model_section_3() {
        let (old_ca, new_ca) = (root(1), root(2));
        let (old, new) = (generation(&old_ca, "n"), generation(&new_ca, "n"));
        let expect = |mode: Mode, done: usize, want: [&[&str]; 3], presents: &str| {
            let set =
                credential_set(state(mode, false, done), &old, Some(&new), None, true).unwrap();
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
        credential_set(state(Mode::Bundle, false, 0), &old, None, None, true).unwrap();
        assert!(matches!(
            credential_set(state(Mode::Bundle, false, 1), &old, None, None, true),
            Err(StepError::NoNewGeneration(_))
        ));
    }

    #[test]
    fn real_handshakes_between_states_follow_the_rule() {
        let (old_ca, new_ca) = (root(1), root(2));
        let bridges = Bridges::issue(&old_ca, &new_ca).unwrap();
        // Every state of both modes, in plain and bridged rotations (MODEL §3, §11).
        let states: Vec<(Mode, bool, usize)> = [Mode::Bundle, Mode::Atomic]
            .into_iter()
            .flat_map(|m| [false, true].map(|b| (m, b)))
            .flat_map(|(m, b)| (0..=steps(m, b).len()).map(move |d| (m, b, d)))
            .collect();
        let node = |id: &str, (mode, bridged, done): (Mode, bool, usize)| {
            let (old, new) = (generation(&old_ca, id), generation(&new_ca, id));
            let set = credential_set(
                state(mode, bridged, done),
                &old,
                Some(&new),
                Some(&bridges),
                true,
            )
            .unwrap();
            LiveCredentials::new(set).unwrap()
        };
        let clients: Vec<_> = states.iter().map(|&st| node("c", st)).collect();
        let servers: Vec<_> = states.iter().map(|&st| node("s", st)).collect();
        let mut outcomes = [0; 2];
        let mut through_bridges = 0;
        for (ci, &(cm, cb, cd)) in states.iter().enumerate() {
            for (si, &(sm, sb, sd)) in states.iter().enumerate() {
                let (c, s) = (state(cm, cb, cd), state(sm, sb, sd));
                let want = handshake(c, s).is_ok();
                let got = handshake_in_memory(
                    clients[ci].client_config(),
                    servers[si].server_config(),
                    "s",
                );
                assert_eq!(
                    got.is_ok(),
                    want,
                    "{cm}@{cd}{} -> {sm}@{sd}{}: {got:?}",
                    if cb { " bridged" } else { "" },
                    if sb { " bridged" } else { "" },
                );
                outcomes[usize::from(want)] += 1;
                let unbridged = |st: NodeState| NodeState {
                    sends: RootSet::EMPTY,
                    ..st
                };
                through_bridges +=
                    usize::from(want && handshake(unbridged(c), unbridged(s)).is_err());
            }
        }
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
        assert!(
            through_bridges > 0,
            "some handshakes must pass only through a bridge"
        );
    }

    #[test]
    fn bridged_rotations_wrap_the_mode_steps() {
        use Action::*;
        for (mode, first) in [(Mode::Bundle, Stage), (Mode::Atomic, Switch)] {
            assert_eq!(check_apply(mode, true, 0, Bridge), Ok(1));
            assert_eq!(check_apply(mode, true, 1, first), Ok(2));
            let last = steps(mode, true).len() - 1;
            assert_eq!(check_apply(mode, true, last, Unbridge), Ok(last + 1));
            assert_eq!(check_undo(mode, true, last + 1, Unbridge), Ok(last));
            assert_eq!(check_undo(mode, true, 1, Bridge), Ok(0));
            let err = check_apply(mode, true, 0, first).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{first} is out of order: the node's next step is bridge")
            );
            assert!(check_apply(mode, false, 0, Bridge).is_err());
        }
        let (old_ca, new_ca) = (root(1), root(2));
        let bridges = Bridges::issue(&old_ca, &new_ca).unwrap();
        let (old, new) = (generation(&old_ca, "n"), generation(&new_ca, "n"));
        // After `bridge` the node sends both bridges and needs no new generation yet;
        // after `unbridge` it sends none.
        let set = credential_set(
            state(Mode::Atomic, true, 1),
            &old,
            None,
            Some(&bridges),
            true,
        )
        .unwrap();
        assert_eq!(set.sends, [bridges.b_new.clone(), bridges.b_old.clone()]);
        let done = steps(Mode::Atomic, true).len();
        let end = credential_set(
            state(Mode::Atomic, true, done),
            &old,
            Some(&new),
            None,
            true,
        )
        .unwrap();
        assert!(end.sends.is_empty());
        assert!(matches!(
            credential_set(state(Mode::Bundle, true, 1), &old, None, None, true),
            Err(StepError::NoBridges(_))
        ));
    }

    #[test]
    fn undo_returns_the_previous_set() {
        let (old_ca, new_ca) = (root(1), root(2));
        let (old, new) = (generation(&old_ca, "n"), generation(&new_ca, "n"));
        for mode in [Mode::Bundle, Mode::Atomic] {
            for (i, &action) in mode.steps().iter().enumerate() {
                let done = check_apply(mode, false, i, action).unwrap();
                let back = check_undo(mode, false, done, action).unwrap();
                assert_eq!(back, i);
                let before =
                    credential_set(state(mode, false, i), &old, Some(&new), None, true).unwrap();
                let after_undo =
                    credential_set(state(mode, false, back), &old, Some(&new), None, true).unwrap();
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
