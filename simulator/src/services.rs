//! The planner and executor services, in process but reached over gRPC on loopback
//! exactly as in production: the executor asks the planner for plans and drives the
//! agents through their gRPC API with mTLS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rollover_executor::{Executor, ExecutorConfig, ServeOptions};
use rollover_pki::LiveCredentials;
use rollover_proto::v1::executor_client::ExecutorClient;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::error::SimError;

/// Running planner and executor services.
pub struct Services {
    /// A client of the executor.
    pub executor: ExecutorClient<Channel>,
    /// Where the executor listens.
    pub executor_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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

        let mut config = ExecutorConfig::new(dir.join("executor"))
            .planner_url(&planner_addr.to_string())
            .map_err(|e| SimError::Setup(e.to_string()))?;
        config.own_creds = Some(executor_creds);
        let executor = Executor::open(config).map_err(|e| SimError::Setup(e.to_string()))?;
        let listener = loopback().await?;
        let executor_addr = listener.local_addr()?;
        let signal = stopped(&rx);
        tasks.push(tokio::spawn(async move {
            let options = ServeOptions {
                tls: None,
                metrics: None,
            };
            if let Err(e) = rollover_executor::serve(listener, executor, options, signal).await {
                tracing::error!(error = %e, "simulated executor failed");
            }
        }));
        let channel = rollover_transport::plain_channel(&executor_addr.to_string())
            .map_err(|e| SimError::Setup(e.to_string()))?;
        let executor = ExecutorClient::new(channel)
            .max_decoding_message_size(rollover_executor::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(rollover_executor::MAX_MESSAGE_BYTES);
        Ok(Services {
            executor,
            executor_addr,
            stop,
            tasks,
        })
    }

    /// Stop both services and wait for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
