//! Enrolment before any rotation (demo/dev: the CA is at hand, in process).
//!
//! [`bootstrap`] makes the node's key in its state directory and has its first leaf
//! issued from a CSR by the given root; [`bootstrap_control`] does the same for the
//! separate control CA. The private keys never leave the state directory.

use std::path::Path;

use rollover_core::state::Mode;
use rollover_pki::{CredentialSet, HeldLeaf, KeyAlg, NodeKey, RootCa, Validity};

use crate::AgentError;
use crate::files::StateDir;
use crate::machine::Generation;
use crate::node::{NodeData, StoredGen};
use crate::store;

/// Creates the node `id` in `state_dir` (made owner-only if needed) with a fresh key
/// and a leaf issued by `ca` from the key's CSR: the node then trusts, holds and
/// presents `ca` only (`{old}/{old}/{old}/old`). Refuses a directory that already
/// holds a node.
pub fn bootstrap(
    state_dir: &Path,
    id: &str,
    mode: Mode,
    ca: &RootCa,
    validity: Validity,
) -> Result<(), AgentError> {
    bootstrap_in(&StateDir::on_disk(state_dir), id, mode, ca, validity)
}

/// [`bootstrap`] in `state_dir`'s own files (e.g. in memory, for a simulated agent
/// started with the same [`crate::AgentConfig::state_files`]).
pub fn bootstrap_in(
    state_dir: &StateDir,
    id: &str,
    mode: Mode,
    ca: &RootCa,
    validity: Validity,
) -> Result<(), AgentError> {
    if store::is_bootstrapped(state_dir) {
        let found = store::load_node(state_dir)
            .map(|n| n.id)
            .unwrap_or_default();
        return Err(AgentError::AlreadyBootstrapped {
            dir: state_dir.path().to_path_buf(),
            id: found,
        });
    }
    let leaf = issue(id, ca, validity)?;
    store::create_dirs(state_dir)?;
    let key_file = store::key_file_name(&leaf.key);
    store::write_key(state_dir, &key_file, &leaf.key)?;
    let current = StoredGen {
        material: Generation {
            root: ca.cert_der().clone(),
            leaf,
        },
        key_file,
        label: None,
    };
    let node = NodeData::new(id.to_owned(), mode, current);
    store::save_node(state_dir, &node)?;
    tracing::info!(node = id, %mode, root = %ca.fingerprint(), dir = %state_dir.path().display(), "bootstrapped");
    Ok(())
}

/// Gives the node `id` in `state_dir` a control leaf from the separate control CA
/// `ca` (`control.json`, `control-key.pem`), for [`crate::ControlCreds::StateDir`].
/// Replaces earlier control credentials.
pub fn bootstrap_control(
    state_dir: &Path,
    id: &str,
    ca: &RootCa,
    validity: Validity,
) -> Result<(), AgentError> {
    let leaf = issue(id, ca, validity)?;
    let state_dir = StateDir::on_disk(state_dir);
    store::create_dirs(&state_dir)?;
    store::save_control(&state_dir, id, ca.cert_der(), &leaf)?;
    tracing::info!(node = id, root = %ca.fingerprint(), "control credentials bootstrapped");
    Ok(())
}

/// Whether `state_dir` already holds a node (`node.json`).
pub fn is_bootstrapped(state_dir: &Path) -> bool {
    store::is_bootstrapped(&StateDir::on_disk(state_dir))
}

/// Whether `state_dir` holds control credentials from [`bootstrap_control`].
pub fn has_control_credentials(state_dir: &Path) -> bool {
    store::has_control(&StateDir::on_disk(state_dir))
}

/// A credential set trusting, holding and presenting `ca` alone, with a fresh key
/// and a leaf for `id` issued from its CSR: e.g. an `@executor` client for tests and
/// the simulator. The key exists only in the returned set.
pub fn single_root_credentials(
    id: &str,
    ca: &RootCa,
    validity: Validity,
) -> Result<CredentialSet, AgentError> {
    let leaf = issue(id, ca, validity)?;
    Ok(CredentialSet {
        server_roots: vec![ca.cert_der().clone()],
        client_roots: vec![ca.cert_der().clone()],
        held: vec![leaf],
        presents: Some(0),
        ..CredentialSet::default()
    })
}

fn issue(id: &str, ca: &RootCa, validity: Validity) -> Result<HeldLeaf, AgentError> {
    let key = NodeKey::generate(KeyAlg::default())?;
    let csr = key.csr_der(id)?;
    let cert = ca.issue_leaf(&csr, id, validity)?;
    Ok(HeldLeaf::new(cert, key))
}
