//! The check that private keys never leave their node: every control message to or
//! from a node is scanned for a PEM private key block and for the DER of any key the
//! node has had (read from its state directory with the `pem` crate).

use std::path::Path;

use super::{Chaos, lock};

impl Chaos {
    /// Look again at `node`'s keys (after it made a new one).
    pub(crate) fn refresh_secrets(&self, node: &str) {
        let Some(&ix) = self.index.get(node) else {
            return;
        };
        let Some(sim) = self.sim.upgrade() else {
            return;
        };
        if let Some(slot) = sim.agents[ix].as_ref() {
            let mut keys = private_keys(slot.state_dir());
            let mut secrets = lock(&self.secrets);
            let known = secrets.entry(node.to_string()).or_default();
            keys.retain(|k| !known.contains(k));
            known.extend(keys);
        }
    }

    /// Check an encoded control message to or from `node` for private key material:
    /// a PEM private key block, or the DER of any private key the node has had.
    pub(crate) fn scan(&self, node: &str, what: &str, bytes: &[u8]) {
        if contains(bytes, b"PRIVATE KEY") {
            self.violation(format!(
                "a private key (PEM) travelled in {what} of `{node}`"
            ));
            return;
        }
        let secrets = lock(&self.secrets);
        if let Some(keys) = secrets.get(node)
            && keys.iter().any(|k| contains(bytes, k))
        {
            drop(secrets);
            self.violation(format!("`{node}`'s private key (DER) travelled in {what}"));
        }
    }
}

/// Whether `needle` occurs in `haystack` (never for an empty needle).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack.len() >= needle.len()
        && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The DER of every PEM private key in a state directory's `keys/`.
pub(super) fn private_keys(state_dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(state_dir.join(rollover_agent::KEYS_DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .flat_map(|file| pem_private_keys(&file))
        .collect()
}

/// The DER of every private key block (`... PRIVATE KEY`) in a PEM file; nothing for
/// a file that is not PEM.
fn pem_private_keys(file: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(file)
        .unwrap_or_default()
        .into_iter()
        .filter(|block| block.tag().ends_with("PRIVATE KEY"))
        .map(pem::Pem::into_contents)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pem_is_found_in_bytes() {
        let key = rollover_pki::NodeKey::generate(rollover_pki::KeyAlg::default()).unwrap();
        let keys = pem_private_keys(key.to_pem().as_bytes());
        assert_eq!(keys.len(), 1);
        let der = &keys[0];
        let mut message = b"prefix".to_vec();
        message.extend_from_slice(der);
        assert!(contains(&message, der));
        assert!(!contains(b"prefix", der));
    }

    #[test]
    fn only_private_key_blocks_are_secrets() {
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", b"not a key".to_vec()));
        assert!(pem_private_keys(cert.as_bytes()).is_empty());
        assert!(pem_private_keys(b"not pem at all").is_empty());
    }
}
