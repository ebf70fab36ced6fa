//! The journal's tables, created and migrated when a journal opens.
//!
//! Migrations are numbered SQL scripts applied in order, each in the transaction
//! that records its number, under an advisory lock so executors starting together
//! do not race. A database newer than this build is refused rather than guessed at.

use tokio_postgres::Client;

use crate::PgError;

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x726f_6c6c_6f76_6572; // "rollover"

/// The migrations, in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: every table of the journal, and the leadership lease.
    "CREATE TABLE rollover_rotations (
        id text PRIMARY KEY,
        meta bytea NOT NULL
    );
    CREATE TABLE rollover_documents (
        rotation text NOT NULL,
        kind text NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (rotation, kind)
    );
    CREATE TABLE rollover_steps (
        rotation text NOT NULL,
        step bigint NOT NULL,
        undo boolean NOT NULL,
        state smallint NOT NULL,
        maybe_applied boolean NOT NULL,
        attempts integer NOT NULL,
        PRIMARY KEY (rotation, step, undo)
    );
    CREATE TABLE rollover_leaves (
        rotation text NOT NULL,
        node text NOT NULL,
        der bytea NOT NULL,
        PRIMARY KEY (rotation, node)
    );
    CREATE TABLE rollover_events (
        rotation text NOT NULL,
        seq bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (rotation, seq)
    );
    CREATE TABLE rollover_identity (
        name text PRIMARY KEY,
        data bytea NOT NULL
    );
    CREATE TABLE rollover_lease (
        name text PRIMARY KEY,
        epoch bigint NOT NULL,
        holder text NOT NULL,
        address text NOT NULL,
        expires_at timestamptz NOT NULL
    );",
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Create or migrate the schema to [`SCHEMA_VERSION`].
pub async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS rollover_schema (version integer NOT NULL)")
        .await?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM rollover_schema", &[])
        .await?
        .and_then(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO rollover_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "journal schema migrated");
    }
    tx.commit().await?;
    Ok(())
}
