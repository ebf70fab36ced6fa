//! The executor's errors: [`ExecutorError`] (starting and serving),
//! [`RotationError`] (why a rotation cannot be prepared or resumed) and [`ApiError`]
//! (why a request is refused; the gRPC service maps it to a status code in one place),
//! all keeping their sources. Agent calls fail with [`crate::AgentError`] (a gRPC status) and
//! the journal with [`crate::journal::JournalError`].

use rollover_core::Mode;
use rollover_pki::PkiError;

use crate::driver::AgentError;
use crate::journal::JournalError;

/// A boxed source error.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// What can stop the executor from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The journal could not be opened or read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A journaled rotation could not be rebuilt.
    #[error("rotation {id}: {source}")]
    Rotation {
        /// The rotation.
        id: String,
        /// What is wrong.
        #[source]
        source: Source,
    },
    /// The executor's journaled identity could not be restored.
    #[error("executor credentials: {0}")]
    Identity(#[source] Source),
    /// The planner address is unusable.
    #[error("planner: {0}")]
    Planner(#[source] Source),
    /// Serving failed.
    #[error("serve: {0}")]
    Serve(#[source] Source),
}

/// Why a request to the [`crate::Executor`] (start, get, control, watch, check) is
/// refused or failed. Messages name the field or the rotation; `service.rs` turns
/// each kind into its gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (INVALID_ARGUMENT); the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// No such rotation (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The request does not apply now: the CA is busy, the rotation is final, no
    /// planner, an unsafe plan from the planner (FAILED_PRECONDITION).
    #[error("{0}")]
    Refused(String),
    /// The planner refused or failed: its answer, with its own status code.
    #[error("planner: {}", .0.message())]
    Planner(tonic::Status),
    /// The planner answered something unusable (INTERNAL).
    #[error("planner: {0}")]
    BadPlanner(String),
    /// The journal could not record what the request changes (INTERNAL).
    #[error("cannot journal {what}: {source}")]
    Record {
        /// What was being recorded ("the rotation", "the rollback").
        what: &'static str,
        /// Why.
        #[source]
        source: JournalError,
    },
    /// The journal could not be read (INTERNAL).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The request cannot be served now, but may be shortly (UNAVAILABLE): e.g. a
    /// rotation waiting for its journal to answer again.
    #[error("{0}")]
    Unavailable(String),
}

/// Why a rotation cannot be prepared, or resumed from its journal.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A journaled document does not decode.
    #[error("journaled {what}: {source}")]
    Journaled {
        /// The document.
        what: &'static str,
        /// Why it does not decode.
        #[source]
        source: Source,
    },
    /// Making a key or certificate failed.
    #[error("cannot {what}: {source}")]
    Pki {
        /// What was being made ("generate the new root", ...).
        what: &'static str,
        /// Why.
        #[source]
        source: PkiError,
    },
    /// Agents could not be asked for their state, or answered wrongly.
    #[error("{}", not_ready(.0))]
    NotReady(Vec<NodeProblem>),
    /// The bridge strategy (MODEL §11) cannot issue bridges (the message says why
    /// and what to do).
    #[error("{0}")]
    Bridge(String),
    /// Its agents are on a root another active rotation is rotating (the message
    /// names it).
    #[error("{0}")]
    SameRoot(String),
}

impl ApiError {
    /// Rotation `id` is unknown (its id clipped).
    pub(crate) fn no_rotation(id: &str) -> ApiError {
        ApiError::NotFound(format!(
            "rotation_id: no rotation `{}`",
            rollover_proto::status::excerpt(id)
        ))
    }

    /// A request naming no rotation.
    pub(crate) fn require_rotation_id(id: &str) -> Result<(), ApiError> {
        if id.is_empty() {
            return Err(ApiError::Invalid("rotation_id: required".into()));
        }
        Ok(())
    }

    /// Whether the journal's store could not be reached or written now (a database
    /// down, a call timed out, an I/O failure): worth a retry, perhaps elsewhere.
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ApiError::Unavailable(_)
                | ApiError::Journal(
                    JournalError::Backend(_)
                        | JournalError::Unavailable(_)
                        | JournalError::Io { .. }
                )
                | ApiError::Record {
                    source: JournalError::Backend(_)
                        | JournalError::Unavailable(_)
                        | JournalError::Io { .. },
                    ..
                }
        )
    }
}

impl RotationError {
    /// A journaled document that does not decode.
    pub fn journaled(what: &'static str, source: impl Into<Source>) -> Self {
        RotationError::Journaled {
            what,
            source: source.into(),
        }
    }

    /// A key or certificate that could not be made.
    pub fn pki(what: &'static str) -> impl FnOnce(PkiError) -> Self {
        move |source| RotationError::Pki { what, source }
    }
}

/// Why one node is not ready for a rotation.
#[derive(Debug, thiserror::Error)]
pub enum NodeProblem {
    /// Its agent could not be asked (after retries).
    #[error("`{id}`: cannot get its agent's state: {source}")]
    Unreachable {
        /// The node.
        id: String,
        /// The last failure.
        #[source]
        source: AgentError,
    },
    /// Its agent runs in another mode than the topology's.
    #[error("`{id}`: its agent is a {reported} node but the topology says {want}")]
    WrongMode {
        /// The node.
        id: String,
        /// The agent's mode.
        reported: Mode,
        /// The topology's.
        want: Mode,
    },
}

/// At most 20 problems named, then how many more.
fn not_ready(problems: &[NodeProblem]) -> String {
    const SHOWN: usize = 20;
    let shown: Vec<String> = problems.iter().take(SHOWN).map(|p| p.to_string()).collect();
    let more = problems.len() - shown.len();
    format!(
        "{} node(s) not ready: {}{}",
        problems.len(),
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}
