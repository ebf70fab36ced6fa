//! The planner: from a fleet to a plan that keeps every link up (MODEL §4, §5, §9).
//!
//! `waves` (the default) builds the prerequisite graph of MODEL §4 and §12, breaks its
//! cycles by declaring the fewest links as disruptions, and places every step in the
//! earliest wave its prerequisites allow, which gives the fewest waves possible.
//! `bridge` does the same with MODEL §11's steps and prerequisites: links whose ends
//! both support chains only wait for bridges, so they never constrain the order.
//! `claim` reproduces the source design's literal breadth-first order for comparison.

mod claim;
mod cycles;
mod prereq;
mod schedule;

use crate::error::CoreError;
use crate::fleet::Fleet;
use crate::plan::Plan;

pub use cycles::CycleMethod;

/// Which order to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Parallel waves, provably safe, fewest waves (default).
    #[default]
    Waves,
    /// The source design's literal breadth-first order, one node at a time.
    Claim,
    /// Cross-signed bridges first, then every node's steps at once (MODEL §11).
    Bridge,
}

impl Strategy {
    /// The name used on the command line and in plan files.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Waves => "waves",
            Strategy::Claim => "claim",
            Strategy::Bridge => "bridge",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "waves" => Ok(Strategy::Waves),
            "claim" => Ok(Strategy::Claim),
            "bridge" => Ok(Strategy::Bridge),
            other => Err(CoreError::Planning(format!(
                "unknown strategy `{other}` (expected `waves`, `bridge` or `claim`)"
            ))),
        }
    }
}

/// What to plan and how.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// The ordering strategy.
    pub strategy: Strategy,
    /// For `claim`: the node to start from (default: the first target).
    pub start: Option<String>,
}

/// Plan a rotation of `fleet`.
pub fn plan(fleet: &Fleet, options: &PlanOptions) -> Result<Plan, CoreError> {
    match options.strategy {
        Strategy::Waves | Strategy::Bridge if options.start.is_some() => Err(CoreError::Planning(
            "`start` only applies to the `claim` strategy".into(),
        )),
        Strategy::Waves => Ok(plan_waves(fleet)),
        Strategy::Bridge => Ok(plan_bridge(fleet)),
        Strategy::Claim => claim::plan_claim(fleet, options.start.as_deref()),
    }
}

/// The default strategy: fewest waves, fewest disruptions (MODEL §4, §5, §12).
pub fn plan_waves(fleet: &Fleet) -> Plan {
    let breaking = cycles::break_cycles(fleet, false);
    let graph = prereq::Prerequisites::build(fleet, &breaking.disrupted, false);
    schedule::waves_plan(fleet, &graph, breaking, "waves")
}

/// The bridge strategy (MODEL §11): every node that supports chains sends bridges
/// before its mode's steps and stops after; links with a `chains: false` end keep
/// their order prerequisites and their cycles are broken as under `waves`. Fewest
/// waves under those prerequisites.
pub fn plan_bridge(fleet: &Fleet) -> Plan {
    let breaking = cycles::break_cycles(fleet, true);
    let graph = prereq::Prerequisites::build(fleet, &breaking.disrupted, true);
    schedule::waves_plan(fleet, &graph, breaking, "bridge")
}

/// The naive plan used as a negative control: every node takes its steps as fast as it
/// can, with no cross-node prerequisite, so all nodes switch at once. Unsafe whenever a
/// link joins two target nodes; the verifier and the simulator show which links break.
pub fn plan_naive(fleet: &Fleet) -> Plan {
    let mut steps = Vec::with_capacity(fleet.step_count());
    for (node, mode) in fleet.modes.iter().enumerate() {
        for (rank, &action) in mode.steps().iter().enumerate() {
            steps.push(crate::plan::Step {
                id: steps.len() as u64,
                node: fleet.id(node as crate::fleet::NodeIx).to_string(),
                action,
                wave: rank as u32,
                after: Vec::new(),
            });
        }
    }
    Plan {
        format: crate::plan::PLAN_FORMAT.to_string(),
        ca: fleet.ca.clone(),
        strategy: Some("naive".to_string()),
        cycle_breaking: Some("none".to_string()),
        steps,
        disruptions: Vec::new(),
        comparison: Vec::new(),
    }
}

/// One interleaving a plan allows, chosen by `seed`: the same steps (same ids), run one
/// at a time in a seeded random order that respects every prerequisite. Used by the
/// simulator so a seed reproduces exactly the interleaving it exercised.
pub fn linearize(plan: &Plan, order: &crate::order::PlanOrder, seed: u64) -> Plan {
    let mut rng = crate::synth::SeededRng::new(seed);
    let n = order.len();
    let mut waiting: Vec<usize> = order.preds.iter().map(Vec::len).collect();
    let mut succ: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (s, preds) in order.preds.iter().enumerate() {
        for &p in preds {
            succ[p as usize].push(s as u32);
        }
    }
    let mut ready: Vec<u32> = (0..n as u32)
        .filter(|&s| waiting[s as usize] == 0)
        .collect();
    let mut steps: Vec<crate::plan::Step> = Vec::with_capacity(n);
    let mut previous: Option<(u64, &str)> = None;
    while !ready.is_empty() {
        let pick = rng.below(ready.len() as u32) as usize;
        let s = ready.swap_remove(pick) as usize;
        let original = &plan.steps[s];
        let after = match previous {
            Some((id, node)) if node != original.node => vec![id],
            _ => Vec::new(),
        };
        steps.push(crate::plan::Step {
            id: original.id,
            node: original.node.clone(),
            action: original.action,
            wave: steps.len() as u32,
            after,
        });
        previous = Some((original.id, original.node.as_str()));
        for &t in &succ[s] {
            waiting[t as usize] -= 1;
            if waiting[t as usize] == 0 {
                ready.push(t);
            }
        }
    }
    Plan {
        steps,
        strategy: plan
            .strategy
            .as_ref()
            .map(|s| format!("{s} (linearized, seed {seed})")),
        ..plan.clone()
    }
}
