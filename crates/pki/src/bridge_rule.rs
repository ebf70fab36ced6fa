//! The MODEL §11 acceptance and handshake rules, checked with real rustls handshakes
//! against a direct transcription of the rule: every combination of bridged or not,
//! chains or not, old or new trust, old or new leaf, and every pair of §3 states.

use std::collections::BTreeSet;

use crate::testutil::{leaf, root};
use crate::{
    Bridges, CertificateDer, CredentialSet, HandshakeError, HeldLeaf, KeyAlg, LiveCredentials,
    RootCa, handshake_in_memory,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Gen {
    Old,
    New,
}
use Gen::{New, Old};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bridge {
    BNew,
    BOld,
}
use Bridge::{BNew, BOld};

/// §11 acceptance: a node trusting `trust` accepts a leaf issued by `root` arriving
/// with `bridges` iff it trusts the root, or it builds chains and a bridge connects
/// the root to one it trusts. `bridges` is what the sender effectively sends.
fn accepts(trust: &[Gen], root: Gen, bridges: &[Bridge], chains: bool) -> bool {
    trust.contains(&root)
        || chains
            && match root {
                New => bridges.contains(&BNew) && trust.contains(&Old),
                Old => bridges.contains(&BOld) && trust.contains(&New),
            }
}

/// A §3 state with the §11 fields.
#[derive(Clone, Debug)]
struct State {
    name: String,
    t_srv: Vec<Gen>,
    t_cli: Vec<Gen>,
    held: Vec<Gen>,
    presents: Gen,
    sends: Vec<Bridge>,
    chains: bool,
}

impl State {
    /// What the node puts after its leaf: nothing when it cannot build chains.
    fn sent(&self) -> &[Bridge] {
        if self.chains { &self.sends } else { &[] }
    }
}

/// §11 handshake rule for `c -> s`.
fn rule(c: &State, s: &State) -> bool {
    accepts(&c.t_cli, s.presents, s.sent(), c.chains)
        && c.held
            .iter()
            .any(|&h| accepts(&s.t_srv, h, c.sent(), s.chains))
}

/// A §3 state: name, `t_srv`, `t_cli`, `held`, `presents`.
type Base = (
    &'static str,
    &'static [Gen],
    &'static [Gen],
    &'static [Gen],
    Gen,
);

/// The §3 states (both modes) times `sends` (none, both bridges) times `chains`.
fn states() -> Vec<State> {
    let base: [Base; 6] = [
        ("initial", &[Old], &[Old], &[Old], Old),
        ("stage", &[Old, New], &[Old, New], &[Old, New], Old),
        ("present", &[Old, New], &[Old, New], &[Old, New], New),
        ("retire", &[New], &[New], &[New], New),
        ("switch", &[New], &[Old, New], &[Old, New], New),
        ("finalize", &[New], &[New], &[New], New),
    ];
    let mut out = Vec::new();
    for (name, t_srv, t_cli, held, presents) in base {
        for sends in [vec![], vec![BNew, BOld]] {
            for chains in [true, false] {
                let sends = sends.clone();
                out.push(State {
                    name: format!(
                        "{name}{}{}",
                        if sends.is_empty() { "" } else { "+bridged" },
                        if chains { "" } else { " (chains: false)" }
                    ),
                    t_srv: t_srv.to_vec(),
                    t_cli: t_cli.to_vec(),
                    held: held.to_vec(),
                    presents,
                    sends,
                    chains,
                });
            }
        }
    }
    out
}

/// Both root generations and their bridges, and leaves for each node from each root.
struct Pki {
    old: RootCa,
    new: RootCa,
    bridges: Bridges,
}

impl Pki {
    fn new(old_alg: KeyAlg, new_alg: KeyAlg) -> Self {
        let (old, new) = (root(1, old_alg), root(2, new_alg));
        let bridges = Bridges::issue(&old, &new).unwrap();
        Self { old, new, bridges }
    }

    fn root(&self, generation: Gen) -> &RootCa {
        match generation {
            Old => &self.old,
            New => &self.new,
        }
    }

    fn roots(&self, gens: &[Gen]) -> Vec<CertificateDer<'static>> {
        gens.iter()
            .map(|&g| self.root(g).cert_der().clone())
            .collect()
    }

    fn bridge(&self, bridge: Bridge) -> CertificateDer<'static> {
        match bridge {
            BNew => self.bridges.b_new.clone(),
            BOld => self.bridges.b_old.clone(),
        }
    }

    /// A node's leaves, one from each root.
    fn leaves(&self, id: &str, alg: KeyAlg) -> [(Gen, HeldLeaf); 2] {
        [
            (Old, leaf(&self.old, id, alg)),
            (New, leaf(&self.new, id, alg)),
        ]
    }

    fn set(&self, leaves: &[(Gen, HeldLeaf)], state: &State) -> CredentialSet {
        let held: Vec<_> = leaves
            .iter()
            .filter(|(g, _)| state.held.contains(g))
            .collect();
        CredentialSet {
            server_roots: self.roots(&state.t_srv),
            client_roots: self.roots(&state.t_cli),
            presents: held.iter().position(|(g, _)| *g == state.presents),
            held: held.into_iter().map(|(_, l)| l.clone()).collect(),
            sends: state.sends.iter().map(|&b| self.bridge(b)).collect(),
            chains: state.chains,
        }
    }
}

