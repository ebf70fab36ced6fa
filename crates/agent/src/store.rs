//! The agent's state directory: `node.json`, `keys/*.pem` and, when the control CA is
//! a separate one, `control.json` + `control-key.pem`.
//!
//! The directories are owner-only (0700), every file 0600, and every file is written
//! atomically (see [`crate::files`]: on the disk or, for simulated agents, in
//! memory), so a crash leaves either the old or the new version. A key file is
//! written before the `node.json` that refers to it; files no state refers to are
//! removed afterwards. On the disk everything here blocks: async callers run it on
//! the blocking pool (see [`crate::StateFiles::blocks`]).

use std::collections::BTreeMap;
use std::path::Path;

use rollover_core::state::{Action, Mode};
use rollover_pki::{Bridges, CertificateDer, CredentialSet, HeldLeaf, NodeKey, fingerprint};
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::fence::{LeaderEpochs, SeenEpoch};
use crate::files::StateDir;
use crate::machine::Generation;
use crate::node::{CsrLabel, LedgerEntry, NodeData, Pending, Rotation, StoredGen};

/// The node's state file.
pub const NODE_FILE: &str = "node.json";
/// The separate control CA's credentials, if any.
pub const CONTROL_FILE: &str = "control.json";
/// The key of the control leaf.
pub const CONTROL_KEY_FILE: &str = "control-key.pem";
/// Directory of the node's keys for the rotated CA.
pub const KEYS_DIR: &str = "keys";

