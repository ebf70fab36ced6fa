//! Running one rotation: preparation, the step loop around the [`Scheduler`], probes,
//! pause/resume/abort/rollback, events, and resumption from the journal.
//!
//! * **Preparation** (once, journaled): every agent's state (`GetState`: its current
//!   root, which `ApplyStep` names as the old one, its data-plane address for probes,
//!   and a mode check); the new root `RootCa::generate(ca, generation)`, persisted
//!   with its key; when the executor is a node (`@executor`, MODEL §6) and has
//!   credentials of its own, its current set and a fresh key and leaf for the new
//!   root.
//!   With a bridged plan (MODEL §11) it also issues `b_new` (signed with the key of
//!   the root the nodes are on, which it must hold: see `root_keys`) and `b_old`,
//!   journaled.
//! * **Steps**: the mode's first step of a node goes `CreateCsr` -> `issue_leaf` (the
//!   leaf is journaled) -> `ApplyStep` with the new root and the leaf; `bridge` goes
//!   `ApplyStep` with both bridges (no CSR). `@executor`'s own
//!   steps are applied locally to the executor's `LiveCredentials` (and journaled as
//!   its identity). Every send is preceded by a committed `started` record and a
//!   StepStarted event; transient errors are retried with backoff (StepFailed with
//!   `will_retry`), permanent ones fail the step and pause the rotation.
//! * **Probes** (option `probe`): after each step, every link touching the node: the
//!   client's agent probes the server (`Agent.Probe`), at the server's workload
//!   endpoint when the topology gives it a `probe:` address; a link whose client is
//!   `@executor` is probed by the executor itself, with a real mTLS handshake from
//!   its own current credentials to the server's data plane (skipped when the
//!   executor has no credentials of its own). Dependents run only once they pass; a
//!   failure on an undeclared link pauses with the link and the TLS error.
//! * **Rollback** records `Paused{"rollback requested: <reason>"}` then `Resumed`,
//!   and undoes the applied steps in reverse dependency order with `undo = true`.
//!   An undo of a step that may never have reached its agent (retries exhausted,
//!   restart) that the agent refuses as FAILED_PRECONDITION counts as nothing to undo.
//! * **Restart**: a rotation's runner rebuilds the scheduler from the step records:
//!   steps started but not done are sent again (agents dedupe by step id), steps
//!   done but not probed are probed again.
//!
//! One file per concern: `claims` (the roots active rotations replace), `identity`
//! (the executor's journaled credentials), `records`
//! (journal records and events), `runner` (the loop around the [`Scheduler`], which
//! makes every decision), `steps` (step application), `probing`, `preparation`.

mod claims;
mod identity;
mod preparation;
mod probing;
mod records;
mod runner;
mod steps;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rollover_core::order::StepIx;
use rollover_core::state::{Action, NodeState, Profile, Root, RootSet};
use rollover_core::{Fleet, Link, Mode, Plan, PlanOrder, Topology, Verdict};
use rollover_pki::{
    Bridges, CredentialSet, HeldLeaf, KeyAlg, LiveCredentials, NodeKey, RootCa, Validity,
};
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;
use rollover_transport::ProbeError;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::driver::{AgentApi, AgentConnector, AgentError, RetryPolicy, tls_probe};
use crate::error::{NodeProblem, RotationError};
use crate::journal::{
    CommitTicket, Committer, DocKind, JournalError, Op, RotationMeta, State, StepRecord, StepState,
};
use crate::metrics::Metrics;
use crate::root_keys;
use crate::scheduler::{Command, Outcome, Phase, Recorded, SchedOptions, Scheduler};

pub use claims::RootClaims;
use identity::{
    ExecutorCreds, StoredCreds, StoredExecutorBase, decode_bridges, encode_bridges, executor_set,
};
pub use identity::{decode_identity, encode_identity};
pub use preparation::NodeFacts;
use preparation::Prepared;
pub(crate) use preparation::{check_mode, current_root};
pub(crate) use records::{ProbeTally, StepRecords};

