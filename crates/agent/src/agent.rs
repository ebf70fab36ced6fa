//! A running agent: its configuration, its servers, and the handle that reports on
//! it and stops it (the state they share is in `shared.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollover_core::state::Mode;
use rollover_pki::LiveCredentials;
use rollover_proto::v1;
use rollover_proto::v1::agent_service_server::AgentServiceServer;
use rollover_transport::{HANDSHAKE_TIMEOUT, Listener, ServerLimits, TlsIncoming, base_router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::export::{Export, exported_identity};
use crate::files::{StateDir, StateFiles};
use crate::node::NodeData;
use crate::service::AgentService;
use crate::shared::{Counters, Inner, blocking, machine_state, on_state};
use crate::{AgentError, dataplane, store};

/// How long [`AgentHandle::shutdown`] waits for open calls before cutting them off.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which credentials the agent's control (gRPC) server uses.
#[derive(Clone, Debug)]
pub enum ControlCreds {
    /// The control CA is the rotated CA: the control server uses the data plane's
    /// live credentials and rotates with them (MODEL §6).
    Rotated,
    /// A separate, never rotated control CA, from the state directory
    /// (see [`crate::bootstrap_control`]).
    StateDir,
    /// A separate control CA, given in process.
    Separate(Arc<LiveCredentials>),
}

/// What an agent is and where it listens.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The node id; must match the state directory's.
    pub id: String,
    /// The node's mode; must match the state directory's.
    pub mode: Mode,
    /// The state directory, made by [`crate::bootstrap`].
    pub state_dir: PathBuf,
    /// Where the state directory's files are: `None` on the disk (a deployed agent);
    /// a simulated agent may keep them in memory ([`crate::MemFiles`], bootstrapped
    /// with [`crate::bootstrap_in`]).
    pub state_files: Option<Arc<dyn StateFiles>>,
    /// Where the data-plane mTLS server listens (port 0: any free port).
    pub data_listen: SocketAddr,
    /// Where the Agent gRPC (control) server listens (port 0: any free port).
    pub control_listen: SocketAddr,
    /// The control server's credentials.
    pub control: ControlCreds,
    /// What one caller may cost the control server ([`DEFAULT_LIMITS`]).
    pub limits: ServerLimits,
    /// Whether the node builds chains (topology `chains`, default true): when false
    /// it neither sends bridges nor verifies a peer through one (MODEL §11).
    pub chains: bool,
}

/// The control server's default limits: requests up to 4 MiB (the largest, ApplyStep,
/// carries two certificates), 64 in flight per connection, 1024 connections, 5
/// minutes idle.
pub const DEFAULT_LIMITS: ServerLimits = ServerLimits::with_max_request_bytes(4 << 20);

/// Counters since the agent started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentMetrics {
    /// ApplyStep calls that changed the node (undos included, repeats not).
    pub applies: u64,
    /// Probes that completed a handshake and a ping/pong.
    pub probes_ok: u64,
    /// Probes that failed.
    pub probes_failed: u64,
    /// Data-plane handshakes accepted.
    pub data_handshakes_ok: u64,
    /// Data-plane handshakes refused or timed out.
    pub data_handshakes_failed: u64,
    /// Control-server handshakes accepted.
    pub control_handshakes_ok: u64,
    /// Control-server handshakes refused or timed out.
    pub control_handshakes_failed: u64,
    /// ApplyStep and CreateCsr calls refused because a newer leader has called for
    /// their rotation (a deposed executor's late calls).
    pub epoch_refusals: u64,
}

/// A node loaded from its state directory and checked against the config, with its
/// credentials: the data plane's, the workload's (when exported) and the control's.
struct Loaded {
    node: NodeData,
    set: rollover_pki::CredentialSet,
    creds: Arc<LiveCredentials>,
    workload: Option<Arc<LiveCredentials>>,
    control_creds: Arc<LiveCredentials>,
}

impl AgentConfig {
    /// The state directory with the files behind it.
    pub fn state(&self) -> StateDir {
        match &self.state_files {
            Some(files) => StateDir::new(self.state_dir.clone(), files.clone()),
            None => StateDir::on_disk(self.state_dir.clone()),
        }
    }
}

