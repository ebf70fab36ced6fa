//! The planner: from a fleet to a plan that keeps every link up (MODEL §4, §5, §9).
//!
//! `waves` (the default) builds the prerequisite graph of MODEL §4, breaks cycles among
//! atomic nodes by declaring the fewest links as disruptions, and places every step in
//! the earliest wave its prerequisites allow, which gives the fewest waves possible.
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
}

impl Strategy {
    /// The name used on the command line and in plan files.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Waves => "waves",
            Strategy::Claim => "claim",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "waves" => Ok(Strategy::Waves),
            "claim" => Ok(Strategy::Claim),
            other => Err(CoreError::Planning(format!(
                "unknown strategy `{other}` (expected `waves` or `claim`)"
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
        Strategy::Waves => {
            if options.start.is_some() {
                return Err(CoreError::Planning(
                    "`start` only applies to the `claim` strategy".into(),
                ));
            }
            Ok(plan_waves(fleet))
        }
        Strategy::Claim => claim::plan_claim(fleet, options.start.as_deref()),
    }
}

/// The default strategy: fewest waves, fewest disruptions.
pub fn plan_waves(fleet: &Fleet) -> Plan {
    let breaking = cycles::break_cycles(fleet);
    let graph = prereq::Prerequisites::build(fleet, &breaking.disrupted);
    schedule::waves_plan(fleet, &graph, breaking)
}