/// What every rotation shares: the journal, how to reach agents, the executor's own
/// credentials, metrics and tunables.
pub struct Ctx {
    /// Group commit in front of the journal.
    pub committer: Committer,
    /// How to reach a node's agent.
    pub connector: Arc<dyn AgentConnector>,
    /// The executor's own credentials on the control channel (`@executor`), if any.
    pub own_creds: Option<Arc<LiveCredentials>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Retries of agent calls.
    pub retry: RetryPolicy,
    /// Deadline of the executor's own probes.
    pub probe_timeout: Duration,
    /// Key algorithm of new roots and of the executor's own keys.
    pub key_alg: KeyAlg,
    /// Lifetime of new roots.
    pub root_validity: Duration,
    /// Lifetime of issued leaves.
    pub leaf_validity: Duration,
    /// Agents asked for their state at once during preparation.
    pub prepare_concurrency: usize,
    /// Roots with keys given by the operator, for bridges (MODEL §11).
    pub root_keys: Vec<Arc<RootCa>>,
    /// The executor's own probes in flight at once, across every step and rotation:
    /// a step of a node with thousands of links (`@executor`'s stage) would
    /// otherwise open thousands of connections at once and run out of file
    /// descriptors (both ends are in the process when simulated).
    pub probe_limit: Arc<tokio::sync::Semaphore>,
    /// The epoch this executor leads with (see [`crate::ExecutorConfig::leader_epoch`]).
    pub leader_epoch: u64,
    /// The roots active rotations are replacing (see `claims`).
    pub root_claims: RootClaims,
}

/// Default of [`Ctx::probe_limit`].
pub const PROBES_IN_FLIGHT: usize = 512;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A rotation's counters, as reported by GetRotation.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The journaled record.
    pub meta: RotationMeta,
    /// Steps applied and not undone.
    pub steps_done: u32,
    /// Steps in flight.
    pub steps_running: u32,
    /// Lowest wave with steps not done.
    pub current_wave: u32,
    /// Probes run.
    pub probes_total: u32,
    /// Probes failed.
    pub probes_failed: u32,
}

/// Asks the runner of a rotation to change course.
#[derive(Debug, Clone)]
pub enum Control {
    /// Stop dispatching.
    Pause(String),
    /// Dispatch again.
    Resume,
    /// Stop for good.
    Abort(String),
    /// Undo what was applied.
    Rollback(String),
}

enum Msg {
    Applied {
        step: StepIx,
        undo: bool,
    },
    ApplyFailed {
        step: StepIx,
        undo: bool,
        maybe_applied: bool,
        reason: String,
    },
    Probed {
        step: StepIx,
        undo: bool,
        /// Why the step's probes hold it (an undeclared link failed), if they do.
        held: Option<String>,
        total: u32,
        failed: u32,
    },
    Control(Control, oneshot::Sender<()>),
}

/// The ordered event log of one rotation: sequence numbers, the journal, and a
/// live broadcast of committed events.
struct EventLog {
    seq: Mutex<u64>,
    live: broadcast::Sender<Arc<v1::RotationEvent>>,
}

/// One rotation: its documents, its agents, its live state.
pub struct Rotation {
    /// The rotation's id.
    pub id: String,
    ctx: Arc<Ctx>,
    /// The fleet's topology.
    pub topology: Topology,
    /// The plan it runs.
    pub plan: Plan,
    /// The topology's rotated part.
    pub fleet: Fleet,
    /// The plan's partial order.
    pub order: PlanOrder,
    /// The verifier's verdict on the plan.
    pub verdict: Verdict,
    node_links: Vec<Vec<Link>>,
    /// By node: the workload endpoint its clients' probes dial (topology `probe:`).
    workload_at: Vec<Option<String>>,
    agents: Vec<Option<Arc<dyn AgentApi>>>,
    events: EventLog,
    /// What the journal holds (its meta updated only once a commit of it is
    /// durable): everything outside the runner reads this.
    status: Arc<Mutex<Snapshot>>,
    /// The runner's working copy of the meta record: changes are made here, then
    /// journaled, and reach `status` once durable.
    working: Mutex<RotationMeta>,
    prepared: Mutex<Option<Arc<Prepared>>>,
    attempts: [Vec<AtomicU32>; 2],
    leaves: Mutex<HashMap<String, Vec<u8>>>,
    wave_of: Vec<u32>,
    waves_total: u32,
    control: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
    /// Set while the runner waits to resume from the journal (see `runner`).
    stalled: std::sync::atomic::AtomicBool,
}

