//! Where a state directory's files live: on the disk ([`DiskFiles`], what a deployed
//! agent uses) or in memory ([`MemFiles`], for simulated agents, whose state nobody
//! needs after the run). `store.rs` reads and writes a node's state through the
//! [`StateFiles`] trait only, so both keep the same file formats, names and checks;
//! only where the bytes go differs.
//!
//! On the disk every file is written atomically (temporary file, fsync, rename,
//! fsync of the directory), owner-only. In memory a write replaces the bytes under
//! one lock, which is as atomic, with nothing to sync: a simulated rotation then
//! waits neither on the disk nor on the file system's own work (creating, renaming
//! and deleting thousands of small files is most of a simulated agent's kernel time).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::AgentError;

/// The files of state directories. Errors name the path concerned.
pub trait StateFiles: Send + Sync + fmt::Debug {
    /// Replaces the content of `path` with `bytes` atomically (owner-only); the
    /// directory must exist.
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), AgentError>;
    /// The content of `path`, as text.
    fn read_to_string(&self, path: &Path) -> Result<String, AgentError>;
    /// Whether `path` is a file.
    fn is_file(&self, path: &Path) -> bool;
    /// Creates `dir` and its parents, owner-only (0700), tightening it if it exists.
    fn create_dir(&self, dir: &Path) -> Result<(), AgentError>;
    /// The files directly in `dir`.
    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, AgentError>;
    /// Removes the file `path`.
    fn remove(&self, path: &Path) -> Result<(), AgentError>;
    /// Takes group and other permissions away from `path` if it has any (its mode
    /// becomes `mode`).
    fn tighten(&self, path: &Path, mode: u32) -> Result<(), AgentError>;
    /// Whether calls block on a disk: async callers then run them on the blocking
    /// pool rather than on the runtime's threads.
    fn blocks(&self) -> bool;
}

/// A state directory: its path and the files behind it.
#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
    files: Arc<dyn StateFiles>,
}

impl StateDir {
    /// The directory `path` in `files`.
    pub fn new(path: impl Into<PathBuf>, files: Arc<dyn StateFiles>) -> Self {
        StateDir {
            path: path.into(),
            files,
        }
    }

    /// The directory `path` on the disk.
    pub fn on_disk(path: impl Into<PathBuf>) -> Self {
        Self::new(path, Arc::new(DiskFiles))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The files behind the directory.
    pub fn files(&self) -> &dyn StateFiles {
        self.files.as_ref()
    }
}

/// Whether [`DiskFiles`] fsyncs (see [`set_synced_writes`]).
static SYNCED_WRITES: AtomicBool = AtomicBool::new(true);

/// Whether state files written to the disk from now on in this process are
/// fsynced (the default: yes). Only for simulations whose state directories are on
/// the disk and thrown away after the run: without the fsync a power loss could
/// lose the last writes.
pub fn set_synced_writes(synced: bool) {
    SYNCED_WRITES.store(synced, Ordering::Relaxed);
}

/// State directories on the disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFiles;

impl StateFiles for DiskFiles {
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
        let parent = path.parent().unwrap_or(Path::new("."));
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp: PathBuf = parent.join(tmp_name);
        let synced = SYNCED_WRITES.load(Ordering::Relaxed);
        let write = || -> io::Result<()> {
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
        self.tighten(&tmp, 0o600)?;
        fs::rename(&tmp, path).map_err(|e| AgentError::io(path, e))?;
        if !synced {
            return Ok(());
        }
        // Make the rename itself durable.
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| AgentError::io(parent, e))
    }

    fn read_to_string(&self, path: &Path) -> Result<String, AgentError> {
        fs::read_to_string(path).map_err(|e| AgentError::io(path, e))
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn create_dir(&self, dir: &Path) -> Result<(), AgentError> {
        fs::create_dir_all(dir).map_err(|e| AgentError::io(dir, e))?;
        self.tighten(dir, 0o700)
    }

    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| AgentError::io(dir, e))? {
            files.push(entry.map_err(|e| AgentError::io(dir, e))?.path());
        }
        Ok(files)
    }

    fn remove(&self, path: &Path) -> Result<(), AgentError> {
        fs::remove_file(path).map_err(|e| AgentError::io(path, e))
    }

    #[cfg(unix)]
    fn tighten(&self, path: &Path, mode: u32) -> Result<(), AgentError> {
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
    fn tighten(&self, _path: &Path, _mode: u32) -> Result<(), AgentError> {
        Ok(())
    }

    fn blocks(&self) -> bool {
        true
    }
}

