//! Live-swappable credentials: a node's current [`CredentialSet`], compiled together
//! with the rustls client and server configs that handshake with exactly that set.
//!
//! [`LiveCredentials::swap`] validates and compiles a new set and its two configs,
//! then publishes them with one atomic pointer store. A handshake takes the configs
//! current when it starts ([`LiveCredentials::server_config`] per accepted connection,
//! [`LiveCredentials::client_config`] per dial) and keeps them to the end, so the CA
//! hints a server sends, the certificate it presents and the roots it verifies the
//! client against always come from one set, even when a swap lands mid-handshake.
//! Established connections keep the keys they negotiated. Session resumption is
//! disabled on both sides, since a resumed session would skip certificate checks
//! against the new trust.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use crate::compiled::Compiled;
use crate::resolvers::{LiveClientResolver, LiveServerResolver};
use crate::verifiers::{LiveClientVerifier, LiveServerVerifier};
use crate::{CredentialSet, PkiError};

/// One published credential set with the configs bound to it.
struct Snapshot {
    compiled: Arc<Compiled>,
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
}

impl Snapshot {
    fn build(set: CredentialSet, provider: &Arc<CryptoProvider>) -> Result<Self, PkiError> {
        let compiled = Arc::new(Compiled::build(set, provider)?);
        let mut server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(LiveClientVerifier(compiled.clone())))
            .with_cert_resolver(Arc::new(LiveServerResolver(compiled.clone())));
        server_config.session_storage = Arc::new(NoServerSessionStorage {});
        server_config.send_tls13_tickets = 0;

        let mut client_config = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LiveServerVerifier(compiled.clone())))
            .with_client_cert_resolver(Arc::new(LiveClientResolver(compiled.clone())));
        client_config.resumption = Resumption::disabled();
        Ok(Snapshot {
            compiled,
            server_config: Arc::new(server_config),
            client_config: Arc::new(client_config),
        })
    }
}

/// A node's credentials for the rotated CA, swappable while serving.
pub struct LiveCredentials {
    current: ArcSwap<Snapshot>,
    provider: Arc<CryptoProvider>,
}

impl LiveCredentials {
    /// Validates `set` and builds the node's TLS 1.3, ring-backed configs around it.
    pub fn new(set: CredentialSet) -> Result<Arc<Self>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let snapshot = Snapshot::build(set, &provider)?;
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(snapshot),
            provider,
        }))
    }

    /// Validates `set` and makes it current for every handshake that starts from now
    /// on. On error the previous set stays current.
    pub fn swap(&self, set: CredentialSet) -> Result<(), PkiError> {
        let snapshot = Snapshot::build(set, &self.provider)?;
        self.current.store(Arc::new(snapshot));
        tracing::debug!("credential set swapped");
        Ok(())
    }

    /// The set handshakes currently use.
    pub fn current(&self) -> Arc<CredentialSet> {
        self.current.load().compiled.set.clone()
    }

    /// The server config of the current set: take one per accepted connection.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.load().server_config.clone()
    }

    /// The client config of the current set: take one per dial.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current.load().client_config.clone()
    }
}

