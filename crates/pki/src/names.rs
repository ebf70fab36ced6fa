//! Node identities in certificates.
//!
//! A node's leaf names it twice: subject CN = the node id, verbatim, and one DNS SAN =
//! [`node_dns_name`] of the id, which is what a client checks the server against. The
//! DNS mapping is injective, so no two node ids can ever share a server name.

use rustls::pki_types::DnsName;
use x509_parser::x509::X509Name;

use crate::PkiError;

/// Domain under which every node name lives.
pub const NODE_DNS_SUFFIX: &str = "node.rollover";

/// Escape byte: `x` + two lowercase hex digits is any escaped byte, `xx` is a literal `x`.
const ESCAPE: u8 = b'x';
/// Longest DNS label.
const MAX_LABEL: usize = 63;

/// Maps a node id to the DNS name in its certificate, injectively.
///
/// Bytes of the id's UTF-8 encoding in `[a-z0-9-]` are kept, `x` becomes `xx`, and any
/// other byte `b` becomes `x` followed by `b` in two lowercase hex digits (`Foo_Bar` ->
/// `x46oox5fx42ar`). A `-` that would start or end a label, or follow another `-`, is
/// escaped too (`x2d`). The result is cut into labels of at most 63 characters and
/// suffixed with `.node.rollover`; the empty id maps to the otherwise unreachable `x`.
///
/// Injective because the code is prefix-free and decodes uniquely once the dots are
/// removed. Ids whose name exceeds DNS's 253 characters are refused where a name is
/// put in a certificate ([`crate::NodeKey::csr_der`], [`crate::RootCa::issue_leaf`]).
pub fn node_dns_name(id: &str) -> String {
    let mut labels = LabelWriter::default();
    let bytes = id.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let hyphen_ok = b == b'-' && !labels.at_edge() && i + 1 < bytes.len();
        match b {
            b'a'..=b'z' | b'0'..=b'9' if b != ESCAPE => labels.push(b),
            _ if hyphen_ok => labels.push(b),
            ESCAPE => {
                labels.push(ESCAPE);
                labels.push(ESCAPE);
            }
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                labels.push(ESCAPE);
                labels.push(HEX[usize::from(b >> 4)]);
                labels.push(HEX[usize::from(b & 0x0f)]);
            }
        }
    }
    if bytes.is_empty() {
        labels.push(ESCAPE);
    }
    let mut name = labels.out;
    name.push('.');
    name.push_str(NODE_DNS_SUFFIX);
    name
}

/// Accumulates characters, starting a new label every [`MAX_LABEL`] characters.
#[derive(Default)]
struct LabelWriter {
    out: String,
    label_len: usize,
}

impl LabelWriter {
    fn push(&mut self, c: u8) {
        if self.label_len == MAX_LABEL {
            self.out.push('.');
            self.label_len = 0;
        }
        self.out.push(char::from(c));
        self.label_len += 1;
    }

    /// Would a `-` pushed now start or end a label, or follow another `-`?
    fn at_edge(&self) -> bool {
        self.label_len == 0 || self.label_len >= MAX_LABEL - 1 || self.out.ends_with('-')
    }
}

/// [`node_dns_name`], checked to be a DNS name rustls accepts.
pub(crate) fn checked_dns_name(id: &str) -> Result<DnsName<'static>, PkiError> {
    let dns_name = node_dns_name(id);
    DnsName::try_from(dns_name.clone()).map_err(|_| PkiError::NodeId {
        id: id.to_owned(),
        dns_name,
    })
}

/// The one SAN entry of `id`'s CSR and leaf: DNS [`node_dns_name`]`(id)`, checked.
pub(crate) fn dns_san(id: &str) -> Result<rcgen::SanType, PkiError> {
    let name = checked_dns_name(id)?;
    let name: &str = name.as_ref();
    Ok(rcgen::SanType::DnsName(name.to_owned().try_into()?))
}

/// Reads the node id (the subject CN) back from a DER certificate.
///
/// `None` if the certificate does not parse or its subject has no CN or more than one.
/// This does not verify the certificate: use it on a peer certificate rustls has
/// already verified.
pub fn node_id_from_cert(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    match common_names(cert.subject()).as_slice() {
        [CommonName::Text(cn)] => Some(cn.clone()),
        _ => None,
    }
}

