//! The crate's one error type, [`PkiError`].

/// Everything that can go wrong in the PKI layer.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to generate, sign or parse something.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),

    /// rustls refused a key, certificate or configuration.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),

    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Certificate(String),

    /// A PEM document did not hold what was expected.
    #[error("malformed PEM: {0}")]
    Pem(String),

    /// The key algorithm of a loaded key is not one of [`crate::KeyAlg`].
    #[error("unsupported key algorithm: {0}")]
    UnsupportedKeyAlg(String),

    /// `not_before` is not strictly before `not_after`, or a bound is out of range.
    #[error("invalid validity period: {0}")]
    Validity(String),

    /// A CSR could not be parsed.
    #[error("malformed CSR: {0}")]
    CsrMalformed(String),

    /// A CSR's signature does not verify against its own public key.
    #[error("CSR signature does not verify")]
    CsrBadSignature,

    /// A CSR's subject common name is not the node id the leaf is being issued to.
    #[error("CSR subject CN mismatch: expected {expected:?}, found {found:?}")]
    CsrCommonName {
        /// The node id the leaf was requested for.
        expected: String,
        /// Every CN in the CSR's subject.
        found: Vec<String>,
    },

    /// A CSR's subject alternative names are not exactly the node's DNS name.
    #[error("CSR SAN mismatch: expected exactly [DNS:{expected}], found {found:?}")]
    CsrSubjectAltName {
        /// `node_dns_name(node_id)`.
        expected: String,
        /// Every SAN entry in the CSR, rendered as `TYPE:value`.
        found: Vec<String>,
    },

    /// A node id whose DNS name rustls does not accept (in practice: too long).
    #[error("node id {id:?} maps to {dns_name:?}, which is not a valid DNS name (too long?)")]
    NodeId {
        /// The offending node id.
        id: String,
        /// What [`crate::node_dns_name`] made of it.
        dns_name: String,
    },

    /// A held leaf's private key does not belong to its certificate.
    #[error("held leaf #{index}: private key does not match the certificate")]
    KeyMismatch {
        /// Index into [`crate::CredentialSet::held`].
        index: usize,
    },

    /// `presents` points past the end of `held`.
    #[error("presents = {index} but only {held} leaves are held")]
    PresentsOutOfRange {
        /// The requested index.
        index: usize,
        /// How many leaves are held.
        held: usize,
    },

    /// A root could not be turned into a trust anchor or verifier.
    #[error("trust root #{index}: {reason}")]
    TrustRoot {
        /// Index into the offending root list.
        index: usize,
        /// Why it was refused.
        reason: String,
    },

    /// A webpki verifier could not be built for a set of roots.
    #[error("cannot build certificate verifier: {0}")]
    Verifier(String),

    /// A bridge (MODEL §11) could not be issued or does not have a bridge's shape.
    #[error("bridge: {0}")]
    Bridge(String),
}

impl PkiError {
    /// A bridge error located: its reason prefixed with `what` (`b_new`, `sends #1`);
    /// any other error unchanged.
    pub(crate) fn in_bridge(self, what: &str) -> Self {
        match self {
            PkiError::Bridge(reason) => PkiError::Bridge(format!("{what}: {reason}")),
            other => other,
        }
    }
}