const NODE_FORMAT: &str = "rollover-agent-node/1";
const CONTROL_FORMAT: &str = "rollover-agent-control/1";
const CERT_TAG: &str = "CERTIFICATE";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    format: String,
    id: String,
    mode: Mode,
    /// MODEL §2 state of the live credentials, for people reading the file; ignored
    /// on load (the state follows from the generations and the steps done).
    state: String,
    current: GenFile,
    #[serde(default)]
    rotation: Option<RotationFile>,
    #[serde(default)]
    pending: Option<PendingFile>,
    #[serde(default)]
    applied: Vec<AppliedFile>,
    applied_count: u64,
    /// The highest leader epoch seen per rotation, oldest rotation first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    leader_epochs: Vec<SeenEpoch>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenFile {
    root_fingerprint: String,
    root: String,
    leaf_fingerprint: String,
    leaf: String,
    key_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    csr_for: Option<CsrLabel>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotationFile {
    id: String,
    /// Absent only in a bridged rotation before its mode's first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new: Option<GenFile>,
    /// `b_new` and `b_old` (PEM) of a bridged rotation (MODEL §11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bridges: Option<BridgesFile>,
    steps: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgesFile {
    b_new: String,
    b_old: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingFile {
    csr_for: CsrLabel,
    key_file: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppliedFile {
    rotation_id: String,
    step_id: u64,
    action: Action,
    undo: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlFile {
    format: String,
    id: String,
    root_fingerprint: String,
    root: String,
    leaf: String,
    key_file: String,
}

/// Whether `dir` holds a node's state.
pub(crate) fn is_bootstrapped(dir: &StateDir) -> bool {
    dir.files().is_file(&dir.join(NODE_FILE))
}

/// Whether `dir` holds control credentials.
pub(crate) fn has_control(dir: &StateDir) -> bool {
    dir.files().is_file(&dir.join(CONTROL_FILE))
}

/// Creates `dir` and `dir/keys` (0700), tightening them if they exist.
pub(crate) fn create_dirs(dir: &StateDir) -> Result<(), AgentError> {
    for d in [dir.path().to_path_buf(), dir.join(KEYS_DIR)] {
        dir.files().create_dir(&d)?;
    }
    Ok(())
}

/// The file name a key is stored under in `keys/`.
pub(crate) fn key_file_name(key: &NodeKey) -> String {
    format!("{}.pem", &fingerprint(&key.public_key_der())[..24])
}

/// Writes `key` to `keys/<key_file>`.
pub(crate) fn write_key(dir: &StateDir, key_file: &str, key: &NodeKey) -> Result<(), AgentError> {
    dir.files().write(
        &dir.join(KEYS_DIR).join(checked_name(dir.path(), key_file)?),
        key.to_pem().as_bytes(),
    )
}

/// Removes every file in `keys/` that is not in `keep`.
pub(crate) fn remove_other_keys(dir: &StateDir, keep: &[&str]) -> Result<(), AgentError> {
    let keys = dir.join(KEYS_DIR);
    for path in dir.files().list(&keys)? {
        let name = path.file_name().and_then(|n| n.to_str());
        if !keep.iter().any(|k| name == Some(k)) {
            dir.files().remove(&path)?;
            tracing::debug!(file = %path.display(), "removed unused key");
        }
    }
    Ok(())
}

/// Writes `node.json`.
pub(crate) fn save_node(dir: &StateDir, node: &NodeData) -> Result<(), AgentError> {
    let state = node.state().to_string();
    let file = NodeFile {
        format: NODE_FORMAT.into(),
        id: node.id.clone(),
        mode: node.mode,
        state,
        current: gen_file(&node.current),
        rotation: node.rotation.as_ref().map(|r| RotationFile {
            id: r.id.clone(),
            new: r.new.as_ref().map(gen_file),
            bridges: r.bridges.as_ref().map(|b| BridgesFile {
                b_new: cert_pem(&b.b_new),
                b_old: cert_pem(&b.b_old),
            }),
            steps: r.steps.clone(),
        }),
        pending: node.pending.as_ref().map(|p| PendingFile {
            csr_for: p.label.clone(),
            key_file: p.key_file.clone(),
        }),
        applied: node
            .ledger
            .iter()
            .map(|((rotation_id, step_id), entry)| AppliedFile {
                rotation_id: rotation_id.clone(),
                step_id: *step_id,
                action: entry.action,
                undo: entry.undone,
            })
            .collect(),
        applied_count: node.applied_count,
        leader_epochs: node.leader_epochs.seen().to_vec(),
    };
    let mut text = serde_json::to_string_pretty(&file)
        .map_err(|e| AgentError::state(dir.join(NODE_FILE), e))?;
    text.push('\n');
    dir.files().write(&dir.join(NODE_FILE), text.as_bytes())
}

/// Reads `node.json` and the keys it refers to; tightens permissions if needed.
pub(crate) fn load_node(dir: &StateDir) -> Result<NodeData, AgentError> {
    let path = dir.join(NODE_FILE);
    if !dir.files().is_file(&path) {
        return Err(AgentError::NotBootstrapped {
            dir: dir.path().to_path_buf(),
        });
    }
    create_dirs(dir)?;
    let text = dir.files().read_to_string(&path)?;
    let file: NodeFile = serde_json::from_str(&text).map_err(|e| AgentError::state(&path, e))?;
    if file.format != NODE_FORMAT {
        return Err(AgentError::state(
            &path,
            format!("format {:?}, expected {NODE_FORMAT:?}", file.format),
        ));
    }
    let mut ledger = BTreeMap::new();
    for a in file.applied {
        ledger.insert(
            (a.rotation_id, a.step_id),
            LedgerEntry {
                action: a.action,
                undone: a.undo,
            },
        );
    }
    let node = NodeData {
        id: file.id,
        mode: file.mode,
        current: load_gen(dir, file.current)?,
        rotation: file
            .rotation
            .map(|r| {
                Ok::<_, AgentError>(Rotation {
                    id: r.id,
                    new: r.new.map(|g| load_gen(dir, g)).transpose()?,
                    bridges: r
                        .bridges
                        .map(|b| {
                            Ok::<_, AgentError>(Bridges {
                                b_new: cert_from_pem(&path, &b.b_new)?,
                                b_old: cert_from_pem(&path, &b.b_old)?,
                            })
                        })
                        .transpose()?,
                    steps: r.steps,
                })
            })
            .transpose()?,
        pending: file
            .pending
            .map(|p| {
                Ok::<_, AgentError>(Pending {
                    key: load_key(dir, &p.key_file)?,
                    label: p.csr_for,
                    key_file: p.key_file,
                })
            })
            .transpose()?,
        ledger,
        applied_count: file.applied_count,
        leader_epochs: LeaderEpochs::from_seen(file.leader_epochs),
        chains: true,
    };
    if node.done() > crate::machine::steps(node.mode, node.bridged()).len() {
        return Err(AgentError::state(
            &path,
            "more steps done than the mode has",
        ));
    }
    node.credential_set()
        .map_err(|e| AgentError::state(&path, e))?;
    Ok(node)
}

/// Writes the control credentials (`control.json`, `control-key.pem`).
pub(crate) fn save_control(
    dir: &StateDir,
    id: &str,
    root: &CertificateDer<'static>,
    leaf: &HeldLeaf,
) -> Result<(), AgentError> {
    dir.files()
        .write(&dir.join(CONTROL_KEY_FILE), leaf.key.to_pem().as_bytes())?;
    let file = ControlFile {
        format: CONTROL_FORMAT.into(),
        id: id.into(),
        root_fingerprint: fingerprint(root),
        root: cert_pem(root),
        leaf: cert_pem(&leaf.cert),
        key_file: CONTROL_KEY_FILE.into(),
    };
    let mut text = serde_json::to_string_pretty(&file)
        .map_err(|e| AgentError::state(dir.join(CONTROL_FILE), e))?;
    text.push('\n');
    dir.files().write(&dir.join(CONTROL_FILE), text.as_bytes())
}

/// The control credentials saved by [`save_control`], if any.
pub(crate) fn load_control(dir: &StateDir) -> Result<Option<CredentialSet>, AgentError> {
    let path = dir.join(CONTROL_FILE);
    if !dir.files().is_file(&path) {
        return Ok(None);
    }
    let text = dir.files().read_to_string(&path)?;
    let file: ControlFile = serde_json::from_str(&text).map_err(|e| AgentError::state(&path, e))?;
    if file.format != CONTROL_FORMAT {
        return Err(AgentError::state(
            &path,
            format!("format {:?}, expected {CONTROL_FORMAT:?}", file.format),
        ));
    }
    let key_path = dir.join(checked_name(dir.path(), &file.key_file)?);
    dir.files().tighten(&key_path, 0o600)?;
    let key_pem = dir.files().read_to_string(&key_path)?;
    let key = NodeKey::from_pem(&key_pem).map_err(|e| AgentError::state(&key_path, e))?;
    let root = cert_from_pem(&path, &file.root)?;
    Ok(Some(CredentialSet {
        server_roots: vec![root.clone()],
        client_roots: vec![root],
        held: vec![HeldLeaf::new(cert_from_pem(&path, &file.leaf)?, key)],
        presents: Some(0),
        ..CredentialSet::default()
    }))
}

fn gen_file(g: &StoredGen) -> GenFile {
    GenFile {
        root_fingerprint: fingerprint(&g.material.root),
        root: cert_pem(&g.material.root),
        leaf_fingerprint: fingerprint(&g.material.leaf.cert),
        leaf: cert_pem(&g.material.leaf.cert),
        key_file: g.key_file.clone(),
        csr_for: g.label.clone(),
    }
}

fn load_gen(dir: &StateDir, g: GenFile) -> Result<StoredGen, AgentError> {
    let path = dir.join(NODE_FILE);
    Ok(StoredGen {
        material: Generation {
            root: cert_from_pem(&path, &g.root)?,
            leaf: HeldLeaf::new(cert_from_pem(&path, &g.leaf)?, load_key(dir, &g.key_file)?),
        },
        key_file: g.key_file,
        label: g.csr_for,
    })
}

fn load_key(dir: &StateDir, key_file: &str) -> Result<NodeKey, AgentError> {
    let path = dir.join(KEYS_DIR).join(checked_name(dir.path(), key_file)?);
    dir.files().tighten(&path, 0o600)?;
    let pem = dir.files().read_to_string(&path)?;
    NodeKey::from_pem(&pem).map_err(|e| AgentError::state(&path, e))
}

/// A key file name from a state file: a plain `*.pem` name, never a path.
fn checked_name<'a>(dir: &Path, name: &'a str) -> Result<&'a str, AgentError> {
    let plain = !name.is_empty()
        && name.ends_with(".pem")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if plain {
        Ok(name)
    } else {
        Err(AgentError::state(
            dir.join(NODE_FILE),
            format!("key file name {name:?} is not a plain *.pem file name"),
        ))
    }
}

fn cert_pem(cert: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new(CERT_TAG, cert.to_vec()))
}

fn cert_from_pem(path: &Path, text: &str) -> Result<CertificateDer<'static>, AgentError> {
    let block = pem::parse(text).map_err(|e| AgentError::state(path, e))?;
    if block.tag() != CERT_TAG {
        return Err(AgentError::state(
            path,
            format!("expected a {CERT_TAG} PEM block, found {}", block.tag()),
        ));
    }
    Ok(CertificateDer::from(block.into_contents()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rollover_pki::{KeyAlg, RootCa, Validity};

    use super::*;
    use crate::files::MemFiles;
    use crate::{bootstrap_in, machine::steps};

    /// A node's state round-trips the same way through memory as through the disk:
    /// same files, same state loaded back, the same refusals.
    #[test]
    fn a_node_in_memory_is_stored_as_on_the_disk() {
        let ca = RootCa::generate("store-ca", 0, KeyAlg::default(), Validity::default()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let disk = StateDir::on_disk(tmp.path().join("node"));
        let memory = StateDir::new("/simulated/node", Arc::new(MemFiles::new()));
        let mut loaded = Vec::new();
        for dir in [&disk, &memory] {
            assert!(matches!(
                load_node(dir),
                Err(AgentError::NotBootstrapped { .. })
            ));
            bootstrap_in(dir, "n1", Mode::Bundle, &ca, Validity::default()).unwrap();
            assert!(is_bootstrapped(dir));
            assert!(!has_control(dir));
            assert!(matches!(
                bootstrap_in(dir, "n1", Mode::Bundle, &ca, Validity::default()),
                Err(AgentError::AlreadyBootstrapped { .. })
            ));
            let mut node = load_node(dir).unwrap();
            let keys = dir.files().list(&dir.join(KEYS_DIR)).unwrap();
            assert_eq!(keys.len(), 1, "one key file");
            assert_eq!(
                node.key_files(),
                vec![keys[0].file_name().unwrap().to_str().unwrap()]
            );
            // A changed state is saved and loaded back whole; unused keys go.
            node.applied_count = 7;
            save_node(dir, &node).unwrap();
            dir.files()
                .write(&dir.join(KEYS_DIR).join("unused.pem"), b"x")
                .unwrap();
            let kept: Vec<String> = node.key_files().into_iter().map(String::from).collect();
            let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
            remove_other_keys(dir, &kept).unwrap();
            assert_eq!(dir.files().list(&dir.join(KEYS_DIR)).unwrap(), keys);
            let again = load_node(dir).unwrap();
            assert_eq!(again.applied_count, 7);
            assert_eq!(again.state().to_string(), node.state().to_string());
            let (a, b) = (
                again.credential_set().unwrap(),
                node.credential_set().unwrap(),
            );
            assert_eq!(a.server_roots, b.server_roots);
            assert_eq!(a.held.len(), b.held.len());
            assert_eq!(a.held[0].cert, b.held[0].cert);
            // A state file naming a key that is not a plain file name is refused.
            let text = dir.files().read_to_string(&dir.join(NODE_FILE)).unwrap();
            let bad = text.replace(&node.key_files()[0].to_string(), "../x.pem");
            dir.files()
                .write(&dir.join(NODE_FILE), bad.as_bytes())
                .unwrap();
            assert!(matches!(load_node(dir), Err(AgentError::State { .. })));
            loaded.push(again);
        }
        assert_eq!(loaded[0].id, loaded[1].id);
        assert_eq!(loaded[0].mode, loaded[1].mode);
        assert!(loaded[0].done() <= steps(Mode::Bundle, false).len());
    }
}
