//! Fixtures shared by the cross-crate tests in `tests/`: roots and credentials, real
//! agents, planner and executor servers on 127.0.0.1 port 0 that stop when told,
//! bounded calls, the check every refused call must pass, and the private-key
//! material a response must never contain.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rollover_agent::{Agent, AgentConfig, AgentHandle, ControlCreds, single_root_credentials};
use rollover_core::Mode;
use rollover_executor::{Executor, ExecutorConfig, RetryPolicy, ServeOptions};
use rollover_pki::{KeyAlg, LiveCredentials, RootCa, Validity};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub use rollover_agent::EXECUTOR_ID;

/// The rotated CA of every fixture fleet.
pub const CA: &str = "corp";

/// A fresh root `CN=<name> gen <generation>`, valid from an hour ago for a year.
pub fn root(name: &str, generation: u32) -> RootCa {
    RootCa::generate(name, generation, KeyAlg::default(), Validity::default())
        .expect("root generation")
}

/// Live credentials trusting, holding and presenting `ca` alone, as `id`.
pub fn creds(id: &str, ca: &RootCa) -> Arc<LiveCredentials> {
    LiveCredentials::new(single_root_credentials(id, ca, Validity::default()).expect("leaf"))
        .expect("credentials")
}

/// 127.0.0.1 port 0.
pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

/// Bootstraps node `id` in `dir` from `old` (unless already there) and starts its
/// agent on 127.0.0.1 port 0.
pub async fn start_agent(
    dir: &Path,
    id: &str,
    mode: Mode,
    old: &RootCa,
    control: ControlCreds,
) -> AgentHandle {
    if !rollover_agent::is_bootstrapped(dir) {
        rollover_agent::bootstrap(dir, id, mode, old, Validity::default()).expect("bootstrap");
    }
    Agent::start(AgentConfig {
        id: id.into(),
        mode,
        state_dir: dir.to_path_buf(),
        state_files: None,
        data_listen: localhost(),
        control_listen: localhost(),
        control,
        limits: rollover_agent::DEFAULT_LIMITS,
        chains: true,
    })
    .await
    .expect("agent start")
}

/// A server task on 127.0.0.1 that stops when [`Server::stop`] is called (or with
/// its runtime).
pub struct Server {
    /// Where it listens (`host:port`).
    pub addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

impl Server {
    /// Stops the server gracefully; fails if it had stopped with an error, or
    /// panicked, before.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops within 10 s")
            .expect("server task did not panic");
        result.expect("server ran without error");
    }

    /// Whether the server task is still running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// A lazy plaintext channel to it.
    pub fn channel(&self) -> Channel {
        rollover_transport::plain_channel(&self.addr).expect("loopback channel")
    }
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind(localhost()).await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    (listener, addr)
}

