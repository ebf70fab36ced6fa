//! The crate's one error type, [`AgentError`], and its gRPC status.

use std::io;
use std::path::PathBuf;

use rollover_pki::PkiError;
use rollover_transport::TransportError;
use tonic::Status;

use crate::machine::StepError;

/// Everything that can go wrong in an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The step may not be taken or undone now (wrong mode, out of order).
    #[error(transparent)]
    Step(#[from] StepError),

    /// The request does not fit the node's state (e.g. another rotation in progress).
    #[error("{0}")]
    Precondition(String),

    /// A call of a deposed executor: a leader with a higher epoch has called for
    /// this rotation since (see `fence`).
    #[error(
        "stale leader: epoch {epoch} for rotation {rotation_id:?}, but epoch {highest} leads it now"
    )]
    StaleLeader {
        /// The rotation.
        rotation_id: String,
        /// The caller's epoch.
        epoch: u64,
        /// The highest epoch the node has seen for the rotation.
        highest: u64,
    },

    /// The request itself is malformed (missing field, bad certificate).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The caller is not allowed to make control calls.
    #[error("{0}")]
    PermissionDenied(String),

    /// Reading or writing the state directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },

    /// A state file does not hold what it should.
    #[error("{}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The state directory has no node state yet.
    #[error("{} holds no agent state (no node.json): bootstrap the node first", dir.display())]
    NotBootstrapped {
        /// The state directory.
        dir: PathBuf,
    },

    /// Bootstrapping a state directory that already holds a node.
    #[error("{} is already bootstrapped (node {id:?})", dir.display())]
    AlreadyBootstrapped {
        /// The state directory.
        dir: PathBuf,
        /// The node id found there.
        id: String,
    },

    /// The configuration contradicts the persisted state (id or mode).
    #[error("configuration does not match the state directory: {0}")]
    ConfigMismatch(String),

    /// A PKI operation failed.
    #[error("pki: {0}")]
    Pki(#[from] PkiError),

    /// Binding or serving a listener failed.
    #[error(transparent)]
    Transport(#[from] TransportError),

    /// Binding a listener failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What failed.
        source: io::Error,
    },

    /// The export directory cannot be used, or the node has nothing to export.
    #[error("export: {0}")]
    Export(String),

    /// The workload's reload command failed or timed out.
    #[error("reload command `{command}` {why}")]
    Reload {
        /// The command, as given.
        command: String,
        /// How it failed, with its stderr.
        why: String,
    },

    /// A server task of the agent stopped with an error.
    #[error("agent server failed: {0}")]
    Server(String),
}

impl AgentError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn state(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::State {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<AgentError> for Status {
    fn from(e: AgentError) -> Self {
        let message = e.to_string();
        match e {
            AgentError::Step(_) | AgentError::Precondition(_) => {
                Status::failed_precondition(message)
            }
            // A code of its own: a deposed leader must stop, and must not read the
            // refusal of an undo as "never applied here" (FAILED_PRECONDITION).
            AgentError::StaleLeader { .. } => Status::aborted(message),
            AgentError::InvalidRequest(_) => Status::invalid_argument(message),
            AgentError::PermissionDenied(_) => Status::permission_denied(message),
            _ => Status::internal(message),
        }
    }
}
