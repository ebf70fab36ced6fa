//! The planner and executor services, in process but reached over gRPC on loopback
//! exactly as in production: the executor asks the planner for plans and drives the
//! agents through their gRPC API with mTLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_executor::{
    AgentConnector, Executor, ExecutorConfig, GrpcConnector, Journal, MemJournal, RedbJournal,
    RetryPolicy, ServeOptions,
};
use rollover_pki::{LiveCredentials, RootCa};
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::error::SimError;
use crate::group::{ExecutorGroup, GroupOptions};

/// Connections from the executor to agents kept open at once.
pub const CHANNELS_KEPT: usize = 512;

/// Running planner and executor services.
pub struct Services {
    /// A client of the executor.
    pub executor: ExecutorServiceClient<Channel>,
    /// Where the executor listens.
    pub executor_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The executor's serve task and handle (a chaos run crashes and reopens them).
    running: Option<(Executor, JoinHandle<()>)>,
    /// Or, on PostgreSQL, a group of executors of which one leads.
    group: Option<ExecutorGroup>,
    reopen: Arc<Reopen>,
}

/// What opening the executor again takes.
struct Reopen {
    dir: PathBuf,
    planner_addr: SocketAddr,
    creds: Arc<LiveCredentials>,
    root_keys: Vec<Arc<RootCa>>,
    connector: Option<Arc<dyn AgentConnector>>,
    retry: Option<RetryPolicy>,
    /// The journal, when it is kept in memory rather than in `dir/executor`.
    journal: Option<Arc<dyn Journal>>,
}

impl Reopen {
    fn config(&self) -> Result<ExecutorConfig, SimError> {
        let mut config = ExecutorConfig::new(self.dir.join("executor"))
            .planner_url(&self.planner_addr.to_string())
            .map_err(|e| SimError::Setup(e.to_string()))?;
        config.own_creds = Some(self.creds.clone());
        config.root_keys = self.root_keys.clone();
        config.connector = self.connector.clone();
        config.journal = self.journal.clone();
        if let Some(retry) = self.retry {
            config.retry = retry;
        }
        Ok(config)
    }
}

/// A client of the executor API at `addr`.
fn client_of(addr: SocketAddr) -> Result<ExecutorServiceClient<Channel>, SimError> {
    let channel = rollover_transport::plain_channel(&addr.to_string())
        .map_err(|e| SimError::Setup(e.to_string()))?;
    Ok(ExecutorServiceClient::new(channel)
        .max_decoding_message_size(rollover_executor::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rollover_executor::MAX_MESSAGE_BYTES))
}

/// Serve `executor` on a fresh loopback port until `stop`; a client of it.
async fn serve_executor(
    executor: Executor,
    rx: &watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>, ExecutorServiceClient<Channel>), SimError> {
    let listener = loopback().await?;
    let executor_addr = listener.local_addr()?;
    let signal = stopped(rx);
    let task = tokio::spawn(async move {
        let options = ServeOptions {
            tls: None,
            metrics: None,
            ..Default::default()
        };
        if let Err(e) = rollover_executor::serve(listener, executor, options, signal).await {
            tracing::error!(error = %e, "simulated executor failed");
        }
    });
    Ok((executor_addr, task, client_of(executor_addr)?))
}

async fn loopback() -> Result<TcpListener, SimError> {
    Ok(TcpListener::bind(("127.0.0.1", 0)).await?)
}

