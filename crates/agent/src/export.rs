//! Export of a node's live credentials as files, for real TLS software that reads
//! its certificates from disk and reloads on a command (nginx, HAProxy, curl...;
//! MODEL §12).
//!
//! After every change of the live credentials (and when the agent starts, so a
//! workload can start on them) the agent writes, in the export directory:
//!
//! | file | content |
//! |------|---------|
//! | `cert.pem` | the presented leaf, followed by the bridges the node sends |
//! | `key.pem` | the presented leaf's private key (mode 0600) |
//! | `trust-clients.pem` | `t_srv`: the roots that verify clients |
//! | `trust-servers.pem` | `t_cli`: the roots that verify servers |
//!
//! each replaced atomically (temporary file, fsync, rename, fsync of the directory),
//! only after the node's state is persisted, then runs the reload command with
//! `sh -c` and waits for it. A non-zero exit or a time-out is an error carrying the
//! command's stderr: the step that caused it fails (and is undone on the node).
//!
//! The export directory is on the node, like the state directory: the key file
//! never leaves the node.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rollover_pki::{CertificateDer, CredentialSet, HeldLeaf};
use tokio::io::AsyncReadExt;

use crate::AgentError;

/// The presented leaf followed by the bridges the node sends.
pub const CERT_FILE: &str = "cert.pem";
/// The presented leaf's private key (mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// `t_srv`: the roots a workload verifies clients with.
pub const TRUST_CLIENTS_FILE: &str = "trust-clients.pem";
/// `t_cli`: the roots a workload verifies servers with.
pub const TRUST_SERVERS_FILE: &str = "trust-servers.pem";

/// How long a reload command may run by default.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of a failed reload command's stderr kept in the error.
const MAX_STDERR: usize = 4096;

/// Where a node's credentials are exported and how its workload is told.
#[derive(Clone, Debug)]
pub struct Export {
    /// The export directory (created if missing).
    pub dir: PathBuf,
    /// The reload command, run with `sh -c` after the files changed; `None` runs
    /// nothing.
    pub reload: Option<String>,
    /// How long the reload command may run before it is killed and the step fails.
    pub reload_timeout: Duration,
}

impl Export {
    /// An export to `dir` with no reload command.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            reload: None,
            reload_timeout: DEFAULT_RELOAD_TIMEOUT,
        }
    }

    /// Sets the reload command.
    pub fn reload(mut self, command: impl Into<String>) -> Self {
        self.reload = Some(command.into());
        self
    }

    /// Creates the export directory if missing and checks that files can be
    /// written in it (a probe file is made and removed). Changes nothing else.
    pub fn check(&self) -> Result<(), AgentError> {
        let dir = &self.dir;
        if dir.exists() && !dir.is_dir() {
            return Err(AgentError::Export(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(|e| {
            AgentError::Export(format!(
                "{}: cannot create the directory: {e}",
                dir.display()
            ))
        })?;
        let probe = dir.join(".rollover-write-check");
        let made = File::create(&probe).and_then(|mut f| f.write_all(b"ok"));
        let _ = fs::remove_file(&probe);
        made.map_err(|e| AgentError::Export(format!("{}: not writable: {e}", dir.display())))
    }

    /// Writes the four files for `set` (each only when its content changed);
    /// returns whether any changed.
    pub fn write(&self, set: &CredentialSet) -> Result<bool, AgentError> {
        let files = ExportFiles::of(set)?;
        let mut changed = false;
        for (name, text, mode) in [
            (CERT_FILE, &files.cert, 0o644),
            (KEY_FILE, &files.key, 0o600),
            (TRUST_CLIENTS_FILE, &files.trust_clients, 0o644),
            (TRUST_SERVERS_FILE, &files.trust_servers, 0o644),
        ] {
            let path = self.dir.join(name);
            if fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
                continue;
            }
            write_atomic(&path, text.as_bytes(), mode)?;
            changed = true;
        }
        Ok(changed)
    }

    /// Runs the reload command (if any) with `sh -c`, waits for it up to
    /// `reload_timeout`, and fails with its stderr on a non-zero exit or a time-out.
    pub async fn run_reload(&self) -> Result<(), AgentError> {
        let Some(command) = &self.reload else {
            return Ok(());
        };
        let fail = |why: String| AgentError::Reload {
            command: command.clone(),
            why,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("ROLLOVER_EXPORT_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a time-out also stops what it started.
            .process_group(0)
            .spawn()
            .map_err(|e| fail(format!("cannot start sh: {e}")))?;
        let mut stderr = child.stderr.take();
        let read_stderr = async move {
            let mut text = Vec::new();
            if let Some(pipe) = stderr.as_mut() {
                let _ = pipe.read_to_end(&mut text).await;
            }
            text
        };
        let waited = tokio::time::timeout(self.reload_timeout, async {
            let (status, text) = tokio::join!(child.wait(), read_stderr);
            (status, text)
        })
        .await;
        let (status, text) = match waited {
            Ok(done) => done,
            Err(_) => {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pid}")])
                        .stderr(Stdio::null())
                        .status();
                }
                let _ = child.kill().await;
                return Err(fail(format!(
                    "timed out after {:?} (killed)",
                    self.reload_timeout
                )));
            }
        };
        let status = status.map_err(|e| fail(format!("waiting for it: {e}")))?;
        if status.success() {
            tracing::info!(%command, "reload command done");
            return Ok(());
        }
        let stderr = stderr_text(&text);
        let code = status.code().map_or_else(
            || "was killed by a signal".to_string(),
            |c| format!("exited with status {c}"),
        );
        Err(fail(if stderr.is_empty() {
            format!("{code} (no stderr)")
        } else {
            format!("{code}: {stderr}")
        }))
    }
}

/// The four exported files' contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFiles {
    /// `cert.pem`.
    pub cert: String,
    /// `key.pem`.
    pub key: String,
    /// `trust-clients.pem`.
    pub trust_clients: String,
    /// `trust-servers.pem`.
    pub trust_servers: String,
}

