//! Certificate verifiers bound to one compiled credential set.
//!
//! Each delegates certificate checks to the webpki verifier pre-built for its set;
//! with no roots at all, every certificate is refused as `UnknownIssuer`. Handshake
//! signatures are checked with the crypto provider directly, as webpki's verifiers do.
//! Because a whole handshake uses one set, the CA hints a server sends and the roots
//! it then verifies against can never disagree, even when a swap lands mid-handshake.
//!
//! Path building goes through the intermediates the peer sends (its bridges, MODEL
//! §11), except for a set that does not build chains: it sees the peer's leaf alone,
//! so only a direct leaf-to-root path verifies.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use crate::compiled::Compiled;

fn no_roots() -> Error {
    Error::InvalidCertificate(CertificateError::UnknownIssuer)
}

/// The peer's intermediates as this set may use them.
fn usable<'a, 'b>(
    compiled: &Compiled,
    intermediates: &'a [CertificateDer<'b>],
) -> &'a [CertificateDer<'b>] {
    match compiled.chains {
        true => intermediates,
        false => &[],
    }
}

/// The handshake-signature methods both verifier traits ask for, checked with the
/// set's crypto provider (`self.0` is the verifier's `Arc<Compiled>`). One body for
/// both: rustls's two traits declare the same three methods separately.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(message, cert, dss, algorithms(&self.0))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(message, cert, dss, algorithms(&self.0))
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            algorithms(&self.0).supported_schemes()
        }
    };
}

/// The signature algorithms of a set's crypto provider.
fn algorithms(compiled: &Compiled) -> &rustls::crypto::WebPkiSupportedAlgorithms {
    &compiled.provider.signature_verification_algorithms
}

/// Verifies client certificates against its set's `server_roots` (`t_srv`).
pub(crate) struct LiveClientVerifier(pub(crate) Arc<Compiled>);

impl ClientCertVerifier for LiveClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.0.hint_subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match &self.0.client_verifier {
            Some(verifier) => {
                verifier.verify_client_cert(end_entity, usable(&self.0, intermediates), now)
            }
            None => Err(no_roots()),
        }
    }

    signature_checks!();
}

/// Verifies server certificates against its set's `client_roots` (`t_cli`).
pub(crate) struct LiveServerVerifier(pub(crate) Arc<Compiled>);

impl ServerCertVerifier for LiveServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match &self.0.server_verifier {
            Some(verifier) => verifier.verify_server_cert(
                end_entity,
                usable(&self.0, intermediates),
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(no_roots()),
        }
    }

    signature_checks!();
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
