//! The executor throughput measurement both journal benches share (this crate's, on
//! redb, and `rollover-journal-postgres`'s, which includes this file): one rotation of
//! the instant fleet reported as steps per second, then criterion's samples of it.

use std::time::Duration;

use criterion::Criterion;
use rollover_core::Topology;
use rollover_executor::Executor;
use rollover_executor::instant_fleet::rotate;
use rollover_proto::v1::RotationState;

/// Warm up, print one rotation's figure (`label` names the journal), then let
/// criterion measure rotations as the benchmark `group`/`rotation_1000_agents`.
pub fn measure(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    executor: &Executor,
    topology: &Topology,
    group: &str,
    label: &str,
) {
    // Warm up connections, then report one rotation explicitly.
    runtime.block_on(rotate(executor, topology)).unwrap();
    let rotated = runtime.block_on(rotate(executor, topology)).unwrap();
    assert_eq!(rotated.state, RotationState::Succeeded, "{rotated:?}");
    println!(
        "executor throughput ({label}): {} steps over {} agents in {:.3} s = {:.0} steps/s",
        rotated.steps,
        topology.nodes.len(),
        rotated.elapsed.as_secs_f64(),
        rotated.steps_per_second()
    );
    let mut group = c.benchmark_group(group);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(criterion::Throughput::Elements(rotated.steps as u64));
    group.bench_function("rotation_1000_agents", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += runtime
                    .block_on(rotate(executor, topology))
                    .unwrap()
                    .elapsed;
            }
            total
        })
    });
    group.finish();
}