/// State directories in memory, for simulated agents: nothing outlives the value
/// (an agent started again on the same value finds its state, as a restarted agent
/// finds its directory).
#[derive(Debug, Default)]
pub struct MemFiles {
    tree: Mutex<Tree>,
}

#[derive(Debug, Default)]
struct Tree {
    dirs: HashSet<PathBuf>,
    files: HashMap<PathBuf, Vec<u8>>,
}

impl MemFiles {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found(path: &Path) -> AgentError {
    AgentError::io(path, io::Error::from(io::ErrorKind::NotFound))
}

impl StateFiles for MemFiles {
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
        let mut tree = self.tree();
        let parent = path.parent().unwrap_or(Path::new(""));
        if !tree.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        tree.files.insert(path.to_path_buf(), bytes.to_vec());
        Ok(())
    }

    fn read_to_string(&self, path: &Path) -> Result<String, AgentError> {
        let bytes = self
            .tree()
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        String::from_utf8(bytes)
            .map_err(|e| AgentError::io(path, io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.tree().files.contains_key(path)
    }

    fn create_dir(&self, dir: &Path) -> Result<(), AgentError> {
        let mut tree = self.tree();
        for d in dir.ancestors() {
            if tree.files.contains_key(d) {
                return Err(AgentError::io(
                    d,
                    io::Error::new(io::ErrorKind::AlreadyExists, "a file, not a directory"),
                ));
            }
            tree.dirs.insert(d.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
        let tree = self.tree();
        if !tree.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(tree
            .files
            .keys()
            .chain(&tree.dirs)
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn remove(&self, path: &Path) -> Result<(), AgentError> {
        match self.tree().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(not_found(path)),
        }
    }

    fn tighten(&self, path: &Path, _mode: u32) -> Result<(), AgentError> {
        // Nothing else can read the process's memory through a file mode.
        let tree = self.tree();
        if tree.files.contains_key(path) || tree.dirs.contains(path) {
            Ok(())
        } else {
            Err(not_found(path))
        }
    }

    fn blocks(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same calls give the same answers on the disk and in memory.
    fn exercise(files: &dyn StateFiles, root: &Path) {
        let dir = root.join("node");
        let keys = dir.join("keys");
        let file = keys.join("a.pem");
        assert!(files.write(&file, b"x").is_err(), "no directory yet");
        assert!(files.list(&keys).is_err());
        files.create_dir(&keys).unwrap();
        files.create_dir(&keys).unwrap();
        assert!(!files.is_file(&file));
        assert!(files.read_to_string(&file).is_err());
        files.write(&file, b"first").unwrap();
        files.write(&file, b"second").unwrap();
        assert!(files.is_file(&file));
        assert!(!files.is_file(&keys), "a directory is not a file");
        assert_eq!(files.read_to_string(&file).unwrap(), "second");
        files.tighten(&file, 0o600).unwrap();
        files.write(&keys.join("b.pem"), b"b").unwrap();
        let mut listed = files.list(&keys).unwrap();
        listed.sort();
        assert_eq!(listed, vec![keys.join("a.pem"), keys.join("b.pem")]);
        assert_eq!(files.list(&dir).unwrap(), vec![keys.clone()]);
        files.remove(&file).unwrap();
        assert!(files.remove(&file).is_err());
        assert!(!files.is_file(&file));
        assert!(files.tighten(&file, 0o600).is_err());
        assert_eq!(files.list(&keys).unwrap(), vec![keys.join("b.pem")]);
    }

    #[test]
    fn disk_and_memory_behave_alike() {
        let tmp = tempfile::tempdir().unwrap();
        exercise(&DiskFiles, tmp.path());
        exercise(&MemFiles::new(), Path::new("/sim/agents"));
        assert!(DiskFiles.blocks());
        assert!(!MemFiles::new().blocks());
    }
}
