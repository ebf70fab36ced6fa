//! Node state per rotated CA and the handshake rule (MODEL §2, with bridges §11), and
//! the modes with their steps and the state each step leaves a node in (MODEL §3, with
//! single-identity nodes §12 and the `bridge`/`unbridge` steps §11).
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

    /// The set holding just `root`.
    pub fn of(root: Root) -> RootSet {
        RootSet(root.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

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

/// What a node trusts, holds, presents and sends for the rotated CA (MODEL §2, §11).
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
    /// Bridges the node appends after its leaf, as server and as client (MODEL §11),
    /// named by the generation whose subject and key they carry: `New` is `b_new`
    /// (issued by old), `Old` is `b_old` (issued by new).
    pub sends: RootSet,
}

const fn state(t_srv: RootSet, t_cli: RootSet, held: RootSet, presents: Root) -> NodeState {
    NodeState {
        t_srv,
        t_cli,
        held,
        presents,
        sends: RootSet::EMPTY,
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
        )?;
        if !self.sends.is_empty() {
            write!(f, " +bridges")?;
        }
        Ok(())
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

/// Acceptance (MODEL §11): a node trusting `trusted` accepts a leaf issued by `root`
/// that arrives with the bridges `bridges` iff it trusts `root`, or it supports chains
/// and a bridge carries `root`'s name and key under a root it trusts.
pub fn accepts(trusted: RootSet, chains: bool, root: Root, bridges: RootSet) -> bool {
    if trusted.contains(root) {
        return true;
    }
    let issuer = match root {
        Root::New => Root::Old,
        Root::Old => Root::New,
    };
    chains && bridges.contains(root) && trusted.contains(issuer)
}

/// The handshake rule with bridges (MODEL §11) between a client and a server that
/// both support chains: with every `sends` empty, MODEL §2's rule.
pub fn handshake(client: NodeState, server: NodeState) -> Result<(), HandshakeFailure> {
    handshake_chains(client, true, server, true)
}

/// The handshake rule with bridges (MODEL §11): `c -> s` succeeds iff `c` accepts
/// (`t_cli(c)`, `presents(s)`, `sends(s)`) and some `h ∈ held(c)` is accepted by `s`
/// under (`t_srv(s)`, `h`, `sends(c)`). `*_chains` says whether that end can verify a
/// peer through a bridge (topology `chains`).
pub fn handshake_chains(
    client: NodeState,
    client_chains: bool,
    server: NodeState,
    server_chains: bool,
) -> Result<(), HandshakeFailure> {
    let server_ok = accepts(client.t_cli, client_chains, server.presents, server.sends);
    let client_ok = [Root::Old, Root::New]
        .into_iter()
        .any(|h| client.held.contains(h) && accepts(server.t_srv, server_chains, h, client.sends));
    let server_rejected = (!server_ok).then_some((server.presents, client.t_cli));
    let client_rejected = (!client_ok).then_some((client.held, server.t_srv));
    if server_rejected.is_none() && client_rejected.is_none() {
        Ok(())
    } else {
        Err(HandshakeFailure {
            server_rejected,
            client_rejected,
        })
    }
}

/// Whether a node presents one certificate whichever peer it talks to (MODEL §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// Picks a held leaf from the server's CA hints (MODEL §2; rollover's own agents).
    #[default]
    Multi,
    /// Presents the same leaf as client and as server: `held = {presents}` (nginx,
    /// curl, most OpenSSL programs).
    Single,
}

impl Identity {
    /// Whether this is the default (`multi`), left out of written topologies.
    pub fn is_multi(&self) -> bool {
        *self == Identity::Multi
    }

    /// The name as written in topology files.
    pub fn as_str(self) -> &'static str {
        match self {
            Identity::Multi => "multi",
            Identity::Single => "single",
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything about a node that decides its states and how it verifies peers: its
/// mode, its identity and whether it supports chains (MODEL §3, §11, §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    /// How many roots it can hold at once.
    pub mode: Mode,
    /// One leaf for everything, or one picked per server.
    pub identity: Identity,
    /// Whether it can send bridges and verify a peer through one.
    pub chains: bool,
}

impl Profile {
    /// A multi-identity node of `mode` that supports chains (the defaults).
    pub const fn of(mode: Mode) -> Profile {
        Profile {
            mode,
            identity: Identity::Multi,
            chains: true,
        }
    }

    /// The node's steps, in order: its mode's, wrapped in `bridge`/`unbridge` when the
    /// plan bridges and the node supports chains (a `chains: false` node has no
    /// bridge steps: it could not send bridges).
    pub fn steps(self, bridged: bool) -> &'static [Action] {
        if bridged && self.chains {
            self.mode.bridged_steps()
        } else {
            self.mode.steps()
        }
    }

    /// The node's state after its first `done` steps (of [`Profile::steps`]).
    pub fn state_after(self, bridged: bool, done: usize) -> NodeState {
        let mut s = NodeState::INITIAL;
        for &action in self.steps(bridged).iter().take(done) {
            s = action.apply(s);
        }
        if self.identity == Identity::Single {
            // MODEL §12: as a client it presents the leaf it presents as a server.
            s.held = RootSet::of(s.presents);
        }
        s
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
    /// Bridge strategy, first step: send both bridges after the leaf (MODEL §11).
    Bridge,
    /// Bridge strategy, last step: stop sending bridges (MODEL §11).
    Unbridge,
}

const BUNDLE_STEPS: [Action; 3] = [Action::Stage, Action::Present, Action::Retire];
const ATOMIC_STEPS: [Action; 2] = [Action::Switch, Action::Finalize];
const BUNDLE_BRIDGED: [Action; 5] = [
    Action::Bridge,
    Action::Stage,
    Action::Present,
    Action::Retire,
    Action::Unbridge,
];
const ATOMIC_BRIDGED: [Action; 4] = [
    Action::Bridge,
    Action::Switch,
    Action::Finalize,
    Action::Unbridge,
];

/// The most steps any node takes in one plan.
pub const MAX_STEPS: usize = 5;

impl Mode {
    /// The steps of this mode, in the order a node takes them.
    pub fn steps(self) -> &'static [Action] {
        match self {
            Mode::Bundle => &BUNDLE_STEPS,
            Mode::Atomic => &ATOMIC_STEPS,
        }
    }

    /// The steps of this mode wrapped in `bridge` and `unbridge` (MODEL §11).
    pub fn bridged_steps(self) -> &'static [Action] {
        match self {
            Mode::Bundle => &BUNDLE_BRIDGED,
            Mode::Atomic => &ATOMIC_BRIDGED,
        }
    }

    /// The state of a multi-identity node of this mode after its first `done` mode
    /// steps (no bridges).
    pub fn state_after(self, done: usize) -> NodeState {
        Profile::of(self).state_after(false, done)
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
    /// The state a (multi-identity) node is in right after taking this step, from
    /// `before` (MODEL §3 table; `bridge`/`unbridge` only change `sends`, §11).
    pub fn apply(self, before: NodeState) -> NodeState {
        use RootSet as S;
        let sends = before.sends;
        let after = match self {
            Action::Stage => state(S::BOTH, S::BOTH, S::BOTH, Root::Old),
            Action::Present => state(S::BOTH, S::BOTH, S::BOTH, Root::New),
            Action::Retire | Action::Finalize => NodeState::FINAL,
            Action::Switch => state(S::NEW, S::BOTH, S::BOTH, Root::New),
            Action::Bridge => {
                return NodeState {
                    sends: S::BOTH,
                    ..before
                };
            }
            Action::Unbridge => {
                return NodeState {
                    sends: S::EMPTY,
                    ..before
                };
            }
        };
        NodeState { sends, ..after }
    }

    /// The mode this step belongs to; `None` for `bridge` and `unbridge`, which nodes
    /// of either mode take.
    pub fn mode(self) -> Option<Mode> {
        match self {
            Action::Stage | Action::Present | Action::Retire => Some(Mode::Bundle),
            Action::Switch | Action::Finalize => Some(Mode::Atomic),
            Action::Bridge | Action::Unbridge => None,
        }
    }

    /// Whether this is a `bridge` or `unbridge` step (MODEL §11).
    pub fn is_bridge(self) -> bool {
        matches!(self, Action::Bridge | Action::Unbridge)
    }

    /// The action's name as written in plan files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stage => "stage",
            Action::Present => "present",
            Action::Retire => "retire",
            Action::Switch => "switch",
            Action::Finalize => "finalize",
            Action::Bridge => "bridge",
            Action::Unbridge => "unbridge",
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
    fn single_identity_states_match_model_section_12() {
        let single = |mode| Profile {
            mode,
            identity: Identity::Single,
            chains: true,
        };
        let bundle: Vec<String> = (0..=3)
            .map(|i| single(Mode::Bundle).state_after(false, i).to_string())
            .collect();
        assert_eq!(
            bundle,
            [
                "{old}/{old}/{old}/old",
                "{old,new}/{old,new}/{old}/old",
                "{old,new}/{old,new}/{new}/new",
                "{new}/{new}/{new}/new"
            ]
        );
        let atomic: Vec<String> = (1..=2)
            .map(|i| single(Mode::Atomic).state_after(false, i).to_string())
            .collect();
        assert_eq!(
            atomic,
            ["{new}/{old,new}/{new}/new", "{new}/{new}/{new}/new"]
        );
    }

    #[test]
    fn bridge_steps_only_change_what_is_sent() {
        let p = Profile::of(Mode::Atomic);
        assert_eq!(
            p.steps(true),
            [
                Action::Bridge,
                Action::Switch,
                Action::Finalize,
                Action::Unbridge
            ]
        );
        assert_eq!(p.state_after(true, 1).sends, RootSet::BOTH);
        assert_eq!(
            p.state_after(true, 2).to_string(),
            "{new}/{old,new}/{old,new}/new +bridges"
        );
        assert_eq!(p.state_after(true, 4), NodeState::FINAL);
        let no_chains = Profile {
            chains: false,
            ..Profile::of(Mode::Bundle)
        };
        assert_eq!(no_chains.steps(true), Mode::Bundle.steps());
    }

    #[test]
    fn acceptance_through_bridges_needs_chain_support() {
        // b_new lets an old-trusting peer accept a new leaf, b_old the other way round.
        assert!(accepts(RootSet::OLD, true, Root::New, RootSet::BOTH));
        assert!(accepts(RootSet::NEW, true, Root::Old, RootSet::BOTH));
        assert!(!accepts(RootSet::OLD, false, Root::New, RootSet::BOTH));
        assert!(!accepts(RootSet::OLD, true, Root::New, RootSet::OLD));
        assert!(!accepts(RootSet::OLD, true, Root::New, RootSet::EMPTY));
        assert!(!accepts(RootSet::EMPTY, true, Root::New, RootSet::BOTH));
        assert!(accepts(RootSet::BOTH, false, Root::New, RootSet::EMPTY));
    }

    /// MODEL §11: once both ends have bridged and support chains, every pair of their
    /// mode states passes the rule, whatever their modes and identities.
    #[test]
    fn bridged_ends_with_chains_never_fail() {
        let profiles: Vec<Profile> = [Mode::Bundle, Mode::Atomic]
            .into_iter()
            .flat_map(|mode| {
                [Identity::Multi, Identity::Single].map(|identity| Profile {
                    mode,
                    identity,
                    chains: true,
                })
            })
            .collect();
        for &cp in &profiles {
            for &sp in &profiles {
                // After `bridge` and before `unbridge`.
                for i in 1..cp.steps(true).len() {
                    for j in 1..sp.steps(true).len() {
                        let (c, s) = (cp.state_after(true, i), sp.state_after(true, j));
                        assert!(handshake(c, s).is_ok(), "{cp:?}@{i}:{c} -> {sp:?}@{j}:{s}");
                    }
                }
                // Without bridges, some pair fails (else bridges would be pointless).
                let c = cp.state_after(false, cp.steps(false).len());
                let s = sp.state_after(false, 0);
                assert!(handshake(c, s).is_err());
                // With bridges but a `chains: false` client, the old server's leaf
                // under b_old is refused by a client that trusts only new.
                let c = cp.state_after(true, cp.steps(true).len() - 1);
                let s = sp.state_after(true, 1);
                assert!(handshake_chains(c, false, s, true).is_err());
            }
        }
    }

    #[test]
    fn failure_names_the_tls_side() {
        let err = handshake(NodeState::INITIAL, Mode::Bundle.state_after(2)).unwrap_err();
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