async fn load(config: &AgentConfig, export: Option<&Export>) -> Result<Loaded, AgentError> {
    let state = config.state();
    let mut node = on_state(&state, store::load_node).await?;
    node.chains = config.chains;
    if node.id != config.id {
        return Err(AgentError::ConfigMismatch(format!(
            "id {:?} given, but {} holds node {:?}",
            config.id,
            config.state_dir.display(),
            node.id
        )));
    }
    if node.mode != config.mode {
        return Err(AgentError::ConfigMismatch(format!(
            "mode {} given, but node {:?} in {} is {}",
            config.mode,
            node.id,
            config.state_dir.display(),
            node.mode
        )));
    }
    let set = node.credential_set()?;
    let creds = LiveCredentials::new(set.clone())?;
    let workload = match export {
        Some(_) => Some(LiveCredentials::new(exported_identity(&set)?)?),
        None => None,
    };
    let control_creds = match &config.control {
        ControlCreds::Rotated => creds.clone(),
        ControlCreds::Separate(c) => c.clone(),
        ControlCreds::StateDir => {
            let set = on_state(&state, store::load_control)
                .await?
                .ok_or_else(|| {
                    AgentError::ConfigMismatch(format!(
                        "{} has no control credentials ({}): bootstrap them with a control CA",
                        config.state_dir.display(),
                        store::CONTROL_FILE
                    ))
                })?;
            LiveCredentials::new(set)?
        }
    };
    Ok(Loaded {
        node,
        set,
        creds,
        workload,
        control_creds,
    })
}

/// One node's agent.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Loads the node from `config.state_dir`, binds both listeners and serves: the
    /// data plane (mTLS ping/pong) and the Agent gRPC service over mTLS with gRPC
    /// health and reflection. Control calls are accepted from `@executor` only.
    pub async fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
        Self::start_with_export(config, None).await
    }

    /// [`Agent::start`], exporting the node's credentials for a workload (see
    /// [`crate::export`]): the files are written, and the reload command run, before
    /// the agent serves (a failed reload is only logged then, since the workload may
    /// not be running yet), and again after every step.
    pub async fn start_with_export(
        config: AgentConfig,
        export: Option<Export>,
    ) -> Result<AgentHandle, AgentError> {
        if let Some(export) = &export {
            let check = export.clone();
            blocking(move || check.check()).await?;
        }
        let loaded = load(&config, export.as_ref()).await?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Bind { addr, source })
        };
        let data = bind(config.data_listen).await?;
        let control = bind(config.control_listen).await?;
        Self::serve(config, export, loaded, data.into(), control.into()).await
    }

    /// [`Agent::start`] on listeners given instead of bound (`config.data_listen` and
    /// `config.control_listen` are not used): e.g. connections routed from listeners
    /// shared with other agents in process (see [`rollover_transport::SniRouter`]).
    pub async fn start_on(
        config: AgentConfig,
        data_listener: Listener,
        control_listener: Listener,
    ) -> Result<AgentHandle, AgentError> {
        let loaded = load(&config, None).await?;
        Self::serve(config, None, loaded, data_listener, control_listener).await
    }

    async fn serve(
        config: AgentConfig,
        export: Option<Export>,
        Loaded {
            node,
            set,
            creds,
            workload,
            control_creds,
        }: Loaded,
        data_listener: Listener,
        control_listener: Listener,
    ) -> Result<AgentHandle, AgentError> {
        let data_addr = data_listener
            .local_addr()
            .map_err(|e| AgentError::io(&config.state_dir, e))?;
        let control_addr = control_listener
            .local_addr()
            .map_err(|e| AgentError::io(&config.state_dir, e))?;

        let state = machine_state(&node);
        let inner = Arc::new(Inner {
            id: node.id.clone(),
            mode: node.mode,
            dir: config.state(),
            creds: creds.clone(),
            export,
            workload,
            node: Mutex::new(node),
            op: tokio::sync::Mutex::new(()),
            counters: Counters::default(),
            data_stats: Arc::default(),
            control_stats: Arc::default(),
            data_addr,
        });

        if let Some(export) = &inner.export {
            let (writer, set) = (export.clone(), set.clone());
            blocking(move || writer.write(&set)).await?;
            if let Err(e) = export.run_reload().await {
                tracing::warn!(error = %e, "reload at start failed (is the workload running yet?)");
            }
            tracing::info!(dir = %export.dir.display(), "credentials exported");
        }

        let (stop, stopped) = watch::channel(false);
        let (failed_tx, failed) = watch::channel(None);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(dataplane::serve(
            data_listener,
            creds,
            inner.data_stats.clone(),
            stopped.clone(),
        )));

        let limits = config.limits;
        let (router, reporter) = base_router(
            &mut limits.server(),
            &[rollover_proto::v1::agent_service_server::SERVICE_NAME],
        )?;
        reporter
            .set_serving::<AgentServiceServer<AgentService>>()
            .await;
        let router = router.add_service(
            AgentServiceServer::new(AgentService::new(inner.clone()))
                .max_decoding_message_size(limits.max_request_bytes),
        );
        let mut incoming = TlsIncoming::with_stats(
            control_listener,
            &control_creds,
            inner.control_stats.clone(),
            HANDSHAKE_TIMEOUT,
        );
        let mut control_stopped = stopped;
        let signal = async move {
            let _ = control_stopped.wait_for(|s| *s).await;
        };
        let id = inner.id.clone();
        let closer = incoming.closer();
        tasks.push(tokio::spawn(async move {
            // Held by this task: when it ends or is aborted, every control connection
            // still open is cut, so no call reaches a stopped agent.
            let _closer = closer;
            let incoming = limits.guard(incoming);
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(node = %id, error = %e, "control server failed");
                let _ = failed_tx.send(Some(e.to_string()));
            }
        }));
        tracing::info!(node = %inner.id, mode = %inner.mode, %state, data = %data_addr, control = %control_addr, "agent started");
        Ok(AgentHandle {
            inner,
            control_addr,
            stop,
            failed,
            tasks,
        })
    }
}

