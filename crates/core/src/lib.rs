//! Sans-IO core of rollover: the model of `docs/MODEL.md` (cited below as MODEL §N).
//!
//! * [`topology`] and [`fleet`]: the link graph and its rotated part (MODEL §6, §7);
//! * [`ids`]: the one rule for node ids, wherever they enter (MODEL §7);
//! * [`state`]: node state, the handshake rule, modes and steps (MODEL §2, §3, §11, §12);
//! * [`planner`]: the safe, fewest-waves order and the claim's literal order (§4, §5, §9);
//! * [`plan`] and [`order`]: the plan file and its checked partial order (§8);
//! * [`verifier`]: the independent safety check (§5);
//! * [`report`]: the simulation report (§10).
//!
//! No I/O, no clocks, no async: every function takes data and returns data.

pub mod error;
pub mod fleet;
pub mod ids;
pub mod order;
pub mod plan;
pub mod planner;
pub mod report;
pub mod source;
pub mod state;
pub mod synth;
pub mod topology;
pub mod verifier;

pub use error::{CoreError, InputError};
pub use fleet::{Fleet, Link, NodeIx};
pub use ids::{BadId, MAX_NODE_ID_BYTES, check_node_id};
pub use order::PlanOrder;
pub use plan::{Disruption, Figures, PLAN_FORMAT, Plan, Step};
pub use planner::{PlanOptions, Strategy, linearize, plan, plan_bridge, plan_naive, plan_waves};
pub use source::Document;
pub use state::{
    Action, Identity, Mode, NodeState, Profile, Root, RootSet, accepts, handshake, handshake_chains,
};
pub use topology::{EXECUTOR_ID, Topology};
pub use verifier::{BrokenLink, Verdict, verify};

/// Check a plan document against a topology and verify it: the whole of
/// `rollover verify` as a pure function.
pub fn verify_document(
    topology: &Topology,
    plan_origin: &str,
    plan_text: &str,
) -> Result<(Plan, Verdict), CoreError> {
    let plan = Plan::parse(plan_origin, plan_text)?;
    let fleet = Fleet::new(topology);
    let order = PlanOrder::resolve(&plan, &fleet, &Document::new(plan_origin, plan_text))?;
    let verdict = verify(&fleet, &plan, &order);
    Ok((plan, verdict))
}

/// Verify an in-memory plan (e.g. one received over RPC), with errors named by field.
pub fn verify_plan(topology: &Topology, plan: &Plan) -> Result<Verdict, CoreError> {
    let fleet = Fleet::new(topology);
    let order = PlanOrder::resolve(plan, &fleet, &Document::new("<plan>", ""))?;
    Ok(verify(&fleet, plan, &order))
}
