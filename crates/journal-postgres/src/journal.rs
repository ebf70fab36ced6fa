//! [`PgJournal`]: the executor's `Journal` in PostgreSQL.
//!
//! Every batch is one transaction of a few set-based upserts (one `unnest` statement
//! per table), so group commit stays cheap however many ops a batch holds. When the
//! journal is fenced ([`PgJournal::set_fence`]), each transaction first takes the
//! lease row `FOR SHARE` and commits only if the lease still has this executor's
//! epoch: a deposed leader's late writes fail instead of landing, and a takeover
//! waits for a commit already under way.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use rollover_executor::journal::{
    DocKind, Journal, JournalError, Op, RotationMeta, StepRecord, StepState,
};

use crate::PgError;
use crate::lease::LEASE_NAME;
use crate::pool::pool;

/// Longest a journal call may take before it is reported as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The executor's journal in PostgreSQL. Cheap to clone; clones share the pool
/// and the fence.
#[derive(Clone)]
pub struct PgJournal {
    shared: Arc<Shared>,
    fence: Arc<AtomicI64>,
}

/// The runtime the pool's connections live on, and the pool.
struct Shared {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
}

impl std::fmt::Debug for PgJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJournal")
            .field("fence", &self.fence())
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the journal may be dropped inside async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgJournal {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/db`) and create or
    /// migrate the schema. Blocking; callable from any thread.
    pub fn connect(url: &str) -> Result<PgJournal, PgError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("journal-postgres")
            .enable_all()
            .build()
            .map_err(|e| PgError::Runtime(e.to_string()))?;
        let pool = {
            let _guard = runtime.enter();
            pool(url, 8)?
        };
        let journal = PgJournal {
            shared: Arc::new(Shared {
                runtime: Some(runtime),
                pool,
            }),
            fence: Arc::new(AtomicI64::new(0)),
        };
        journal.call(|pool| async move {
            let mut client = pool.get().await?;
            crate::schema::migrate(&mut client).await
        })?;
        Ok(journal)
    }

    /// A handle on the same pool whose commits are conditional on the lease holding
    /// `epoch`: one per term of leadership, so writes still queued from an earlier
    /// term can never pass as the later one's.
    pub fn fenced(&self, epoch: i64) -> PgJournal {
        PgJournal {
            shared: self.shared.clone(),
            fence: Arc::new(AtomicI64::new(epoch)),
        }
    }

    /// Make every later commit through this handle (and its clones) conditional on
    /// the lease holding `epoch` (0: none).
    pub fn set_fence(&self, epoch: i64) {
        self.fence.store(epoch, Ordering::SeqCst);
    }

    /// The epoch commits are conditional on (0: none).
    pub fn fence(&self) -> i64 {
        self.fence.load(Ordering::SeqCst)
    }

    /// Run `f` on the journal's runtime and wait for it.
    fn call<T, F>(&self, f: impl FnOnce(Pool) -> F) -> Result<T, PgError>
    where
        F: Future<Output = Result<T, PgError>> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .shared
            .runtime
            .as_ref()
            .ok_or_else(|| PgError::Runtime("journal closed".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.shared.pool.clone());
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(CALL_TIMEOUT)
            .map_err(|e| PgError::Runtime(format!("journal call: {e}")))?
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn step_columns(record: StepRecord) -> (i16, bool, i32) {
    let (state, maybe) = match record.state {
        StepState::Pending => (0, false),
        StepState::Started => (1, false),
        StepState::Done => (2, false),
        StepState::Probed => (3, false),
        StepState::Failed { maybe_applied } => (4, maybe_applied),
    };
    (
        state,
        maybe,
        i32::try_from(record.attempts).unwrap_or(i32::MAX),
    )
}

fn step_record(state: i16, maybe_applied: bool, attempts: i32) -> Result<StepRecord, PgError> {
    let state = match state {
        0 => StepState::Pending,
        1 => StepState::Started,
        2 => StepState::Done,
        3 => StepState::Probed,
        4 => StepState::Failed { maybe_applied },
        s => return Err(PgError::Db(format!("bad step state {s} in the journal"))),
    };
    Ok(StepRecord {
        state,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

/// One batch as column arrays, one entry per key (the last write of a key wins, as
/// it would applying the ops one by one; an upsert may not touch a row twice).
#[derive(Default)]
struct Batch {
    rotations: BTreeMap<String, Vec<u8>>,
    documents: BTreeMap<(String, &'static str), Vec<u8>>,
    steps: BTreeMap<(String, i64, bool), (i16, bool, i32)>,
    leaves: BTreeMap<(String, String), Vec<u8>>,
    events: BTreeMap<(String, i64), Vec<u8>>,
    identity: Option<Vec<u8>>,
}

impl Batch {
    fn of(ops: &[Op]) -> Result<Batch, PgError> {
        let mut b = Batch::default();
        for op in ops {
            match op {
                Op::Rotation(meta) => {
                    let json = serde_json::to_vec(meta)
                        .map_err(|e| PgError::Db(format!("rotation record: {e}")))?;
                    b.rotations.insert(meta.id.clone(), json);
                }
                Op::Document {
                    rotation,
                    kind,
                    data,
                } => {
                    b.documents
                        .insert((rotation.clone(), kind.key()), data.clone());
                }
                Op::Step {
                    rotation,
                    step,
                    undo,
                    record,
                } => {
                    b.steps.insert(
                        (rotation.clone(), i64_of(*step), *undo),
                        step_columns(*record),
                    );
                }
                Op::Leaf {
                    rotation,
                    node,
                    der,
                } => {
                    b.leaves
                        .insert((rotation.clone(), node.clone()), der.clone());
                }
                Op::Event {
                    rotation,
                    seq,
                    data,
                } => {
                    b.events
                        .insert((rotation.clone(), i64_of(*seq)), data.clone());
                }
                Op::Identity(data) => b.identity = Some(data.clone()),
            }
        }
        Ok(b)
    }

    async fn write(self, pool: Pool, fence: i64) -> Result<(), PgError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if fence != 0 {
            let stmt = tx
                .prepare_cached("SELECT epoch FROM rollover_lease WHERE name = $1 FOR SHARE")
                .await?;
            let current: i64 = tx
                .query_opt(&stmt, &[&LEASE_NAME])
                .await?
                .map_or(0, |row| row.get(0));
            if current != fence {
                return Err(PgError::Deposed {
                    current,
                    mine: fence,
                });
            }
        }
        if !self.rotations.is_empty() {
            let (ids, metas): (Vec<String>, Vec<Vec<u8>>) = self.rotations.into_iter().unzip();
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO rollover_rotations (id, meta)
                     SELECT * FROM unnest($1::text[], $2::bytea[])
                     ON CONFLICT (id) DO UPDATE SET meta = excluded.meta",
                )
                .await?;
            tx.execute(&stmt, &[&ids, &metas]).await?;
        }
        if !self.documents.is_empty() {
            let mut rotations = Vec::new();
            let mut kinds = Vec::new();
            let mut data = Vec::new();
            for ((r, k), d) in self.documents {
                rotations.push(r);
                kinds.push(k.to_string());
                data.push(d);
            }
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO rollover_documents (rotation, kind, data)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
                     ON CONFLICT (rotation, kind) DO UPDATE SET data = excluded.data",
                )
                .await?;
            tx.execute(&stmt, &[&rotations, &kinds, &data]).await?;
        }
        if !self.steps.is_empty() {
            let n = self.steps.len();
            let (mut rotations, mut steps, mut undos) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut states, mut maybes, mut attempts) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for ((r, s, u), (state, maybe, a)) in self.steps {
                rotations.push(r);
                steps.push(s);
                undos.push(u);
                states.push(state);
                maybes.push(maybe);
                attempts.push(a);
            }
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO rollover_steps (rotation, step, undo, state, maybe_applied, attempts)
                     SELECT * FROM unnest($1::text[], $2::int8[], $3::bool[], $4::int2[],
                                          $5::bool[], $6::int4[])
                     ON CONFLICT (rotation, step, undo) DO UPDATE
                     SET state = excluded.state, maybe_applied = excluded.maybe_applied,
                         attempts = excluded.attempts",
                )
                .await?;
            tx.execute(
                &stmt,
                &[&rotations, &steps, &undos, &states, &maybes, &attempts],
            )
            .await?;
        }
        if !self.leaves.is_empty() {
            let mut rotations = Vec::new();
            let mut nodes = Vec::new();
            let mut ders = Vec::new();
            for ((r, n), d) in self.leaves {
                rotations.push(r);
                nodes.push(n);
                ders.push(d);
            }
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO rollover_leaves (rotation, node, der)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
                     ON CONFLICT (rotation, node) DO UPDATE SET der = excluded.der",
                )
                .await?;
            tx.execute(&stmt, &[&rotations, &nodes, &ders]).await?;
        }
        if !self.events.is_empty() {
            let mut rotations = Vec::new();
            let mut seqs = Vec::new();
            let mut data = Vec::new();
            for ((r, s), d) in self.events {
                rotations.push(r);
                seqs.push(s);
                data.push(d);
            }
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO rollover_events (rotation, seq, data)
                     SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[])
                     ON CONFLICT (rotation, seq) DO UPDATE SET data = excluded.data",
                )
                .await?;
            tx.execute(&stmt, &[&rotations, &seqs, &data]).await?;
        }
        if let Some(data) = self.identity {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO rollover_identity (name, data) VALUES ('executor', $1)
                     ON CONFLICT (name) DO UPDATE SET data = excluded.data",
                )
                .await?;
            tx.execute(&stmt, &[&data]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn meta_of(bytes: &[u8]) -> Result<RotationMeta, PgError> {
    serde_json::from_slice(bytes).map_err(|e| PgError::Db(format!("rotation record: {e}")))
}

impl Journal for PgJournal {
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
        if ops.is_empty() {
            return Ok(());
        }
        let batch = Batch::of(ops)?;
        let fence = self.fence();
        Ok(self.call(move |pool| batch.write(pool, fence))?)
    }

    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
        Ok(self.call(|pool| async move {
            let client = pool.get().await?;
            let rows = client
                .query("SELECT meta FROM rollover_rotations ORDER BY id", &[])
                .await?;
            rows.iter()
                .map(|row| meta_of(row.get::<_, &[u8]>(0)))
                .collect()
        })?)
    }

    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
        let id = id.to_string();
        Ok(self.call(|pool| async move {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached("SELECT meta FROM rollover_rotations WHERE id = $1")
                .await?;
            client
                .query_opt(&stmt, &[&id])
                .await?
                .map(|row| meta_of(row.get::<_, &[u8]>(0)))
                .transpose()
        })?)
    }

    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
        let id = id.to_string();
        Ok(self.call(move |pool| async move {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT data FROM rollover_documents WHERE rotation = $1 AND kind = $2",
                )
                .await?;
            Ok(client
                .query_opt(&stmt, &[&id, &kind.key()])
                .await?
                .map(|row| row.get::<_, Vec<u8>>(0)))
        })?)
    }

    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
        let id = id.to_string();
        Ok(self.call(|pool| async move {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT step, undo, state, maybe_applied, attempts FROM rollover_steps
                     WHERE rotation = $1 ORDER BY step, undo",
                )
                .await?;
            client
                .query(&stmt, &[&id])
                .await?
                .iter()
                .map(|row| {
                    let step: i64 = row.get(0);
                    Ok((
                        u64::try_from(step).unwrap_or(0),
                        row.get(1),
                        step_record(row.get(2), row.get(3), row.get(4))?,
                    ))
                })
                .collect()
        })?)
    }

    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let id = id.to_string();
        Ok(self.call(|pool| async move {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT node, der FROM rollover_leaves WHERE rotation = $1 ORDER BY node",
                )
                .await?;
            Ok(client
                .query(&stmt, &[&id])
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })?)
    }

    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let id = id.to_string();
        let from = i64_of(from);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self.call(move |pool| async move {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT seq, data FROM rollover_events WHERE rotation = $1 AND seq >= $2
                     ORDER BY seq LIMIT $3",
                )
                .await?;
            Ok(client
                .query(&stmt, &[&id, &from, &limit])
                .await?
                .iter()
                .map(|row| {
                    let seq: i64 = row.get(0);
                    (u64::try_from(seq).unwrap_or(0), row.get(1))
                })
                .collect())
        })?)
    }

    fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
        let id = id.to_string();
        Ok(self.call(|pool| async move {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached("SELECT max(seq) FROM rollover_events WHERE rotation = $1")
                .await?;
            let last: Option<i64> = client.query_one(&stmt, &[&id]).await?.get(0);
            Ok(last.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
        })?)
    }

    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.call(|pool| async move {
            let client = pool.get().await?;
            Ok(client
                .query_opt(
                    "SELECT data FROM rollover_identity WHERE name = 'executor'",
                    &[],
                )
                .await?
                .map(|row| row.get::<_, Vec<u8>>(0)))
        })?)
    }
}
