//! Bridges: cross-signed roots (MODEL §11).
//!
//! A bridge carries one root generation's subject name and public key, signed by the
//! other generation's root key: `b_new` (new, signed by old) lets a peer that trusts
//! only `old` verify a leaf issued by `new` through the chain `leaf <- b_new <- old`,
//! and `b_old` the other way round. Only the issuer can make them, since it holds both
//! root keys; nodes receive the certificates and append them after their leaf.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, KeyUsagePurpose,
    SubjectPublicKeyInfo,
};
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::BasicConstraints as ParsedConstraints;
use x509_parser::x509::X509Name;

use crate::ca::serial;
use crate::{PkiError, RootCa};

/// The two bridges between an old and a new root generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridges {
    /// Subject and key of the new root, issued by the old one.
    pub b_new: CertificateDer<'static>,
    /// Subject and key of the old root, issued by the new one.
    pub b_old: CertificateDer<'static>,
}

impl Bridges {
    /// Issues both bridges. Needs both roots' keys: `old` signs `b_new` and `new`
    /// signs `b_old`.
    pub fn issue(old: &RootCa, new: &RootCa) -> Result<Self, PkiError> {
        Ok(Self {
            b_new: old.cross_sign(new.cert_der())?,
            b_old: new.cross_sign(old.cert_der())?,
        })
    }

    /// Both bridges, in the order a node sends them after its leaf.
    pub fn to_vec(&self) -> Vec<CertificateDer<'static>> {
        vec![self.b_new.clone(), self.b_old.clone()]
    }
    /// Checks the bridges against the roots a node knows: `b_new` issued by
    /// `old_root` and `b_old` carrying `old_root`'s name and key; once the node has
    /// the new root too, `b_new` carrying its name and key and `b_old` issued by it.
    /// A node runs this before it sends anything it was given.
    pub fn check(&self, old_root: &[u8], new_root: Option<&[u8]>) -> Result<(), PkiError> {
        let named = |what: &'static str| move |e: PkiError| e.in_bridge(what);
        check_bridge(&self.b_new).map_err(named("b_new"))?;
        check_bridge(&self.b_old).map_err(named("b_old"))?;
        let (_, b_new) = parse(&self.b_new)?;
        let (_, b_old) = parse(&self.b_old)?;
        let (_, old) = parse(old_root)?;
        issued_by(&b_new, &old).map_err(named("b_new is not issued by the old root"))?;
        carries(&b_old, &old).map_err(named("b_old does not carry the old root"))?;
        if let Some(new_root) = new_root {
            let (_, new) = parse(new_root)?;
            carries(&b_new, &new).map_err(named("b_new does not carry the new root"))?;
            issued_by(&b_old, &new).map_err(named("b_old is not issued by the new root"))?;
        }
        Ok(())
    }
}

/// `cert` names `issuer` as its issuer and its signature verifies with its key.
fn issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), PkiError> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(PkiError::Bridge(format!("its issuer is {}", cert.issuer())));
    }
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|e| PkiError::Bridge(format!("signature: {e}")))
}

/// `cert` has `root`'s subject name and public key.
fn carries(cert: &X509Certificate<'_>, root: &X509Certificate<'_>) -> Result<(), PkiError> {
    if cert.subject().as_raw() != root.subject().as_raw() {
        return Err(PkiError::Bridge(format!(
            "its subject is {}",
            cert.subject()
        )));
    }
    if cert.public_key().raw != root.public_key().raw {
        return Err(PkiError::Bridge("its public key differs".into()));
    }
    Ok(())
}

impl RootCa {
    /// A bridge to `other_root`: a CA certificate with `other_root`'s subject name and
    /// public key, issued by this root (basicConstraints CA, pathLenConstraint 0,
    /// keyCertSign), valid exactly over the overlap of the two roots' validity.
    ///
    /// Refuses a certificate that is not a CA, one with this root's own subject (the
    /// bridge would be indistinguishable from a renewal of this root), and two roots
    /// whose validity periods do not overlap.
    pub fn cross_sign(
        &self,
        other_root: &CertificateDer<'_>,
    ) -> Result<CertificateDer<'static>, PkiError> {
        let (_, other) = parse(other_root)?;
        if !other.is_ca() {
            return Err(PkiError::Bridge("the other root is not a CA".into()));
        }
        if other.subject().as_raw() == self.subject_dn() {
            return Err(PkiError::Bridge(
                "both roots have the same subject name; generations need distinct names".into(),
            ));
        }
        let (_, mine) = parse(self.cert_der())?;
        let not_before = mine
            .validity()
            .not_before
            .to_datetime()
            .max(other.validity().not_before.to_datetime());
        let not_after = mine
            .validity()
            .not_after
            .to_datetime()
            .min(other.validity().not_after.to_datetime());
        if not_before >= not_after {
            return Err(PkiError::Validity(
                "the two roots' validity periods do not overlap, so no bridge can be valid".into(),
            ));
        }

