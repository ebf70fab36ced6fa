//! Planner and verifier speed on layered fleets of 1k, 10k and 100k nodes with fan-out
//! 10 and 30% atomic nodes (10k to 1M links), against the time to parse the fleet's
//! JSON file. Targets (issue 3): planning ≤ 2× parsing, verifying ≤ 3× planning.
//! Per-link figures and peak memory: `cargo run --release -p rollover-simulator --example scale`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rollover_core::synth::{FleetShape, layered_fleet};
use rollover_core::{Document, Fleet, PlanOrder, Topology, plan_waves, verify};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rotation-planning");
    group.sample_size(10);
    for nodes in [1_000usize, 10_000, 100_000] {
        let topology = layered_fleet(&FleetShape::planning_benchmark(nodes));
        let json = topology.to_json();
        let links = topology.links.len() as u64;
        group.throughput(Throughput::Elements(links));
        group.bench_with_input(BenchmarkId::new("parse-json", nodes), &json, |b, json| {
            b.iter(|| Topology::parse("fleet.json", json).expect("valid"))
        });
        group.bench_with_input(BenchmarkId::new("plan", nodes), &topology, |b, t| {
            b.iter(|| plan_waves(&Fleet::new(t)))
        });
        let fleet = Fleet::new(&topology);
        let plan = plan_waves(&fleet);
        group.bench_with_input(BenchmarkId::new("verify", nodes), &plan, |b, plan| {
            b.iter(|| {
                let order = PlanOrder::resolve(plan, &fleet, &Document::new("<bench>", ""))
                    .expect("own plan resolves");
                verify(&fleet, plan, &order)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
