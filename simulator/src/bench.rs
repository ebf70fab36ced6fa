//! Figures for the simulator's speed and memory targets, measured in one run:
//! bare handshakes per second against the simulator's handshakes per second during a
//! rotation, and the memory an idle agent costs.

use std::time::Duration;

use rollover_core::synth::{FleetShape, layered_fleet};
use rollover_core::topology::NodeSpec;
use rollover_core::{Fleet, Mode, Topology};

use crate::error::SimError;
use crate::handshake_rate::{HandshakeRate, bare_handshake_rate};
use crate::limits::Listening;
use crate::options::SimOptions;
use crate::run::{SimOutcome, simulate};
use crate::setup::{AgentStore, start_fleet};

/// The process's resident memory, in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// The process's peak resident memory so far, in bytes (Linux; `None` elsewhere).
pub fn peak_resident_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

/// A memory figure of `/proc/self/status` (given there in KiB), in bytes. The one
/// reader of that file in the workspace: the `memory-stats` crate reports the current
/// resident size but not the peak (`VmHWM`), which the benches need.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = value.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// Handshake rates measured in one run.
#[derive(Debug, Clone)]
pub struct HandshakeBench {
    /// (a): bare in-memory mutual handshakes.
    pub bare: HandshakeRate,
    /// (b): the simulated rotation that was measured.
    pub simulated: SimOutcome,
}

impl HandshakeBench {
    /// (b) / (a).
    pub fn ratio(&self) -> f64 {
        let bare = self.bare.per_second();
        if bare > 0.0 {
            self.simulated.report.handshakes_per_second / bare
        } else {
            0.0
        }
    }
}

/// (a) bare handshakes on `threads` threads for `seconds`, then (b) a simulated
/// rotation of a layered fleet of `nodes` nodes (fan-out 5, 30% atomic) with the
/// background prober unthrottled and at most `max_concurrency` steps in flight (the
/// fewer, the more of the machine the handshakes get rather than the rotation's own
/// work: CSRs, issuing, state writes, journal).
pub async fn handshake_bench(
    nodes: usize,
    seconds: f64,
    threads: usize,
    max_concurrency: u32,
) -> Result<HandshakeBench, SimError> {
    let bare = tokio::task::spawn_blocking(move || {
        bare_handshake_rate(Duration::from_secs_f64(seconds), threads)
    })
    .await
    .map_err(|e| SimError::Setup(e.to_string()))??;
    let topology = layered_fleet(&FleetShape {
        nodes,
        fan_out: 5,
        atomic_share: 0.3,
        control: true,
        seed: 11,
    });
    let options = SimOptions {
        probe_rate: 1_000_000,
        max_concurrency,
        ..SimOptions::default()
    };
    let simulated = simulate(&topology, options).await?;
    Ok(HandshakeBench { bare, simulated })
}

/// Resident memory per idle agent: start `count` agents with no links and divide the
/// growth of the process's resident memory by `count`.
pub async fn agent_memory(count: usize) -> Result<f64, SimError> {
    let topology = Topology {
        ca: "memory-root".into(),
        nodes: (0..count)
            .map(|i| NodeSpec::new(format!("idle-{i}"), Mode::Bundle))
            .collect(),
        links: Vec::new(),
        control: None,
    };
    let fleet = Fleet::new(&topology);
    let dir = tempfile::Builder::new().prefix("rollover-mem-").tempdir()?;
    let before = resident_bytes().unwrap_or(0);
    let sim = start_fleet(
        &topology,
        &fleet,
        dir.path(),
        Listening::Shared,
        AgentStore::Memory,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = resident_bytes().unwrap_or(0);
    sim.shutdown().await;
    Ok(after.saturating_sub(before) as f64 / count.max(1) as f64)
}
