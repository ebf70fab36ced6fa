//! The crate's one error type.

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL is not a usable connection string.
    #[error("bad PostgreSQL URL: {0}")]
    Url(String),
    /// Connecting, or a statement, failed.
    #[error("postgres: {0}")]
    Db(String),
    /// The schema is newer than this build understands.
    #[error(
        "journal schema version {found} is newer than this executor's ({known}); upgrade the executor"
    )]
    SchemaTooNew {
        /// What the database holds.
        found: i32,
        /// The newest this build knows.
        known: i32,
    },
    /// Another executor holds a newer epoch: this one is no longer the leader.
    #[error("deposed: the lease's epoch is {current}, this executor led with {mine}")]
    Deposed {
        /// The epoch in the database.
        current: i64,
        /// The epoch this executor acted under.
        mine: i64,
    },
    /// A term of leadership could not be set up or served (the caller's error).
    #[error("executor term: {0}")]
    Term(#[source] crate::group::TermError),
    /// The journal's runtime is gone or a call took too long.
    #[error("postgres: {0}")]
    Runtime(String),
    /// The server could not be reached now: connecting failed, the connection was
    /// dropped, the pool timed out, or the server is shutting down or out of
    /// connections. Worth trying again.
    #[error("postgres: {0}")]
    Unavailable(String),
}

/// SQLSTATE classes and codes that say the server, not the statement, failed:
/// connection exceptions (08), operator intervention such as a shutdown (57P),
/// insufficient resources (53), and transaction rollbacks a retry resolves
/// (serialization failure, deadlock).
fn is_transient_state(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P")
        || code.starts_with("53")
        || code == "40001"
        || code == "40P01"
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (with its code) says more than the driver's summary.
        match e.as_db_error() {
            Some(db) if is_transient_state(db.code().code()) => {
                PgError::Unavailable(format!("{} ({})", db.message(), db.code().code()))
            }
            Some(db) => PgError::Db(format!("{} ({})", db.message(), db.code().code())),
            // No answer from the server: the connection failed or closed.
            None => PgError::Unavailable(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => match PgError::from(e) {
                PgError::Db(m) => PgError::Db(format!("connection pool: {m}")),
                other => PgError::Unavailable(format!("connection pool: {other}")),
            },
            e => PgError::Unavailable(format!("connection pool: {e}")),
        }
    }
}

impl PgError {
    /// Whether the server could not be reached now (see [`PgError::Unavailable`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, PgError::Unavailable(_) | PgError::Runtime(_))
    }
}

impl From<PgError> for rollover_executor::journal::JournalError {
    fn from(e: PgError) -> Self {
        if e.is_transient() {
            rollover_executor::journal::JournalError::unavailable(e)
        } else if matches!(e, PgError::Deposed { .. }) {
            rollover_executor::journal::JournalError::fenced(e)
        } else {
            rollover_executor::journal::JournalError::backend(e)
        }
    }
}
