//! The rollover executor: runs rotations across a fleet's agents (DESIGN.md,
//! "Executor").
//!
//! * [`scheduler`]: the sans-IO state machine deciding which step may run next;
//! * [`journal`]: the durable record (redb) every transition is committed to first;
//! * [`driver`]: agents over gRPC, retries, the executor's own TLS probe;
//! * [`rotation`]: running one rotation (preparation, steps, probes, rollback);
//! * [`operations`]: what the executor does for a request (start, get, list, control,
//!   watch), refusing with an [`ApiError`];
//! * [`service`]: the `rollover.v1.ExecutorService` gRPC service, a thin adapter over
//!   [`operations`] and [`check`];
//! * [`metrics`]: Prometheus counters and the `--metrics` endpoint;
//! * [`check`]: the pre-flight check of a fleet (CheckFleet);
//! * [`sealed`]: private keys in the journal encrypted at rest (`--journal-key-file`);
//! * [`conformance`]: checks every journal backend's tests run;
//! * [`instant_fleet`]: agents that apply every step at once, for throughput benches;
//! * [`access`]: who may call which method (operators, readers);
//! * `admission`: which rotations may be active together (no shared node, no two of
//!   one CA);
//! * [`forward`]: a follower of an executor group: reads from the journal, every other
//!   call forwarded to the leader;
//! * [`reader`]: rotations read from a journal another executor writes (a follower's
//!   GetRotation, ListRotations and WatchRotation), its watches sharing one journal
//!   poller per rotation (`tail`).
//!
//! [`Executor::open`] resumes every unfinished rotation found in the journal;
//! [`serve`] runs the gRPC service until shutdown.

pub mod access;
mod admission;
pub mod check;
pub mod conformance;
pub mod driver;
mod error;
pub mod forward;
pub mod instant_fleet;
pub mod journal;
pub mod metrics;
pub mod operations;
pub mod reader;
mod root_keys;
pub mod rotation;
pub mod scheduler;
pub mod sealed;
pub mod service;
mod tail;
mod wire;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollover_core::{Fleet, Plan, PlanOrder, Topology, Verdict};
use rollover_pki::{KeyAlg, LiveCredentials, RootCa};
use rollover_proto::v1::executor_service_server::ExecutorServiceServer;
use rollover_proto::v1::planner_service_client::PlannerServiceClient;
use rollover_transport::ServerLimits;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;
use tonic::transport::Channel;

pub use access::{Access, Role};
pub use admission::Busy;
pub use driver::{AgentApi, AgentConnector, AgentError, GrpcConnector, RetryPolicy};
pub use error::{ApiError, ExecutorError, NodeProblem, RotationError};
pub use journal::{Journal, MemJournal, RedbJournal};
pub use metrics::Metrics;
pub use service::ExecutorService;
pub use wire::state_to_wire;

use crate::journal::{Committer, DocKind, JournalError};
use crate::rotation::{Ctx, Rotation};

/// Largest gRPC message the executor sends (plans of big fleets), and the most it can
/// be told to accept.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The Executor API's default limits: requests up to 32 MiB, 64 in flight per
/// connection, 1024 connections, 5 minutes idle.
pub const DEFAULT_LIMITS: ServerLimits = ServerLimits::with_max_request_bytes(32 << 20);

