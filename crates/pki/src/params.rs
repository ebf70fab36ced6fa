//! Small value types shared by roots and node keys: [`KeyAlg`] and [`Validity`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::SignatureAlgorithm;
use x509_parser::time::ASN1Time;

use crate::PkiError;

/// The key algorithm of a root or a node key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlg {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    #[default]
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl KeyAlg {
    /// rcgen's signature algorithm for this key algorithm.
    pub(crate) fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// The inverse of [`KeyAlg::rcgen`], for keys loaded from PEM.
    pub(crate) fn from_rcgen(alg: &SignatureAlgorithm) -> Result<Self, PkiError> {
        [Self::EcdsaP256, Self::Ed25519]
            .into_iter()
            .find(|known| known.rcgen() == alg)
            .ok_or_else(|| PkiError::UnsupportedKeyAlg(format!("{alg:?}")))
    }
}

/// A certificate's validity period. Certificates carry whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant at which the certificate is valid.
    pub not_before: SystemTime,
    /// Last instant at which the certificate is valid.
    pub not_after: SystemTime,
}

/// Back-dating applied by [`Validity::for_duration`], to tolerate clock skew.
const SKEW: Duration = Duration::from_secs(3600);
/// Longest lifetime [`Validity::for_duration`] grants (about a thousand years).
const MAX_LIFETIME: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

impl Validity {
    /// From one hour ago (clock skew) until `lifetime` from now (capped at ~1000 years).
    pub fn for_duration(lifetime: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now.checked_sub(SKEW).unwrap_or(now),
            not_after: now + lifetime.min(MAX_LIFETIME),
        }
    }

    /// Applies this period to certificate parameters, refusing an empty or inverted one.
    pub(crate) fn apply(&self, params: &mut rcgen::CertificateParams) -> Result<(), PkiError> {
        if self.not_before >= self.not_after {
            return Err(PkiError::Validity(format!(
                "not_before {:?} is not before not_after {:?}",
                self.not_before, self.not_after
            )));
        }
        params.not_before = asn1_time(self.not_before)?.to_datetime();
        params.not_after = asn1_time(self.not_after)?.to_datetime();
        Ok(())
    }
}

impl Default for Validity {
    /// From one hour ago until one year from now.
    fn default() -> Self {
        Self::for_duration(Duration::from_secs(365 * 24 * 3600))
    }
}

fn asn1_time(t: SystemTime) -> Result<ASN1Time, PkiError> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()),
        Err(before) => i64::try_from(before.duration().as_secs()).map(|s| -s),
    };
    secs.ok()
        .and_then(|s| ASN1Time::from_timestamp(s).ok())
        .ok_or_else(|| PkiError::Validity(format!("{t:?} is out of range")))
}
