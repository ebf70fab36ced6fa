//! The executor's journal: everything a restart needs to resume a rotation.
//!
//! [`Journal`] is a small synchronous store of batches; [`RedbJournal`] keeps it in
//! `<state dir>/executor.redb`, [`MemJournal`] in memory (tests). Tables:
//!
//! * rotations: id -> [`RotationMeta`] (JSON: state, options, reasons, generation);
//! * documents: (id, [`DocKind`]) -> bytes (topology JSON, plan JSON, verdict JSON, the
//!   new root's PEM with its key, the nodes' prepared facts, the executor's base
//!   credentials);
//! * steps: (id, step id, undo) -> [`StepRecord`] (pending/started/done/probed/failed,
//!   attempts);
//! * leaves: (id, node) -> the leaf DER issued to the node;
//! * events: (id, sequence) -> an encoded `rollover.v1.RotationEvent`;
//! * identity: the executor's own current credentials (when it rotates them).
//!
//! Every transition is committed before it is acted on. [`Committer`] does that
//! with group commit: a writer thread takes every batch queued while the previous
//! commit was in progress, commits them in one durable transaction, then runs their
//! after-commit hooks in order and wakes the submitters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// What went wrong in the journal. Cloneable (a group commit's one result goes to
/// every submitter of the batch), so sources are shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// The redb store failed (open, transaction, table, commit).
    #[error("journal: {0}")]
    Store(#[source] Arc<redb::Error>),
    /// Another process (or an incarnation not yet dropped) has the journal open.
    #[error("journal: {} is already open", path.display())]
    AlreadyOpen {
        /// The journal file.
        path: PathBuf,
    },
    /// Creating or reading a file beside the journal failed.
    #[error("journal: {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A record does not decode.
    #[error("journal: {what}: {reason}")]
    Corrupt {
        /// The record.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The journal key file does not hold a key.
    #[error("journal: {}: {reason}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A record sealed with a journal key cannot be opened or made.
    #[error("journal: {0}")]
    Sealed(String),
    /// Another journal backend (e.g. PostgreSQL) failed.
    #[error("journal: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The group-commit writer thread is gone.
    #[error("journal: journal writer stopped")]
    WriterStopped,
}

impl JournalError {
    /// A backend's own error, its source kept.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        JournalError::Backend(Arc::new(e))
    }

    /// Whether opening failed only because the journal is still held open.
    pub fn is_already_open(&self) -> bool {
        matches!(self, JournalError::AlreadyOpen { .. })
    }

    fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        JournalError::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

fn je<E: Into<redb::Error>>(e: E) -> JournalError {
    JournalError::Store(Arc::new(e.into()))
}

/// Where a rotation is in its life (mirrors `rollover.v1.RotationState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Accepted; preparing (agents' facts, new root).
    Pending,
    /// Running steps.
    Running,
    /// Paused (forward or, with `rolling_back`, during a rollback).
    Paused,
    /// Undoing steps.
    RollingBack,
    /// Every step done.
    Succeeded,
    /// Could not go on.
    Failed,
    /// Stopped by Abort.
    Aborted,
    /// Every applied step undone.
    RolledBack,
}

impl State {
    /// Whether nothing more happens to the rotation by itself.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Succeeded | State::Failed | State::Aborted | State::RolledBack
        )
    }
}

/// How a rotation runs (mirrors `rollover.v1.RotationOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredOptions {
    /// Most steps in flight; 0 = no limit.
    pub max_concurrency: u32,
    /// Probe after every step.
    pub probe: bool,
    /// Change nothing on the agents.
    pub dry_run: bool,
    /// The strategy asked of the planner (`waves`, `claim`), if it planned.
    #[serde(default)]
    pub strategy: Option<String>,
    /// The claim's start node, if any.
    #[serde(default)]
    pub start_node: Option<String>,
    /// Never hold or pause on failed probes (simulations only).
    #[serde(default)]
    pub observe_only: bool,
}