impl ExportFiles {
    /// The files of `set`: its presented leaf (with the bridges it sends), that
    /// leaf's key, and its two trust lists.
    pub fn of(set: &CredentialSet) -> Result<Self, AgentError> {
        let leaf = presented(set)?;
        // A node that cannot build chains sends no bridges (MODEL §11).
        let bridges = if set.chains {
            set.sends.as_slice()
        } else {
            &[]
        };
        let certs = std::iter::once(&leaf.cert).chain(bridges);
        Ok(Self {
            cert: pem_certs(certs),
            key: leaf.key.to_pem(),
            trust_clients: pem_certs(set.server_roots.iter()),
            trust_servers: pem_certs(set.client_roots.iter()),
        })
    }
}

/// The identity a workload presents, as a credential set: the same trust, and only
/// the presented leaf, as client and as server (MODEL §12: `held = {presents}`).
/// Probes from a node whose credentials are exported use it, so they show what
/// the workload's own connections will do.
pub fn exported_identity(set: &CredentialSet) -> Result<CredentialSet, AgentError> {
    let leaf = presented(set)?.clone();
    Ok(CredentialSet {
        held: vec![leaf],
        presents: Some(0),
        ..set.clone()
    })
}

fn presented(set: &CredentialSet) -> Result<&HeldLeaf, AgentError> {
    set.presents
        .and_then(|i| set.held.get(i))
        .ok_or_else(|| AgentError::Export("the node presents no leaf: nothing to export".into()))
}

fn pem_certs<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'static>>) -> String {
    certs
        .into_iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.to_vec())))
        .collect()
}

fn stderr_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.len() <= MAX_STDERR {
        return text.to_string();
    }
    let mut end = MAX_STDERR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same directory
