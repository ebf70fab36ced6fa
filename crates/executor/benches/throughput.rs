//! Executor throughput: one rotation of 1,000 agents that apply steps instantly
//! ([`rollover_executor::instant_fleet`]: minimal Agent gRPC servers on loopback, one
//! per node, probes off), over plaintext gRPC, with the real redb journal (every
//! transition committed, group commit). Reports steps per second. The same rotation
//! on PostgreSQL: `cargo bench -p rollover-journal-postgres`.

mod support;

use criterion::{Criterion, criterion_group, criterion_main};
use rollover_executor::instant_fleet::start;
use rollover_executor::{Executor, ExecutorConfig};

const NODES: usize = 1000;

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (executor, topology) = runtime.block_on(async {
        let topology = start(NODES).await.unwrap();
        let executor = Executor::open(ExecutorConfig::new(dir.path())).unwrap();
        (executor, topology)
    });
    support::measure(c, &runtime, &executor, &topology, "executor", "redb");
}

criterion_group!(benches, throughput);
criterion_main!(benches);
