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
}

/// Default of [`Ctx::probe_limit`].
pub const PROBES_IN_FLIGHT: usize = 512;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What an agent said before the first step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Fingerprint of the root the node is on (the one being replaced).
    pub old_root: String,
    /// Where its data-plane server listens, for probes.
    pub data_address: Option<String>,
}

/// The executor's own credentials around a rotation (journaled; node-local).
#[derive(Serialize, Deserialize)]
struct StoredCreds {
    server_roots: Vec<String>,
    client_roots: Vec<String>,
    held: Vec<(String, String)>,
    presents: Option<usize>,
    /// The bridges it sends (MODEL §11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sends: Vec<String>,
}

impl StoredCreds {
    fn from_set(set: &CredentialSet) -> Self {
        StoredCreds {
            server_roots: set.server_roots.iter().map(hex::encode).collect(),
            client_roots: set.client_roots.iter().map(hex::encode).collect(),
            held: set
                .held
                .iter()
                .map(|h| (hex::encode(&h.cert), h.key.to_pem()))
                .collect(),
            presents: set.presents,
            sends: set.sends.iter().map(hex::encode).collect(),
        }
    }

    fn to_set(&self) -> Result<CredentialSet, RotationError> {
        let der = |h: &String| {
            hex::decode(h)
                .map(rollover_pki::CertificateDer::from)
                .map_err(|e| RotationError::journaled("executor credentials", e))
        };
        Ok(CredentialSet {
            server_roots: self
                .server_roots
                .iter()
                .map(der)
                .collect::<Result<_, _>>()?,
            client_roots: self
                .client_roots
                .iter()
                .map(der)
                .collect::<Result<_, _>>()?,
            held: self
                .held
                .iter()
                .map(|(c, k)| {
                    Ok(HeldLeaf::new(
                        der(c)?,
                        NodeKey::from_pem(k)
                            .map_err(|e| RotationError::journaled("executor key", e))?,
                    ))
                })
                .collect::<Result<_, RotationError>>()?,
            presents: self.presents,
            sends: self.sends.iter().map(der).collect::<Result<_, _>>()?,
            chains: true,
        })
    }
}

/// The journaled form of a rotation's bridges: both certificates, PEM.
fn encode_bridges(bridges: &Bridges) -> Vec<u8> {
    pem::encode_many(&[
        pem::Pem::new("CERTIFICATE", bridges.b_new.to_vec()),
        pem::Pem::new("CERTIFICATE", bridges.b_old.to_vec()),
    ])
    .into_bytes()
}

fn decode_bridges(bytes: &[u8]) -> Result<Bridges, RotationError> {
    let blocks = pem::parse_many(bytes).map_err(|e| RotationError::journaled("bridges", e))?;
    match blocks.as_slice() {
        [b_new, b_old] => Ok(Bridges {
            b_new: b_new.contents().to_vec().into(),
            b_old: b_old.contents().to_vec().into(),
        }),
        other => Err(RotationError::journaled(
            "bridges",
            format!("{} certificates, expected 2", other.len()),
        )),
    }
}

/// Encode the executor's credentials for the journal's identity record.
pub fn encode_identity(set: &CredentialSet) -> Vec<u8> {
    serde_json::to_vec(&StoredCreds::from_set(set)).expect("credentials serialize")
}

/// Decode the journal's identity record.
pub fn decode_identity(bytes: &[u8]) -> Result<CredentialSet, RotationError> {
    let stored: StoredCreds = serde_json::from_slice(bytes)
        .map_err(|e| RotationError::journaled("executor credentials", e))?;
    stored.to_set()
}

#[derive(Serialize, Deserialize)]
struct StoredExecutorBase {
    base: StoredCreds,
    new_key_pem: String,
    new_leaf: String,
}

/// The executor's own part of a rotation.
struct ExecutorCreds {
    base: CredentialSet,
    new_leaf: HeldLeaf,
}

/// The executor's credential set in MODEL §3/§11 `state` (it is a bundle node): the
/// base set's roots and leaf stand for `old`, the new root and the executor's new
/// leaf for `new`, and `sends` picks from the rotation's bridges. The rotated CA is the
/// control CA here, so every root of the base set is the old one.
fn executor_set(
    ex: &ExecutorCreds,
    new_root: &rollover_pki::CertificateDer<'static>,
    bridges: Option<&Bridges>,
    state: NodeState,
) -> CredentialSet {
    let base = &ex.base;
    let roots = |old: &Vec<rollover_pki::CertificateDer<'static>>, set: RootSet| {
        let mut r = if set.contains(Root::Old) {
            old.clone()
        } else {
            Vec::new()
        };
        if set.contains(Root::New) {
            r.push(new_root.clone());
        }
        r
    };
    let mut held = if state.held.contains(Root::Old) {
        base.held.clone()
    } else {
        Vec::new()
    };
    let presents = match state.presents {
        Root::Old => base.presents.filter(|_| state.held.contains(Root::Old)),
        Root::New => Some(held.len()),
    };
    if state.held.contains(Root::New) {
        held.push(ex.new_leaf.clone());
    }
    let sends = bridges.map_or_else(Vec::new, |b| {
        [(Root::New, &b.b_new), (Root::Old, &b.b_old)]
            .into_iter()
            .filter(|(r, _)| state.sends.contains(*r))
            .map(|(_, cert)| cert.clone())
            .collect()
    });
    CredentialSet {
        server_roots: roots(&base.server_roots, state.t_srv),
        client_roots: roots(&base.client_roots, state.t_cli),
        held,
        presents,
        sends,
        chains: true,
    }
}