/// A running agent. Dropping it stops every task of the agent at once;
/// [`AgentHandle::shutdown`] stops gracefully.
pub struct AgentHandle {
    inner: Arc<Inner>,
    control_addr: SocketAddr,
    stop: watch::Sender<bool>,
    failed: watch::Receiver<Option<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl AgentHandle {
    /// The node id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The node's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// Where the data-plane mTLS server listens.
    pub fn data_addr(&self) -> SocketAddr {
        self.inner.data_addr
    }

    /// Where the Agent gRPC server listens.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// Steps applied or undone since the node's state began (persisted; repeats not
    /// counted), as GetState's `applied_step_count`.
    pub fn applied_count(&self) -> u64 {
        self.inner.node().applied_count
    }

    /// The node's state, as GetState answers it.
    pub fn state(&self) -> v1::AgentState {
        self.inner
            .snapshot()
            .expect("a loaded node's state always has its generations")
    }

    /// Counters since the agent started.
    pub fn metrics(&self) -> AgentMetrics {
        let c = &self.inner.counters;
        AgentMetrics {
            applies: c.applies.load(Ordering::Relaxed),
            probes_ok: c.probes_ok.load(Ordering::Relaxed),
            probes_failed: c.probes_failed.load(Ordering::Relaxed),
            data_handshakes_ok: self.inner.data_stats.ok(),
            data_handshakes_failed: self.inner.data_stats.failed(),
            control_handshakes_ok: self.inner.control_stats.ok(),
            control_handshakes_failed: self.inner.control_stats.failed(),
            epoch_refusals: c.epoch_refusals.load(Ordering::Relaxed),
        }
    }

    /// The data plane's live credentials (what the node's handshakes use now).
    pub fn credentials(&self) -> Arc<LiveCredentials> {
        self.inner.creds.clone()
    }

    /// Completes if a server of the agent stops with an error, with that error.
    pub async fn failed(&mut self) -> AgentError {
        let failure = self.failed.wait_for(Option::is_some).await;
        AgentError::Server(match failure {
            Ok(f) => f.clone().unwrap_or_default(),
            Err(_) => "agent stopped".into(),
        })
    }

    /// Stops accepting, lets open calls finish (up to [`SHUTDOWN_GRACE`]), then stops
    /// every task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!(node = %self.inner.id, "shutdown grace period over: cutting off open connections");
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
        tracing::info!(node = %self.inner.id, "agent stopped");
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("id", &self.inner.id)
            .field("data_addr", &self.inner.data_addr)
            .field("control_addr", &self.control_addr)
            .finish_non_exhaustive()
    }
}
