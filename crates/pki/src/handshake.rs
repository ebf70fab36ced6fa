//! Sans-IO handshakes: a rustls client and server driven against each other through
//! in-memory buffers, for tests, the simulator and benchmarks.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::names::{checked_dns_name, node_id_from_cert};

/// Flights exchanged before giving up; a TLS 1.3 handshake needs two round trips.
const MAX_ROUNDS: usize = 8;

/// A completed handshake: who each side proved to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeOutcome {
    /// Node id (CN) of the certificate the server presented.
    pub server_identity: Option<String>,
    /// Node id (CN) of the certificate the client presented.
    pub client_identity: Option<String>,
}

/// A failed handshake: the side that failed first and rustls' reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandshakeError {
    /// The client refused the handshake (e.g. it does not trust the server's leaf).
    #[error("client: {0}")]
    Client(rustls::Error),
    /// The server refused the handshake (e.g. it does not trust the client's leaf).
    #[error("server: {0}")]
    Server(rustls::Error),
    /// The server id has no valid DNS name (see [`crate::node_dns_name`]).
    #[error("invalid server id {0:?}")]
    ServerId(String),
    /// Neither side failed, but the handshake did not finish either.
    #[error("handshake did not complete within {MAX_ROUNDS} rounds")]
    Stalled,
}

/// Runs one full handshake between `client` and `server`, the client expecting the
/// server to be `server_id` (verified as `node_dns_name(server_id)`).
pub fn handshake_in_memory(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    server_id: &str,
) -> Result<HandshakeOutcome, HandshakeError> {
    connect_in_memory(client, server, server_id).map(|(outcome, _, _)| outcome)
}

/// [`handshake_in_memory`], also returning the established client and server ends.
pub(crate) fn connect_in_memory(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    server_id: &str,
) -> Result<(HandshakeOutcome, Connection, Connection), HandshakeError> {
    let name =
        checked_dns_name(server_id).map_err(|_| HandshakeError::ServerId(server_id.to_owned()))?;
    let mut c: Connection = ClientConnection::new(client, ServerName::DnsName(name))
        .map_err(HandshakeError::Client)?
        .into();
    let mut s: Connection = ServerConnection::new(server)
        .map_err(HandshakeError::Server)?
        .into();
    for _ in 0..MAX_ROUNDS {
        if !c.is_handshaking() && !s.is_handshaking() {
            let outcome = HandshakeOutcome {
                server_identity: peer_identity(&c),
                client_identity: peer_identity(&s),
            };
            return Ok((outcome, c, s));
        }
        transfer(&mut c, &mut s).map_err(HandshakeError::Server)?;
        transfer(&mut s, &mut c).map_err(HandshakeError::Client)?;
    }
    Err(HandshakeError::Stalled)
}

/// Moves everything `from` wants to send into `to`, which processes it. The error is
/// the receiving side's.
pub(crate) fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut wire = Vec::new();
    while from.wants_write() {
        let written = from
            .write_tls(&mut wire)
            .map_err(|e| rustls::Error::General(format!("write: {e}")))?;
        if written == 0 {
            break;
        }
    }
    let mut rd = wire.as_slice();
    while !rd.is_empty() {
        let read = to
            .read_tls(&mut rd)
            .map_err(|e| rustls::Error::General(format!("read: {e}")))?;
        to.process_new_packets()?;
        if read == 0 {
            break;
        }
    }
    Ok(())
}

