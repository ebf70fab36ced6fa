//! What chaotic runs injected and broke, counted: one run's [`ChaosReport`] from its
//! injector, the sum over runs, and the text the CLI prints.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Chaos, lock};

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
    /// Executors in the group on PostgreSQL (0: one executor on an embedded journal).
    pub executors: u64,
    /// Times the lead passed to another executor of the group.
    pub leader_changes: u64,
    /// Late calls of deposed leaders that agents refused by epoch.
    pub epoch_refusals: u64,
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
        self.executors = self.executors.max(other.executors);
        self.leader_changes += other.leader_changes;
        self.epoch_refusals += other.epoch_refusals;
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
        if self.executors > 0 {
            out.push_str(&format!(
                "chaos: {} executors on PostgreSQL, {} leader changes, {} late calls refused by epoch\n",
                self.executors, self.leader_changes, self.epoch_refusals
            ));
        }
        for v in &self.violations {
            out.push_str(&format!("  violation: {v}\n"));
        }
        out
    }
}

impl Chaos {
    /// The report of this run.
    pub fn report(&self) -> ChaosReport {
        let group = *lock(&self.group);
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
            executors: group.executors,
            leader_changes: group.leader_changes,
            epoch_refusals: group.epoch_refusals,
        }
    }
}
