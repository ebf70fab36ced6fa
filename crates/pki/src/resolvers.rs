//! Certificate resolvers bound to one compiled credential set.
//!
//! As a server a node presents its `presents` leaf. As a client it presents the held
//! leaf whose issuer is among the CA names in the server's CertificateRequest; failing
//! that, one that reaches a hinted root through a bridge it sends (MODEL §11: a client
//! holding only a new leaf must offer it, with `b_new`, to a server hinting only `old`);
//! failing that, the first held leaf (MODEL §2). Either way the leaf goes out followed
//! by the node's bridges.

use std::fmt;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::compiled::Compiled;

/// Serves its set's `presents` leaf; none means the handshake fails.
pub(crate) struct LiveServerResolver(pub(crate) Arc<Compiled>);

impl ResolvesServerCert for LiveServerResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.server_key.clone()
    }
}

/// Picks the held leaf the server will accept.
pub(crate) struct LiveClientResolver(pub(crate) Arc<Compiled>);

impl ResolvesClientCert for LiveClientResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let current = &self.0;
        let usable = || {
            current
                .client_keys
                .iter()
                .filter(|held| held.key.key.choose_scheme(sigschemes).is_some())
        };
        let hinted = |name: &Vec<u8>| root_hint_subjects.contains(&name.as_slice());
        usable()
            .find(|held| hinted(&held.issuer))
            .or_else(|| usable().find(|held| held.bridged_issuers.iter().any(hinted)))
            .or_else(|| usable().next())
            .map(|held| held.key.clone())
    }

    fn has_certs(&self) -> bool {
        !self.0.client_keys.is_empty()
    }
}

impl fmt::Debug for LiveServerResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveServerResolver")
    }
}

impl fmt::Debug for LiveClientResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveClientResolver")
    }
}
