//! Node state per rotated CA and the handshake rule (MODEL §2), and the modes with
//! their steps and the state each step leaves a node in (MODEL §3).
//!
//! This table is the single source of truth the verifier reasons from; the planner
//! never reads it (it works from the prerequisites of MODEL §4 instead), so that a bug
//! in one cannot hide in the other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One generation of the rotated CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    /// The root being retired.
    Old,
    /// The root being introduced.
    New,
}

impl Root {
    fn bit(self) -> u8 {
        match self {
            Root::Old => 1,
            Root::New => 2,
        }
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Root::Old => "old",
            Root::New => "new",
        })
    }
}

/// A set of roots, stored as two bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RootSet(u8);

impl RootSet {
    /// No root at all.
    pub const EMPTY: RootSet = RootSet(0);
    /// Only the old root.
    pub const OLD: RootSet = RootSet(1);
    /// Only the new root.
    pub const NEW: RootSet = RootSet(2);
    /// Both roots.
    pub const BOTH: RootSet = RootSet(3);

    /// Whether `root` is in the set.
    pub fn contains(self, root: Root) -> bool {
        self.0 & root.bit() != 0
    }

    /// Whether the two sets share a root.
    pub fn intersects(self, other: RootSet) -> bool {
        self.0 & other.0 != 0
    }
}

impl fmt::Display for RootSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            0 => "{}",
            1 => "{old}",
            2 => "{new}",
            _ => "{old,new}",
        })
    }
}

/// What a node trusts, holds and presents for the rotated CA (MODEL §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeState {
    /// Roots trusted to verify clients (when serving).
    pub t_srv: RootSet,
    /// Roots trusted to verify servers (when connecting).
    pub t_cli: RootSet,
    /// Roots of the leaves the node holds.
    pub held: RootSet,
    /// Root of the leaf presented as a server.
    pub presents: Root,
}

const fn state(t_srv: RootSet, t_cli: RootSet, held: RootSet, presents: Root) -> NodeState {
    NodeState {
        t_srv,
        t_cli,
        held,
        presents,
    }
}

impl NodeState {
    /// Every target node before the rotation.
    pub const INITIAL: NodeState = state(RootSet::OLD, RootSet::OLD, RootSet::OLD, Root::Old);
    /// Every target node after the rotation.
    pub const FINAL: NodeState = state(RootSet::NEW, RootSet::NEW, RootSet::NEW, Root::New);
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.t_srv, self.t_cli, self.held, self.presents
        )
    }
}

/// Why a handshake fails under the rule of MODEL §2; both halves may apply at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// The server presents a leaf of a root the client does not trust.
    pub server_rejected: Option<(Root, RootSet)>,
    /// The client holds no leaf of a root the server trusts.
    pub client_rejected: Option<(RootSet, RootSet)>,
}

