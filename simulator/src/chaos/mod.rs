//! Fault injection (issue 6): a chaotic run is a normal simulated rotation in which
//! the executor reaches its agents through a [`ChaosConnector`] that loses, delays,
//! duplicates and partitions control calls, agents are killed and restarted on their
//! state directory and ports, and the executor itself is killed and reopened on its
//! journal; afterwards the [`invariants`] are checked.
//!
//! Every decision is drawn from the run's seed and the identity of the call it is
//! about (node, method, step, attempt), not from a shared sequence, so the same seed
//! injects the same faults into the same calls whatever the interleaving; the moments
//! of executor crashes are counted in step events. Every fault is logged with
//! `tracing` (kind, target, seed) and counted by kind in the [`ChaosReport`]. What
//! cannot be replayed exactly is the real clock: how far a partition or a restart
//! overlaps other calls.
//!
//! Here: the injector ([`Chaos`]: its seeded decisions and counts); beside it the
//! faults per control call (`connector.rs`), the executor's crashes (`watch.rs`),
//! agents crashed and restarted (`restarts.rs`), when nodes were unreachable and what
//! that excuses (`outages.rs`), the scan for private keys in control messages
//! (`secrets.rs`), the report (`report.rs`), and the invariants (`invariants.rs`).

pub mod connector;
pub mod invariants;
mod outages;
mod report;
mod restarts;
mod secrets;
pub mod spec;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rollover_core::synth::SeededRng;
use rollover_executor::RetryPolicy;
use tokio::task::JoinHandle;

pub use connector::ChaosConnector;
pub use invariants::Noted;
pub use report::ChaosReport;
pub use spec::{ChaosSpec, ChaosSpecError};

use crate::setup::SimFleet;
use outages::Outage;

/// The executor's retries of agent calls in chaotic runs: 10 attempts, 10 ms
/// doubling to 250 ms (1 to 1.3 s of trying), so that a stranded agent pauses the
/// rotation soon; partitions and restarts are shorter than that.
pub const CHAOS_RETRY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(10),
    max_delay: Duration::from_millis(250),
    max_attempts: 10,
};

/// How long a partition lasts (seeded within).
pub const PARTITION: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(700));
/// How long a crashed agent stays down before it is restarted (seeded within).
pub const CRASH_DOWN: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_millis(300));
/// How long a stranded agent stays down: past the executor's retries (seeded within).
pub const STRAND_DOWN: (Duration, Duration) =
    (Duration::from_millis(1600), Duration::from_millis(2200));
/// A failed handshake is excused only if an end was down within this window before.
pub const EXCUSE_WINDOW: Duration = Duration::from_secs(20);
/// Longest wait for a stranded node to come back before the run is declared stuck.
pub const RESUME_DEADLINE: Duration = Duration::from_secs(60);
/// How long a database blip lasts (seeded within).
pub const BLIP: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(3));
/// Longest a chaotic rotation may take.
pub const CHAOS_DEADLINE: Duration = Duration::from_secs(180);

/// A kind of injected fault, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// An agent killed after a step and restarted shortly after.
    AgentCrash,
    /// An agent down past the executor's retries.
    Strand,
    /// The executor killed and reopened on its journal.
    ExecutorCrash,
    /// The leading executor of a group killed (its lease left to expire).
    LeaderCrash,
    /// The leading executor of a group cut off its database.
    PostgresCut,
    /// The leading executor's database connections dropped for less than its lease.
    PostgresBlip,
    /// A call lost before it reached the agent.
    DropRequest,
    /// A call the agent acted on whose answer was lost.
    DropAnswer,
    /// A call held back before it was sent.
    Delay,
    /// The executor cut off from an agent for a while.
    Partition,
    /// A call sent twice at once.
    Duplicate,
}

impl FaultKind {
    /// The name counted and logged.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::AgentCrash => "agent-crash",
            FaultKind::Strand => "strand",
            FaultKind::ExecutorCrash => "executor-crash",
            FaultKind::LeaderCrash => "leader-crash",
            FaultKind::PostgresCut => "postgres-cut",
            FaultKind::PostgresBlip => "postgres-blip",
            FaultKind::DropRequest => "drop-request",
            FaultKind::DropAnswer => "drop-answer",
            FaultKind::Delay => "delay",
            FaultKind::Partition => "partition",
            FaultKind::Duplicate => "duplicate",
        }
    }
}