impl fmt::Debug for LiveCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCredentials")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::handshake::{connect_in_memory, transfer};
    use crate::testutil::{leaf, leaf_with, root, single, window};
    use crate::{HandshakeError, KeyAlg, handshake_in_memory};

    const ALG: KeyAlg = KeyAlg::EcdsaP256;

    fn shake(c: &LiveCredentials, s: &LiveCredentials) -> Result<(), HandshakeError> {
        handshake_in_memory(c.client_config(), s.server_config(), "s").map(|_| ())
    }

    #[test]
    fn swap_changes_the_next_handshake_and_taken_configs_keep_their_set() {
        let (old, new) = (root(1, ALG), root(2, ALG));
        let client = LiveCredentials::new(single(&old, leaf(&old, "c", ALG))).unwrap();
        let server = LiveCredentials::new(single(&old, leaf(&old, "s", ALG))).unwrap();
        let (client_config, server_config) = (client.client_config(), server.server_config());
        shake(&client, &server).unwrap();

        server.swap(single(&new, leaf(&new, "s", ALG))).unwrap();
        assert!(shake(&client, &server).is_err());
        client.swap(single(&new, leaf(&new, "c", ALG))).unwrap();
        shake(&client, &server).unwrap();

        // Configs taken before the swaps still handshake with the old set, start to
        // finish: a handshake never mixes two sets.
        handshake_in_memory(client_config.clone(), server_config.clone(), "s").unwrap();
        assert!(handshake_in_memory(client_config, server.server_config(), "s").is_err());
    }

    #[test]
    fn failed_swap_keeps_the_current_set() {
        let (old, new) = (root(1, ALG), root(2, ALG));
        let client = LiveCredentials::new(single(&old, leaf(&old, "c", ALG))).unwrap();
        let server = LiveCredentials::new(single(&old, leaf(&old, "s", ALG))).unwrap();
        let good = server.current();

        let mut out_of_range = single(&new, leaf(&new, "s", ALG));
        out_of_range.presents = Some(1);
        let mut wrong_key = single(&new, leaf(&new, "s", ALG));
        wrong_key.held[0].key = leaf(&new, "s", ALG).key;
        let mut bad_root = single(&new, leaf(&new, "s", ALG));
        bad_root
            .client_roots
            .push(b"not a certificate".to_vec().into());

        assert!(matches!(
            server.swap(out_of_range),
            Err(PkiError::PresentsOutOfRange { index: 1, held: 1 })
        ));
        assert!(matches!(
            server.swap(wrong_key),
            Err(PkiError::KeyMismatch { index: 0 })
        ));
        assert!(matches!(
            server.swap(bad_root),
            Err(PkiError::TrustRoot { index: 1, .. })
        ));
        assert!(Arc::ptr_eq(&good, &server.current()));
        shake(&client, &server).unwrap();
    }

    #[test]
    fn established_connections_survive_a_swap() {
        let ca = root(1, ALG);
        let client = LiveCredentials::new(single(&ca, leaf(&ca, "c", ALG))).unwrap();
        let server = LiveCredentials::new(single(&ca, leaf(&ca, "s", ALG))).unwrap();
        let (_, mut c, mut s) =
            connect_in_memory(client.client_config(), server.server_config(), "s").unwrap();

        client.swap(CredentialSet::default()).unwrap();
        server.swap(CredentialSet::default()).unwrap();
        assert!(shake(&client, &server).is_err());

        c.writer().write_all(b"still up").unwrap();
        transfer(&mut c, &mut s).unwrap();
        let mut got = [0; 8];
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"still up");
    }

    #[test]
    fn expired_and_not_yet_valid_leaves_are_refused() {
        let ca = root(1, ALG);
        let client = LiveCredentials::new(single(&ca, leaf(&ca, "c", ALG))).unwrap();
        let server = LiveCredentials::new(single(&ca, leaf(&ca, "s", ALG))).unwrap();
        shake(&client, &server).unwrap();

        server
            .swap(single(&ca, leaf_with(&ca, "s", ALG, window(-7200, -3600))))
            .unwrap();
        let err = shake(&client, &server).unwrap_err();
        assert!(matches!(err, HandshakeError::Client(_)), "{err}");
        assert!(err.to_string().contains("expired"), "{err}");

        server.swap(single(&ca, leaf(&ca, "s", ALG))).unwrap();
        client
            .swap(single(&ca, leaf_with(&ca, "c", ALG, window(3600, 7200))))
            .unwrap();
        let err = shake(&client, &server).unwrap_err();
        assert!(matches!(err, HandshakeError::Server(_)), "{err}");
        assert!(err.to_string().contains("not valid yet"), "{err}");
    }

    #[test]
    fn empty_sets_fail_cleanly() {
        let ca = root(1, ALG);
        let full = || single(&ca, leaf(&ca, "s", ALG));
        let empty = LiveCredentials::new(CredentialSet::default()).unwrap();
        let full_node = LiveCredentials::new(full()).unwrap();
        assert!(shake(&empty, &full_node).is_err());
        assert!(shake(&full_node, &empty).is_err());
        assert!(shake(&empty, &empty).is_err());

        let mut silent = full();
        silent.presents = None;
        let silent = LiveCredentials::new(silent).unwrap();
        assert!(shake(&full_node, &silent).is_err());

        let mut no_client_roots = full();
        no_client_roots.client_roots.clear();
        let err = shake(&LiveCredentials::new(no_client_roots).unwrap(), &full_node).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client: invalid peer certificate: UnknownIssuer"
        );
    }
}
