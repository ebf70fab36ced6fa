//! Connection pools to the database, shared by the journal and the lease: a connect
//! timeout, TCP keepalives (a connection cut without a FIN must not hang a leader),
//! and bounded waits for a connection.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::PgError;

/// A connection pool for `url` (connections are spawned on the calling runtime).
pub(crate) fn pool(url: &str, size: usize) -> Result<Pool, PgError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Url(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // A connection cut without a FIN (a dead network) must not hang a leader.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(5));
    config.application_name("rollover-executor");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| PgError::Url(e.to_string()))
}