/// The small, often rewritten part of a rotation's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationMeta {
    /// The rotation's id.
    pub id: String,
    /// The rotated CA.
    pub ca: String,
    /// Where it is.
    pub state: State,
    /// Whether a rollback was asked for (kept while paused).
    pub rolling_back: bool,
    /// Why it is paused.
    pub paused_reason: Option<String>,
    /// The error that failed it, or the last step error.
    pub error: Option<String>,
    /// How it runs.
    pub options: StoredOptions,
    /// The new root's generation.
    pub generation: u32,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// When it reached a terminal state.
    pub finished_ms: Option<u64>,
    /// The client's StartRotation `request_id`, if it gave one, so that a retry finds
    /// this rotation (also after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<StartRequestKey>,
}

/// A StartRotation `request_id` and what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequestKey {
    /// The client's id.
    pub id: String,
    /// Hex SHA-256 of the request's encoding without its `request_id`: a retry must
    /// ask for the same rotation.
    pub digest: String,
}

/// The larger, written-once documents of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DocKind {
    /// The topology, as core JSON.
    Topology,
    /// The plan, as core JSON.
    Plan,
    /// The verifier's verdict on the plan, as core JSON.
    Verdict,
    /// The new root: certificate and private key, PEM.
    NewRoot,
    /// What the agents reported before the first step (JSON).
    Nodes,
    /// The executor's own credentials before the rotation (when it is a node).
    ExecutorBase,
    /// `b_new` and `b_old` of a bridged rotation (MODEL §11), PEM.
    Bridges,
}

impl DocKind {
    fn key(self) -> &'static str {
        match self {
            DocKind::Topology => "topology",
            DocKind::Plan => "plan",
            DocKind::Verdict => "verdict",
            DocKind::NewRoot => "new_root",
            DocKind::Nodes => "nodes",
            DocKind::ExecutorBase => "executor_base",
            DocKind::Bridges => "bridges",
        }
    }
}

/// What is recorded about one step (or its undo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Not started.
    Pending,
    /// Sent (or about to be); no outcome yet.
    Started,
    /// Confirmed by the agent; probes not passed yet.
    Done,
    /// Done and every probe after it passed (or probes are off).
    Probed,
    /// Failed; `maybe_applied` when the agent may have applied it anyway.
    Failed {
        /// Whether the agent may have applied it anyway.
        maybe_applied: bool,
    },
}

/// A step record: its state and how many times it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRecord {
    /// Where the step is.
    pub state: StepState,
    /// Attempts so far (1 for the first send).
    pub attempts: u32,
}

impl StepRecord {
    fn encode(self) -> [u8; 6] {
        let (tag, maybe) = match self.state {
            StepState::Pending => (0, 0),
            StepState::Started => (1, 0),
            StepState::Done => (2, 0),
            StepState::Probed => (3, 0),
            StepState::Failed { maybe_applied } => (4, u8::from(maybe_applied)),
        };
        let a = self.attempts.to_le_bytes();
        [tag, maybe, a[0], a[1], a[2], a[3]]
    }

    fn decode(b: &[u8]) -> Result<Self, JournalError> {
        let [tag, maybe, a0, a1, a2, a3] = b else {
            return Err(JournalError::corrupt(
                "step record",
                format!("{} bytes, expected 6", b.len()),
            ));
        };
        let state = match tag {
            0 => StepState::Pending,
            1 => StepState::Started,
            2 => StepState::Done,
            3 => StepState::Probed,
            4 => StepState::Failed {
                maybe_applied: *maybe != 0,
            },
            t => {
                return Err(JournalError::corrupt(
                    "step record",
                    format!("bad state {t}"),
                ));
            }
        };
        Ok(StepRecord {
            state,
            attempts: u32::from_le_bytes([*a0, *a1, *a2, *a3]),
        })
    }
}

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create or replace a rotation's meta record.
    Rotation(RotationMeta),
    /// Store a document of a rotation.
    Document {
        /// The rotation.
        rotation: String,
        /// Which document.
        kind: DocKind,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// Store a step record.
    Step {
        /// The rotation.
        rotation: String,
        /// The step's id in the plan.
        step: u64,
        /// Whether this is the undo record.
        undo: bool,
        /// The record.
        record: StepRecord,
    },
    /// Store the leaf issued to a node.
    Leaf {
        /// The rotation.
        rotation: String,
        /// The node.
        node: String,
        /// The certificate, DER.
        der: Vec<u8>,
    },
    /// Append an event.
    Event {
        /// The rotation.
        rotation: String,
        /// Its sequence number.
        seq: u64,
        /// The encoded `RotationEvent`.
        data: Vec<u8>,
    },
    /// Replace the executor's own credentials.
    Identity(Vec<u8>),
}

