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
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (with its code) says more than the driver's summary.
        match e.as_db_error() {
            Some(db) => PgError::Db(format!("{} ({})", db.message(), db.code().code())),
            None => PgError::Db(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PgError::Db(format!("connection pool: {e}"))
    }
}

impl From<PgError> for rollover_executor::journal::JournalError {
    fn from(e: PgError) -> Self {
        rollover_executor::journal::JournalError::backend(e)
    }
}