fn shake(c: &LiveCredentials, s: &LiveCredentials) -> Result<(), HandshakeError> {
    handshake_in_memory(c.client_config(), s.server_config(), "s").map(|_| ())
}

/// Every pair of states of a client and a server, each bridged or not and chaining or
/// not: a real handshake succeeds exactly when the §11 rule says so.
fn handshake_rule_table(old_alg: KeyAlg, new_alg: KeyAlg) {
    let pki = Pki::new(old_alg, new_alg);
    let (c_leaves, s_leaves) = (pki.leaves("c", old_alg), pki.leaves("s", new_alg));
    let states = states();
    let servers: Vec<_> = states
        .iter()
        .map(|st| LiveCredentials::new(pki.set(&s_leaves, st)).unwrap())
        .collect();
    let mut seen = BTreeSet::new();
    let mut bridged_only = 0;
    for cs in &states {
        let client = LiveCredentials::new(pki.set(&c_leaves, cs)).unwrap();
        for (ss, server) in states.iter().zip(&servers) {
            let expected = rule(cs, ss);
            let got = shake(&client, server);
            assert_eq!(
                got.is_ok(),
                expected,
                "client {} -> server {}: {got:?}",
                cs.name,
                ss.name
            );
            seen.insert(expected);
            let plain = |st: &State| State {
                sends: vec![],
                ..st.clone()
            };
            if expected && !rule(&plain(cs), &plain(ss)) {
                bridged_only += 1;
            }
        }
    }
    assert_eq!(seen.len(), 2, "the table must contain both outcomes");
    assert!(
        bridged_only > 0,
        "some links must pass only through a bridge"
    );
}

#[test]
fn bridged_handshake_rule_holds_for_every_pair_of_states() {
    handshake_rule_table(KeyAlg::EcdsaP256, KeyAlg::EcdsaP256);
}

#[test]
fn bridged_handshake_rule_holds_across_an_algorithm_change() {
    handshake_rule_table(KeyAlg::EcdsaP256, KeyAlg::Ed25519);
}

/// The acceptance rule alone, in both directions, for every trust set, leaf root,
/// subset of bridges sent, and chain support at either end.
#[test]
fn acceptance_rule_holds_for_every_trust_leaf_and_bridge_subset() {
    let alg = KeyAlg::EcdsaP256;
    let pki = Pki::new(alg, alg);
    let (c_leaves, s_leaves) = (pki.leaves("c", alg), pki.leaves("s", alg));
    let trusts: [&[Gen]; 3] = [&[Old], &[New], &[Old, New]];
    let subsets: [&[Bridge]; 4] = [&[], &[BNew], &[BOld], &[BNew, BOld]];
    let both = [Old, New];
    for trust in trusts {
        for root in [Old, New] {
            for bridges in subsets {
                for verifier_chains in [true, false] {
                    for sender_chains in [true, false] {
                        let sent: &[Bridge] = if sender_chains { bridges } else { &[] };
                        let expected = accepts(trust, root, sent, verifier_chains);
                        let sender = State {
                            name: String::new(),
                            t_srv: both.to_vec(),
                            t_cli: both.to_vec(),
                            held: vec![root],
                            presents: root,
                            sends: bridges.to_vec(),
                            chains: sender_chains,
                        };
                        let verifier = State {
                            name: String::new(),
                            t_srv: trust.to_vec(),
                            t_cli: trust.to_vec(),
                            held: both.to_vec(),
                            presents: Old,
                            sends: vec![],
                            chains: verifier_chains,
                        };
                        let live = |leaves: &[(Gen, HeldLeaf)], st: &State| {
                            LiveCredentials::new(pki.set(leaves, st)).unwrap()
                        };
                        let case = format!(
                            "trust {trust:?}, leaf {root:?}, bridges {bridges:?}, \
                             verifier chains {verifier_chains}, sender chains {sender_chains}"
                        );
                        // The server verifies the client (the client trusts both roots).
                        let client = live(&c_leaves, &sender);
                        let server = live(&s_leaves, &verifier);
                        let got = shake(&client, &server);
                        assert_eq!(got.is_ok(), expected, "server verifying: {case}: {got:?}");
                        // The client verifies the server (the server trusts both roots).
                        let client = live(&c_leaves, &verifier);
                        let server = live(&s_leaves, &sender);
                        let got = shake(&client, &server);
                        assert_eq!(got.is_ok(), expected, "client verifying: {case}: {got:?}");
                    }
                }
            }
        }
    }
}

