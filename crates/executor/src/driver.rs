//! Talking to agents: the [`AgentApi`] trait, its gRPC implementation over
//! `rollover.v1.AgentService`, error classification and exponential backoff, and the
//! executor's own data-plane handshake (for links whose client is `@executor`).
//!
//! Transient errors (UNAVAILABLE, DEADLINE_EXCEEDED, connection errors) are retried
//! with exponential backoff; permanent ones (INVALID_ARGUMENT, FAILED_PRECONDITION,
//! PERMISSION_DENIED, ...) fail the step at once.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use futures::future::BoxFuture;
use rollover_proto::v1;
use rollover_proto::v1::agent_service_client::AgentServiceClient;
use rollover_transport::{ProbeError, TransportError};
use tonic::transport::Channel;

/// An agent call that failed: the gRPC status, its source folded into the message
/// (the status itself is neither `Clone` nor comparable, and retries compare and
/// report errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AgentError {
    /// The gRPC code, when there was an answer (or tonic's mapping of a transport
    /// failure).
    pub code: tonic::Code,
    /// What went wrong.
    pub message: String,
}

impl AgentError {
    /// An error with this code and message.
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        AgentError {
            code,
            message: message.into(),
        }
    }

    /// Whether trying again may help: the agent was unreachable or slow, or the
    /// connection broke. Everything else is the agent refusing: permanent, ABORTED
    /// included (an agent refusing a deposed leader's call: it has seen a newer
    /// leader's epoch, and retrying cannot change that).
    pub fn is_transient(&self) -> bool {
        use tonic::Code::*;
        matches!(
            self.code,
            Unavailable | DeadlineExceeded | Unknown | Cancelled | ResourceExhausted
        )
    }

    /// Whether the agent may have acted on the call although it failed (the answer
    /// may have been lost). A refusal proves it did not.
    pub fn maybe_applied(&self) -> bool {
        self.is_transient()
    }
}

impl From<tonic::Status> for AgentError {
    fn from(s: tonic::Status) -> Self {
        let mut message = s.message().to_string();
        if message.is_empty() {
            message = format!("{s}");
        }
        if let Some(source) = std::error::Error::source(&s) {
            message = format!("{message}: {source}");
        }
        AgentError::new(s.code(), message)
    }
}

/// One node's agent, as the executor uses it.
pub trait AgentApi: Send + Sync {
    /// The node's current trust and certificates.
    fn get_state(&self) -> BoxFuture<'_, Result<v1::AgentState, AgentError>>;
    /// A CSR for the new generation.
    fn create_csr(
        &self,
        request: v1::CreateCsrRequest,
    ) -> BoxFuture<'_, Result<v1::CreateCsrResponse, AgentError>>;
    /// Apply (or undo) one step.
    fn apply_step(
        &self,
        request: v1::ApplyStepRequest,
    ) -> BoxFuture<'_, Result<v1::ApplyStepResponse, AgentError>>;
    /// Probe a link from this node (as the client) to a peer.
    fn probe(
        &self,
        request: v1::ProbeRequest,
    ) -> BoxFuture<'_, Result<v1::ProbeResponse, AgentError>>;
}

/// Finds the agent of a node.
pub trait AgentConnector: Send + Sync {
    /// The agent of `node_id`, whose topology address is `address`. Connecting may
    /// be lazy: errors then surface on the first call.
    fn connect(
        &self,
        node_id: &str,
        address: Option<&str>,
    ) -> Result<Arc<dyn AgentApi>, AgentError>;
}

/// Makes a channel to an agent: `(address, node id) -> Channel`. Used for mTLS
/// (e.g. a closure around `rollover_transport::tls_channel`).
pub type ChannelFactory =
    Arc<dyn Fn(&str, &str) -> Result<Channel, TransportError> + Send + Sync + 'static>;

/// Agents over gRPC.
///
/// Channels are cached by (node, address): every rotation reuses the same HTTP/2
/// connection to an agent. With [`GrpcConnector::max_cached`] at most that many are
/// kept, the oldest let go first (its connection closes once no call uses it).
#[derive(Clone)]
pub struct GrpcConnector {
    factory: Option<ChannelFactory>,
    timeout: Duration,
    cache: Arc<std::sync::Mutex<ChannelCache>>,
}

/// Channels by (node, address), and the order they were made in.
#[derive(Default)]
struct ChannelCache {
    channels: std::collections::HashMap<(String, String), Channel>,
    order: std::collections::VecDeque<(String, String)>,
    limit: Option<usize>,
}

impl ChannelCache {
    fn insert(&mut self, key: (String, String), channel: Channel) {
        if self.channels.insert(key.clone(), channel).is_none() {
            self.order.push_back(key);
        }
        while self
            .limit
            .is_some_and(|limit| self.channels.len() > limit.max(1))
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.channels.remove(&oldest);
        }
    }
}

impl GrpcConnector {
    /// Plaintext HTTP/2, to loopback addresses only (tests, local demos).
    pub fn plaintext() -> Self {
        GrpcConnector {
            factory: None,
            timeout: Duration::from_secs(10),
            cache: Default::default(),
        }
    }

