//! Prints, in one run, the time per link to parse, plan and verify layered fleets of
//! 1k, 10k and 100k nodes (fan-out 10, 30% atomic), the ratios the issue targets, and
//! the process's peak memory. Usage: `cargo run --release -p rollover-simulator --example scale`.
//!
//! It plans with `rollover-core` alone; it lives in the simulator for the peak-memory
//! reading the benches share ([`rollover_simulator::bench::peak_resident_bytes`]).

use std::time::Instant;

use rollover_core::synth::{FleetShape, layered_fleet};
use rollover_core::{Document, Fleet, PlanOrder, Topology, plan_waves, verify};
use rollover_simulator::bench::peak_resident_bytes;

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        best = best.min(start.elapsed().as_secs_f64());
        out = Some(value);
    }
    (best, out.expect("at least one run"))
}

fn main() {
    println!(
        "nodes    links      parse ns/link  plan ns/link  verify ns/link  plan/parse  verify/plan  waves"
    );
    for nodes in sizes() {
        let topology = layered_fleet(&FleetShape::planning_benchmark(nodes));
        let json = topology.to_json();
        let links = topology.links.len() as f64;
        let runs = if nodes >= 100_000 { 3 } else { 10 };
        let (parse, parsed) = best_of(runs, || {
            Topology::parse("fleet.json", &json).expect("valid")
        });
        let (plan_t, plan) = best_of(runs, || plan_waves(&Fleet::new(&parsed)));
        let fleet = Fleet::new(&parsed);
        let (verify_t, verdict) = best_of(runs, || {
            let order = PlanOrder::resolve(&plan, &fleet, &Document::new("<scale>", ""))
                .expect("own plan resolves");
            verify(&fleet, &plan, &order)
        });
        assert!(verdict.safe, "the planner's plan must verify safe");
        println!(
            "{nodes:<8} {links:<10} {:>13.1} {:>13.1} {:>15.1} {:>11.2} {:>12.2} {:>6}",
            parse / links * 1e9,
            plan_t / links * 1e9,
            verify_t / links * 1e9,
            plan_t / parse,
            verify_t / plan_t,
            verdict.waves
        );
    }
    if let Some(bytes) = peak_resident_bytes() {
        let mib = bytes as f64 / (1024.0 * 1024.0);
        println!(
            "peak memory (VmHWM, whole run incl. JSON text and parsed topology): {mib:.0} MiB"
        );
    }
}

/// Fleet sizes: the three, or those given as arguments.
fn sizes() -> Vec<usize> {
    let given: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if given.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        given
    }
}