/// A durable store of batches of [`Op`]s.
pub trait Journal: Send + Sync + 'static {
    /// Apply every op atomically and durably.
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError>;
    /// Every rotation's meta record.
    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError>;
    /// One rotation's meta record.
    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError>;
    /// A document of a rotation.
    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError>;
    /// Every step record of a rotation: (step id, undo, record).
    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError>;
    /// Every leaf issued in a rotation: (node, DER).
    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError>;
    /// Events with `seq >= from`, at most `limit`, in order.
    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError>;
    /// The sequence number of the last event (0 if none).
    fn last_sequence(&self, id: &str) -> Result<u64, JournalError>;
    /// The executor's own credentials, if it has rotated them.
    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError>;
}

const ROTATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("rotations");
const DOCUMENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("documents");
const STEPS: TableDefinition<(&str, u64, bool), &[u8]> = TableDefinition::new("steps");
const LEAVES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("leaves");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("identity");

/// The journal in a redb file, `executor.redb` in the state directory.
pub struct RedbJournal {
    db: Database,
}

impl RedbJournal {
    /// Open (or create) the journal in `state_dir` (created if missing, owner-only).
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(state_dir).map_err(|e| io_error(state_dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = state_dir.join("executor.redb");
        // The journal holds the new roots' private keys: owner-only, made so before
        // redb writes anything to it (redb creates files with the umask's mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .and_then(|_| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                })
                .map_err(|e| io_error(&path, e))?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => JournalError::AlreadyOpen { path },
            e => je(e),
        })?;
        let txn = db.begin_write().map_err(je)?;
        {
            txn.open_table(ROTATIONS).map_err(je)?;
            txn.open_table(DOCUMENTS).map_err(je)?;
            txn.open_table(STEPS).map_err(je)?;
            txn.open_table(LEAVES).map_err(je)?;
            txn.open_table(EVENTS).map_err(je)?;
            txn.open_table(IDENTITY).map_err(je)?;
        }
        txn.commit().map_err(je)?;
        Ok(RedbJournal { db })
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("journal records serialize")
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::corrupt("rotation record", e))
}

/// A failed file operation on `path`.
pub(crate) fn io_error(path: &Path, e: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        source: Arc::new(e),
    }
}

impl Journal for RedbJournal {
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
        let mut txn = self.db.begin_write().map_err(je)?;
        txn.set_durability(Durability::Immediate).map_err(je)?;
        {
            let mut rotations = txn.open_table(ROTATIONS).map_err(je)?;
            let mut documents = txn.open_table(DOCUMENTS).map_err(je)?;
            let mut steps = txn.open_table(STEPS).map_err(je)?;
            let mut leaves = txn.open_table(LEAVES).map_err(je)?;
            let mut events = txn.open_table(EVENTS).map_err(je)?;
            let mut identity = txn.open_table(IDENTITY).map_err(je)?;
            for op in ops {
                match op {
                    Op::Rotation(meta) => {
                        rotations
                            .insert(meta.id.as_str(), json(meta).as_slice())
                            .map_err(je)?;
                    }
                    Op::Document {
                        rotation,
                        kind,
                        data,
                    } => {
                        documents
                            .insert((rotation.as_str(), kind.key()), data.as_slice())
                            .map_err(je)?;
                    }
                    Op::Step {
                        rotation,
                        step,
                        undo,
                        record,
                    } => {
                        steps
                            .insert(
                                (rotation.as_str(), *step, *undo),
                                record.encode().as_slice(),
                            )
                            .map_err(je)?;
                    }
                    Op::Leaf {
                        rotation,
                        node,
                        der,
                    } => {
                        leaves
                            .insert((rotation.as_str(), node.as_str()), der.as_slice())
                            .map_err(je)?;
                    }
                    Op::Event {
                        rotation,
                        seq,
                        data,
                    } => {
                        events
                            .insert((rotation.as_str(), *seq), data.as_slice())
                            .map_err(je)?;
                    }
                    Op::Identity(data) => {
                        identity.insert("executor", data.as_slice()).map_err(je)?;
                    }
                }
            }
        }
        txn.commit().map_err(je)
    }

    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(ROTATIONS).map_err(je)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(je)? {
            let (_, v) = row.map_err(je)?;
            out.push(from_json(v.value())?);
        }
        Ok(out)
    }

    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(ROTATIONS).map_err(je)?;
        match table.get(id).map_err(je)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(DOCUMENTS).map_err(je)?;
        Ok(table
            .get((id, kind.key()))
            .map_err(je)?
            .map(|v| v.value().to_vec()))
    }

    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(STEPS).map_err(je)?;
        let mut out = Vec::new();
        for row in table
            .range((id, 0u64, false)..=(id, u64::MAX, true))
            .map_err(je)?
        {
            let (k, v) = row.map_err(je)?;
            let (_, step, undo) = k.value();
            out.push((step, undo, StepRecord::decode(v.value())?));
        }
        Ok(out)
    }

    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(LEAVES).map_err(je)?;
        let mut out = Vec::new();
        for row in table.range((id, "")..).map_err(je)? {
            let (k, v) = row.map_err(je)?;
            let (rotation, node) = k.value();
            if rotation != id {
                break;
            }
            out.push((node.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(EVENTS).map_err(je)?;
        let mut out = Vec::new();
        for row in table.range((id, from)..=(id, u64::MAX)).map_err(je)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(je)?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }

    fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(EVENTS).map_err(je)?;
        let last = table
            .range((id, 0u64)..=(id, u64::MAX))
            .map_err(je)?
            .next_back();
        match last {
            Some(row) => Ok(row.map_err(je)?.0.value().1),
            None => Ok(0),
        }
    }

    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(IDENTITY).map_err(je)?;
        Ok(table
            .get("executor")
            .map_err(je)?
            .map(|v| v.value().to_vec()))
    }
}

