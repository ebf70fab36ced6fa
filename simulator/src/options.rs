//! What a simulation runs and how.

use std::path::PathBuf;
use std::sync::Arc;

use rollover_core::{Plan, Strategy};

use crate::chaos::spec::ChaosSpec;
use crate::group::GroupOptions;

/// Progress of a running simulation, for a progress bar or log lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Steps done so far.
    pub steps_done: u64,
    /// Steps in the plan.
    pub steps_total: u64,
    /// Handshakes made so far.
    pub handshakes: u64,
    /// Of which failed.
    pub failed: u64,
    /// What is happening ("starting agents", "rotating", "final checks").
    pub phase: String,
}

/// A callback receiving progress updates.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to simulate.
#[derive(Clone)]
pub struct SimOptions {
    /// Run this plan as is (even an unsafe one: the negative control) instead of
    /// asking the planner. It is run as the one interleaving `seed` picks.
    pub plan: Option<Plan>,
    /// The planner's strategy when no plan is given.
    pub strategy: Strategy,
    /// The claim strategy's start node.
    pub start: Option<String>,
    /// Seeds the background probe schedule and the interleaving of a given plan.
    pub seed: u64,
    /// Background handshakes per second on random links while steps run (0: none).
    pub probe_rate: u32,
    /// Most steps in flight at once (0: no limit beyond the plan's order).
    pub max_concurrency: u32,
    /// Where agents and the executor keep their state (a temporary directory if
    /// `None`).
    pub work_dir: Option<PathBuf>,
    /// Progress updates.
    pub progress: Option<ProgressFn>,
    /// Most failures listed in the report.
    pub max_failures_listed: usize,
    /// Inject these faults (all drawn from `seed`) and check the chaos invariants.
    pub chaos: Option<ChaosSpec>,
    /// Run a group of executors on PostgreSQL instead of one on an in-memory
    /// journal (the run is then checked as a chaotic one, with or without faults).
    pub group: Option<GroupOptions>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            plan: None,
            strategy: Strategy::Waves,
            start: None,
            seed: 1,
            probe_rate: 200,
            max_concurrency: 64,
            work_dir: None,
            progress: None,
            max_failures_listed: 50,
            chaos: None,
            group: None,
        }
    }
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimOptions")
            .field("plan", &self.plan.as_ref().map(|p| p.steps.len()))
            .field("strategy", &self.strategy)
            .field("start", &self.start)
            .field("seed", &self.seed)
            .field("probe_rate", &self.probe_rate)
            .field("max_concurrency", &self.max_concurrency)
            .field("work_dir", &self.work_dir)
            .field("chaos", &self.chaos.as_ref().map(ToString::to_string))
            .field("executors", &self.group.as_ref().map(|g| g.executors))
            .finish()
    }
}
