//! A fresh database per test, from the server named by `ROLLOVER_TEST_POSTGRES`.
//!
//! `.ci/postgres.sh start` starts a throwaway server and prints that variable. Without
//! it, tests that need PostgreSQL print a loud SKIP line and pass; when `CI=true` they
//! fail instead, so CI cannot go green without running them.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::PgError;

/// The environment variable naming the test server (any database on it).
pub const TEST_URL_VAR: &str = "ROLLOVER_TEST_POSTGRES";

/// A URL of a new, empty database on the test server, or `None` (after printing a
/// SKIP line) when no server is configured outside CI.
///
/// # Panics
/// When no server is configured and `CI=true`, or when the server cannot be reached:
/// a test that cannot run must not pass silently in CI.
pub fn fresh_database(test: &str) -> Option<String> {
    let Ok(base) = std::env::var(TEST_URL_VAR) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{test}: {TEST_URL_VAR} is not set but CI=true: the PostgreSQL tests must run \
                 in CI (.ci/run starts a server with .ci/postgres.sh)"
            );
        }
        eprintln!(
            "\n*** SKIP {test}: no PostgreSQL ({TEST_URL_VAR} unset). Run \
             `eval \"$(.ci/postgres.sh start)\"` to run it. ***\n"
        );
        return None;
    };
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{}_{}_{}",
        test.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
            .to_lowercase(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    // On a thread of its own: the caller may be async code, where a runtime can be
    // neither entered nor dropped.
    let created: Result<(), PgError> = std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| PgError::Runtime(format!("a runtime for the test database: {e}")))?;
            runtime.block_on(async {
                let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| PgError::Db(format!("connect to {base}: {e}")))?;
                let conn = tokio::spawn(conn);
                client
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .map_err(|e| PgError::Db(format!("create database {name}: {e}")))?;
                drop(client);
                let _ = conn.await;
                Ok(())
            })
        })
        .join()
        .expect("test database thread")
    });
    if let Err(e) = created {
        panic!("{test}: {e}");
    }
    let (head, _) = base
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{TEST_URL_VAR}={base}: no database part"));
    Some(format!("{head}/{name}"))
}