fn only(set: RootSet) -> String {
    match set {
        RootSet::OLD => "only old".to_string(),
        RootSet::NEW => "only new".to_string(),
        RootSet::EMPTY => "nothing".to_string(),
        both => both.to_string(),
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some((presented, trusted)) = self.server_rejected {
            parts.push(format!(
                "server presents {presented}, client trusts {}",
                only(trusted)
            ));
        }
        if let Some((held, trusted)) = self.client_rejected {
            parts.push(format!(
                "client holds {}, server trusts {}",
                only(held),
                only(trusted)
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The handshake rule: `c -> s` succeeds iff `presents(s) ∈ t_cli(c)` and
/// `held(c) ∩ t_srv(s) ≠ ∅`.
pub fn handshake(client: NodeState, server: NodeState) -> Result<(), HandshakeFailure> {
    let server_rejected =
        (!client.t_cli.contains(server.presents)).then_some((server.presents, client.t_cli));
    let client_rejected =
        (!client.held.intersects(server.t_srv)).then_some((client.held, server.t_srv));
    if server_rejected.is_none() && client_rejected.is_none() {
        Ok(())
    } else {
        Err(HandshakeFailure {
            server_rejected,
            client_rejected,
        })
    }
}

/// How many roots a node can hold at once (MODEL §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Can hold two roots and two leaves.
    #[default]
    Bundle,
    /// Constrained: one server identity and one client-verification root.
    Atomic,
}

/// One step a node takes during the rotation (MODEL §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Bundle: trust and hold both roots, still present old.
    Stage,
    /// Bundle: start presenting the new leaf.
    Present,
    /// Bundle: drop the old root and leaf.
    Retire,
    /// Atomic: trust only new clients, present new, verify servers with both.
    Switch,
    /// Atomic: drop the old root and leaf.
    Finalize,
}

const BUNDLE_STEPS: [Action; 3] = [Action::Stage, Action::Present, Action::Retire];
const ATOMIC_STEPS: [Action; 2] = [Action::Switch, Action::Finalize];

impl Mode {
    /// The steps of this mode, in the order a node takes them.
    pub fn steps(self) -> &'static [Action] {
        match self {
            Mode::Bundle => &BUNDLE_STEPS,
            Mode::Atomic => &ATOMIC_STEPS,
        }
    }

    /// The state of a node of this mode after its first `done` steps.
    pub fn state_after(self, done: usize) -> NodeState {
        match done.checked_sub(1).and_then(|i| self.steps().get(i)) {
            None if done == 0 => NodeState::INITIAL,
            None => NodeState::FINAL,
            Some(action) => action.state_after(),
        }
    }

    /// The mode's name as written in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bundle => "bundle",
            Mode::Atomic => "atomic",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// The state a node is in right after taking this step (MODEL §3 table).
    pub fn state_after(self) -> NodeState {
        use RootSet as S;
        match self {
            Action::Stage => state(S::BOTH, S::BOTH, S::BOTH, Root::Old),
            Action::Present => state(S::BOTH, S::BOTH, S::BOTH, Root::New),
            Action::Retire | Action::Finalize => NodeState::FINAL,
            Action::Switch => state(S::NEW, S::BOTH, S::BOTH, Root::New),
        }
    }

    /// The mode this step belongs to.
    pub fn mode(self) -> Mode {
        match self {
            Action::Stage | Action::Present | Action::Retire => Mode::Bundle,
            Action::Switch | Action::Finalize => Mode::Atomic,
        }
    }

    /// The action's name as written in plan files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stage => "stage",
            Action::Present => "present",
            Action::Retire => "retire",
            Action::Switch => "switch",
            Action::Finalize => "finalize",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(set: RootSet) -> Vec<Root> {
        [Root::Old, Root::New]
            .into_iter()
            .filter(|r| set.contains(*r))
            .collect()
    }

    /// The rule restated over explicit sets, independent of the bit tricks above.
    fn rule_by_sets(c: NodeState, s: NodeState) -> bool {
        let trusts_server = roots(c.t_cli).contains(&s.presents);
        let accepted = roots(c.held).iter().any(|r| roots(s.t_srv).contains(r));
        trusts_server && accepted
    }

    #[test]
    fn state_table_matches_model_section_3() {
        assert_eq!(
            Mode::Bundle.state_after(0).to_string(),
            "{old}/{old}/{old}/old"
        );
        let bundle: Vec<String> = (1..=3)
            .map(|i| Mode::Bundle.state_after(i).to_string())
            .collect();
        assert_eq!(
            bundle,
            [
                "{old,new}/{old,new}/{old,new}/old",
                "{old,new}/{old,new}/{old,new}/new",
                "{new}/{new}/{new}/new"
            ]
        );
        let atomic: Vec<String> = (1..=2)
            .map(|i| Mode::Atomic.state_after(i).to_string())
            .collect();
        assert_eq!(
            atomic,
            ["{new}/{old,new}/{old,new}/new", "{new}/{new}/{new}/new"]
        );
    }

    #[test]
    fn every_state_pair_of_every_mode_pair_follows_the_rule() {
        // Expected failures written out by hand from MODEL §2/§3: (client mode, client
        // steps done, server mode, server steps done).
        let expected_broken: &[(Mode, usize, Mode, usize)] = &[
            (Mode::Bundle, 0, Mode::Bundle, 2),
            (Mode::Bundle, 0, Mode::Bundle, 3),
            (Mode::Bundle, 3, Mode::Bundle, 0),
            (Mode::Bundle, 3, Mode::Bundle, 1),
            (Mode::Bundle, 0, Mode::Atomic, 1),
            (Mode::Bundle, 0, Mode::Atomic, 2),
            (Mode::Bundle, 3, Mode::Atomic, 0),
            (Mode::Atomic, 0, Mode::Bundle, 2),
            (Mode::Atomic, 0, Mode::Bundle, 3),
            (Mode::Atomic, 2, Mode::Bundle, 0),
            (Mode::Atomic, 2, Mode::Bundle, 1),
            (Mode::Atomic, 0, Mode::Atomic, 1),
            (Mode::Atomic, 0, Mode::Atomic, 2),
            (Mode::Atomic, 2, Mode::Atomic, 0),
        ];
        let mut checked = 0;
        for cm in [Mode::Bundle, Mode::Atomic] {
            for sm in [Mode::Bundle, Mode::Atomic] {
                for ci in 0..=cm.steps().len() {
                    for si in 0..=sm.steps().len() {
                        let (c, s) = (cm.state_after(ci), sm.state_after(si));
                        let ok = handshake(c, s).is_ok();
                        assert_eq!(ok, rule_by_sets(c, s), "{cm}:{c} -> {sm}:{s}");
                        let broken = expected_broken.contains(&(cm, ci, sm, si));
                        assert_eq!(ok, !broken, "{cm}@{ci}:{c} -> {sm}@{si}:{s}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 16 + 12 + 12 + 9);
    }

    #[test]
    fn failure_names_the_tls_side() {
        let err = handshake(NodeState::INITIAL, Action::Present.state_after()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "server presents new, client trusts only old"
        );
        let err = handshake(NodeState::FINAL, NodeState::INITIAL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "server presents old, client trusts only new; client holds only new, server trusts only old"
        );
    }
}