/// A journal in memory, for tests and dry experiments. Not durable.
#[derive(Default)]
pub struct MemJournal {
    inner: Mutex<MemTables>,
}

#[derive(Default)]
struct MemTables {
    rotations: BTreeMap<String, RotationMeta>,
    documents: BTreeMap<(String, DocKind), Vec<u8>>,
    steps: BTreeMap<(String, u64, bool), StepRecord>,
    leaves: BTreeMap<(String, String), Vec<u8>>,
    events: BTreeMap<(String, u64), Vec<u8>>,
    identity: Option<Vec<u8>>,
}

impl Journal for MemJournal {
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
        let mut t = self.inner.lock().expect("journal lock");
        for op in ops.iter().cloned() {
            match op {
                Op::Rotation(meta) => {
                    t.rotations.insert(meta.id.clone(), meta);
                }
                Op::Document {
                    rotation,
                    kind,
                    data,
                } => {
                    t.documents.insert((rotation, kind), data);
                }
                Op::Step {
                    rotation,
                    step,
                    undo,
                    record,
                } => {
                    t.steps.insert((rotation, step, undo), record);
                }
                Op::Leaf {
                    rotation,
                    node,
                    der,
                } => {
                    t.leaves.insert((rotation, node), der);
                }
                Op::Event {
                    rotation,
                    seq,
                    data,
                } => {
                    t.events.insert((rotation, seq), data);
                }
                Op::Identity(data) => t.identity = Some(data),
            }
        }
        Ok(())
    }

    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.rotations.values().cloned().collect())
    }

    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.rotations.get(id).cloned())
    }

    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.documents.get(&(id.to_string(), kind)).cloned())
    }

    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.steps
            .range((id.to_string(), 0, false)..=(id.to_string(), u64::MAX, true))
            .map(|((_, s, u), r)| (*s, *u, *r))
            .collect())
    }

    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.leaves
            .iter()
            .filter(|((r, _), _)| r == id)
            .map(|((_, n), d)| (n.clone(), d.clone()))
            .collect())
    }

    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.events
            .range((id.to_string(), from)..=(id.to_string(), u64::MAX))
            .take(limit)
            .map(|((_, s), d)| (*s, d.clone()))
            .collect())
    }

    fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.events
            .range((id.to_string(), 0)..=(id.to_string(), u64::MAX))
            .next_back()
            .map_or(0, |((_, s), _)| *s))
    }

    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.inner.lock().expect("journal lock").identity.clone())
    }
}

/// Run after a batch is durable, on the writer thread, in submission order.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