impl Rotation {
    /// Build a rotation from its parts, connecting (lazily) to every agent.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        ctx: Arc<Ctx>,
        meta: RotationMeta,
        topology: Topology,
        plan: Plan,
        fleet: Fleet,
        order: PlanOrder,
        verdict: Verdict,
    ) -> Result<Arc<Rotation>, AgentError> {
        let addresses: HashMap<&str, Option<&str>> = topology
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.address.as_deref()))
            .collect();
        let mut agents = Vec::with_capacity(fleet.len());
        for node in 0..fleet.len() as u32 {
            if Some(node) == fleet.executor {
                agents.push(None);
                continue;
            }
            let id = fleet.id(node);
            let address = addresses.get(id).copied().flatten();
            agents.push(Some(ctx.connector.connect(id, address)?));
        }
        let probes: HashMap<&str, &str> = topology
            .nodes
            .iter()
            .filter_map(|n| Some((n.id.as_str(), n.probe.as_deref()?)))
            .collect();
        let workload_at = (0..fleet.len() as u32)
            .map(|node| probes.get(fleet.id(node)).map(|a| a.to_string()))
            .collect();
        let mut node_links = vec![Vec::new(); fleet.len()];
        for &link in &fleet.links {
            node_links[link.client as usize].push(link);
            if link.server != link.client {
                node_links[link.server as usize].push(link);
            }
        }
        let n = plan.steps.len();
        let wave_of: Vec<u32> = plan.steps.iter().map(|s| s.wave).collect();
        let waves_total = plan.wave_count();
        let (live, _) = broadcast::channel(4096);
        let working = Mutex::new(meta.clone());
        let snapshot = Snapshot {
            meta,
            steps_done: 0,
            steps_running: 0,
            current_wave: 0,
            probes_total: 0,
            probes_failed: 0,
        };
        Ok(Arc::new(Rotation {
            id: snapshot.meta.id.clone(),
            ctx,
            topology,
            plan,
            fleet,
            order,
            verdict,
            node_links,
            workload_at,
            agents,
            events: EventLog {
                seq: Mutex::new(0),
                live,
            },
            status: Arc::new(Mutex::new(snapshot)),
            working,
            prepared: Mutex::new(None),
            attempts: [
                (0..n).map(|_| AtomicU32::new(0)).collect(),
                (0..n).map(|_| AtomicU32::new(0)).collect(),
            ],
            leaves: Mutex::new(HashMap::new()),
            wave_of,
            waves_total,
            control: Mutex::new(None),
            stalled: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Set the new root's generation (once, before the rotation is journaled).
    pub fn set_generation(&self, generation: u32) {
        self.working.lock().expect("meta lock").generation = generation;
        self.status.lock().expect("status lock").meta.generation = generation;
    }

    /// Waves in the plan.
    pub fn waves_total(&self) -> u32 {
        self.waves_total
    }

    /// The current status, as journaled: a state change shows here only once the
    /// journal holds it.
    pub fn snapshot(&self) -> Snapshot {
        self.status.lock().expect("status lock").clone()
    }

    /// The runner's working meta record (ahead of [`Rotation::snapshot`] while a
    /// change of it is being journaled).
    pub(super) fn working_meta(&self) -> RotationMeta {
        self.working.lock().expect("meta lock").clone()
    }

    /// The sequence number of the latest event.
    pub fn last_sequence(&self) -> u64 {
        *self.events.seq.lock().expect("event lock")
    }

    /// Live events (committed ones only), for watchers.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<v1::RotationEvent>> {
        self.events.live.subscribe()
    }

    /// The shared context.
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// Whether the runner is waiting for the journal to come back before it resumes
    /// the rotation from it.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Whether a runner is attached.
    pub fn is_running(&self) -> bool {
        self.control.lock().expect("control lock").is_some()
    }

    /// Ask the runner to change course; `None` if no runner is attached (terminal).
    pub async fn control(&self, control: Control) -> Option<()> {
        let (tx, rx) = oneshot::channel();
        let sender = self.control.lock().expect("control lock").clone()?;
        sender.send(Msg::Control(control, tx)).ok()?;
        rx.await.ok()
    }

    fn step_ref(&self, ix: StepIx) -> v1::StepRef {
        let s = &self.plan.steps[ix as usize];
        v1::StepRef {
            id: s.id,
            node: s.node.clone(),
            action: v1::StepAction::from(s.action) as i32,
        }
    }

    fn step_name(&self, ix: StepIx, undo: bool) -> String {
        let s = &self.plan.steps[ix as usize];
        let undo = if undo { "undo of " } else { "" };
        format!("{undo}step {} ({} {})", s.id, s.node, s.action)
    }
}