/// How to build an [`Executor`]. Cloned for every term of an executor group's
/// member, so a single executor and a group member are configured the same way.
#[derive(Clone)]
pub struct ExecutorConfig {
    /// The state directory (`--state DIR`); the journal is `DIR/executor.redb`.
    pub state_dir: PathBuf,
    /// Use this journal instead of the one in `state_dir` (tests).
    pub journal: Option<Arc<dyn Journal>>,
    /// The planner, for rotations started without a plan.
    pub planner: Option<PlannerServiceClient<Channel>>,
    /// How to reach agents; default: mTLS with `own_creds` if set, else plaintext
    /// (loopback only).
    pub connector: Option<Arc<dyn AgentConnector>>,
    /// The executor's own credentials (`@executor`) on the control channel. When a
    /// rotation's control CA is the rotated CA, its `@executor` steps swap them.
    pub own_creds: Option<Arc<LiveCredentials>>,
    /// Retries of agent calls.
    pub retry: RetryPolicy,
    /// Deadline of the executor's own probes.
    pub probe_timeout: Duration,
    /// Key algorithm of new roots and of the executor's keys.
    pub key_alg: KeyAlg,
    /// Lifetime of new roots (default 10 years).
    pub root_validity: Duration,
    /// Lifetime of issued leaves (default 1 year).
    pub leaf_validity: Duration,
    /// Agents asked for their state at once when a rotation starts.
    pub prepare_concurrency: usize,
    /// Shared counters (a fresh set by default).
    pub metrics: Option<Arc<Metrics>>,
    /// Roots, with their keys, the executor may cross-sign with (MODEL §11): the
    /// current root of a CA rotated with the bridge strategy, when the executor did
    /// not make it itself (the new roots of its own rotations are in the journal).
    pub root_keys: Vec<Arc<RootCa>>,
    /// How the journal's writer retries a batch its store cannot take now (a
    /// database blip) before the rotation stalls on it.
    pub commit_retry: journal::CommitRetry,
    /// The lease epoch this executor leads its group with (0: it leads alone, with
    /// no lease). Every ApplyStep and CreateCsr carries it, and agents refuse calls
    /// with a lower epoch than one they have seen, so a deposed leader's late calls
    /// do nothing.
    pub leader_epoch: u64,
}

impl ExecutorConfig {
    /// Defaults around a state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        ExecutorConfig {
            state_dir: state_dir.into(),
            journal: None,
            planner: None,
            connector: None,
            own_creds: None,
            retry: RetryPolicy::default(),
            probe_timeout: Duration::from_secs(10),
            key_alg: KeyAlg::default(),
            root_validity: Duration::from_secs(10 * 365 * 24 * 3600),
            leaf_validity: Duration::from_secs(365 * 24 * 3600),
            prepare_concurrency: 64,
            metrics: None,
            root_keys: Vec::new(),
            commit_retry: journal::CommitRetry::default(),
            leader_epoch: 0,
        }
    }

    /// Use the planner at `url` (`host:port` or `http://host:port`, loopback,
    /// plaintext).
    pub fn planner_url(mut self, url: &str) -> Result<Self, ExecutorError> {
        let channel =
            rollover_transport::plain_channel(url).map_err(|e| ExecutorError::Planner(e.into()))?;
        self.planner = Some(
            PlannerServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
        Ok(self)
    }
}

/// The executor: rotations, their runners, the journal. Cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<Ctx>,
    planner: Option<PlannerServiceClient<Channel>>,
    rotations: Mutex<HashMap<String, Arc<Rotation>>>,
    runners: Mutex<Vec<AbortHandle>>,
    /// Held while a rotation is admitted (StartRotation, or Rollback of a finished
    /// one): the check that no active rotation shares its nodes or CA, the generation and the insertion
    /// happen under it, so two concurrent calls cannot both pass the check.
    admission: tokio::sync::Mutex<()>,
    /// Held by a StartRotation with a `request_id` from its lookup to its insert.
    start_lock: tokio::sync::Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for runner in self.runners.lock().expect("runners lock").drain(..) {
            runner.abort();
        }
    }
}

