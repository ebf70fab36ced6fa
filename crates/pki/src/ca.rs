//! A root CA generation: its self-signed certificate, its key, and leaf issuance.
//!
//! The root's key lives with the issuer (the executor), never on a node. Each
//! generation gets its own subject (`CN=<ca name> gen <generation>`), so the CA names a
//! server lists in its CertificateRequest tell generations apart.

use std::fmt;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::csr::checked_public_key;
use crate::names::dns_san;
use crate::{KeyAlg, PkiError, Validity};

const CERT_TAG: &str = "CERTIFICATE";
const KEY_TAG: &str = "PRIVATE KEY";

/// One generation of a root CA, with its private key.
pub struct RootCa {
    alg: KeyAlg,
    cert: CertificateDer<'static>,
    subject: Vec<u8>,
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl RootCa {
    /// Generates a new self-signed root, `CN=<ca_name> gen <generation>`.
    pub fn generate(
        ca_name: &str,
        generation: u32,
        alg: KeyAlg,
        validity: Validity,
    ) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{ca_name} gen {generation}"));
        // One CA may sit below the root: a bridge (MODEL §11), so that verifiers that
        // enforce the anchor's path length (OpenSSL does, webpki does not) accept
        // leaf <- bridge <- root.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity.apply(&mut params)?;
        let key = KeyPair::generate_for(alg.rcgen())?;
        params.serial_number = Some(serial(&[key.der_bytes(), ca_name.as_bytes()]));
        let cert = params.self_signed(&key)?.der().clone();
        Self::with_issuer(alg, cert, Issuer::new(params, key))
    }

    fn with_issuer(
        alg: KeyAlg,
        cert: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    ) -> Result<Self, PkiError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        let subject = parsed.subject().as_raw().to_vec();
        Ok(Self {
            alg,
            cert,
            subject,
            issuer,
        })
    }

    /// The root certificate (DER): what nodes put in their trust stores.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The DER-encoded subject name, as it appears in CertificateRequest CA hints.
    pub fn subject_dn(&self) -> &[u8] {
        &self.subject
    }

    /// Lowercase hex SHA-256 of the certificate DER.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// The root's key algorithm.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// Certificate and private key as PEM, for the issuer's own storage only.
    pub fn to_pem(&self) -> String {
        pem::encode_many(&[
            pem::Pem::new(CERT_TAG, self.cert.to_vec()),
            pem::Pem::new(KEY_TAG, self.issuer.key().serialize_der()),
        ])
    }

    /// Loads a root written by [`RootCa::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, PkiError> {
        let blocks = pem::parse_many(text).map_err(|e| PkiError::Pem(e.to_string()))?;
        let block = |tag: &str| {
            let mut found = blocks.iter().filter(|b| b.tag() == tag);
            match (found.next(), found.next()) {
                (Some(b), None) => Ok(b.contents()),
                _ => Err(PkiError::Pem(format!("expected exactly one {tag} block"))),
            }
        };
        let cert = CertificateDer::from(block(CERT_TAG)?.to_vec());
        let key = KeyPair::try_from(block(KEY_TAG)?)
            .map_err(|e| PkiError::Pem(format!("root key: {e}")))?;
        if key.subject_public_key_info() != spki(&cert)? {
            return Err(PkiError::Pem(
                "root key does not match root certificate".into(),
            ));
        }
        let alg = KeyAlg::from_rcgen(key.algorithm())?;
        let issuer = Issuer::from_ca_cert_der(&cert, key)?;
        Self::with_issuer(alg, cert, issuer)
    }

    /// Issues a leaf for `node_id` from its CSR.
    ///
    /// The CSR must verify and name exactly `node_id` (subject CN) and
    /// `node_dns_name(node_id)` (sole DNS SAN); otherwise a `PkiError::Csr*` says what
    /// was expected and what was found. The leaf has CN = `node_id`, that one SAN, and
    /// both serverAuth and clientAuth extended key usages.
    pub fn issue_leaf(
        &self,
        csr_der: &[u8],
        node_id: &str,
        validity: Validity,
    ) -> Result<CertificateDer<'static>, PkiError> {
        let san = dns_san(node_id)?;
        let public_key = checked_public_key(csr_der, node_id)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node_id);
        params.subject_alt_names = vec![san];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params)?;
        params.serial_number = Some(serial(&[public_key.der_bytes(), node_id.as_bytes()]));
        Ok(params.signed_by(&public_key, &self.issuer)?.der().clone())
    }
}

impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("fingerprint", &self.fingerprint())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// Lowercase hex SHA-256 of a certificate's DER.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// A positive 20-byte serial number derived from `parts` and the current time.
pub(crate) fn serial(parts: &[&[u8]]) -> SerialNumber {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(format!("{:?}", SystemTime::now()));
    let mut bytes = hash.finalize()[..20].to_vec();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01 << 6; // never a leading zero byte
    SerialNumber::from_slice(&bytes)
}

/// The SubjectPublicKeyInfo DER of a certificate.
fn spki(cert: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    Ok(parsed.public_key().raw.to_vec())
}

#[cfg(test)]
mod tests {
    use rcgen::SanType;
    use x509_parser::prelude::ParsedExtension;

    use super::*;
    use crate::names::node_dns_name;
    use crate::testutil::{leaf, root, window};
    use crate::{NodeKey, node_id_from_cert};