fn peer_identity(conn: &Connection) -> Option<String> {
    node_id_from_cert(conn.peer_certificates()?.first()?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::testutil::{leaf, root};
    use crate::{CredentialSet, HeldLeaf, KeyAlg, LiveCredentials, RootCa};

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Gen {
        Old,
        New,
    }
    use Gen::{New, Old};

    /// A MODEL §3 state: `t_srv / t_cli / held / presents`.
    struct State {
        name: &'static str,
        t_srv: &'static [Gen],
        t_cli: &'static [Gen],
        held: &'static [Gen],
        presents: Gen,
    }

    const STATES: [State; 6] = [
        State {
            name: "initial",
            t_srv: &[Old],
            t_cli: &[Old],
            held: &[Old],
            presents: Old,
        },
        State {
            name: "stage",
            t_srv: &[Old, New],
            t_cli: &[Old, New],
            held: &[Old, New],
            presents: Old,
        },
        State {
            name: "present",
            t_srv: &[Old, New],
            t_cli: &[Old, New],
            held: &[Old, New],
            presents: New,
        },
        State {
            name: "retire",
            t_srv: &[New],
            t_cli: &[New],
            held: &[New],
            presents: New,
        },
        State {
            name: "switch",
            t_srv: &[New],
            t_cli: &[Old, New],
            held: &[Old, New],
            presents: New,
        },
        State {
            name: "finalize",
            t_srv: &[New],
            t_cli: &[New],
            held: &[New],
            presents: New,
        },
    ];

    /// One node's view of the two roots: the root certs and its own leaf from each.
    struct Node {
        roots: [(Gen, RootCa); 2],
        leaves: [(Gen, HeldLeaf); 2],
    }

    impl Node {
        fn set(&self, state: &State) -> CredentialSet {
            let roots = |gens: &[Gen]| {
                self.roots
                    .iter()
                    .filter(|(g, _)| gens.contains(g))
                    .map(|(_, r)| r.cert_der().clone())
                    .collect()
            };
            let held: Vec<_> = self
                .leaves
                .iter()
                .filter(|(g, _)| state.held.contains(g))
                .collect();
            CredentialSet {
                server_roots: roots(state.t_srv),
                client_roots: roots(state.t_cli),
                presents: held.iter().position(|(g, _)| *g == state.presents),
                held: held.into_iter().map(|(_, l)| l.clone()).collect(),
                ..CredentialSet::default()
            }
        }
    }

    /// Every pair of MODEL §3 states, with real handshakes: success iff
    /// `presents(s) ∈ t_cli(c)` and `held(c) ∩ t_srv(s) ≠ ∅`.
    fn handshake_rule_table(old_alg: KeyAlg, new_alg: KeyAlg) {
        let node = |id: &str, old: &RootCa, new: &RootCa| Node {
            roots: [(Old, clone_root(old)), (New, clone_root(new))],
            leaves: [(Old, leaf(old, id, old_alg)), (New, leaf(new, id, new_alg))],
        };
        let (old, new) = (root(1, old_alg), root(2, new_alg));
        let (c, s) = (node("c", &old, &new), node("s", &old, &new));
        let mut outcomes = BTreeSet::new();
        for cs in &STATES {
            let client = LiveCredentials::new(c.set(cs)).unwrap();
            for ss in &STATES {
                let server = LiveCredentials::new(s.set(ss)).unwrap();
                let expected =
                    cs.t_cli.contains(&ss.presents) && cs.held.iter().any(|g| ss.t_srv.contains(g));
                let got = handshake_in_memory(client.client_config(), server.server_config(), "s");
                assert_eq!(
                    got.is_ok(),
                    expected,
                    "client {} -> server {}: {got:?}",
                    cs.name,
                    ss.name
                );
                if let Ok(outcome) = got {
                    assert_eq!(outcome.server_identity.as_deref(), Some("s"));
                    assert_eq!(outcome.client_identity.as_deref(), Some("c"));
                }
                outcomes.insert(expected);
            }
        }
        assert_eq!(outcomes.len(), 2, "the table must contain both outcomes");
    }

    fn clone_root(ca: &RootCa) -> RootCa {
        RootCa::from_pem(&ca.to_pem()).unwrap()
    }

    #[test]
    fn handshake_rule_holds_for_every_pair_of_states() {
        handshake_rule_table(KeyAlg::EcdsaP256, KeyAlg::EcdsaP256);
    }

    #[test]
    fn handshake_rule_holds_with_ed25519() {
        handshake_rule_table(KeyAlg::Ed25519, KeyAlg::Ed25519);
    }

    #[test]
    fn handshake_rule_holds_across_an_algorithm_change() {
        handshake_rule_table(KeyAlg::EcdsaP256, KeyAlg::Ed25519);
    }

    #[test]
    fn failures_name_the_side_and_the_reason() {
        let (old, new) = (root(1, KeyAlg::EcdsaP256), root(2, KeyAlg::EcdsaP256));
        let client_old = crate::testutil::single(&old, leaf(&old, "c", KeyAlg::EcdsaP256));
        let server_new = crate::testutil::single(&new, leaf(&new, "s", KeyAlg::EcdsaP256));
        let client = LiveCredentials::new(client_old).unwrap();
        let server = LiveCredentials::new(server_new).unwrap();
        let err =
            handshake_in_memory(client.client_config(), server.server_config(), "s").unwrap_err();
        assert_eq!(
            err.to_string(),
            "client: invalid peer certificate: UnknownIssuer"
        );

        // Trusting the server's root is not enough: it does not trust the client's.
        let mut both = client.current().as_ref().clone();
        both.client_roots.push(new.cert_der().clone());
        client.swap(both).unwrap();
        let err =
            handshake_in_memory(client.client_config(), server.server_config(), "s").unwrap_err();
        assert!(matches!(err, HandshakeError::Server(_)), "{err}");

        // The server is verified under its own id only.
        let err =
            handshake_in_memory(client.client_config(), server.server_config(), "t").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("client: invalid peer certificate"),
            "{err}"
        );
    }
}