fn open_redb(dir: &std::path::Path) -> Result<RedbJournal, JournalError> {
    // A previous executor on the same directory in this process may still be
    // letting go of the file (its tasks are being dropped): wait a little.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match RedbJournal::open(dir) {
            Err(e) if e.is_already_open() && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

impl Executor {
    /// Open the journal and resume every unfinished rotation in it (steps started but
    /// not done are sent again). Must be called within a tokio runtime.
    pub fn open(config: ExecutorConfig) -> Result<Executor, ExecutorError> {
        let journal: Arc<dyn Journal> = match config.journal {
            Some(j) => j,
            None => Arc::new(open_redb(&config.state_dir)?),
        };
        if let (Some(creds), Some(bytes)) = (&config.own_creds, journal.identity()?) {
            let set =
                rotation::decode_identity(&bytes).map_err(|e| ExecutorError::Identity(e.into()))?;
            creds
                .swap(set)
                .map_err(|e| ExecutorError::Identity(e.into()))?;
            tracing::info!("executor credentials restored from the journal");
        }
        let connector: Arc<dyn AgentConnector> = match (config.connector, &config.own_creds) {
            (Some(c), _) => c,
            (None, Some(creds)) => Arc::new(GrpcConnector::tls(creds.clone())),
            (None, None) => Arc::new(GrpcConnector::plaintext()),
        };
        let ctx = Arc::new(Ctx {
            committer: Committer::start_with(journal.clone(), config.commit_retry),
            connector,
            own_creds: config.own_creds,
            metrics: config.metrics.unwrap_or_default(),
            retry: config.retry,
            probe_timeout: config.probe_timeout,
            key_alg: config.key_alg,
            root_validity: config.root_validity,
            leaf_validity: config.leaf_validity,
            prepare_concurrency: config.prepare_concurrency,
            root_keys: config.root_keys,
            leader_epoch: config.leader_epoch,
            probe_limit: Arc::new(tokio::sync::Semaphore::new(rotation::PROBES_IN_FLIGHT)),
            root_claims: rotation::RootClaims::default(),
        });
        let executor = Executor {
            inner: Arc::new(Inner {
                ctx: ctx.clone(),
                planner: config.planner,
                rotations: Mutex::new(HashMap::new()),
                runners: Mutex::new(Vec::new()),
                admission: tokio::sync::Mutex::new(()),
                start_lock: tokio::sync::Mutex::new(()),
            }),
        };
        let mut metas = journal.rotations()?;
        metas.sort_by_key(|m| m.created_ms);
        for meta in metas {
            let id = meta.id.clone();
            let fail = |source: error::Source| ExecutorError::Rotation {
                id: id.clone(),
                source,
            };
            let doc = |kind| -> Result<Vec<u8>, ExecutorError> {
                journal
                    .document(&id, kind)?
                    .ok_or_else(|| fail(format!("missing {kind:?} document").into()))
            };
            let topology: Topology =
                serde_json::from_slice(&doc(DocKind::Topology)?).map_err(|e| fail(e.into()))?;
            let plan: Plan =
                serde_json::from_slice(&doc(DocKind::Plan)?).map_err(|e| fail(e.into()))?;
            let verdict: Verdict =
                serde_json::from_slice(&doc(DocKind::Verdict)?).map_err(|e| fail(e.into()))?;
            let fleet = Fleet::new(&topology);
            let order =
                PlanOrder::resolve(&plan, &fleet, &rollover_core::Document::new("<plan>", ""))
                    .map_err(|e| fail(e.to_string().into()))?;
            let terminal = meta.state.is_terminal();
            let rotation =
                Rotation::build(ctx.clone(), meta, topology, plan, fleet, order, verdict)
                    .map_err(|e| fail(e.message.into()))?;
            rotation.load_progress().map_err(|e| fail(e.into()))?;
            if terminal {
                executor.insert(rotation);
            } else {
                tracing::info!(rotation_id = %id, "resuming rotation from the journal");
                executor.insert_and_run(rotation);
            }
        }
        Ok(executor)
    }

    /// The executor's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.ctx.metrics.clone()
    }

    /// Every rotation, in no order (the map's lock is not held afterwards).
    fn all_rotations(&self) -> Vec<Arc<Rotation>> {
        self.inner
            .rotations
            .lock()
            .expect("rotations lock")
            .values()
            .cloned()
            .collect()
    }

    fn insert(&self, rotation: Arc<Rotation>) {
        self.inner
            .rotations
            .lock()
            .expect("rotations lock")
            .insert(rotation.id.clone(), rotation);
    }

    fn insert_and_run(&self, rotation: Arc<Rotation>) {
        self.insert(rotation.clone());
        self.spawn_runner(rotation);
    }

    fn spawn_runner(&self, rotation: Arc<Rotation>) {
        let handle = tokio::spawn(rotation.run());
        let mut runners = self.inner.runners.lock().expect("runners lock");
        runners.retain(|r| !r.is_finished());
        runners.push(handle.abort_handle());
    }

    /// Stop every runner (rotations stay journaled, to resume on the next open).
    pub fn shutdown(&self) {
        for runner in self.inner.runners.lock().expect("runners lock").drain(..) {
            runner.abort();
        }
    }

    /// Stop acting at once (an executor group's leader that lost its lease): every
    /// runner stops and every rotation is let go, so that watch streams end (their
    /// watchers reconnect to the new leader) and the API can drain. The journal keeps
    /// everything; whoever leads next resumes from it.
    pub fn step_down(&self) {
        self.shutdown();
        let dropped = std::mem::take(&mut *self.inner.rotations.lock().expect("rotations lock"));
        drop(dropped);
    }

    fn new_rotation_id(&self) -> String {
        let random = RandomState::new().hash_one(rotation::now_ms()) as u32;
        format!("r{:012x}{random:08x}", rotation::now_ms())
    }

    /// Admit a new rotation atomically: under the admission lock, check that no
    /// active rotation shares its nodes or its CA ([`admission`]), give it the next
    /// generation, journal it and insert it (not yet running). Every check of the
    /// request itself came before, so a malformed request is refused as such even
    /// while the CA is busy.
    async fn admit(&self, rotation: Arc<Rotation>) -> Result<(), ApiError> {
        let _admission = self.inner.admission.lock().await;
        self.check_idle(&rotation.fleet)?;
        rotation.set_generation(self.next_generation(&rotation.fleet.ca));
        rotation
            .create_records()
            .await
            .map_err(|source| ApiError::Record {
                what: "the rotation",
                source,
            })?;
        self.insert(rotation);
        Ok(())
    }

    /// The generation of the next root of `ca`: one past the highest ever used (by
    /// every journaled rotation of it, its name compared as certificate names are
    /// ([`admission::same_ca`]: `Demo-Root gen 3` and `demo-root gen 3` would match), finished, failed or rolled back included, and
    /// by the executor's own roots and the root keys it was given, named
    /// `<ca> gen N`), so two roots never share a
    /// subject; when none is known, minutes since the Unix epoch, so the new root's
    /// subject cannot collide with a bootstrap root's.
    fn next_generation(&self, ca: &str) -> u32 {
        let mut known: Option<u32> = None;
        let mut see = |g: u32| known = Some(known.map_or(g, |k| k.max(g)));
        for r in self
            .inner
            .rotations
            .lock()
            .expect("rotations lock")
            .values()
        {
            let meta = r.snapshot().meta;
            if admission::of_ca(&meta, ca) {
                see(meta.generation);
            }
        }
        if let Some(creds) = &self.inner.ctx.own_creds {
            let set = creds.current();
            for root in set.server_roots.iter().chain(&set.client_roots) {
                if let Some(g) = root_keys::generation_of(root, ca) {
                    see(g);
                }
            }
        }
        for root in &self.inner.ctx.root_keys {
            if let Some(g) = root_keys::generation_of(root.cert_der(), ca) {
                see(g);
            }
        }
        match known {
            Some(g) => g.saturating_add(1),
            None => (rotation::now_ms() / 60_000) as u32,
        }
    }
}

