//! Checking a CSR before a root signs it: well-formed, self-signed, and naming exactly
//! the node the leaf is being issued to.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::PkiError;
use crate::names::{CommonName, common_names, node_dns_name};

/// Returns the CSR's public key once the CSR is proven to be a valid request for `node_id`.
///
/// Refused: a CSR that does not parse; whose signature does not verify against its own
/// key; whose subject has anything but exactly one CN equal to `node_id`; whose SANs
/// are anything but exactly one DNS name equal to `node_dns_name(node_id)`. Any other
/// requested extension is ignored: the issuer decides the leaf's contents.
pub(crate) fn checked_public_key(
    csr_der: &[u8],
    node_id: &str,
) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    let (rest, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| PkiError::CsrMalformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::CsrMalformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    csr.verify_signature()
        .map_err(|_| PkiError::CsrBadSignature)?;
    let info = &csr.certification_request_info;

    let cns = common_names(&info.subject);
    if !matches!(cns.as_slice(), [CommonName::Text(cn)] if cn == node_id) {
        return Err(PkiError::CsrCommonName {
            expected: node_id.to_owned(),
            found: cns.iter().map(ToString::to_string).collect(),
        });
    }

    let expected = node_dns_name(node_id);
    let sans: Vec<&GeneralName<'_>> = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
            _ => None,
        })
        .flatten()
        .collect();
    if !matches!(sans.as_slice(), [GeneralName::DNSName(dns)] if *dns == expected) {
        return Err(PkiError::CsrSubjectAltName {
            expected,
            found: sans.iter().map(ToString::to_string).collect(),
        });
    }

    Ok(rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)?)
}
