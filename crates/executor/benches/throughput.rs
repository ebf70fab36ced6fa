//! Executor throughput: one rotation of 1,000 agents that apply steps instantly
//! ([`rollover_executor::instant_fleet`]: minimal Agent gRPC servers on loopback, one
//! per node, probes off), over plaintext gRPC, with the real redb journal (every
//! transition committed, group commit). Reports steps per second. The same rotation
//! on PostgreSQL: `cargo bench -p rollover-journal-postgres`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rollover_executor::instant_fleet::{rotate, start};
use rollover_executor::{Executor, ExecutorConfig};
use rollover_proto::v1::RotationState;

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
    // Warm up connections, then report one rotation explicitly.
    runtime.block_on(rotate(&executor, &topology)).unwrap();
    let rotated = runtime.block_on(rotate(&executor, &topology)).unwrap();
    assert_eq!(rotated.state, RotationState::Succeeded, "{rotated:?}");
    println!(
        "executor throughput (redb): {} steps over {NODES} agents in {:.3} s = {:.0} steps/s",
        rotated.steps,
        rotated.elapsed.as_secs_f64(),
        rotated.steps_per_second()
    );
    let mut group = c.benchmark_group("executor");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(criterion::Throughput::Elements(rotated.steps as u64));
    group.bench_function("rotation_1000_agents", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += runtime
                    .block_on(rotate(&executor, &topology))
                    .unwrap()
                    .elapsed;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