/// One CN value of a subject name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommonName {
    /// A string.
    Text(String),
    /// A value that is not a string, as its raw bytes.
    NotText(Vec<u8>),
}

impl std::fmt::Display for CommonName {
    /// The text, or the raw bytes in hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommonName::Text(text) => f.write_str(text),
            CommonName::NotText(raw) => f.write_str(&hex::encode(raw)),
        }
    }
}

/// Every CN in `name`.
pub(crate) fn common_names(name: &X509Name<'_>) -> Vec<CommonName> {
    name.iter_common_name()
        .map(|cn| match cn.as_str() {
            Ok(text) => CommonName::Text(text.to_owned()),
            Err(_) => CommonName::NotText(cn.as_slice().to_vec()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The decoder that makes the mapping injective: `decode(node_dns_name(id)) == id`.
    fn decode(name: &str) -> Option<String> {
        let body = name.strip_suffix(NODE_DNS_SUFFIX)?.strip_suffix('.')?;
        let flat: Vec<u8> = body.bytes().filter(|&b| b != b'.').collect();
        if flat == b"x" {
            return Some(String::new());
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < flat.len() {
            match flat[i] {
                ESCAPE if flat.get(i + 1) == Some(&ESCAPE) => {
                    out.push(ESCAPE);
                    i += 2;
                }
                ESCAPE => {
                    let hex = std::str::from_utf8(flat.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).ok()
    }

    fn tricky_ids() -> Vec<String> {
        let mut ids: Vec<String> = [
            "",
            "gw",
            "n0-12",
            "print-server",
            "@executor",
            "Foo_Bar",
            "foo_bar",
            "FOO",
            "foo",
            "x",
            "xx",
            "x40",
            "@",
            "x2d",
            "-",
            "--",
            "-a",
            "a-",
            "a--b",
            "a-x2db",
            "a.b",
            "a b",
            "ä",
            "日本",
            "x78",
            "🦀",
            "\u{0}",
            "n0.node.rollover",
            "x.node",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for len in [61, 62, 63, 64, 65, 126, 127] {
            ids.push("a".repeat(len));
            ids.push(format!("{}-b", "a".repeat(len - 2)));
            ids.push(format!("{}-", "a".repeat(len - 1)));
            ids.push("-a".repeat(len / 2));
            ids.push("_".repeat(len / 3));
        }
        for shift in 0..4 {
            ids.push(format!("{}{}", "b".repeat(shift), "a-".repeat(40)));
        }
        ids
    }

    #[test]
    fn examples_are_readable() {
        assert_eq!(node_dns_name("gw"), "gw.node.rollover");
        assert_eq!(node_dns_name("n0-12"), "n0-12.node.rollover");
        assert_eq!(node_dns_name("print-server"), "print-server.node.rollover");
        assert_eq!(node_dns_name("@executor"), "x40exxecutor.node.rollover");
        assert_eq!(node_dns_name("Foo_Bar"), "x46oox5fx42ar.node.rollover");
        assert_eq!(node_dns_name("-a-b-"), "x2da-bx2d.node.rollover");
        assert_eq!(node_dns_name("a--b"), "a-x2db.node.rollover");
    }

    #[test]
    fn injective_and_always_valid_dns() {
        let mut seen: HashMap<String, String> = HashMap::new();
        for id in tricky_ids() {
            let name = node_dns_name(&id);
            assert_eq!(decode(&name).as_deref(), Some(id.as_str()), "{name}");
            if let Some(other) = seen.insert(name.clone(), id.clone()) {
                assert_eq!(other, id, "collision on {name}");
            }
            assert!(name.len() > NODE_DNS_SUFFIX.len() + 1);
            for label in name.split('.') {
                assert!((1..=63).contains(&label.len()), "label {label:?} in {name}");
                assert!(!label.starts_with('-') && !label.ends_with('-'), "{name}");
                assert!(!label.contains("--"), "{name}");
                assert!(
                    label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{name}"
                );
            }
            if name.len() <= 253 {
                checked_dns_name(&id).unwrap_or_else(|e| panic!("{id:?}: {e}"));
            } else {
                assert!(checked_dns_name(&id).is_err());
            }
        }
    }

    #[test]
    fn overlong_ids_are_refused() {
        assert!(checked_dns_name(&"a".repeat(200)).is_ok());
        assert!(matches!(
            checked_dns_name(&"a".repeat(300)),
            Err(PkiError::NodeId { .. })
        ));
    }
}
