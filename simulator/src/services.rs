//! The planner and executor services, in process but reached over gRPC on loopback
//! exactly as in production: the executor asks the planner for plans and drives the
//! agents through their gRPC API with mTLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_executor::{
    AgentConnector, Executor, ExecutorConfig, RedbJournal, RetryPolicy, ServeOptions,
};
use rollover_pki::{LiveCredentials, RootCa};
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::error::SimError;

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
    reopen: Reopen,
}

/// What opening the executor again takes.
struct Reopen {
    dir: PathBuf,
    planner_addr: SocketAddr,
    creds: Arc<LiveCredentials>,
    root_keys: Vec<Arc<RootCa>>,
    connector: Option<Arc<dyn AgentConnector>>,
    retry: Option<RetryPolicy>,
}

impl Reopen {
    fn config(&self) -> Result<ExecutorConfig, SimError> {
        let mut config = ExecutorConfig::new(self.dir.join("executor"))
            .planner_url(&self.planner_addr.to_string())
            .map_err(|e| SimError::Setup(e.to_string()))?;
        config.own_creds = Some(self.creds.clone());
        config.root_keys = self.root_keys.clone();
        config.connector = self.connector.clone();
        if let Some(retry) = self.retry {
            config.retry = retry;
        }
        Ok(config)
    }
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
    let channel = rollover_transport::plain_channel(&executor_addr.to_string())
        .map_err(|e| SimError::Setup(e.to_string()))?;
    let client = ExecutorServiceClient::new(channel)
        .max_decoding_message_size(rollover_executor::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rollover_executor::MAX_MESSAGE_BYTES);
    Ok((executor_addr, task, client))
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

impl Services {
    /// Start the planner, then the executor (state under `dir`) using it.
    pub async fn start(
        dir: &Path,
        executor_creds: Arc<LiveCredentials>,
        root_keys: Vec<Arc<RootCa>>,
    ) -> Result<Services, SimError> {
        Self::start_with(dir, executor_creds, root_keys, None, None).await
    }

    /// [`Services::start`] with the executor reaching agents through `connector` (its
    /// default: mTLS with `executor_creds`) and retrying agent calls by `retry`.
    pub async fn start_with(
        dir: &Path,
        executor_creds: Arc<LiveCredentials>,
        root_keys: Vec<Arc<RootCa>>,
        connector: Option<Arc<dyn AgentConnector>>,
        retry: Option<RetryPolicy>,
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

        let reopen = Reopen {
            dir: dir.to_path_buf(),
            planner_addr,
            creds: executor_creds,
            root_keys,
            connector,
            retry,
        };
        let executor =
            Executor::open(reopen.config()?).map_err(|e| SimError::Setup(e.to_string()))?;
        let (executor_addr, task, client) = serve_executor(executor.clone(), &rx).await?;
        Ok(Services {
            executor: client,
            executor_addr,
            stop,
            tasks,
            running: Some((executor, task)),
            reopen,
        })
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
        // The old incarnation lets go of the journal as its tasks are dropped.
        let dir = self.reopen.dir.join("executor");
        let deadline = Instant::now() + Duration::from_secs(20);
        let journal = loop {
            let path = dir.clone();
            let opened = tokio::task::spawn_blocking(move || RedbJournal::open(&path))
                .await
                .map_err(|e| SimError::Setup(e.to_string()))?;
            match opened {
                Ok(journal) => break journal,
                Err(e) if e.0.contains("already open") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(SimError::Setup(format!("reopening the journal: {e}"))),
            }
        };
        let mut config = self.reopen.config()?;
        config.journal = Some(Arc::new(journal));
        let executor = Executor::open(config).map_err(|e| SimError::Setup(e.to_string()))?;
        let rx = self.stop.subscribe();
        let (executor_addr, task, client) = serve_executor(executor.clone(), &rx).await?;
        self.executor = client;
        self.executor_addr = executor_addr;
        self.running = Some((executor, task));
        Ok(())
    }

    /// Stop both services and wait for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some((executor, task)) = self.running {
            drop(executor);
            let _ = task.await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
