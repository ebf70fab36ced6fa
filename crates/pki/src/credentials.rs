//! What a node holds for one rotated CA (MODEL §2), as plain data.
//!
//! A [`CredentialSet`] is the input to [`crate::LiveCredentials`]; it contains private
//! keys (inside [`HeldLeaf`]) and so is node-local: it is never serialized or sent.

use rustls::pki_types::CertificateDer;

use crate::NodeKey;

/// A leaf certificate the node holds, with the node's key for it.
#[derive(Clone, Debug)]
pub struct HeldLeaf {
    /// The leaf certificate (DER), as issued by a root.
    pub cert: CertificateDer<'static>,
    /// The node's private key matching `cert`. Never leaves the node.
    pub key: NodeKey,
}

impl HeldLeaf {
    /// Pairs a certificate with its key (checked when the set is published).
    pub fn new(cert: CertificateDer<'static>, key: NodeKey) -> Self {
        Self { cert, key }
    }

    /// Whether this leaf's issuer name is `root_cert`'s subject name, i.e. whether the
    /// root's CertificateRequest hint would select it. `false` if either does not parse.
    pub fn is_issued_by(&self, root_cert: &[u8]) -> bool {
        let issuer = issuer_dn(&self.cert);
        issuer.is_some() && issuer == subject_dn(root_cert)
    }
}

/// A node's credentials for the rotated CA: `t_srv / t_cli / held / presents`, and the
/// bridges it `sends` (MODEL §11).
#[derive(Clone, Debug)]
pub struct CredentialSet {
    /// `t_srv`: roots trusted to verify clients (when serving).
    pub server_roots: Vec<CertificateDer<'static>>,
    /// `t_cli`: roots trusted to verify servers (when connecting).
    pub client_roots: Vec<CertificateDer<'static>>,
    /// `held`: leaves the node holds, at most one per issuing root in practice.
    pub held: Vec<HeldLeaf>,
    /// `presents`: index into `held` of the leaf presented as a server; `None`
    /// serves no certificate, so every inbound handshake fails.
    pub presents: Option<usize>,
    /// `sends`: bridges appended after the leaf, as server and as client (see
    /// [`crate::Bridges`]). Ignored when `chains` is false.
    pub sends: Vec<CertificateDer<'static>>,
    /// Whether the node builds chains: sends its bridges and verifies a peer through
    /// the intermediates it sends. When false (a `chains: false` node) only direct
    /// leaf-to-root paths verify and nothing follows the leaf.
    pub chains: bool,
}

impl Default for CredentialSet {
    /// Nothing trusted or held, no bridges, chains supported (the topology default).
    fn default() -> Self {
        Self {
            server_roots: Vec::new(),
            client_roots: Vec::new(),
            held: Vec::new(),
            presents: None,
            sends: Vec::new(),
            chains: true,
        }
    }
}

impl CredentialSet {
    /// Index of the first held leaf issued by `root_cert` (see [`HeldLeaf::is_issued_by`]).
    pub fn held_index_issued_by(&self, root_cert: &[u8]) -> Option<usize> {
        self.held
            .iter()
            .position(|leaf| leaf.is_issued_by(root_cert))
    }
}

/// The DER issuer name of a certificate.
pub(crate) fn issuer_dn(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.issuer().as_raw().to_vec())
}

/// The DER subject name of a certificate.
pub(crate) fn subject_dn(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.subject().as_raw().to_vec())
}