/// FNV-1a, then a splitmix64 finish: a stable hash of a call's identity.
fn mix(seed: u64, key: &str, n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ seed.rotate_left(17) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fault injector of one run: decisions, counts, outages, restarts, violations.
pub struct Chaos {
    /// What to inject.
    pub spec: ChaosSpec,
    /// The run's seed.
    pub seed: u64,
    sim: Weak<SimFleet>,
    index: HashMap<String, usize>,
    calls_by_key: Mutex<HashMap<String, u64>>,
    faults: Mutex<BTreeMap<FaultKind, u64>>,
    violations: Mutex<Vec<String>>,
    outages: Mutex<HashMap<String, Vec<Outage>>>,
    restarts: Mutex<Vec<JoinHandle<()>>>,
    secrets: Mutex<HashMap<String, Vec<Vec<u8>>>>,
    events: Mutex<Vec<Noted>>,
    calls: AtomicU64,
    resumed: AtomicU64,
    agent_restarts: AtomicU64,
    executor_restarts: AtomicU64,
    excused: AtomicU64,
    group: Mutex<GroupCounts>,
}

/// An executor group's figures for the report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GroupCounts {
    executors: u64,
    leader_changes: u64,
    epoch_refusals: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Chaos {
    /// The injector of a run over `sim`'s agents.
    pub fn new(spec: ChaosSpec, seed: u64, sim: &Arc<SimFleet>) -> Arc<Chaos> {
        let mut index = HashMap::new();
        let mut secrets = HashMap::new();
        for (ix, slot) in sim.agents.iter().enumerate() {
            if let Some(slot) = slot {
                index.insert(slot.id().to_string(), ix);
                secrets.insert(
                    slot.id().to_string(),
                    secrets::private_keys(slot.state_dir()),
                );
            }
        }
        tracing::info!(%spec, seed, "chaos: injecting faults");
        Arc::new(Chaos {
            spec,
            seed,
            sim: Arc::downgrade(sim),
            index,
            calls_by_key: Mutex::default(),
            faults: Mutex::default(),
            violations: Mutex::default(),
            outages: Mutex::default(),
            restarts: Mutex::default(),
            secrets: Mutex::new(secrets),
            events: Mutex::default(),
            calls: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            agent_restarts: AtomicU64::new(0),
            executor_restarts: AtomicU64::new(0),
            excused: AtomicU64::new(0),
            group: Mutex::default(),
        })
    }

    /// The generator deciding about the next call with this identity (the n-th
    /// call of `key` gets the n-th generator: same seed, same decisions).
    pub fn draw(&self, key: &str) -> SeededRng {
        let n = {
            let mut calls = lock(&self.calls_by_key);
            let n = calls.entry(key.to_string()).or_default();
            *n += 1;
            *n
        };
        SeededRng::new(mix(self.seed, key, n))
    }

    /// Count and log one injected fault.
    pub fn fault(&self, kind: FaultKind, target: &str, detail: &str) {
        *lock(&self.faults).entry(kind).or_default() += 1;
        if kind == FaultKind::Delay {
            // Every call is delayed: logged, but below the other faults.
            tracing::debug!(
                kind = kind.name(),
                target,
                seed = self.seed,
                detail,
                "chaos: fault injected"
            );
        } else {
            tracing::warn!(
                kind = kind.name(),
                target,
                seed = self.seed,
                detail,
                "chaos: fault injected"
            );
        }
    }

    /// Record a broken invariant.
    pub fn violation(&self, what: impl Into<String>) {
        let what = what.into();
        tracing::error!(seed = self.seed, violation = %what, "chaos: invariant broken");
        lock(&self.violations).push(what);
    }

    /// Count one call through the injector.
    pub(crate) fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The executor was reopened after a crash.
    pub(crate) fn executor_restarted(&self) {
        self.executor_restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// An executor group's figures: its size, how often the lead changed, and the
    /// late calls agents refused by epoch.
    pub(crate) fn set_group(&self, executors: u64, leader_changes: u64, epoch_refusals: u64) {
        *lock(&self.group) = GroupCounts {
            executors,
            leader_changes,
            epoch_refusals,
        };
    }

    /// A pause was resumed.
    pub(crate) fn resumed(&self) {
        self.resumed.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed handshakes excused by the observer.
    pub(crate) fn set_excused(&self, n: u64) {
        self.excused.store(n, Ordering::Relaxed);
    }

    /// Note a watched event (for the invariants).
    pub(crate) fn note(&self, noted: Noted) {
        lock(&self.events).push(noted);
    }

    /// Events noted so far.
    pub fn noted(&self) -> Vec<Noted> {
        lock(&self.events).clone()
    }

    /// Whether `node` has an agent (not `@executor`).
    pub fn has_agent(&self, node: &str) -> bool {
        self.index.contains_key(node)
    }

    /// Node ids with agents.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

/// A duration uniform in `range`, drawn from `rng`.
pub fn within(rng: &mut SeededRng, range: (Duration, Duration)) -> Duration {
    range.0 + (range.1 - range.0).mul_f64(rng.fraction())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_depend_on_seed_and_call_only() {
        let draw = |seed, key, n| SeededRng::new(mix(seed, key, n)).fraction();
        let a = draw(7, "gw/apply/3", 1);
        assert_eq!(a, draw(7, "gw/apply/3", 1));
        assert_ne!(a, draw(8, "gw/apply/3", 1));
        assert_ne!(a, draw(7, "gw/apply/3", 2));
        assert_ne!(a, draw(7, "gw/apply/4", 1));
    }

    #[test]
    fn durations_stay_within_their_range() {
        let mut rng = SeededRng::new(3);
        for _ in 0..1_000 {
            let d = within(&mut rng, PARTITION);
            assert!(PARTITION.0 <= d && d <= PARTITION.1, "{d:?}");
        }
    }
}
