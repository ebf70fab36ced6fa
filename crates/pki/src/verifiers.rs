//! Certificate verifiers that read the current credentials on every handshake.
//!
//! Each delegates certificate checks to the webpki verifier pre-built for the set that
//! is current when the peer's certificate arrives; with no roots at all, every
//! certificate is refused as `UnknownIssuer`. Handshake signatures are checked with the
//! crypto provider directly, as webpki's verifiers do.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use crate::live::Shared;

fn no_roots() -> Error {
    Error::InvalidCertificate(CertificateError::UnknownIssuer)
}

/// Verifies client certificates against the current `server_roots` (`t_srv`).
pub(crate) struct LiveClientVerifier(pub(crate) Arc<Shared>);

impl ClientCertVerifier for LiveClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.hints.intern(&self.0.current.load().hint_subjects)
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match &self.0.current.load().client_verifier {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            None => Err(no_roots()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies server certificates against the current `client_roots` (`t_cli`).
pub(crate) struct LiveServerVerifier(pub(crate) Arc<Shared>);

impl ServerCertVerifier for LiveServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.0.current.load().server_verifier {
            Some(verifier) => verifier.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(no_roots()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl fmt::Debug for LiveClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveClientVerifier")
    }
}

impl fmt::Debug for LiveServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveServerVerifier")
    }
}

/// Append-only store of every distinct CA hint list ever published.
///
/// `ClientCertVerifier::root_hint_subjects` must return a slice borrowed from the
/// verifier, yet the current list changes on every swap. Lists are interned here and
/// never freed, so a borrow stays valid for the verifier's lifetime. Memory is bounded
/// by the number of *distinct* `server_roots` sets published (a few per rotation).
#[derive(Debug, Default)]
pub(crate) struct HintArena {
    head: OnceLock<Box<HintNode>>,
}

#[derive(Debug)]
struct HintNode {
    subjects: Vec<DistinguishedName>,
    next: OnceLock<Box<HintNode>>,
}

impl HintArena {
    /// The interned copy of `subjects`, added if not yet present. Lock-free to read.
    pub(crate) fn intern(&self, subjects: &[DistinguishedName]) -> &[DistinguishedName] {
        let mut slot = &self.head;
        loop {
            let node = slot.get_or_init(|| {
                Box::new(HintNode {
                    subjects: subjects.to_vec(),
                    next: OnceLock::new(),
                })
            });
            if same(&node.subjects, subjects) {
                return &node.subjects;
            }
            slot = &node.next;
        }
    }
}

fn same(a: &[DistinguishedName], b: &[DistinguishedName]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_ref() == y.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_interns_each_distinct_list_once() {
        let arena = HintArena::default();
        let a = vec![DistinguishedName::from(vec![1, 2])];
        let b = vec![DistinguishedName::from(vec![3])];
        let first = arena.intern(&a).as_ptr();
        assert_eq!(arena.intern(&b)[0].as_ref(), &[3]);
        assert_eq!(arena.intern(&a).as_ptr(), first);
        assert!(arena.intern(&[]).is_empty());
    }
}
