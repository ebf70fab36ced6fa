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

pub mod connector;
pub mod invariants;
pub mod spec;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rollover_executor::RetryPolicy;
use rollover_proto::v1::ProbeFailure;
use rollover_transport::ProbeError;
use serde::Serialize;
use tokio::task::JoinHandle;

pub use connector::ChaosConnector;
pub use invariants::Noted;
pub use spec::{ChaosSpec, ChaosSpecError};

use crate::observe::{ExcuseFn, Source};
use crate::setup::SimFleet;

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
            FaultKind::DropRequest => "drop-request",
            FaultKind::DropAnswer => "drop-answer",
            FaultKind::Delay => "delay",
            FaultKind::Partition => "partition",
            FaultKind::Duplicate => "duplicate",
        }
    }
}

/// What chaotic runs injected and which invariants they broke.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChaosReport {
    /// Runs counted.
    pub runs: u64,
    /// Faults injected, by kind.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Broken invariants (each names the run's seed); must be empty.
    pub violations: Vec<String>,
    /// Control calls that went through the fault injector.
    pub calls: u64,
    /// Pauses caused by a stranded or cut-off node that were resumed once it was back.
    pub resumed_pauses: u64,
    /// Agent incarnations started after a crash.
    pub agent_restarts: u64,
    /// Executor incarnations opened on the journal after a crash.
    pub executor_restarts: u64,
    /// Failed handshakes excused because an end was down (never a TLS refusal).
    pub excused_handshakes: u64,
}

impl ChaosReport {
    /// Add another report's counts.
    pub fn merge(&mut self, other: &ChaosReport) {
        self.runs += other.runs;
        for (kind, n) in &other.faults_by_kind {
            *self.faults_by_kind.entry(kind.clone()).or_default() += n;
        }
        self.violations.extend(other.violations.iter().cloned());
        self.calls += other.calls;
        self.resumed_pauses += other.resumed_pauses;
        self.agent_restarts += other.agent_restarts;
        self.executor_restarts += other.executor_restarts;
        self.excused_handshakes += other.excused_handshakes;
    }

    /// Faults injected, all kinds.
    pub fn faults(&self) -> u64 {
        self.faults_by_kind.values().sum()
    }

    /// The counts as text: runs, faults by kind, violations (listed).
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .faults_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut out = format!(
            "chaos: {} runs, {} faults injected ({}), {} violations\n",
            self.runs,
            self.faults(),
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            },
            self.violations.len()
        );
        out.push_str(&format!(
            "chaos: {} control calls, {} agent restarts, {} executor restarts, {} stranded pauses resumed, {} failed handshakes excused (an end was down)\n",
            self.calls,
            self.agent_restarts,
            self.executor_restarts,
            self.resumed_pauses,
            self.excused_handshakes
        ));
        for v in &self.violations {
            out.push_str(&format!("  violation: {v}\n"));
        }
        out
    }
}