    /// mTLS with the executor's own credentials (`@executor`, anchored in the
    /// control CA): every new connection handshakes with the credentials current at
    /// that moment, and verifies the agent as `node_dns_name(node id)`.
    pub fn tls(creds: Arc<rollover_pki::LiveCredentials>) -> Self {
        Self::with_channels(Arc::new(move |address: &str, node_id: &str| {
            rollover_transport::tls_channel(address, creds.clone(), node_id)
        }))
    }

    /// Channels made by `factory`.
    pub fn with_channels(factory: ChannelFactory) -> Self {
        GrpcConnector {
            factory: Some(factory),
            timeout: Duration::from_secs(10),
            cache: Default::default(),
        }
    }

    /// Deadline of every call (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keep at most `channels` connections (default: one per agent, all kept): a
    /// process talking to thousands of agents on one machine (the simulator) would
    /// otherwise hold two file descriptors per agent for the whole run.
    pub fn max_cached(self, channels: usize) -> Self {
        self.cache.lock().expect("channel cache").limit = Some(channels);
        self
    }
}

impl GrpcConnector {
    /// The agent of `node_id` at `address` over a cached channel (made, and cached,
    /// if missing).
    fn agent(&self, node_id: &str, address: &str) -> Result<GrpcAgent, AgentError> {
        let key = (node_id.to_string(), address.to_string());
        let cached = self
            .cache
            .lock()
            .expect("channel cache")
            .channels
            .get(&key)
            .cloned();
        let channel = match cached {
            Some(channel) => channel,
            None => {
                let channel = match &self.factory {
                    Some(factory) => factory(address, node_id),
                    None => rollover_transport::plain_channel(address),
                }
                .map_err(|e| {
                    AgentError::new(
                        tonic::Code::InvalidArgument,
                        format!("node `{node_id}`: agent address `{address}`: {e}"),
                    )
                })?;
                self.cache
                    .lock()
                    .expect("channel cache")
                    .insert(key, channel.clone());
                channel
            }
        };
        Ok(GrpcAgent {
            client: AgentServiceClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            timeout: self.timeout,
        })
    }
}

impl AgentConnector for GrpcConnector {
    fn connect(
        &self,
        node_id: &str,
        address: Option<&str>,
    ) -> Result<Arc<dyn AgentApi>, AgentError> {
        let Some(address) = address else {
            return Err(AgentError::new(
                tonic::Code::InvalidArgument,
                format!("node `{node_id}` has no agent address in the topology"),
            ));
        };
        let agent = self.agent(node_id, address)?;
        if self.cache.lock().expect("channel cache").limit.is_none() {
            return Ok(Arc::new(agent));
        }
        // Bounded: a rotation keeps the handle of every node for its whole run, so
        // the handle must not keep a connection; each call takes one from the cache.
        Ok(Arc::new(PooledAgent {
            connector: self.clone(),
            node_id: node_id.to_string(),
            address: address.to_string(),
        }))
    }
}

/// An agent reached through a bounded [`GrpcConnector`]'s cache on every call.
struct PooledAgent {
    connector: GrpcConnector,
    node_id: String,
    address: String,
}

impl PooledAgent {
    fn agent(&self) -> Result<GrpcAgent, AgentError> {
        self.connector.agent(&self.node_id, &self.address)
    }
}

impl AgentApi for PooledAgent {
    fn get_state(&self) -> BoxFuture<'_, Result<v1::AgentState, AgentError>> {
        Box::pin(async move { self.agent()?.get_state().await })
    }

    fn create_csr(
        &self,
        request: v1::CreateCsrRequest,
    ) -> BoxFuture<'_, Result<v1::CreateCsrResponse, AgentError>> {
        Box::pin(async move { self.agent()?.create_csr(request).await })
    }

    fn apply_step(
        &self,
        request: v1::ApplyStepRequest,
    ) -> BoxFuture<'_, Result<v1::ApplyStepResponse, AgentError>> {
        Box::pin(async move { self.agent()?.apply_step(request).await })
    }

    fn probe(
        &self,
        request: v1::ProbeRequest,
    ) -> BoxFuture<'_, Result<v1::ProbeResponse, AgentError>> {
        Box::pin(async move { self.agent()?.probe(request).await })
    }
}

/// One agent over gRPC.
#[derive(Clone)]
pub struct GrpcAgent {
    client: AgentServiceClient<Channel>,
    timeout: Duration,
}

impl GrpcAgent {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }
}

impl AgentApi for GrpcAgent {
    fn get_state(&self) -> BoxFuture<'_, Result<v1::AgentState, AgentError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            client
                .get_state(self.request(v1::GetStateRequest {}))
                .await?
                .into_inner()
                .state
                .ok_or_else(|| {
                    AgentError::new(tonic::Code::Internal, "GetState answered without a state")
                })
        })
    }

    fn create_csr(
        &self,
        request: v1::CreateCsrRequest,
    ) -> BoxFuture<'_, Result<v1::CreateCsrResponse, AgentError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            Ok(client.create_csr(self.request(request)).await?.into_inner())
        })
    }

    fn apply_step(
        &self,
        request: v1::ApplyStepRequest,
    ) -> BoxFuture<'_, Result<v1::ApplyStepResponse, AgentError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            Ok(client.apply_step(self.request(request)).await?.into_inner())
        })
    }

    fn probe(
        &self,
        request: v1::ProbeRequest,
    ) -> BoxFuture<'_, Result<v1::ProbeResponse, AgentError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            Ok(client.probe(self.request(request)).await?.into_inner())
        })
    }
}

