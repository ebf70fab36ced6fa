//! Executor throughput on PostgreSQL: the rotation of the redb bench
//! (`cargo bench -p rollover-executor`: 1,000 agents that apply steps instantly, over
//! plaintext gRPC on loopback, probes off), with the journal in PostgreSQL instead,
//! fenced by a lease epoch as a leading executor's is. Reports steps per second.
//!
//! Needs `ROLLOVER_TEST_POSTGRES` (`eval "$(.ci/postgres.sh start)"`); without it the
//! bench says so and measures nothing.

use std::sync::Arc;
#[path = "../../executor/benches/support/mod.rs"]
mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use rollover_executor::instant_fleet::start;
use rollover_executor::{Executor, ExecutorConfig};
use rollover_journal_postgres::testing::fresh_database;
use rollover_journal_postgres::{Lease, LeaseConfig, PgJournal};

const NODES: usize = 1000;

fn throughput(c: &mut Criterion) {
    let Some(url) = fresh_database("bench_throughput") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = PgJournal::connect(&url).unwrap();
    let (executor, topology) = runtime.block_on(async {
        let lease = Lease::new(&url, LeaseConfig::new("bench", "bench")).unwrap();
        let epoch = lease.try_acquire().await.unwrap().expect("a free lease");
        let mut config = ExecutorConfig::new(dir.path());
        config.journal = Some(Arc::new(journal.fenced(epoch)));
        config.leader_epoch = u64::try_from(epoch).unwrap();
        let topology = start(NODES).await.unwrap();
        // The lease outlives the bench (6 s renewed by nobody would expire): hold it.
        tokio::spawn(async move { lease.hold(epoch).await });
        (Executor::open(config).unwrap(), topology)
    });
    support::measure(
        c,
        &runtime,
        &executor,
        &topology,
        "executor_postgres",
        "PostgreSQL",
    );
}

criterion_group!(benches, throughput);
criterion_main!(benches);
