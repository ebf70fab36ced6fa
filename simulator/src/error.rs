//! The simulator's one error type.

/// Everything that can stop a simulation before it produces a report.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The topology or plan is bad input.
    #[error(transparent)]
    Input(#[from] rollover_core::CoreError),
    /// Making roots, keys or certificates failed.
    #[error("pki: {0}")]
    Pki(#[from] rollover_pki::PkiError),
    /// Standing up agents or services failed.
    #[error("setting up the simulated fleet: {0}")]
    Setup(String),
    /// A socket, file or task failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A service call failed.
    #[error("rpc: {0}")]
    Rpc(String),
    /// A process limit (open files, ports) is too low for the fleet asked for.
    #[error("process limit: {0}")]
    Limit(String),
    /// The rotation did not reach an end.
    #[error("the rotation did not finish: {0}")]
    Stuck(String),
}

impl From<tonic::Status> for SimError {
    fn from(status: tonic::Status) -> Self {
        SimError::Rpc(format!("{}: {}", status.code(), status.message()))
    }
}