        let public_key = SubjectPublicKeyInfo::from_der(other.public_key().raw)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(other.subject())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(serial(&[
            other.public_key().raw,
            other.subject().as_raw(),
            self.subject_dn(),
        ]));
        let bridge = params.signed_by(&public_key, &self.issuer)?.der().clone();

        // The subject must be byte-for-byte the other root's, or neither CA hints nor
        // path building would connect the leaf's issuer name to the bridge.
        let (_, issued) = parse(&bridge)?;
        if issued.subject().as_raw() != other.subject().as_raw() {
            return Err(PkiError::Bridge(
                "could not reproduce the other root's subject name exactly".into(),
            ));
        }
        Ok(bridge)
    }
}

/// Checks that `cert` has the shape of a bridge: a parseable CA certificate with
/// pathLenConstraint 0 whose subject differs from its issuer.
pub fn check_bridge(cert: &[u8]) -> Result<(), PkiError> {
    let bridge = |reason: String| PkiError::Bridge(reason);
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| bridge(format!("malformed: {e}")))?;
    match parsed.basic_constraints() {
        Ok(Some(ext)) => match ext.value {
            ParsedConstraints {
                ca: true,
                path_len_constraint: Some(0),
            } => {}
            other => {
                return Err(bridge(format!(
                    "basicConstraints must be CA with pathLenConstraint 0, found {other:?}"
                )));
            }
        },
        _ => return Err(bridge("missing or malformed basicConstraints".into())),
    }
    if parsed.subject().as_raw() == parsed.issuer().as_raw() {
        return Err(bridge(
            "self-issued: a bridge names one root and is signed by the other".into(),
        ));
    }
    Ok(())
}

fn parse(cert: &[u8]) -> Result<(&[u8], X509Certificate<'_>), PkiError> {
    x509_parser::parse_x509_certificate(cert).map_err(|e| PkiError::Certificate(e.to_string()))
}

