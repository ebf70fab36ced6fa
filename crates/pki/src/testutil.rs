//! Test fixtures: roots, leaves and credential sets built through the public API.

use std::time::{Duration, SystemTime};

use crate::{CredentialSet, HeldLeaf, KeyAlg, NodeKey, RootCa, Validity};

/// A root of generation `generation` of the CA "corp-root".
pub(crate) fn root(generation: u32, alg: KeyAlg) -> RootCa {
    RootCa::generate("corp-root", generation, alg, Validity::default()).unwrap()
}

/// A leaf for `node_id` from `root`, with a fresh node key, valid for `validity`.
pub(crate) fn leaf_with(root: &RootCa, node_id: &str, alg: KeyAlg, validity: Validity) -> HeldLeaf {
    let key = NodeKey::generate(alg).unwrap();
    let csr = key.csr_der(node_id).unwrap();
    HeldLeaf::new(root.issue_leaf(&csr, node_id, validity).unwrap(), key)
}

/// A currently valid leaf for `node_id` from `root`.
pub(crate) fn leaf(root: &RootCa, node_id: &str, alg: KeyAlg) -> HeldLeaf {
    leaf_with(root, node_id, alg, Validity::default())
}

/// A validity period `from`..`to` seconds relative to now.
pub(crate) fn window(from: i64, to: i64) -> Validity {
    let at = |secs: i64| {
        let now = SystemTime::now();
        let d = Duration::from_secs(secs.unsigned_abs());
        if secs < 0 { now - d } else { now + d }
    };
    Validity {
        not_before: at(from),
        not_after: at(to),
    }
}

/// A node that trusts and holds `root` alone, presenting its leaf.
pub(crate) fn single(root: &RootCa, leaf: HeldLeaf) -> CredentialSet {
    CredentialSet {
        server_roots: vec![root.cert_der().clone()],
        client_roots: vec![root.cert_der().clone()],
        held: vec![leaf],
        presents: Some(0),
        ..CredentialSet::default()
    }
}