    /// A CSR signed by `key` with arbitrary subject CN and DNS SANs.
    fn csr_naming(key: &NodeKey, cn: &str, sans: &[String]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans
            .iter()
            .map(|s| SanType::DnsName(s.clone().try_into().unwrap()))
            .collect();
        params
            .serialize_request(key.key_pair())
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn issued_leaf_names_the_node_and_serves_both_roles() {
        let ca = root(1, KeyAlg::EcdsaP256);
        let held = leaf(&ca, "Foo_Bar", KeyAlg::EcdsaP256);
        assert_eq!(node_id_from_cert(&held.cert).as_deref(), Some("Foo_Bar"));
        assert!(held.is_issued_by(ca.cert_der()));

        let (_, cert) = x509_parser::parse_x509_certificate(&held.cert).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!cert.is_ca());
        let sans: Vec<String> = cert
            .extensions()
            .iter()
            .filter_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
                _ => None,
            })
            .flatten()
            .map(ToString::to_string)
            .collect();
        assert_eq!(sans, [format!("DNSName({})", node_dns_name("Foo_Bar"))]);
        assert_eq!(cert.issuer().as_raw(), ca.subject_dn());
    }

    #[test]
    fn csr_for_another_common_name_is_refused() {
        let ca = root(1, KeyAlg::EcdsaP256);
        let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
        let csr = key.csr_der("gw").unwrap();
        let err = ca
            .issue_leaf(&csr, "meter-7", Validity::default())
            .unwrap_err();
        match &err {
            PkiError::CsrCommonName { expected, found } => {
                assert_eq!(expected, "meter-7");
                assert_eq!(found, &["gw"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("\"meter-7\"") && err.to_string().contains("\"gw\""));
    }

    #[test]
    fn csr_with_wrong_or_extra_san_is_refused() {
        let ca = root(1, KeyAlg::EcdsaP256);
        let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
        let mine = node_dns_name("gw");
        let other = node_dns_name("meter-7");
        for sans in [
            vec![other.clone()],
            vec![mine.clone(), other.clone()],
            vec![],
        ] {
            let csr = csr_naming(&key, "gw", &sans);
            match ca.issue_leaf(&csr, "gw", Validity::default()) {
                Err(PkiError::CsrSubjectAltName { expected, found }) => {
                    assert_eq!(expected, mine);
                    assert_eq!(found.len(), sans.len(), "{found:?}");
                }
                other => panic!("SANs {sans:?}: unexpected {other:?}"),
            }
        }
        // The same construction with the right names is accepted.
        let csr = csr_naming(&key, "gw", &[mine]);
        ca.issue_leaf(&csr, "gw", Validity::default()).unwrap();
    }

    #[test]
    fn csr_with_bad_signature_is_refused() {
        let ca = root(1, KeyAlg::EcdsaP256);
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
            let key = NodeKey::generate(alg).unwrap();
            let csr = key.csr_der("gw").unwrap().to_vec();

            // An edited subject ("gw" -> "gx") no longer matches the signature.
            let at = csr.windows(2).position(|w| w == b"gw").unwrap();
            let mut renamed = csr.clone();
            renamed[at + 1] = b'x';
            assert!(matches!(
                ca.issue_leaf(&renamed, "gx", Validity::default()),
                Err(PkiError::CsrBadSignature)
            ));

            // So does a flipped signature bit.
            let mut flipped = csr.clone();
            *flipped.last_mut().unwrap() ^= 1;
            assert!(matches!(
                ca.issue_leaf(&flipped, "gw", Validity::default()),
                Err(PkiError::CsrBadSignature)
            ));
        }
        assert!(matches!(
            ca.issue_leaf(b"not a csr", "gw", Validity::default()),
            Err(PkiError::CsrMalformed(_))
        ));
    }

    #[test]
    fn generations_have_distinct_subjects() {
        let (old, new) = (root(1, KeyAlg::EcdsaP256), root(2, KeyAlg::EcdsaP256));
        assert_ne!(old.subject_dn(), new.subject_dn());
        assert_ne!(old.fingerprint(), new.fingerprint());
        assert_eq!(old.fingerprint().len(), 64);
    }

    #[test]
    fn pem_round_trip_keeps_the_root_and_its_key() {
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
            let ca = root(3, alg);
            let text = ca.to_pem();
            let back = RootCa::from_pem(&text).unwrap();
            assert_eq!(back.fingerprint(), ca.fingerprint());
            assert_eq!(back.subject_dn(), ca.subject_dn());
            assert_eq!(back.alg(), alg);
            let held = leaf(&back, "gw", alg);
            assert_eq!(
                x509_parser::parse_x509_certificate(&held.cert)
                    .unwrap()
                    .1
                    .issuer()
                    .as_raw(),
                ca.subject_dn()
            );
            // A key from another root is refused.
            let other = root(4, alg).to_pem();
            let (cert_part, _) = text.split_at(text.find("-----BEGIN PRIVATE KEY").unwrap());
            let (_, key_part) = other.split_at(other.find("-----BEGIN PRIVATE KEY").unwrap());
            assert!(RootCa::from_pem(&format!("{cert_part}{key_part}")).is_err());
        }
        assert!(RootCa::from_pem("").is_err());
    }

    #[test]
    fn inverted_validity_is_refused() {
        let ca = root(1, KeyAlg::EcdsaP256);
        let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
        let csr = key.csr_der("gw").unwrap();
        assert!(matches!(
            ca.issue_leaf(&csr, "gw", window(10, -10)),
            Err(PkiError::Validity(_))
        ));
        let now = std::time::SystemTime::now();
        let empty = Validity {
            not_before: now,
            not_after: now,
        };
        assert!(RootCa::generate("r", 1, KeyAlg::Ed25519, empty).is_err());
    }
}