struct Submission {
    ops: Vec<Op>,
    after: Option<AfterCommit>,
    ack: Option<tokio::sync::oneshot::Sender<Result<(), JournalError>>>,
}

/// Group commit in front of a [`Journal`]: one writer thread, one durable
/// transaction for every batch queued while the previous one was being written.
#[derive(Clone)]
pub struct Committer {
    journal: Arc<dyn Journal>,
    tx: mpsc::Sender<Submission>,
}

impl Committer {
    /// Start the writer thread. It ends when every clone of the committer is dropped.
    pub fn start(journal: Arc<dyn Journal>) -> Self {
        let (tx, rx) = mpsc::channel::<Submission>();
        let writer = journal.clone();
        std::thread::Builder::new()
            .name("executor-journal".into())
            .spawn(move || write_loop(&*writer, &rx))
            .expect("spawn the journal writer thread");
        Committer { journal, tx }
    }

    /// The journal, for reads.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Queue a batch without waiting. `after` runs once it is durable (not at all if
    /// the commit fails). Batches are committed, and their hooks run, in the order
    /// they were queued.
    pub fn submit(&self, ops: Vec<Op>, after: Option<AfterCommit>) -> CommitTicket {
        let (ack, rx) = tokio::sync::oneshot::channel();
        let sent = self.tx.send(Submission {
            ops,
            after,
            ack: Some(ack),
        });
        CommitTicket(sent.ok().map(|()| rx))
    }

    /// Commit a batch and wait until it is durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), JournalError> {
        self.submit(ops, None).wait().await
    }
}

/// A queued batch; [`CommitTicket::wait`] resolves once it is durable.
pub struct CommitTicket(Option<tokio::sync::oneshot::Receiver<Result<(), JournalError>>>);

impl CommitTicket {
    /// Wait for the batch to be durable.
    pub async fn wait(self) -> Result<(), JournalError> {
        match self.0 {
            Some(rx) => rx.await.unwrap_or(Err(JournalError::WriterStopped)),
            None => Err(JournalError::WriterStopped),
        }
    }
}

fn write_loop(journal: &dyn Journal, rx: &mpsc::Receiver<Submission>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let ops: Vec<Op> = batch.iter_mut().flat_map(|s| s.ops.drain(..)).collect();
        let result = journal.commit(&ops);
        if let Err(e) = &result {
            tracing::error!(error = %e, ops = ops.len(), "journal commit failed");
        }
        for mut s in batch {
            if result.is_ok()
                && let Some(after) = s.after.take()
            {
                after();
            }
            if let Some(ack) = s.ack.take() {
                let _ = ack.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[test]
    fn redb_journal_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = RedbJournal::open(dir.path()).unwrap();
            conformance::exercise(&journal);
            conformance::check(&journal);
        }
        let journal = RedbJournal::open(dir.path()).unwrap();
        conformance::check(&journal);
        conformance::check_replace(&journal);
        drop(journal);
        let journal = RedbJournal::open(dir.path()).unwrap();
        let steps = journal.steps("r1").unwrap();
        assert!(steps.contains(&(
            1,
            false,
            StepRecord {
                state: StepState::Done,
                attempts: 2
            }
        )));
    }

    #[test]
    fn mem_journal_behaves_the_same() {
        let journal = MemJournal::default();
        conformance::exercise(&journal);
        conformance::check(&journal);
        conformance::check_replace(&journal);
    }

    #[test]
    fn step_records_round_trip() {
        for state in [
            StepState::Pending,
            StepState::Started,
            StepState::Done,
            StepState::Probed,
            StepState::Failed {
                maybe_applied: true,
            },
            StepState::Failed {
                maybe_applied: false,
            },
        ] {
            let r = StepRecord {
                state,
                attempts: 70_000,
            };
            assert_eq!(StepRecord::decode(&r.encode()).unwrap(), r);
        }
        assert!(StepRecord::decode(&[9, 0, 0, 0, 0, 0]).is_err());
        assert!(StepRecord::decode(&[1]).is_err());
    }

    #[tokio::test]
    async fn committer_groups_batches_and_runs_hooks_in_order() {
        let dir = tempfile::tempdir().unwrap();
        conformance::check_committer(Arc::new(RedbJournal::open(dir.path()).unwrap())).await;
        conformance::check_committer(Arc::new(MemJournal::default())).await;
    }
}