fn stopped(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

fn no_group() -> SimError {
    SimError::Setup("leader faults need an executor group (--journal postgres://...)".into())
}

impl Services {
    /// Start the planner, then the executor using it, its journal in memory: nothing
    /// of a simulated executor needs to outlive the process, and a journal on disk
    /// would make every commit wait for an fsync (the same [`Journal`] trait and the
    /// same executor code either way).
    pub async fn start(
        dir: &Path,
        executor_creds: Arc<LiveCredentials>,
        root_keys: Vec<Arc<RootCa>>,
    ) -> Result<Services, SimError> {
        // A bounded number of connections to agents: one kept per agent would hold
        // two file descriptors per agent (both ends are in this process).
        let connector = GrpcConnector::tls(executor_creds.clone()).max_cached(CHANNELS_KEPT);
        Self::open(
            dir,
            executor_creds,
            root_keys,
            Some(Arc::new(connector)),
            None,
            Some(Arc::new(MemJournal::default())),
            None,
        )
        .await
    }

    /// [`Services::start`] with the executor's journal on disk under `dir` (a chaos
    /// run crashes and reopens it), or with `group`, a group of executors on
    /// PostgreSQL; reaching agents through `connector` (its default: mTLS with
    /// `executor_creds`) and retrying agent calls by `retry`.
    pub async fn start_with(
        dir: &Path,
        executor_creds: Arc<LiveCredentials>,
        root_keys: Vec<Arc<RootCa>>,
        connector: Option<Arc<dyn AgentConnector>>,
        retry: Option<RetryPolicy>,
        group: Option<GroupOptions>,
    ) -> Result<Services, SimError> {
        Self::open(
            dir,
            executor_creds,
            root_keys,
            connector,
            retry,
            None,
            group,
        )
        .await
    }

    async fn open(
        dir: &Path,
        executor_creds: Arc<LiveCredentials>,
        root_keys: Vec<Arc<RootCa>>,
        connector: Option<Arc<dyn AgentConnector>>,
        retry: Option<RetryPolicy>,
        journal: Option<Arc<dyn Journal>>,
        group: Option<GroupOptions>,
    ) -> Result<Services, SimError> {
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let planner = loopback().await?;
        let planner_addr = planner.local_addr()?;
        let signal = stopped(&rx);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = rollover_planner::serve(planner, signal).await {
                tracing::error!(error = %e, "simulated planner failed");
            }
        }));

        let reopen = Arc::new(Reopen {
            dir: dir.to_path_buf(),
            planner_addr,
            creds: executor_creds,
            root_keys,
            connector,
            retry,
            journal,
        });
        if let Some(options) = group {
            let make = reopen.clone();
            let group = ExecutorGroup::start(
                options,
                Arc::new(move |i| {
                    let mut config = make.config()?;
                    config.state_dir = make.dir.join(format!("executor-{i}"));
                    Ok(config)
                }),
            )
            .await?;
            let leading = group.wait_leader(None).await?;
            return Ok(Services {
                executor: client_of(leading.addr)?,
                executor_addr: leading.addr,
                stop,
                tasks,
                running: None,
                group: Some(group),
                reopen,
            });
        }
        let executor =
            Executor::open(reopen.config()?).map_err(|e| SimError::Setup(e.to_string()))?;
        let (executor_addr, task, client) = serve_executor(executor.clone(), &rx).await?;
        Ok(Services {
            executor: client,
            executor_addr,
            stop,
            tasks,
            running: Some((executor, task)),
            group: None,
            reopen,
        })
    }

    /// The executor group, when the executors run on PostgreSQL.
    pub fn group(&self) -> Option<&ExecutorGroup> {
        self.group.as_ref()
    }

    /// Point the client at the leader with an epoch above `after` (any leader if
    /// `None`), once there is one.
    pub async fn follow_leader(&mut self, after: Option<i64>) -> Result<(), SimError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let leading = group.wait_leader(after).await?;
        self.executor = client_of(leading.addr)?;
        self.executor_addr = leading.addr;
        Ok(())
    }

    /// Point the client at whoever leads now (after a broken stream); whether the
    /// lead changed since the client was last pointed (a change of leader explains
    /// the break: the old leader stepped down, e.g. on a slow database).
    pub async fn follow_new_leader(&mut self) -> Result<bool, SimError> {
        let before = self.group.as_ref().and_then(|g| g.leader_epoch());
        self.follow_leader(None).await?;
        let after = self.group.as_ref().and_then(|g| g.leader_epoch());
        Ok(self.group.is_some() && before != after)
    }

    /// Kill the leading executor (see [`ExecutorGroup::crash_leader`]) and follow
    /// the next leader.
    pub async fn crash_leader(&mut self) -> Result<(), SimError> {
        let group = self.group.as_mut().ok_or_else(no_group)?;
        let epoch = group.crash_leader().await?;
        self.follow_leader(Some(epoch)).await
    }

    /// Cut the leading executor off its database (see
    /// [`ExecutorGroup::cut_leader`]) and follow the next leader.
    pub async fn cut_leader(&mut self) -> Result<(), SimError> {
        let group = self.group.as_ref().ok_or_else(no_group)?;
        let epoch = group.cut_leader().await?;
        self.follow_leader(Some(epoch)).await
    }

    /// Drop the leading executor's database connections for `length` (see
    /// [`ExecutorGroup::blip_leader`]); the simulator keeps following whoever leads.
    pub async fn blip_leader(&mut self, length: Duration) -> Result<(), SimError> {
        let group = self.group.as_ref().ok_or_else(no_group)?;
        group.blip_leader(length).await?;
        Ok(())
    }

    /// Crash the executor (its serve task aborted, its runners stopped: whatever was
    /// in flight is cut off), then open it again on the same state directory, which
    /// resumes unfinished rotations from the journal, and serve it on a new port.
    pub async fn restart_executor(&mut self) -> Result<(), SimError> {
        if let Some((executor, task)) = self.running.take() {
            task.abort();
            executor.shutdown();
            drop(executor);
            let _ = task.await;
        }
        // Let go of our connection to it too (a lazy channel to the dead address
        // stands in until the new one listens): nothing may keep the old incarnation,
        // and with it the journal, alive.
        let dead = rollover_transport::plain_channel(&self.executor_addr.to_string())
            .map_err(|e| SimError::Setup(e.to_string()))?;
        self.executor = ExecutorServiceClient::new(dead);
        let mut config = self.reopen.config()?;
        if config.journal.is_none() {
            config.journal = Some(Arc::new(self.reopen_journal().await?));
        }
        let executor = Executor::open(config).map_err(|e| SimError::Setup(e.to_string()))?;
        let rx = self.stop.subscribe();
        let (executor_addr, task, client) = serve_executor(executor.clone(), &rx).await?;
        self.executor = client;
        self.executor_addr = executor_addr;
        self.running = Some((executor, task));
        Ok(())
    }

    /// The journal on disk, opened again once the old incarnation lets go of it (as
    /// its tasks are dropped).
    async fn reopen_journal(&self) -> Result<RedbJournal, SimError> {
        let dir = self.reopen.dir.join("executor");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let path = dir.clone();
            let opened = tokio::task::spawn_blocking(move || RedbJournal::open(&path))
                .await
                .map_err(|e| SimError::Setup(e.to_string()))?;
            match opened {
                Ok(journal) => return Ok(journal),
                Err(e) if e.is_already_open() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(SimError::Setup(format!("reopening the journal: {e}"))),
            }
        }
    }

    /// Stop both services and wait for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(group) = self.group {
            group.shutdown().await;
        }
        if let Some((executor, task)) = self.running {
            drop(executor);
            let _ = task.await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
