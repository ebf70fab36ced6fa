//! The executor's journal in PostgreSQL ([`PgJournal`]), and the lease through which
//! several executors on one database elect exactly one leader ([`Lease`]).
//!
//! * [`schema`]: the tables, created and migrated when a journal opens;
//! * [`journal`]: [`PgJournal`], the executor's `Journal` trait over a connection pool,
//!   every batch one transaction, fenced by the leader's epoch;
//! * [`group`]: [`Member`], one executor of a group: follow, lead a term, follow again;
//! * [`lease`]: [`Lease`], a row with an increasing epoch (the fencing token);
//! * `pool`: the connection pools both use;
//! * [`testing`]: a fresh database per test from `ROLLOVER_TEST_POSTGRES`.
//!
//! The executor's journal API is synchronous (its writer is a thread); the pool and
//! its connections live on a small runtime of their own, so the journal can be
//! called from any thread, inside or outside another tokio runtime.

pub mod error;
pub mod group;
pub mod journal;
pub mod lease;
mod pool;
pub mod schema;
pub mod testing;

pub use error::PgError;
pub use group::{Member, TermEnd, TermError};
pub use journal::PgJournal;
pub use lease::{Leadership, Lease, LeaseConfig};

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
