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

mod commit;
mod mem;
mod redb_file;

pub use commit::{AfterCommit, CommitRetry, CommitTicket, Committer};
pub use mem::MemJournal;
pub use redb_file::RedbJournal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// The backend's store could not be reached now (connection refused or dropped,
    /// a pool or call timeout, the server shutting down): the same batch may be
    /// committed again later. Every batch is a set of upserts, so committing one
    /// twice (the first commit landed but its answer was lost) changes nothing.
    #[error("journal: store unavailable: {0}")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The write was fenced off: another executor of the group leads now, and this
    /// one must stop acting (its runners stop; the new leader resumes).
    #[error("journal: {0}")]
    Fenced(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The group-commit writer thread is gone.
    #[error("journal: journal writer stopped")]
    WriterStopped,
}

impl JournalError {
    /// A backend's own error, its source kept.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        JournalError::Backend(Arc::new(e))
    }

    /// A backend's store that cannot be reached now (see [`JournalError::Unavailable`]).
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        JournalError::Unavailable(Arc::new(e))
    }

    /// A write refused because another executor leads (see [`JournalError::Fenced`]).
    pub fn fenced(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        JournalError::Fenced(Arc::new(e))
    }

    /// Whether the failure is one of reaching the store, worth trying again.
    pub fn is_transient(&self) -> bool {
        matches!(self, JournalError::Unavailable(_))
    }

    /// Whether opening failed only because the journal is still held open.
    pub fn is_already_open(&self) -> bool {
        matches!(self, JournalError::AlreadyOpen { .. })
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
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
    /// Started without comparing the agents with the topology (asked for by name).
    #[serde(default)]
    pub skip_agent_checks: bool,
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
    /// The name every backend stores this kind of document under (redb's key, the
    /// PostgreSQL `kind` column): one table, so the backends cannot drift apart.
    pub fn key(self) -> &'static str {
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

/// A failed file operation on `path`.
pub(crate) fn io_error(path: &Path, e: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        source: Arc::new(e),
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