/// An rcgen name with the same attributes, in the same order and with the same string
/// types, as a parsed one (rcgen has no public conversion).
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, PkiError> {
    let unsupported = |what: &str| PkiError::Bridge(format!("root subject name: {what}"));
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(unsupported("multi-valued or empty RDN"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("attribute type OID too large"))?
            .collect();
        let text = || {
            std::str::from_utf8(attr.attr_value().data)
                .map(str::to_owned)
                .map_err(|_| unsupported("attribute value is not UTF-8"))
        };
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?),
            Tag::PrintableString => DnValue::PrintableString(
                text()?
                    .try_into()
                    .map_err(|_| unsupported("bad PrintableString"))?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text()?
                    .try_into()
                    .map_err(|_| unsupported("bad IA5String"))?,
            ),
            other => return Err(unsupported(&format!("string type {other}"))),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::X509Certificate;

    use super::*;
    use crate::testutil::{leaf, root, window};
    use crate::{KeyAlg, Validity};

    fn parsed(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der).unwrap().1
    }

    /// `bridge` names `subject_root` with its key and is signed by `issuer_root`.
    fn assert_bridge(bridge: &[u8], subject_root: &RootCa, issuer_root: &RootCa) {
        let (b, subject, issuer) = (
            parsed(bridge),
            parsed(subject_root.cert_der()),
            parsed(issuer_root.cert_der()),
        );
        assert_eq!(b.subject().as_raw(), subject_root.subject_dn());
        assert_eq!(b.issuer().as_raw(), issuer_root.subject_dn());
        assert_eq!(b.public_key().raw, subject.public_key().raw);
        b.verify_signature(Some(issuer.public_key())).unwrap();
        assert!(b.verify_signature(Some(subject.public_key())).is_err());
        let constraints = b.basic_constraints().unwrap().unwrap().value;
        assert!(constraints.ca);
        assert_eq!(constraints.path_len_constraint, Some(0));
        assert!(b.key_usage().unwrap().unwrap().value.key_cert_sign());
        // The key identifiers chain like the roots' own: SKI of the subject root, AKI
        // of the issuing root (OpenSSL matches them when building paths).
        assert_eq!(
            ski(&b),
            ski(&subject),
            "subject key identifier of the bridged root"
        );
        assert_eq!(aki(&b), ski(&issuer), "authority key identifier");
        check_bridge(bridge).unwrap();
    }

    fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
        use x509_parser::extensions::ParsedExtension;
        cert.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .unwrap()
    }

    fn aki(cert: &X509Certificate<'_>) -> Vec<u8> {
        use x509_parser::extensions::ParsedExtension;
        cert.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(id) => {
                    id.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn bridges_carry_the_other_roots_name_and_key() {
        for (old_alg, new_alg) in [
            (KeyAlg::EcdsaP256, KeyAlg::EcdsaP256),
            (KeyAlg::EcdsaP256, KeyAlg::Ed25519),
            (KeyAlg::Ed25519, KeyAlg::EcdsaP256),
        ] {
            let (old, new) = (root(1, old_alg), root(2, new_alg));
            let bridges = Bridges::issue(&old, &new).unwrap();
            assert_bridge(&bridges.b_new, &new, &old);
            assert_bridge(&bridges.b_old, &old, &new);
            assert_eq!(bridges.to_vec(), [bridges.b_new.clone(), bridges.b_old]);
        }
    }

    #[test]
    fn roots_loaded_from_pem_cross_sign_too() {
        let (old, new) = (root(1, KeyAlg::EcdsaP256), root(2, KeyAlg::EcdsaP256));
        let old = RootCa::from_pem(&old.to_pem()).unwrap();
        let new = RootCa::from_pem(&new.to_pem()).unwrap();
        let bridges = Bridges::issue(&old, &new).unwrap();
        assert_bridge(&bridges.b_new, &new, &old);
        assert_bridge(&bridges.b_old, &old, &new);
    }

    #[test]
    fn bridges_are_valid_exactly_over_the_overlap() {
        let make = |generation, validity| {
            RootCa::generate("corp-root", generation, KeyAlg::EcdsaP256, validity).unwrap()
        };
        let old = make(1, window(-7200, 3600));
        let new = make(2, window(-60, 86_400));
        let bridges = Bridges::issue(&old, &new).unwrap();
        let validity = |der: &[u8]| {
            let v = parsed(der).validity().clone();
            (v.not_before.timestamp(), v.not_after.timestamp())
        };
        let (old_v, new_v) = (validity(old.cert_der()), validity(new.cert_der()));
        for bridge in [&bridges.b_new, &bridges.b_old] {
            assert_eq!(validity(bridge), (new_v.0, old_v.1));
        }

        let disjoint = make(3, window(7200, 86_400));
        let err = old.cross_sign(disjoint.cert_der()).unwrap_err();
        assert!(matches!(err, PkiError::Validity(_)), "{err}");
        assert!(err.to_string().contains("do not overlap"), "{err}");
    }

    #[test]
    fn only_a_distinct_root_can_be_bridged() {
        let old = root(1, KeyAlg::EcdsaP256);
        let again =
            RootCa::generate("corp-root", 1, KeyAlg::EcdsaP256, Validity::default()).unwrap();
        let err = old.cross_sign(again.cert_der()).unwrap_err();
        assert!(err.to_string().contains("same subject name"), "{err}");

        let node = leaf(&old, "gw", KeyAlg::EcdsaP256);
        let err = old.cross_sign(&node.cert).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
        assert!(
            old.cross_sign(&CertificateDer::from(vec![1, 2, 3]))
                .is_err()
        );
    }

    #[test]
    fn bridges_check_against_the_roots_a_node_knows() {
        let (old, new) = (root(1, KeyAlg::EcdsaP256), root(2, KeyAlg::EcdsaP256));
        let good = Bridges::issue(&old, &new).unwrap();
        good.check(old.cert_der(), None).unwrap();
        good.check(old.cert_der(), Some(new.cert_der())).unwrap();

        // Bridges between other roots, or swapped, are refused, saying which is wrong.
        let other = root(3, KeyAlg::EcdsaP256);
        let foreign = Bridges::issue(&other, &new).unwrap();
        let err = foreign.check(old.cert_der(), None).unwrap_err().to_string();
        assert!(err.contains("b_new is not issued by the old root"), "{err}");
        let swapped = Bridges {
            b_new: good.b_old.clone(),
            b_old: good.b_new.clone(),
        };
        assert!(swapped.check(old.cert_der(), None).is_err());
        let wrong_new = Bridges::issue(&old, &other).unwrap();
        wrong_new.check(old.cert_der(), None).unwrap();
        let err = wrong_new
            .check(old.cert_der(), Some(new.cert_der()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("b_new does not carry the new root"), "{err}");
        let not_bridges = Bridges {
            b_new: new.cert_der().clone(),
            b_old: old.cert_der().clone(),
        };
        let err = not_bridges
            .check(old.cert_der(), None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bridge: b_new: "), "{err}");
    }

    #[test]
    fn check_bridge_refuses_roots_leaves_and_garbage() {
        let old = root(1, KeyAlg::EcdsaP256);
        for (what, der) in [
            ("root", old.cert_der().to_vec()),
            ("leaf", leaf(&old, "gw", KeyAlg::EcdsaP256).cert.to_vec()),
            ("garbage", b"not a certificate".to_vec()),
        ] {
            assert!(
                matches!(check_bridge(&der), Err(PkiError::Bridge(_))),
                "{what} passed as a bridge"
            );
        }
    }
}