/// What preparation produced.
struct Prepared {
    new_root: RootCa,
    new_root_der: Vec<u8>,
    facts: Vec<NodeFacts>,
    executor: Option<ExecutorCreds>,
    /// `b_new` and `b_old`, when the plan bridges (MODEL §11).
    bridges: Option<Bridges>,
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
    status: Mutex<Snapshot>,
    prepared: Mutex<Option<Arc<Prepared>>>,
    attempts: [Vec<AtomicU32>; 2],
    leaves: Mutex<HashMap<String, Vec<u8>>>,
    wave_of: Vec<u32>,
    waves_total: u32,
    control: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
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
            status: Mutex::new(snapshot),
            prepared: Mutex::new(None),
            attempts: [
                (0..n).map(|_| AtomicU32::new(0)).collect(),
                (0..n).map(|_| AtomicU32::new(0)).collect(),
            ],
            leaves: Mutex::new(HashMap::new()),
            wave_of,
            waves_total,
            control: Mutex::new(None),
        }))
    }

    /// Set the new root's generation (once, before the rotation is journaled).
    pub fn set_generation(&self, generation: u32) {
        self.status.lock().expect("status lock").meta.generation = generation;
    }

    /// Waves in the plan.
    pub fn waves_total(&self) -> u32 {
        self.waves_total
    }

    /// The current status.
    pub fn snapshot(&self) -> Snapshot {
        self.status.lock().expect("status lock").clone()
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

    /// Record events (and other ops) atomically: sequence numbers are assigned and
    /// the batch queued under one lock, so the journal and the live broadcast see
    /// events in sequence order.
    fn record(&self, mut ops: Vec<Op>, events: Vec<Event>) -> CommitTicket {
        let mut seq = self.events.seq.lock().expect("event lock");
        let mut out = Vec::with_capacity(events.len());
        let time = prost_types::Timestamp::from(SystemTime::now());
        for event in events {
            *seq += 1;
            let e = v1::RotationEvent {
                rotation_id: self.id.clone(),
                sequence: *seq,
                time: Some(time),
                event: Some(event),
            };
            ops.push(Op::Event {
                rotation: self.id.clone(),
                seq: *seq,
                data: prost::Message::encode_to_vec(&e),
            });
            out.push(Arc::new(e));
        }
        let live = self.events.live.clone();
        let after: Option<crate::journal::AfterCommit> = if out.is_empty() {
            None
        } else {
            Some(Box::new(move || {
                for e in out {
                    let _ = live.send(e);
                }
            }))
        };
        let ticket = self.ctx.committer.submit(ops, after);
        drop(seq);
        ticket
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

    fn step_op(&self, ix: StepIx, undo: bool, state: StepState, attempts: u32) -> Op {
        Op::Step {
            rotation: self.id.clone(),
            step: self.plan.steps[ix as usize].id,
            undo,
            record: StepRecord { state, attempts },
        }
    }

    fn meta_op(&self, f: impl FnOnce(&mut RotationMeta)) -> Op {
        let mut status = self.status.lock().expect("status lock");
        f(&mut status.meta);
        status.meta.updated_ms = now_ms();
        Op::Rotation(status.meta.clone())
    }

    /// Create the rotation's records: meta, documents, and the Paused event when it
    /// starts paused (an unsafe given plan).
    pub async fn create_records(&self) -> Result<(), JournalError> {
        let json = |v: &dyn erased::Json| v.json();
        let mut ops = vec![
            Op::Document {
                rotation: self.id.clone(),
                kind: DocKind::Topology,
                data: json(&self.topology),
            },
            Op::Document {
                rotation: self.id.clone(),
                kind: DocKind::Plan,
                data: json(&self.plan),
            },
            Op::Document {
                rotation: self.id.clone(),
                kind: DocKind::Verdict,
                data: json(&self.verdict),
            },
        ];
        let meta = self.snapshot().meta;
        let events = match &meta.paused_reason {
            Some(reason) => vec![Event::Paused(v1::Paused {
                reason: reason.clone(),
            })],
            None => vec![],
        };
        ops.push(Op::Rotation(meta));
        self.record(ops, events).wait().await
    }

    /// Restore counters and the event sequence from the journal (after a restart).
    pub fn load_progress(&self) -> Result<(), JournalError> {
        let journal = self.ctx.committer.journal();
        let last = journal.last_sequence(&self.id)?;
        *self.events.seq.lock().expect("event lock") = last;
        let (mut total, mut failed) = (0, 0);
        let mut from = 1;
        loop {
            let batch = journal.events(&self.id, from, 4096)?;
            let Some(&(last_seq, _)) = batch.last() else {
                break;
            };
            for (_, data) in &batch {
                if let Ok(v1::RotationEvent {
                    event: Some(Event::ProbeResult(p)),
                    ..
                }) = <v1::RotationEvent as prost::Message>::decode(data.as_slice())
                {
                    total += 1;
                    failed += u32::from(!p.ok);
                }
            }
            from = last_seq + 1;
        }
        let mut status = self.status.lock().expect("status lock");
        status.probes_total = total;
        status.probes_failed = failed;
        drop(status);
        let (fwd, undo) = self.recorded()?;
        let applied = |i: usize| {
            matches!(fwd[i], Recorded::Done | Recorded::Probed)
                && !matches!(undo[i], Recorded::Done | Recorded::Probed)
        };
        let done = (0..fwd.len()).filter(|&i| applied(i)).count();
        // As the runner reports it: the lowest wave with a step not applied (a
        // finished rotation's runner never runs again to say so).
        let current_wave = (0..fwd.len())
            .filter(|&i| !applied(i))
            .map(|i| self.wave_of[i])
            .min()
            .unwrap_or(self.waves_total)
            .min(self.waves_total);
        let mut status = self.status.lock().expect("status lock");
        status.steps_done = done as u32;
        status.current_wave = current_wave;
        Ok(())
    }

    /// The recorded forward and undo state of every step (by plan position); also
    /// restores the attempt counters.
    fn recorded(&self) -> Result<(Vec<Recorded>, Vec<Recorded>), JournalError> {
        let n = self.plan.steps.len();
        let index: HashMap<u64, usize> = self
            .plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let mut fwd = vec![Recorded::NotStarted; n];
        let mut undo = vec![Recorded::NotStarted; n];
        for (id, is_undo, record) in self.ctx.committer.journal().steps(&self.id)? {
            let Some(&i) = index.get(&id) else { continue };
            let r = match record.state {
                StepState::Pending => Recorded::NotStarted,
                StepState::Started => Recorded::Started,
                StepState::Done => Recorded::Done,
                StepState::Probed => Recorded::Probed,
                StepState::Failed { maybe_applied } => Recorded::Failed { maybe_applied },
            };
            self.attempts[usize::from(is_undo)][i].store(record.attempts, Ordering::Relaxed);
            if is_undo {
                undo[i] = r;
            } else {
                fwd[i] = r;
            }
        }
        Ok((fwd, undo))
    }

    /// Run the rotation until it reaches a terminal state (or its task is dropped).
    /// Control calls are accepted (queued) from the moment this returns.
    pub fn run(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.control.lock().expect("control lock") = Some(tx.clone());
        let span = tracing::info_span!("rotation", rotation_id = %self.id, ca = %self.fleet.ca);
        self.ctx.metrics.rotation_started();
        async move {
            self.clone().run_inner(tx, rx).instrument(span).await;
            *self.control.lock().expect("control lock") = None;
        }
    }

    async fn run_inner(
        self: Arc<Self>,
        tx: mpsc::UnboundedSender<Msg>,
        mut rx: mpsc::UnboundedReceiver<Msg>,
    ) {
        tracing::info!(steps = self.plan.steps.len(), "rotation running");
        // The preparation may wait long on unreachable agents: control calls are
        // answered meanwhile, not after it.
        let prepared = {
            let prepare = self.prepare();
            tokio::pin!(prepare);
            let mut recorded_pause = self.snapshot().meta.paused_reason;
            loop {
                let (control, reply) = tokio::select! {
                    result = &mut prepare => break result,
                    Some(Msg::Control(control, reply)) = rx.recv() => (control, reply),
                };
                let rolling_back = self.snapshot().meta.rolling_back;
                let recorded = match control {
                    Control::Pause(reason) => {
                        let reason = if reason.is_empty() {
                            "paused by request".to_string()
                        } else {
                            reason
                        };
                        self.sync_pause(Some(reason), rolling_back, &mut recorded_pause)
                            .await
                    }
                    Control::Resume => {
                        self.sync_pause(None, rolling_back, &mut recorded_pause)
                            .await
                    }
                    Control::Abort(reason) => {
                        let reason = if reason.is_empty() {
                            "aborted by request".to_string()
                        } else {
                            format!("aborted: {reason}")
                        };
                        self.finish(State::Aborted, reason).await;
                        let _ = reply.send(());
                        return;
                    }
                    Control::Rollback(reason) => {
                        let begun = self.begin_rollback(&reason).await;
                        let untouched = self
                            .recorded()
                            .is_ok_and(|(fwd, _)| fwd.iter().all(|r| *r == Recorded::NotStarted));
                        if begun.is_ok() && untouched {
                            // No step was ever sent: nothing to undo, no agent to wait for.
                            self.finish(State::RolledBack, "no step had started".into())
                                .await;
                            let _ = reply.send(());
                            return;
                        }
                        recorded_pause = None;
                        begun
                    }
                };
                if let Err(e) = recorded {
                    tracing::error!(error = %e, "cannot record a control call");
                }
                let _ = reply.send(());
            }
        };
        if let Err(reason) = prepared {
            tracing::warn!(%reason, "rotation cannot start");
            self.finish(State::Failed, reason.to_string()).await;
            return;
        }
        let meta = self.snapshot().meta;
        let (fwd, undo) = match self.recorded() {
            Ok(r) => r,
            Err(e) => return self.finish(State::Failed, e.to_string()).await,
        };
        let options = SchedOptions {
            max_concurrency: meta.options.max_concurrency as usize,
            probe: meta.options.probe,
        };
        let mut sched = Scheduler::restore(
            &self.order,
            options,
            &fwd,
            &undo,
            meta.rolling_back,
            meta.paused_reason.clone(),
        );
        let mut wave_left = vec![0u32; self.waves_total as usize + 1];
        for (i, &w) in self.wave_of.iter().enumerate() {
            if sched.phase(i as StepIx, false) != Phase::Settled {
                wave_left[w as usize] += 1;
            }
        }
        let mut counted: Vec<bool> = (0..sched.len())
            .map(|i| sched.phase(i as StepIx, false) == Phase::Settled)
            .collect();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut recorded_pause = meta.paused_reason.clone();
        // The step the last message was about (`None`: look at every step).
        let mut touched: Option<StepIx> = None;
        loop {
            if let Err(e) = self
                .sync_pause(
                    sched.paused().map(str::to_string),
                    sched.rolling_back(),
                    &mut recorded_pause,
                )
                .await
            {
                tasks.abort_all();
                return self.finish(State::Failed, e.to_string()).await;
            }
            for cmd in sched.drain() {
                self.spawn(&mut tasks, &sched, cmd, &tx);
            }
            self.update_status(&sched, touched.take(), &mut wave_left, &mut counted);
            if let Some(outcome) = sched.outcome() {
                let (state, message) = match outcome {
                    Outcome::Succeeded => (State::Succeeded, "every step done".to_string()),
                    Outcome::RolledBack => {
                        (State::RolledBack, "every applied step undone".to_string())
                    }
                };
                return self.finish(state, message).await;
            }
            let msg = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => m,
                    None => return,
                },
                Some(joined) = tasks.join_next() => {
                    if let Err(e) = joined
                        && e.is_panic()
                    {
                        tracing::error!(error = %e, "step task panicked");
                        sched.pause(format!("internal error: a step task panicked: {e}"));
                    }
                    continue;
                }
            };
            touched = match &msg {
                Msg::Applied { step, .. }
                | Msg::ApplyFailed { step, .. }
                | Msg::Probed { step, .. } => Some(*step),
                Msg::Control(..) => None,
            };
            match msg {
                Msg::Applied { step, undo } => {
                    sched.applied(step, undo);
                    if sched.phase(step, undo) == Phase::Probing {
                        self.spawn(&mut tasks, &sched, Command::Probe { step, undo }, &tx);
                    }
                }
                Msg::ApplyFailed {
                    step,
                    undo,
                    maybe_applied,
                    reason,
                } => {
                    self.status.lock().expect("status lock").meta.error = Some(reason.clone());
                    sched.apply_failed(step, undo, maybe_applied, reason);
                }
                Msg::Probed {
                    step,
                    undo,
                    held,
                    total,
                    failed,
                } => {
                    let mut status = self.status.lock().expect("status lock");
                    status.probes_total += total;
                    status.probes_failed += failed;
                    let observe_only = status.meta.options.observe_only;
                    drop(status);
                    // Observe-only (simulations): the failure is reported in its
                    // ProbeResult event, and the rotation goes on.
                    sched.probed(step, undo, if observe_only { None } else { held });
                }
                Msg::Control(control, reply) => {
                    match control {
                        Control::Pause(reason) => {
                            let reason = if reason.is_empty() {
                                "paused by request".to_string()
                            } else {
                                reason
                            };
                            sched.pause(reason);
                        }
                        Control::Resume => {
                            sched.resume();
                        }
                        Control::Abort(reason) => {
                            tasks.abort_all();
                            let reason = if reason.is_empty() {
                                "aborted by request".to_string()
                            } else {
                                format!("aborted: {reason}")
                            };
                            // Answer once ABORTED is recorded, so the answer says so.
                            self.finish(State::Aborted, reason).await;
                            let _ = reply.send(());
                            return;
                        }
                        Control::Rollback(reason) => {
                            if !sched.rolling_back() {
                                if let Err(e) = self.begin_rollback(&reason).await {
                                    tracing::error!(error = %e, "cannot record the rollback");
                                } else {
                                    sched.rollback();
                                    recorded_pause = None;
                                }
                            }
                        }
                    }
                    if let Err(e) = self
                        .sync_pause(
                            sched.paused().map(str::to_string),
                            sched.rolling_back(),
                            &mut recorded_pause,
                        )
                        .await
                    {
                        tracing::error!(error = %e, "cannot record a pause or resume");
                    }
                    self.update_status(&sched, None, &mut wave_left, &mut counted);
                    let _ = reply.send(());
                }
            }
        }
    }

    /// Record a change of pause state (Paused / Resumed) before acting on it.
    async fn sync_pause(
        &self,
        paused: Option<String>,
        rolling_back: bool,
        recorded: &mut Option<String>,
    ) -> Result<(), JournalError> {
        if paused == *recorded {
            return Ok(());
        }
        let (op, event) = match paused.clone() {
            Some(reason) if recorded.is_none() => {
                tracing::warn!(%reason, "rotation paused");
                let op = self.meta_op(|m| {
                    m.state = State::Paused;
                    m.paused_reason = Some(reason.clone());
                });
                (op, Event::Paused(v1::Paused { reason }))
            }
            Some(_) => {
                // Still paused (the first reason is kept).
                return Ok(());
            }
            None => {
                tracing::info!("rotation resumed");
                let op = self.meta_op(|m| {
                    m.state = if rolling_back {
                        State::RollingBack
                    } else {
                        State::Running
                    };
                    m.paused_reason = None;
                });
                (op, Event::Resumed(v1::Resumed {}))
            }
        };
        self.record(vec![op], vec![event]).wait().await?;
        *recorded = paused;
        Ok(())
    }

    /// Turn a terminal rotation (no runner) into a rollback; spawn a runner next.
    pub async fn restart_for_rollback(&self, reason: &str) -> Result<(), JournalError> {
        self.begin_rollback(reason).await
    }

    async fn begin_rollback(&self, reason: &str) -> Result<(), JournalError> {
        tracing::warn!(%reason, "rolling back");
        let why = if reason.is_empty() {
            "rollback requested".to_string()
        } else {
            format!("rollback requested: {reason}")
        };
        let op = self.meta_op(|m| {
            m.state = State::RollingBack;
            m.rolling_back = true;
            m.paused_reason = None;
            m.finished_ms = None;
        });
        self.record(
            vec![op],
            vec![
                Event::Paused(v1::Paused { reason: why }),
                Event::Resumed(v1::Resumed {}),
            ],
        )
        .wait()
        .await
    }

    fn update_status(
        &self,
        sched: &Scheduler,
        touched: Option<StepIx>,
        wave_left: &mut [u32],
        counted: &mut [bool],
    ) {
        let mut count = |i: usize| {
            if !counted[i] && sched.phase(i as StepIx, false) == Phase::Settled {
                counted[i] = true;
                wave_left[self.wave_of[i] as usize] -= 1;
            }
        };
        match touched {
            Some(step) => count(step as usize),
            None => (0..self.wave_of.len()).for_each(count),
        }
        let current_wave = wave_left
            .iter()
            .position(|&n| n > 0)
            .unwrap_or(self.waves_total as usize) as u32;
        let mut status = self.status.lock().expect("status lock");
        status.steps_done = sched.steps_done() as u32;
        status.steps_running = sched.in_flight() as u32;
        status.current_wave = current_wave.min(self.waves_total);
    }

    fn spawn(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        sched: &Scheduler,
        cmd: Command,
        tx: &mpsc::UnboundedSender<Msg>,
    ) {
        let (step, undo, probe) = match cmd {
            Command::Apply { step, undo } => (step, undo, false),
            Command::Probe { step, undo } => (step, undo, true),
        };
        let s = &self.plan.steps[step as usize];
        let span = tracing::info_span!(
            "step",
            step_id = s.id,
            node = %s.node,
            action = %s.action,
            undo,
        );
        let (this, tx) = (self.clone(), tx.clone());
        if probe {
            tasks.spawn(
                async move {
                    let msg = this.clone().probe_step(step, undo).await;
                    let _ = tx.send(msg);
                }
                .instrument(span),
            );
        } else {
            let certain = matches!(
                sched.phase(step, false),
                Phase::Probing | Phase::ProbeHeld | Phase::Settled
            );
            tasks.spawn(
                async move {
                    let msg = this.apply_step(step, undo, certain).await;
                    let _ = tx.send(msg);
                }
                .instrument(span),
            );
        }
    }

    /// Send one step (or undo) until it is done, fails permanently, or retries run
    /// out; journal and report every attempt.
    async fn apply_step(&self, ix: StepIx, undo: bool, certain: bool) -> Msg {
        let wave = self.wave_of[ix as usize];
        let mut local_attempt = 0;
        loop {
            local_attempt += 1;
            let attempt =
                self.attempts[usize::from(undo)][ix as usize].fetch_add(1, Ordering::Relaxed) + 1;
            let started = self
                .record(
                    vec![self.step_op(ix, undo, StepState::Started, attempt)],
                    vec![Event::StepStarted(v1::StepStarted {
                        step: Some(self.step_ref(ix)),
                        wave,
                        undo,
                        attempt,
                    })],
                )
                .wait()
                .await;
            if let Err(e) = started {
                return Msg::ApplyFailed {
                    step: ix,
                    undo,
                    maybe_applied: false,
                    reason: format!("{}: {e}", self.step_name(ix, undo)),
                };
            }
            tracing::debug!(attempt, "sending");
            let result = match self.send(ix, undo).await {
                Err(e) if undo && !certain && e.code == tonic::Code::FailedPrecondition => {
                    // It never reached the agent: nothing to undo.
                    Ok(false)
                }
                r => r,
            };
            match result {
                Ok(applied) => {
                    self.ctx.metrics.step_done(undo);
                    let done = self
                        .record(
                            vec![self.step_op(ix, undo, StepState::Done, attempt)],
                            vec![Event::StepDone(v1::StepDone {
                                step: Some(self.step_ref(ix)),
                                undo,
                                applied,
                            })],
                        )
                        .wait()
                        .await;
                    return match done {
                        Ok(()) => Msg::Applied { step: ix, undo },
                        Err(e) => Msg::ApplyFailed {
                            step: ix,
                            undo,
                            maybe_applied: true,
                            reason: format!("{}: {e}", self.step_name(ix, undo)),
                        },
                    };
                }
                Err(e) => {
                    self.ctx.metrics.step_failed();
                    let will_retry = self.ctx.retry.should_retry(local_attempt, &e);
                    tracing::warn!(error = %e, will_retry, "step failed");
                    let failed_event = Event::StepFailed(v1::StepFailed {
                        step: Some(self.step_ref(ix)),
                        undo,
                        error: e.to_string(),
                        will_retry,
                    });
                    if will_retry {
                        let _ = self.record(vec![], vec![failed_event]).wait().await;
                        tokio::time::sleep(self.ctx.retry.backoff(local_attempt)).await;
                        continue;
                    }
                    let maybe_applied = e.maybe_applied();
                    let _ = self
                        .record(
                            vec![self.step_op(
                                ix,
                                undo,
                                StepState::Failed { maybe_applied },
                                attempt,
                            )],
                            vec![failed_event],
                        )
                        .wait()
                        .await;
                    return Msg::ApplyFailed {
                        step: ix,
                        undo,
                        maybe_applied,
                        reason: format!("{} failed: {e}", self.step_name(ix, undo)),
                    };
                }
            }
        }
    }

    fn prepared(&self) -> Arc<Prepared> {
        self.prepared
            .lock()
            .expect("prepared lock")
            .clone()
            .expect("steps run only once the rotation is prepared")
    }

    /// One attempt at a step: returns whether the node changed.
    async fn send(&self, ix: StepIx, undo: bool) -> Result<bool, AgentError> {
        if self.snapshot().meta.options.dry_run {
            return Ok(false);
        }
        let node = self.order.step_node[ix as usize];
        let rank = self.order.step_rank[ix as usize] as usize;
        if Some(node) == self.fleet.executor {
            return self.apply_local(node, rank, undo).await;
        }
        let agent = self.agents[node as usize]
            .as_ref()
            .expect("every node but @executor has an agent");
        let prepared = self.prepared();
        let step = &self.plan.steps[ix as usize];
        let mut request = v1::ApplyStepRequest {
            rotation_id: self.id.clone(),
            step_id: step.id,
            action: v1::StepAction::from(step.action) as i32,
            new_root_der: Vec::new(),
            issued_leaf_der: Vec::new(),
            old_root_fingerprint: prepared.facts[node as usize].old_root.clone(),
            undo,
            bridge_new_der: Vec::new(),
            bridge_old_der: Vec::new(),
            leader_epoch: self.ctx.leader_epoch,
        };
        if !undo && step.action == self.fleet.mode(node).steps()[0] {
            // The mode's first step brings the new generation (no CSR before it).
            request.new_root_der = prepared.new_root_der.clone();
            request.issued_leaf_der = self.leaf_for(node, agent.as_ref(), &prepared).await?;
        }
        if !undo && step.action == Action::Bridge {
            let bridges = prepared.bridges.as_ref().ok_or_else(|| {
                AgentError::new(
                    tonic::Code::Internal,
                    "a bridge step, but the rotation has no bridges",
                )
            })?;
            request.bridge_new_der = bridges.b_new.to_vec();
            request.bridge_old_der = bridges.b_old.to_vec();
        }
        Ok(agent.apply_step(request).await?.applied)
    }

    /// The node's new leaf: journaled, or issued now from a fresh CSR.
    async fn leaf_for(
        &self,
        node: u32,
        agent: &dyn AgentApi,
        prepared: &Prepared,
    ) -> Result<Vec<u8>, AgentError> {
        let id = self.fleet.id(node);
        if let Some(der) = self.leaves.lock().expect("leaves lock").get(id) {
            return Ok(der.clone());
        }
        let csr = agent
            .create_csr(v1::CreateCsrRequest {
                ca_name: self.fleet.ca.clone(),
                generation: self.snapshot().meta.generation,
                rotation_id: self.id.clone(),
                leader_epoch: self.ctx.leader_epoch,
            })
            .await?;
        let leaf = prepared
            .new_root
            .issue_leaf(
                &csr.csr_der,
                id,
                Validity::for_duration(self.ctx.leaf_validity),
            )
            .map_err(|e| {
                AgentError::new(
                    tonic::Code::FailedPrecondition,
                    format!("the CSR of `{id}` was refused: {e}"),
                )
            })?
            .to_vec();
        self.ctx
            .committer
            .commit(vec![Op::Leaf {
                rotation: self.id.clone(),
                node: id.to_string(),
                der: leaf.clone(),
            }])
            .await
            .map_err(|e| AgentError::new(tonic::Code::Internal, e.to_string()))?;
        self.leaves
            .lock()
            .expect("leaves lock")
            .insert(id.to_string(), leaf.clone());
        Ok(leaf)
    }

    /// `@executor`'s own step: swap the executor's credentials (journaled first).
    async fn apply_local(&self, node: u32, rank: usize, undo: bool) -> Result<bool, AgentError> {
        let (Some(creds), Some(ex)) = (&self.ctx.own_creds, &self.prepared().executor) else {
            // No credentials of its own (plaintext control channel): nothing to do.
            return Ok(false);
        };
        let k = if undo { rank } else { rank + 1 };
        let prepared = self.prepared();
        let root = rollover_pki::CertificateDer::from(prepared.new_root_der.clone());
        let bridged = self.bridged(node);
        let state = Profile::of(Mode::Bundle).state_after(bridged, k);
        let set = executor_set(ex, &root, prepared.bridges.as_ref(), state);
        self.ctx
            .committer
            .commit(vec![Op::Identity(encode_identity(&set))])
            .await
            .map_err(|e| AgentError::new(tonic::Code::Internal, e.to_string()))?;
        creds
            .swap(set)
            .map_err(|e| AgentError::new(tonic::Code::Internal, e.to_string()))?;
        tracing::info!(steps_done = k, "executor credentials swapped");
        Ok(true)
    }

    /// Probe every link touching the step's node; journal the results.
    async fn probe_step(self: Arc<Self>, ix: StepIx, undo: bool) -> Msg {
        let node = self.order.step_node[ix as usize];
        let mut probes = JoinSet::new();
        for (k, &link) in self.node_links[node as usize].iter().enumerate() {
            let this = self.clone();
            probes.spawn(async move {
                // Waiting for a permit does not count against the probe's deadline.
                let _permit = this.ctx.probe_limit.clone().acquire_owned().await;
                (k, link, this.probe_link(link).await)
            });
        }
        let mut results: Vec<(usize, Link, ProbeOutcome)> = probes.join_all().await;
        results.sort_by_key(|r| r.0);
        let step_id = self.plan.steps[ix as usize].id;
        let mut events = Vec::with_capacity(results.len());
        let (mut total, mut failed) = (0, 0);
        let mut failure = None;
        for (_, link, result) in results {
            let Some(result) = result else { continue };
            let declared = self.order.disrupted.contains(&link);
            let (client, server) = (self.fleet.id(link.client), self.fleet.id(link.server));
            total += 1;
            self.ctx.metrics.probe(result.is_ok());
            if let Err(error) = &result {
                failed += 1;
                tracing::warn!(client, server, declared, %error, "probe failed");
                if !declared && failure.is_none() {
                    failure = Some(format!(
                        "link {client} -> {server} failed its probe after {}: {error}",
                        self.step_name(ix, undo)
                    ));
                }
            }
            let (error, kind) = match result {
                Ok(()) => (String::new(), v1::ProbeFailure::Unspecified),
                Err(e) => (e.message, e.kind),
            };
            events.push(Event::ProbeResult(v1::ProbeResult {
                client: client.to_string(),
                server: server.to_string(),
                ok: kind == v1::ProbeFailure::Unspecified,
                error,
                after_step_id: Some(step_id),
                declared_disruption: declared,
                failure: kind as i32,
            }));
        }
        let mut ops = Vec::new();
        if failure.is_none() {
            let attempts = self.attempts[usize::from(undo)][ix as usize].load(Ordering::Relaxed);
            ops.push(self.step_op(ix, undo, StepState::Probed, attempts));
        }
        if let Err(e) = self.record(ops, events).wait().await {
            failure = Some(format!("journal: {e}"));
        }
        Msg::Probed {
            step: ix,
            undo,
            held: failure,
            total,
            failed,
        }
    }

    /// Probe one link; `None` when it cannot be probed by design (client
    /// `@executor` without credentials of its own).
    async fn probe_link(&self, link: Link) -> ProbeOutcome {
        let server = self.fleet.id(link.server);
        let prepared = self.prepared();
        let Some(address) = prepared.facts[link.server as usize].data_address.clone() else {
            return Some(Err(ProbeError::new(
                v1::ProbeFailure::Connection,
                format!("`{server}` reports no data-plane address to probe"),
            )));
        };
        if Some(link.client) == self.fleet.executor {
            let creds = self.ctx.own_creds.as_ref()?;
            return Some(
                tls_probe(
                    creds.client_config(),
                    server,
                    &address,
                    self.ctx.probe_timeout,
                )
                .await,
            );
        }
        let agent = self.agents[link.client as usize].as_ref()?;
        // A server with a workload endpoint is probed there (MODEL §12), so the
        // probe shows what the workload's own clients see.
        let workload = self.workload_at[link.server as usize].clone();
        let request = v1::ProbeRequest {
            peer_id: server.to_string(),
            workload: workload.is_some(),
            peer_address: workload.unwrap_or(address),
        };
        let answer = self
            .ctx
            .retry
            .run(|| agent.probe(request.clone()), |_, _| {})
            .await;
        Some(match answer {
            Ok(r) if r.ok => Ok(()),
            Ok(r) => Err(ProbeError::from_wire(r.failure, r.error)),
            Err(e) => Err(ProbeError::new(
                v1::ProbeFailure::NotRun,
                format!(
                    "the probe could not run on `{}`: {e}",
                    self.fleet.id(link.client)
                ),
            )),
        })
    }

    /// Once per rotation: the agents' facts, the new root, the executor's own part.
    async fn prepare(self: &Arc<Self>) -> Result<(), RotationError> {
        if self.prepared.lock().expect("prepared lock").is_some() {
            return Ok(());
        }
        let journal = self.ctx.committer.journal().clone();
        let doc = |kind| journal.document(&self.id, kind);
        let mut ops = Vec::new();
        let meta = self.snapshot().meta;
        let new_root = match doc(DocKind::NewRoot)? {
            Some(pem) => RootCa::from_pem(&String::from_utf8_lossy(&pem))
                .map_err(|e| RotationError::journaled("root", e))?,
            None => {
                let root = RootCa::generate(
                    &self.fleet.ca,
                    meta.generation,
                    self.ctx.key_alg,
                    Validity::for_duration(self.ctx.root_validity),
                )
                .map_err(RotationError::pki("generate the new root"))?;
                ops.push(Op::Document {
                    rotation: self.id.clone(),
                    kind: DocKind::NewRoot,
                    data: root.to_pem().into_bytes(),
                });
                tracing::info!(generation = meta.generation, fingerprint = %root.fingerprint(), "new root generated");
                root
            }
        };
        let facts: Vec<NodeFacts> = match doc(DocKind::Nodes)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| RotationError::journaled("facts", e))?
            }
            None => {
                let facts = self.gather_facts().await?;
                ops.push(Op::Document {
                    rotation: self.id.clone(),
                    kind: DocKind::Nodes,
                    data: serde_json::to_vec(&facts).expect("facts serialize"),
                });
                facts
            }
        };
        let executor = match (self.fleet.executor, &self.ctx.own_creds) {
            (Some(_), Some(creds)) => Some(match doc(DocKind::ExecutorBase)? {
                Some(bytes) => {
                    let stored: StoredExecutorBase = serde_json::from_slice(&bytes)
                        .map_err(|e| RotationError::journaled("executor credentials", e))?;
                    let key = NodeKey::from_pem(&stored.new_key_pem)
                        .map_err(|e| RotationError::journaled("executor key", e))?;
                    let cert = hex::decode(&stored.new_leaf)
                        .map_err(|e| RotationError::journaled("executor leaf", e))?;
                    ExecutorCreds {
                        base: stored.base.to_set()?,
                        new_leaf: HeldLeaf::new(cert.into(), key),
                    }
                }
                None => {
                    let base = (*creds.current()).clone();
                    let key = NodeKey::generate(self.ctx.key_alg)
                        .map_err(RotationError::pki("generate the executor's key"))?;
                    let id = rollover_core::EXECUTOR_ID;
                    let csr = key
                        .csr_der(id)
                        .map_err(RotationError::pki("make the executor's CSR"))?;
                    let cert = new_root
                        .issue_leaf(&csr, id, Validity::for_duration(self.ctx.leaf_validity))
                        .map_err(RotationError::pki("issue the executor's leaf"))?;
                    let stored = StoredExecutorBase {
                        base: StoredCreds::from_set(&base),
                        new_key_pem: key.to_pem(),
                        new_leaf: hex::encode(&cert),
                    };
                    ops.push(Op::Document {
                        rotation: self.id.clone(),
                        kind: DocKind::ExecutorBase,
                        data: serde_json::to_vec(&stored).expect("credentials serialize"),
                    });
                    ExecutorCreds {
                        base,
                        new_leaf: HeldLeaf::new(cert, key),
                    }
                }
            }),
            _ => None,
        };
        let bridges = match self.order.bridged {
            false => None,
            true => Some(match doc(DocKind::Bridges)? {
                Some(bytes) => decode_bridges(&bytes)?,
                None => {
                    let bridges = self.issue_bridges(&new_root, &facts, executor.as_ref())?;
                    ops.push(Op::Document {
                        rotation: self.id.clone(),
                        kind: DocKind::Bridges,
                        data: encode_bridges(&bridges),
                    });
                    bridges
                }
            }),
        };
        // Fresh: a control call may have changed it during the preparation.
        if self.snapshot().meta.state == State::Pending {
            ops.push(self.meta_op(|m| m.state = State::Running));
        }
        if !ops.is_empty() {
            self.ctx.committer.commit(ops).await?;
        }
        let leaves = journal.leaves(&self.id)?;
        self.leaves.lock().expect("leaves lock").extend(leaves);
        let new_root_der = new_root.cert_der().to_vec();
        *self.prepared.lock().expect("prepared lock") = Some(Arc::new(Prepared {
            new_root,
            new_root_der,
            facts,
            executor,
            bridges,
        }));
        Ok(())
    }

    /// Whether `node` takes `bridge` and `unbridge` steps in this plan.
    fn bridged(&self, node: u32) -> bool {
        let id = self.fleet.id(node);
        self.plan
            .steps
            .iter()
            .any(|s| s.node == id && s.action == Action::Bridge)
    }

    /// Both bridges between the root every target node is on and the new one: the
    /// executor must hold the old root's key (MODEL §11).
    fn issue_bridges(
        &self,
        new_root: &RootCa,
        facts: &[NodeFacts],
        executor: Option<&ExecutorCreds>,
    ) -> Result<Bridges, RotationError> {
        let mut olds: Vec<String> = facts
            .iter()
            .map(|f| f.old_root.to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .chain(executor.into_iter().flat_map(|ex| {
                ex.base
                    .server_roots
                    .iter()
                    .map(|r| rollover_pki::fingerprint(r))
            }))
            .collect();
        olds.sort();
        olds.dedup();
        let old = match olds.as_slice() {
            [one] => one,
            [] => {
                return Err(RotationError::Bridge(
                    "the bridge strategy: no node reported its current root".into(),
                ));
            }
            many => {
                return Err(RotationError::Bridge(format!(
                    "the bridge strategy needs every node on one root, but they are on {} \
                     different roots ({})",
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        let known = root_keys::known(
            &self.ctx.root_keys,
            self.ctx.committer.journal().as_ref(),
            &self.fleet.ca,
        );
        let old_root = root_keys::find(&known, &self.fleet.ca, old)?;
        let bridges =
            Bridges::issue(&old_root, new_root).map_err(RotationError::pki("issue the bridges"))?;
        tracing::info!(old = %old_root.fingerprint(), new = %new_root.fingerprint(), "bridges issued");
        Ok(bridges)
    }

    /// Ask every agent for its state (bounded concurrency, with retries). Every
    /// retried failure is reported as it happens ([`Rotation::waiting`]); when agents
    /// stay unreachable, the error names every one of them, not only the first.
    async fn gather_facts(self: &Arc<Self>) -> Result<Vec<NodeFacts>, RotationError> {
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.ctx.prepare_concurrency.max(1),
        ));
        let mut asks = JoinSet::new();
        for (node, agent) in self.agents.iter().enumerate() {
            let Some(agent) = agent.clone() else { continue };
            let (limit, retry, this) = (limit.clone(), self.ctx.retry, self.clone());
            let id = self.fleet.id(node as u32).to_string();
            let mode = self.fleet.mode(node as u32);
            asks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let state = retry
                    .run(
                        || agent.get_state(),
                        |attempt, e| this.waiting(&id, "GetState", attempt, e),
                    )
                    .await
                    .map_err(|source| NodeProblem::Unreachable {
                        id: id.clone(),
                        source,
                    });
                (node, state.and_then(|s| facts_of(&id, mode, &s)))
            });
        }
        let mut facts = vec![NodeFacts::default(); self.agents.len()];
        let mut problems = Vec::new();
        for (node, r) in asks.join_all().await {
            match r {
                Ok(f) => facts[node] = f,
                Err(e) => problems.push((node, e)),
            }
        }
        if problems.is_empty() {
            return Ok(facts);
        }
        problems.sort_by_key(|p| p.0);
        Err(RotationError::NotReady(
            problems.into_iter().map(|p| p.1).collect(),
        ))
    }

    /// A call to `node`'s agent failed and will be retried: say so in the events and
    /// the status, so a watcher knows what the rotation waits for.
    fn waiting(&self, node: &str, call: &str, attempt: u32, error: &AgentError) {
        tracing::warn!(node, call, attempt, %error, "agent call failed; retrying");
        // A retry still under way when the rotation ended (e.g. one of several nodes
        // found unready) must not put events after the Finished event.
        if self.snapshot().meta.state.is_terminal() {
            return;
        }
        let _ = self.record(
            vec![],
            vec![Event::Waiting(v1::Waiting {
                node: node.to_string(),
                call: call.to_string(),
                attempt,
                error: error.to_string(),
            })],
        );
    }

    /// Reach a terminal state: journal it with the Finished event.
    async fn finish(&self, state: State, message: String) {
        tracing::info!(?state, %message, "rotation finished");
        let now = now_ms();
        let failed = state == State::Failed;
        let op = self.meta_op(|m| {
            m.state = state;
            m.paused_reason = None;
            m.finished_ms = Some(now);
            if failed {
                m.error = Some(message.clone());
            }
        });
        let outcome = match state {
            State::Succeeded => v1::RotationState::Succeeded,
            State::Aborted => v1::RotationState::Aborted,
            State::RolledBack => v1::RotationState::RolledBack,
            _ => v1::RotationState::Failed,
        };
        let event = Event::Finished(v1::Finished {
            outcome: outcome as i32,
            message,
        });
        if let Err(e) = self.record(vec![op], vec![event]).wait().await {
            tracing::error!(error = %e, "cannot journal the end of the rotation");
        }
        let created = self.snapshot().meta.created_ms;
        let label = match state {
            State::Succeeded => "succeeded",
            State::Aborted => "aborted",
            State::RolledBack => "rolled_back",
            _ => "failed",
        };
        self.ctx
            .metrics
            .rotation_finished(label, Duration::from_millis(now.saturating_sub(created)));
        let mut status = self.status.lock().expect("status lock");
        status.steps_running = 0;
    }
}

/// A probe's outcome; `None` when the link cannot be probed by design.
type ProbeOutcome = Option<Result<(), ProbeError>>;

/// What an agent's state says: its current root and data address; its mode must be
/// the topology's.
fn facts_of(id: &str, want: Mode, state: &v1::AgentState) -> Result<NodeFacts, NodeProblem> {
    let reported = match v1::NodeMode::try_from(state.mode) {
        Ok(v1::NodeMode::Bundle) => Some(Mode::Bundle),
        Ok(v1::NodeMode::Atomic) => Some(Mode::Atomic),
        _ => None,
    };
    if let Some(mode) = reported
        && mode != want
    {
        return Err(NodeProblem::WrongMode {
            id: id.to_string(),
            reported: mode,
            want,
        });
    }
    let old_root = state
        .held_leaves
        .iter()
        .find(|h| h.fingerprint == state.presented_leaf_fingerprint)
        .map(|h| h.issuer_root_fingerprint.clone())
        .or_else(|| state.client_roots.first().cloned())
        .unwrap_or_default();
    Ok(NodeFacts {
        old_root,
        data_address: state.data_address.clone(),
    })
}

/// Object-safe JSON rendering of the journaled documents.
mod erased {
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("documents serialize")
        }
    }
}