/// Exponential backoff with jitter for transient errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Attempts in all before giving up (at least 1).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 50 ms doubling to 5 s, 10 attempts (about 20 s of trying).
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            max_attempts: 10,
        }
    }
}

impl RetryPolicy {
    /// backon's exponential backoff for this policy: `initial`, doubling, capped at
    /// `max_delay`, with random jitter (backon adds up to the delay again, so it
    /// starts from half: each delay lies between half and all of `initial * 2^(a-1)`,
    /// capped); one delay per retry, `max_attempts - 1` in all.
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.initial / 2)
            .with_max_delay(self.max_delay / 2)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
    }

    /// The delays between attempts, in order (see [`RetryPolicy::backoff`]).
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        self.backoff().build()
    }

    /// Whether another attempt follows failed attempt number `attempt` with `error`.
    pub fn should_retry(&self, attempt: u32, error: &AgentError) -> bool {
        error.is_transient() && attempt < self.max_attempts.max(1)
    }

    /// Run `call` until it succeeds, fails permanently, or attempts run out;
    /// `on_retry(attempt, error)` is told of every failure that will be retried.
    pub async fn run<T, F, Fut>(
        &self,
        call: F,
        mut on_retry: impl FnMut(u32, &AgentError),
    ) -> Result<T, AgentError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, AgentError>>,
    {
        let mut attempt = 0;
        call.retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(AgentError::is_transient)
            .notify(|e, _| {
                attempt += 1;
                on_retry(attempt, e);
            })
            .await
    }
}

/// The executor's own probe of a link `@executor -> peer`: a real mTLS handshake to
/// the peer's data-plane server with the executor's current client credentials,
/// then `ping\n` / `pong\n` (with TLS 1.3 a rejected client certificate only shows
/// when reading). Returns the TLS or I/O error with its kind.
pub async fn tls_probe(
    config: Arc<rustls::ClientConfig>,
    peer_id: &str,
    peer_address: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    rollover_transport::ping(peer_address, config, peer_id, timeout).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn codes_are_classified() {
        for code in [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded] {
            assert!(AgentError::new(code, "x").is_transient());
        }
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::FailedPrecondition,
            tonic::Code::PermissionDenied,
            // A stale leader's call, refused: retrying cannot help.
            tonic::Code::Aborted,
        ] {
            assert!(!AgentError::new(code, "x").is_transient());
        }
        let e = AgentError::from(tonic::Status::failed_precondition(
            "atomic node cannot stage",
        ));
        assert_eq!(
            e.to_string(),
            "FailedPrecondition: atomic node cannot stage"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 10,
        };
        let within = |d: Duration, base: u64| {
            let base = Duration::from_millis(base);
            d <= base && d >= base / 2
        };
        for _ in 0..20 {
            let delays: Vec<Duration> = p.delays().collect();
            assert_eq!(delays.len(), 9, "one delay per retry");
            for (d, base) in delays
                .iter()
                .zip([100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000])
            {
                assert!(within(*d, base), "{d:?} for {base} ms");
            }
        }
        let p = RetryPolicy {
            max_attempts: 5,
            ..p
        };
        let transient = AgentError::new(tonic::Code::Unavailable, "down");
        assert!(p.should_retry(4, &transient));
        assert!(!p.should_retry(5, &transient));
        assert!(!p.should_retry(1, &AgentError::new(tonic::Code::InvalidArgument, "no")));
    }

    #[tokio::test]
    async fn run_retries_transient_errors_only() {
        let p = RetryPolicy {
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_attempts: 5,
        };
        let calls = AtomicU32::new(0);
        let mut retries = 0;
        let got = p
            .run(
                || async {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    if n < 3 {
                        Err(AgentError::new(tonic::Code::Unavailable, "down"))
                    } else {
                        Ok(n)
                    }
                },
                |_, _| retries += 1,
            )
            .await;
        assert_eq!(got, Ok(3));
        assert_eq!(retries, 2);

        let calls = AtomicU32::new(0);
        let got: Result<(), _> = p
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(AgentError::new(
                        tonic::Code::PermissionDenied,
                        "not @executor",
                    ))
                },
                |_, _| {},
            )
            .await;
        assert_eq!(got.unwrap_err().code, tonic::Code::PermissionDenied);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unreachable_agent_is_transient() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let agent = GrpcConnector::plaintext()
            .timeout(Duration::from_secs(2))
            .connect("gw", Some(&address))
            .unwrap();
        let e = agent.get_state().await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(
            GrpcConnector::plaintext()
                .connect("gw", None)
                .err()
                .unwrap()
                .message
                .contains("no agent address")
        );
    }
}