/// The real planner (`rollover_planner::serve`, plaintext) on 127.0.0.1 port 0.
pub async fn start_planner() -> Server {
    let (listener, addr) = bind().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        rollover_planner::serve(listener, async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

/// The executor's gRPC service (`rollover_executor::serve`, plaintext) on 127.0.0.1
/// port 0, around an executor opened from `config`.
pub async fn start_executor(config: ExecutorConfig) -> (Server, Executor) {
    let executor = Executor::open(config).expect("executor opens");
    let (listener, addr) = bind().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = executor.clone();
    let task = tokio::spawn(async move {
        let options = ServeOptions {
            tls: None,
            metrics: None,
            ..Default::default()
        };
        rollover_executor::serve(listener, serving, options, async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    let server = Server {
        addr,
        stop: Some(stop),
        task,
    };
    (server, executor)
}

/// Quick retries, so rotations of unreachable fleets fail in well under a second.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_attempts: 3,
    }
}

/// `call`, or a panic naming `what` if it takes longer than `limit`: no call may hang.
pub async fn bounded<T>(what: &str, limit: Duration, call: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, call).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no answer within {limit:?} (hang)"),
    }
}

/// The codes a service may refuse bad input with: each says what is wrong with the
/// request, that what it names does not exist, or that it is too big.
pub const CLEAR_CODES: [Code; 5] = [
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
    Code::OutOfRange,
];

/// Why `result` is neither an answer nor a refusal with a clear code and a non-empty
/// message; `None` when it is one of those.
pub fn unclear<T>(result: &Result<T, Status>) -> Option<String> {
    let status = result.as_ref().err()?;
    if !CLEAR_CODES.contains(&status.code()) {
        return Some(format!(
            "unclear status {:?}: {:?} ({status:?})",
            status.code(),
            status.message()
        ));
    }
    if status.message().trim().is_empty() {
        return Some(format!("{:?} without a message", status.code()));
    }
    None
}

/// Panics unless `result` is an answer or a clear refusal; the refusal's code.
pub fn check_clear<T>(what: &str, result: &Result<T, Status>) -> Option<Code> {
    if let Some(why) = unclear(result) {
        panic!("{what}: {why}");
    }
    result.as_ref().err().map(Status::code)
}

/// Panics unless `result` is a refusal with a clear code and a non-empty message.
pub fn refused<T: std::fmt::Debug>(what: &str, result: &Result<T, Status>) -> Code {
    match check_clear(what, result) {
        Some(code) => code,
        None => panic!("{what}: accepted, expected a refusal: {result:?}"),
    }
}

/// Whether gRPC health reports `service` ("" for the whole server) SERVING.
pub async fn serving(channel: Channel, service: &str) -> bool {
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await;
    matches!(answer, Ok(r) if r.get_ref().status() == ServingStatus::Serving)
}

/// Counts the inputs a test sent, by outcome.
#[derive(Debug, Default)]
pub struct Tally {
    /// Calls answered normally.
    pub ok: AtomicU64,
    /// Calls refused with a clear status.
    pub refused: AtomicU64,
    /// Random byte strings prost refused to decode as the request (never sent).
    pub undecodable: AtomicU64,
}

impl Tally {
    /// Counts one call's outcome.
    pub fn count<T>(&self, result: &Result<T, Status>) {
        let counter = if result.is_ok() {
            &self.ok
        } else {
            &self.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one byte string prost would not decode.
    pub fn undecodable(&self) {
        self.undecodable.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls sent so far.
    pub fn sent(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.refused.load(Ordering::Relaxed)
    }

    /// One line for the test log (run with `--nocapture` to see it).
    pub fn report(&self, service: &str) {
        eprintln!(
            "bad input: {service}: {} inputs sent ({} refused with a clear status, {} answered); \
             {} more random byte strings were not decodable as requests",
            self.sent(),
            self.refused.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
            self.undecodable.load(Ordering::Relaxed),
        );
    }
}

/// What private key material looks like on the wire: the PEM tag, and for each given
/// key (PKCS#8) the whole DER, its raw 32-byte secret and that secret in hex.
pub struct KeyNeedles(Vec<(String, Vec<u8>)>);

impl KeyNeedles {
    /// Needles for the `PRIVATE KEY` blocks in `pems` (other blocks are skipped).
    pub fn new<'a>(pems: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles = vec![("the PEM tag".to_string(), b"PRIVATE KEY".to_vec())];
        for (n, text) in pems.into_iter().enumerate() {
            for block in pem::parse_many(text).expect("PEM") {
                if block.tag() != "PRIVATE KEY" {
                    continue;
                }
                let der = block.contents().to_vec();
                let secret = pkcs8_secret(&der).expect("a P-256 or Ed25519 PKCS#8 key");
                needles.push((
                    format!("key #{n}: secret in hex"),
                    hex::encode(&secret).into(),
                ));
                needles.push((format!("key #{n}: secret"), secret));
                needles.push((format!("key #{n}: PKCS#8"), der));
            }
        }
        KeyNeedles(needles)
    }

    /// How many keys (besides the PEM tag) are looked for.
    pub fn keys(&self) -> usize {
        (self.0.len() - 1) / 3
    }

    /// The first needle found in `bytes`, if any.
    pub fn find(&self, bytes: &[u8]) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, needle)| bytes.windows(needle.len()).any(|w| w == needle.as_slice()))
            .map(|(name, _)| name.as_str())
    }
}

/// The raw secret of a PKCS#8 key: the 32-byte scalar of an EC key
/// (`ECPrivateKey { version 1, OCTET STRING(32) .. }`) or the Ed25519 seed
/// (`OCTET STRING { OCTET STRING(32) }`).
fn pkcs8_secret(der: &[u8]) -> Option<Vec<u8>> {
    const EC: [u8; 5] = [0x02, 0x01, 0x01, 0x04, 0x20];
    const ED25519: [u8; 4] = [0x04, 0x22, 0x04, 0x20];
    let after = |pattern: &[u8]| {
        der.windows(pattern.len())
            .position(|w| w == pattern)
            .map(|at| at + pattern.len())
            .and_then(|start| der.get(start..start + 32))
            .map(<[u8]>::to_vec)
    };
    after(&EC).or_else(|| after(&ED25519))
}