/// A client holding only a new leaf, facing a server that trusts and hints only
/// `old`, offers its new leaf with `b_new` (whose issuer is the hinted name) and gets
/// in; without the bridge it does not.
#[test]
fn client_offers_a_leaf_that_verifies_only_through_a_bridge() {
    let alg = KeyAlg::EcdsaP256;
    let pki = Pki::new(alg, alg);
    let server_state = State {
        name: "initial".into(),
        t_srv: vec![Old],
        t_cli: vec![Old],
        held: vec![Old],
        presents: Old,
        sends: vec![],
        chains: true,
    };
    let server = LiveCredentials::new(pki.set(&pki.leaves("s", alg), &server_state)).unwrap();
    let mut client_state = State {
        name: "retired".into(),
        t_srv: vec![New],
        t_cli: vec![New, Old],
        held: vec![New],
        presents: New,
        sends: vec![BNew, BOld],
        chains: true,
    };
    let c_leaves = pki.leaves("c", alg);
    let client = LiveCredentials::new(pki.set(&c_leaves, &client_state)).unwrap();
    let outcome = handshake_in_memory(client.client_config(), server.server_config(), "s").unwrap();
    assert_eq!(outcome.client_identity.as_deref(), Some("c"));

    client_state.sends.clear();
    let client = LiveCredentials::new(pki.set(&c_leaves, &client_state)).unwrap();
    let err = shake(&client, &server).unwrap_err();
    assert!(matches!(err, HandshakeError::Server(_)), "{err}");
}

/// A set that does not build chains ignores the intermediates a peer sends, and sends
/// none itself even when told to.
#[test]
fn chains_false_neither_sends_nor_uses_bridges() {
    let alg = KeyAlg::EcdsaP256;
    let pki = Pki::new(alg, alg);
    let old_only = |chains, sends: Vec<Bridge>, held: Gen| State {
        name: String::new(),
        t_srv: vec![Old],
        t_cli: vec![Old],
        held: vec![held],
        presents: held,
        sends,
        chains,
    };
    let s = |st: &State| LiveCredentials::new(pki.set(&pki.leaves("s", alg), st)).unwrap();
    let c = |st: &State| LiveCredentials::new(pki.set(&pki.leaves("c", alg), st)).unwrap();
    // A chaining old-trusting client reaches a new-leaf server that sends b_new...
    let client = c(&old_only(true, vec![], Old));
    let mut server_state = old_only(true, vec![BNew, BOld], New);
    server_state.t_srv = vec![Old, New];
    shake(&client, &s(&server_state)).unwrap();
    // ...but not when the server cannot build chains (it sends nothing)...
    server_state.chains = false;
    assert!(shake(&client, &s(&server_state)).is_err());
    // ...nor when the client cannot (it ignores what the server sends).
    server_state.chains = true;
    let client = c(&old_only(false, vec![], Old));
    let err = shake(&client, &s(&server_state)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "client: invalid peer certificate: UnknownIssuer"
    );
}

/// A set whose `sends` holds something that is not a bridge is refused when swapped
/// in, and the previous set stays current.
#[test]
fn sends_must_hold_bridges() {
    let alg = KeyAlg::EcdsaP256;
    let pki = Pki::new(alg, alg);
    let state = State {
        name: String::new(),
        t_srv: vec![Old],
        t_cli: vec![Old],
        held: vec![Old],
        presents: Old,
        sends: vec![],
        chains: true,
    };
    let leaves = pki.leaves("s", alg);
    let live = LiveCredentials::new(pki.set(&leaves, &state)).unwrap();
    let good = live.current();
    for (what, cert) in [
        ("root", pki.old.cert_der().clone()),
        ("leaf", leaves[0].1.cert.clone()),
        ("garbage", CertificateDer::from(b"junk".to_vec())),
    ] {
        let mut bad = pki.set(&leaves, &state);
        bad.sends = vec![pki.bridges.b_new.clone(), cert];
        let err = live.swap(bad).unwrap_err();
        assert!(
            err.to_string().starts_with("bridge: sends #1:"),
            "{what}: {err}"
        );
    }
    assert!(std::sync::Arc::ptr_eq(&good, &live.current()));
}
