//! The agent's state directory: `node.json`, `keys/*.pem` and, when the control CA is
//! a separate one, `control.json` + `control-key.pem`.
//!
//! The directories are owner-only (0700), every file 0600, and every file is written
//! atomically (temporary file, fsync, rename, fsync of the directory), so a crash
//! leaves either the old or the new version. A key file is written before the
//! `node.json` that refers to it; files no state refers to are removed afterwards.
//! Everything here is blocking: async callers run it on the blocking pool.
//!
//! A simulation (thousands of agents in one process, on a disk nobody needs after
//! the run) may turn the fsyncs off process-wide with [`set_synced_writes`]: the
//! files are still written the same way, atomically, only not forced to the disk,
//! which otherwise makes a simulated rotation wait on the disk rather than on TLS.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rollover_core::state::{Action, Mode};
use rollover_pki::{Bridges, CertificateDer, CredentialSet, HeldLeaf, NodeKey, fingerprint};
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::fence::{LeaderEpochs, SeenEpoch};
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

/// Whether [`write_atomic`] fsyncs (see [`set_synced_writes`]).
static SYNCED_WRITES: AtomicBool = AtomicBool::new(true);

/// Whether state files written from now on in this process are fsynced (the
/// default: yes). Only for simulations, whose state directories are thrown away
/// after the run: without the fsync a power loss could lose the last writes.
pub fn set_synced_writes(synced: bool) {
    SYNCED_WRITES.store(synced, Ordering::Relaxed);
}

/// Whether `dir` holds a node's state.
pub fn is_bootstrapped(dir: &Path) -> bool {
    dir.join(NODE_FILE).is_file()
}

/// Creates `dir` and `dir/keys` (0700), tightening them if they exist.
pub(crate) fn create_dirs(dir: &Path) -> Result<(), AgentError> {
    for d in [dir.to_path_buf(), dir.join(KEYS_DIR)] {
        fs::create_dir_all(&d).map_err(|e| AgentError::io(&d, e))?;
        owner_only(&d, 0o700)?;
    }
    Ok(())
}

/// The file name a key is stored under in `keys/`.
pub(crate) fn key_file_name(key: &NodeKey) -> String {
    format!("{}.pem", &fingerprint(&key.public_key_der())[..24])
}

/// Writes `key` to `keys/<key_file>`.
pub(crate) fn write_key(dir: &Path, key_file: &str, key: &NodeKey) -> Result<(), AgentError> {
    write_atomic(
        &dir.join(KEYS_DIR).join(checked_name(dir, key_file)?),
        key.to_pem().as_bytes(),
    )
}

/// Removes every file in `keys/` that is not in `keep`.
pub(crate) fn remove_other_keys(dir: &Path, keep: &[&str]) -> Result<(), AgentError> {
    let keys = dir.join(KEYS_DIR);
    let entries = fs::read_dir(&keys).map_err(|e| AgentError::io(&keys, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| AgentError::io(&keys, e))?;
        let name = entry.file_name();
        if !keep.iter().any(|k| name.to_str() == Some(k)) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| AgentError::io(&path, e))?;
            tracing::debug!(file = %path.display(), "removed unused key");
        }
    }
    Ok(())
}

/// Writes `node.json`.
pub(crate) fn save_node(dir: &Path, node: &NodeData) -> Result<(), AgentError> {
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
    write_atomic(&dir.join(NODE_FILE), text.as_bytes())
}

/// Reads `node.json` and the keys it refers to; tightens permissions if needed.
pub(crate) fn load_node(dir: &Path) -> Result<NodeData, AgentError> {
    let path = dir.join(NODE_FILE);
    if !path.is_file() {
        return Err(AgentError::NotBootstrapped {
            dir: dir.to_path_buf(),
        });
    }
    create_dirs(dir)?;
    let text = fs::read_to_string(&path).map_err(|e| AgentError::io(&path, e))?;
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
    dir: &Path,
    id: &str,
    root: &CertificateDer<'static>,
    leaf: &HeldLeaf,
) -> Result<(), AgentError> {
    write_atomic(&dir.join(CONTROL_KEY_FILE), leaf.key.to_pem().as_bytes())?;
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
    write_atomic(&dir.join(CONTROL_FILE), text.as_bytes())
}

/// The control credentials saved by [`save_control`], if any.
pub(crate) fn load_control(dir: &Path) -> Result<Option<CredentialSet>, AgentError> {
    let path = dir.join(CONTROL_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(|e| AgentError::io(&path, e))?;
    let file: ControlFile = serde_json::from_str(&text).map_err(|e| AgentError::state(&path, e))?;
    if file.format != CONTROL_FORMAT {
        return Err(AgentError::state(
            &path,
            format!("format {:?}, expected {CONTROL_FORMAT:?}", file.format),
        ));
    }
    let key_path = dir.join(checked_name(dir, &file.key_file)?);
    owner_only(&key_path, 0o600)?;
    let key_pem = fs::read_to_string(&key_path).map_err(|e| AgentError::io(&key_path, e))?;
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

fn load_gen(dir: &Path, g: GenFile) -> Result<StoredGen, AgentError> {
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

fn load_key(dir: &Path, key_file: &str) -> Result<NodeKey, AgentError> {
    let path = dir.join(KEYS_DIR).join(checked_name(dir, key_file)?);
    owner_only(&path, 0o600)?;
    let pem = fs::read_to_string(&path).map_err(|e| AgentError::io(&path, e))?;
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

/// Writes `bytes` to `path` atomically, owner-only.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp: PathBuf = parent.join(tmp_name);
    let synced = SYNCED_WRITES.load(Ordering::Relaxed);
    let write = || -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        if synced {
            file.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| AgentError::io(&tmp, e))?;
    owner_only(&tmp, 0o600)?;
    fs::rename(&tmp, path).map_err(|e| AgentError::io(path, e))?;
    if !synced {
        return Ok(());
    }
    // Make the rename itself durable.
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io(parent, e))
}

/// Sets `mode` on `path` if it grants more than that (group or other bits).
#[cfg(unix)]
fn owner_only(path: &Path, mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    let current = fs::metadata(path)
        .map_err(|e| AgentError::io(path, e))?
        .permissions()
        .mode();
    if current & 0o077 != 0 {
        tracing::debug!(path = %path.display(), mode = format!("{:o}", current & 0o777), "making owner-only");
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| AgentError::io(path, e))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &Path, _mode: u32) -> Result<(), AgentError> {
    Ok(())
}