/// with `mode`, fsync, rename over `path`, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut file = options.open(&tmp)?;
        // `mode` above only applies to a new file; a leftover one keeps its bits.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|e| AgentError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| AgentError::io(path, e))?;
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io(parent, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rollover_pki::{KeyAlg, NodeKey, RootCa, Validity};

    use super::*;

    fn set() -> (CredentialSet, RootCa, RootCa) {
        let (old, new) = (root(1), root(2));
        let leaf = |ca: &RootCa| {
            let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
            let cert = ca
                .issue_leaf(&key.csr_der("n").unwrap(), "n", Validity::default())
                .unwrap();
            HeldLeaf::new(cert, key)
        };
        let set = CredentialSet {
            server_roots: vec![old.cert_der().clone(), new.cert_der().clone()],
            client_roots: vec![new.cert_der().clone()],
            held: vec![leaf(&old), leaf(&new)],
            presents: Some(1),
            ..Default::default()
        };
        (set, old, new)
    }

    fn root(generation: u32) -> RootCa {
        RootCa::generate("corp", generation, KeyAlg::EcdsaP256, Validity::default()).unwrap()
    }

    fn certs_in(text: &str) -> Vec<Vec<u8>> {
        pem::parse_many(text)
            .unwrap()
            .into_iter()
            .map(|p| p.into_contents())
            .collect()
    }

    #[test]
    fn files_hold_the_presented_leaf_its_key_and_both_trust_lists() {
        let (set, old, new) = set();
        let dir = tempfile::tempdir().unwrap();
        let export = Export::new(dir.path().join("out"));
        export.check().unwrap();
        assert!(export.write(&set).unwrap());
        let read = |f: &str| fs::read_to_string(dir.path().join("out").join(f)).unwrap();
        assert_eq!(certs_in(&read(CERT_FILE)), vec![set.held[1].cert.to_vec()]);
        assert_eq!(read(KEY_FILE), set.held[1].key.to_pem());
        assert_eq!(
            certs_in(&read(TRUST_CLIENTS_FILE)),
            vec![old.cert_der().to_vec(), new.cert_der().to_vec()]
        );
        assert_eq!(
            certs_in(&read(TRUST_SERVERS_FILE)),
            vec![new.cert_der().to_vec()]
        );
        let mode = |f: &str| {
            fs::metadata(dir.path().join("out").join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CERT_FILE), 0o644);
        // Same set again: nothing rewritten; no temporary file left behind.
        assert!(!export.write(&set).unwrap());
        let names: Vec<_> = fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn cert_pem_carries_the_bridges_the_node_sends() {
        let (mut set, old, new) = set();
        set.sends = vec![old.cert_der().clone(), new.cert_der().clone()];
        let files = ExportFiles::of(&set).unwrap();
        assert_eq!(
            certs_in(&files.cert),
            vec![
                set.held[1].cert.to_vec(),
                old.cert_der().to_vec(),
                new.cert_der().to_vec()
            ]
        );
        set.chains = false;
        let files = ExportFiles::of(&set).unwrap();
        assert_eq!(certs_in(&files.cert), vec![set.held[1].cert.to_vec()]);
        assert_eq!(exported_identity(&set).unwrap().sends, set.sends);
    }

    #[test]
    fn the_exported_identity_holds_only_the_presented_leaf() {
        let (set, ..) = set();
        let single = exported_identity(&set).unwrap();
        assert_eq!(single.held.len(), 1);
        assert_eq!(single.held[0].cert, set.held[1].cert);
        assert_eq!(single.presents, Some(0));
        let mut silent = set;
        silent.presents = None;
        assert!(exported_identity(&silent).is_err());
        assert!(ExportFiles::of(&silent).is_err());
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, "x").unwrap();
        let err = Export::new(&file).check().unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        // Under a regular file: cannot be created, even by root.
        let err = Export::new(file.join("sub")).check().unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
    }

    #[tokio::test]
    async fn reload_failures_and_time_outs_carry_the_commands_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let mut export = Export::new(dir.path());
        export.run_reload().await.unwrap();
        export.reload = Some("test -n \"$ROLLOVER_EXPORT_DIR\"".into());
        export.run_reload().await.unwrap();
        export.reload = Some("echo 'nginx: [emerg] bad cert' >&2; exit 1".into());
        let err = export.run_reload().await.unwrap_err().to_string();
        assert!(err.contains("exited with status 1"), "{err}");
        assert!(err.contains("nginx: [emerg] bad cert"), "{err}");
        export.reload = Some("sleep 5".into());
        export.reload_timeout = Duration::from_millis(100);
        let err = export.run_reload().await.unwrap_err().to_string();
        assert!(err.contains("timed out"), "{err}");
    }
}