/// A stretch of time a node was unreachable.
#[derive(Debug, Clone, Copy)]
struct Outage {
    /// A partition (control calls only) rather than the agent being down.
    cut: bool,
    start: Instant,
    end: Option<Instant>,
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

/// The injector's generator: SplitMix64, seeded per decision by [`Chaos::draw`].
///
/// (Not `rollover_core::synth::Lcg`: its `next_u32` yields 31 random bits, so its
/// `chance(p)` is true with probability `2p` and `below(n)` stays under `n / 2`.)
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform fraction in `0..1`.
    pub fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.fraction() < p
    }

    /// A number in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A duration uniform in `range`.
    pub fn within(&mut self, range: (Duration, Duration)) -> Duration {
        range.0 + (range.1 - range.0).mul_f64(self.fraction())
    }
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
                secrets.insert(slot.id().to_string(), private_keys(slot.state_dir()));
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
        })
    }

    /// The generator deciding about the next call with this identity (the n-th
    /// call of `key` gets the n-th generator: same seed, same decisions).
    pub fn draw(&self, key: &str) -> Rng {
        let n = {
            let mut calls = lock(&self.calls_by_key);
            let n = calls.entry(key.to_string()).or_default();
            *n += 1;
            *n
        };
        Rng::new(mix(self.seed, key, n))
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

    // ----- outages -----

    /// Cut the executor off from `node` for `duration`.
    pub(crate) fn cut(&self, node: &str, duration: Duration) {
        let now = Instant::now();
        lock(&self.outages)
            .entry(node.to_string())
            .or_default()
            .push(Outage {
                cut: true,
                start: now,
                end: Some(now + duration),
            });
    }

    /// Whether the executor is cut off from `node` now.
    pub fn is_cut(&self, node: &str) -> bool {
        let now = Instant::now();
        lock(&self.outages)
            .get(node)
            .is_some_and(|o| o.iter().any(|o| o.cut && o.end.is_some_and(|e| e > now)))
    }

    fn down(&self, node: &str) {
        lock(&self.outages)
            .entry(node.to_string())
            .or_default()
            .push(Outage {
                cut: false,
                start: Instant::now(),
                end: None,
            });
    }

    fn up(&self, node: &str) {
        let now = Instant::now();
        if let Some(o) = lock(&self.outages).get_mut(node) {
            for o in o.iter_mut().filter(|o| !o.cut && o.end.is_none()) {
                o.end = Some(now);
            }
        }
    }

    /// Whether `node` had an outage (agent down; or, with `cuts`, a partition) at
    /// any time within [`EXCUSE_WINDOW`] before now.
    pub fn had_outage(&self, node: &str, cuts: bool) -> bool {
        let now = Instant::now();
        let since = now.checked_sub(EXCUSE_WINDOW).unwrap_or(now);
        lock(&self.outages).get(node).is_some_and(|o| {
            o.iter()
                .any(|o| (cuts || !o.cut) && o.start <= now && o.end.is_none_or(|e| e >= since))
        })
    }

    /// Whether the executor can reach `node` now: its agent runs and no partition
    /// cuts it off.
    pub fn reachable(&self, node: &str) -> bool {
        let up = self
            .index
            .get(node)
            .and_then(|&ix| {
                let sim = self.sim.upgrade()?;
                sim.agents[ix].as_ref().map(|a| a.is_up())
            })
            .unwrap_or(true);
        up && !self.is_cut(node)
    }

    /// The nodes named in a pause reason that had an outage.
    pub fn stranded_in(&self, reason: &str) -> Vec<String> {
        let mut named: Vec<String> = self
            .index
            .keys()
            .filter(|id| reason.contains(&format!("({id} ")) || reason.contains(&format!("`{id}`")))
            .filter(|id| self.had_outage(id, true))
            .cloned()
            .collect();
        named.sort();
        named
    }

    /// Wait until every node of `nodes` is reachable; false after `deadline`.
    pub async fn wait_reachable(&self, nodes: &[String], deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if nodes.iter().all(|n| self.reachable(n)) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether a failed handshake is excused: never a TLS refusal, never a final
    /// check; a probe that could not run because its client's agent was down or cut
    /// off; a connection that failed because the server's agent was down.
    pub fn excuses(&self, source: Source, client: &str, server: &str, error: &ProbeError) -> bool {
        if source == Source::Final || error.is_refusal() {
            return false;
        }
        let excused = if error.kind == ProbeFailure::NotRun {
            self.had_outage(client, true)
        } else {
            self.had_outage(server, false)
        };
        if excused {
            tracing::info!(
                client,
                server,
                %error,
                seed = self.seed,
                "chaos: failed handshake excused (an end was down)"
            );
        }
        excused
    }

    /// [`Chaos::excuses`] as the observer's hook.
    pub fn excuse_fn(self: &Arc<Self>) -> ExcuseFn {
        let this = self.clone();
        Arc::new(move |source, client, server, error| this.excuses(source, client, server, error))
    }

    // ----- agents -----

    /// Kill `node`'s agent now and start it again after `down`; false if it was
    /// not running.
    pub fn crash_agent(self: &Arc<Self>, node: &str, down: Duration, kind: FaultKind) -> bool {
        let Some(&ix) = self.index.get(node) else {
            return false;
        };
        let Some(sim) = self.sim.upgrade() else {
            return false;
        };
        let Some(slot) = sim.agents[ix].as_ref() else {
            return false;
        };
        // Marked down before the kill, so that no failure it causes goes unexcused.
        self.down(node);
        if !slot.crash() {
            self.up(node);
            return false;
        }
        self.fault(
            kind,
            node,
            &format!("agent killed, restarting in {} ms", down.as_millis()),
        );
        let (this, node) = (self.clone(), node.to_string());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let Some(slot_of) = this.sim.upgrade() else {
                return;
            };
            if let Some(slot) = slot_of.agents[ix].as_ref() {
                slot.hold_ports().await;
            }
            drop(slot_of);
            tokio::time::sleep(down.saturating_sub(started.elapsed())).await;
            let Some(sim) = this.sim.upgrade() else {
                return;
            };
            let Some(slot) = sim.agents[ix].as_ref() else {
                return;
            };
            match slot.restart().await {
                Ok(()) => {
                    this.agent_restarts.fetch_add(1, Ordering::Relaxed);
                    this.up(&node);
                    tracing::info!(target_node = %node, seed = this.seed, incarnation = slot.incarnations(), "chaos: agent restarted");
                }
                Err(e) => this.violation(format!("the agent of `{node}` did not come back: {e}")),
            }
        });
        lock(&self.restarts).push(task);
        true
    }

    /// Wait for every pending agent restart.
    pub async fn settle(&self) {
        loop {
            let tasks: Vec<JoinHandle<()>> = lock(&self.restarts).drain(..).collect();
            if tasks.is_empty() {
                return;
            }
            for task in tasks {
                if let Err(e) = task.await
                    && !e.is_cancelled()
                {
                    self.violation(format!("an agent restart task failed: {e}"));
                }
            }
        }
    }

    // ----- secrets -----

    /// Look again at `node`'s keys (after it made a new one).
    pub(crate) fn refresh_secrets(&self, node: &str) {
        let Some(&ix) = self.index.get(node) else {
            return;
        };
        let Some(sim) = self.sim.upgrade() else {
            return;
        };
        if let Some(slot) = sim.agents[ix].as_ref() {
            let mut keys = private_keys(slot.state_dir());
            let mut secrets = lock(&self.secrets);
            let known = secrets.entry(node.to_string()).or_default();
            keys.retain(|k| !known.contains(k));
            known.extend(keys);
        }
    }

    /// Check an encoded control message to or from `node` for private key material:
    /// a PEM private key block, or the DER of any private key the node has had.
    pub(crate) fn scan(&self, node: &str, what: &str, bytes: &[u8]) {
        if contains(bytes, b"PRIVATE KEY") {
            self.violation(format!(
                "a private key (PEM) travelled in {what} of `{node}`"
            ));
            return;
        }
        let secrets = lock(&self.secrets);
        if let Some(keys) = secrets.get(node)
            && keys.iter().any(|k| contains(bytes, k))
        {
            drop(secrets);
            self.violation(format!("`{node}`'s private key (DER) travelled in {what}"));
        }
    }

    /// The report of this run.
    pub fn report(&self) -> ChaosReport {
        ChaosReport {
            runs: 1,
            faults_by_kind: lock(&self.faults)
                .iter()
                .map(|(k, n)| (k.name().to_string(), *n))
                .collect(),
            violations: lock(&self.violations)
                .iter()
                .map(|v| format!("seed {}: {v}", self.seed))
                .collect(),
            calls: self.calls.load(Ordering::Relaxed),
            resumed_pauses: self.resumed.load(Ordering::Relaxed),
            agent_restarts: self.agent_restarts.load(Ordering::Relaxed),
            executor_restarts: self.executor_restarts.load(Ordering::Relaxed),
            excused_handshakes: self.excused.load(Ordering::Relaxed),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack.len() >= needle.len()
        && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The DER of every PEM private key in a state directory's `keys/`.
fn private_keys(state_dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(state_dir.join(rollover_agent::KEYS_DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|pem| pem_body(&pem))
        .collect()
}

/// The decoded body of the first PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64(&body)
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64("YWJj").unwrap(), b"abc");
        assert!(base64("a*b").is_none());
    }

    #[test]
    fn a_key_pem_is_found_in_bytes() {
        let key = rollover_pki::NodeKey::generate(rollover_pki::KeyAlg::default()).unwrap();
        let der = pem_body(&key.to_pem()).unwrap();
        let mut message = b"prefix".to_vec();
        message.extend_from_slice(&der);
        assert!(contains(&message, &der));
        assert!(!contains(b"prefix", &der));
    }

    #[test]
    fn decisions_depend_on_seed_and_call_only() {
        let a = Rng::new(mix(7, "gw/apply/3", 1)).next_u64();
        assert_eq!(a, Rng::new(mix(7, "gw/apply/3", 1)).next_u64());
        assert_ne!(a, Rng::new(mix(8, "gw/apply/3", 1)).next_u64());
        assert_ne!(a, Rng::new(mix(7, "gw/apply/3", 2)).next_u64());
        assert_ne!(a, Rng::new(mix(7, "gw/apply/4", 1)).next_u64());
    }

    #[test]
    fn chances_are_what_they_say() {
        let mut rng = Rng::new(3);
        let n = 100_000;
        let hits = (0..n).filter(|_| rng.chance(0.05)).count() as f64 / f64::from(n);
        assert!((hits - 0.05).abs() < 0.005, "{hits}");
        let half = (0..n).filter(|_| rng.chance(0.5)).count() as f64 / f64::from(n);
        assert!((half - 0.5).abs() < 0.01, "{half}");
        let high = (0..n).filter(|_| rng.below(10) >= 5).count() as f64 / f64::from(n);
        assert!((high - 0.5).abs() < 0.01, "{high}");
    }
}
