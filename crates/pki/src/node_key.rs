//! A node's private key and the CSRs it signs.
//!
//! The key is generated on the node and stays there: only the CSR built from it and the
//! certificate issued for it ever travel. [`NodeKey`] is therefore deliberately not
//! serializable except through [`NodeKey::to_pem`], meant for the agent's own state
//! directory, and its `Debug` output never shows key material. Never put a `NodeKey` (or
//! a [`crate::HeldLeaf`], which contains one) into a message, a plan or a log.

use std::fmt;
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::{CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::names::dns_san;
use crate::{KeyAlg, PkiError};

/// A node's key pair. Cheap to clone (shared, immutable).
#[derive(Clone)]
pub struct NodeKey {
    alg: KeyAlg,
    pair: Arc<KeyPair>,
}

impl NodeKey {
    /// Generates a fresh key pair (to be called on the node itself).
    pub fn generate(alg: KeyAlg) -> Result<Self, PkiError> {
        Ok(Self {
            alg,
            pair: Arc::new(KeyPair::generate_for(alg.rcgen())?),
        })
    }

    /// The key's algorithm.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The DER SubjectPublicKeyInfo: safe to share, e.g. to match a certificate.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&*self.pair)
    }

    /// A CSR for `node_id`: subject CN = `node_id`, one SAN = DNS [`crate::node_dns_name`].
    pub fn csr_der(
        &self,
        node_id: &str,
    ) -> Result<CertificateSigningRequestDer<'static>, PkiError> {
        let san = dns_san(node_id)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node_id);
        params.subject_alt_names = vec![san];
        Ok(params.serialize_request(&*self.pair)?.into())
    }

    /// PKCS#8 PEM of the private key, for the node's state directory only.
    pub fn to_pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// Loads a key written by [`NodeKey::to_pem`].
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        let pair = KeyPair::from_pem(pem).map_err(|e| PkiError::Pem(e.to_string()))?;
        Ok(Self {
            alg: KeyAlg::from_rcgen(pair.algorithm())?,
            pair: Arc::new(pair),
        })
    }

    /// The private key in the form rustls loads.
    pub(crate) fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pair.serialize_der()))
    }

    /// The rcgen key pair, for signing.
    #[cfg(test)]
    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("alg", &self.alg)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_key_and_alg() {
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
            let key = NodeKey::generate(alg).unwrap();
            let back = NodeKey::from_pem(&key.to_pem()).unwrap();
            assert_eq!(back.alg(), alg);
            assert_eq!(back.public_key_der(), key.public_key_der());
        }
        assert!(matches!(NodeKey::from_pem("junk"), Err(PkiError::Pem(_))));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = NodeKey::generate(KeyAlg::default()).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted") && !shown.contains("PRIVATE"));
    }
}