/// The Executor gRPC server for `executor`, open to every caller
/// ([`Access::Open`]), with generous message limits.
pub fn executor_server(executor: Executor) -> ExecutorServiceServer<ExecutorService> {
    executor_server_with(executor, Access::Open, &DEFAULT_LIMITS)
}

/// The Executor gRPC server for `executor`, admitting the callers `access` admits.
pub fn executor_server_with(
    executor: Executor,
    access: Access,
    limits: &ServerLimits,
) -> ExecutorServiceServer<ExecutorService> {
    ExecutorServiceServer::new(ExecutorService::with_access(executor, access))
        .max_decoding_message_size(limits.max_request_bytes.min(MAX_MESSAGE_BYTES))
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// How [`serve`] listens.
#[derive(Default)]
pub struct ServeOptions {
    /// Serve mTLS with these credentials (`@executor`'s); plaintext (loopback only)
    /// when `None`.
    pub tls: Option<Arc<LiveCredentials>>,
    /// Serve Prometheus metrics over HTTP here (`--metrics ADDR`).
    pub metrics: Option<SocketAddr>,
    /// What one caller may cost the server ([`DEFAULT_LIMITS`] when `None`).
    pub limits: Option<ServerLimits>,
    /// Who may call which method. With `tls` it must name someone
    /// ([`Access::Roles`]): [`serve`] refuses an mTLS executor open to every holder
    /// of a client certificate.
    pub access: Access,
}

/// Serve the Executor (plus health and reflection) on `listener` until `shutdown`:
/// `rollover serve executor --listen ADDR --planner URL --state DIR`.
pub async fn serve<F>(
    listener: TcpListener,
    executor: Executor,
    options: ServeOptions,
    shutdown: F,
) -> Result<(), ExecutorError>
where
    F: std::future::Future<Output = ()>,
{
    if options.tls.is_some() && (options.access == Access::Open || !options.access.names_anyone()) {
        return Err(ExecutorError::Serve(
            "an mTLS executor must be told who may call it (--operators ID,... and/or \
             --readers ID,...): otherwise any holder of a certificate from the client \
             CA could start and steer rotations"
                .into(),
        ));
    }
    let metrics_task = match options.metrics {
        Some(addr) => {
            let (bound, task) = metrics::spawn_metrics(addr, executor.metrics())
                .await
                .map_err(|e| ExecutorError::Serve(format!("metrics on {addr}: {e}").into()))?;
            tracing::info!(%bound, "executor metrics listening");
            Some(task)
        }
        None => None,
    };
    let limits = options.limits.unwrap_or(DEFAULT_LIMITS);
    let service = executor_server_with(executor.clone(), options.access, &limits);
    let result = serve_api(listener, service, options.tls, &limits, shutdown).await;
    executor.shutdown();
    if let Some(task) = metrics_task {
        task.abort();
    }
    result
}

/// Serve a follower's API ([`forward::Forwarder`]: every call checked here, then
/// sent to the leader) on `listener` until `shutdown`. No metrics: a follower runs
/// nothing to count.
pub async fn serve_forwarder<F>(
    listener: TcpListener,
    forwarder: forward::Forwarder,
    tls: Option<Arc<LiveCredentials>>,
    limits: Option<ServerLimits>,
    shutdown: F,
) -> Result<(), ExecutorError>
where
    F: std::future::Future<Output = ()>,
{
    let limits = limits.unwrap_or(DEFAULT_LIMITS);
    let service = ExecutorServiceServer::new(forwarder)
        .max_decoding_message_size(limits.max_request_bytes.min(MAX_MESSAGE_BYTES))
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    serve_api(listener, service, tls, &limits, shutdown).await
}

/// Serve `service` (plus health and reflection) on `listener` until `shutdown`.
async fn serve_api<S, F>(
    listener: TcpListener,
    service: ExecutorServiceServer<S>,
    tls: Option<Arc<LiveCredentials>>,
    limits: &ServerLimits,
    shutdown: F,
) -> Result<(), ExecutorError>
where
    S: rollover_proto::v1::executor_service_server::ExecutorService,
    F: std::future::Future<Output = ()>,
{
    let mut server = limits.server();
    let (router, reporter) = rollover_transport::base_router(
        &mut server,
        &[rollover_proto::v1::executor_service_server::SERVICE_NAME],
    )
    .map_err(|e| ExecutorError::Serve(e.into()))?;
    reporter.set_serving::<ExecutorServiceServer<S>>().await;
    let router = router.add_service(service);
    let addr = listener.local_addr().ok();
    let result = match tls {
        Some(creds) => {
            tracing::info!(?addr, "executor listening (mTLS)");
            rollover_transport::serve_tls(router, listener, creds, limits, shutdown).await
        }
        None => {
            tracing::info!(?addr, "executor listening (plaintext)");
            rollover_transport::serve_plain(router, listener, limits, shutdown).await
        }
    };
    result.map_err(|e| ExecutorError::Serve(e.into()))
}
