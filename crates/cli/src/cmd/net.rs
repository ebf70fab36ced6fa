//! What the commands that run or reach services share: the runtime, graceful shutdown
//! on Ctrl-C / SIGTERM, listen addresses, TLS credentials from PEM files, clients of
//! the executor, private files written owner-only, and gRPC errors as readable ones.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rollover_pki::{CertificateDer, CredentialSet, HeldLeaf, LiveCredentials, NodeKey};
use rollover_proto::v1;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_transport::ServerLimits;
use tonic::transport::Channel;

use crate::status::BadInput;

/// How long a server waits for open calls (e.g. a `rollover rotate` still watching)
/// after a shutdown signal before it exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM, and says which.
pub async fn shutdown_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        () = terminated => "SIGTERM",
    }
}

/// Resolve `--listen ADDR` (`host:port`, e.g. `127.0.0.1:7000`, `[::1]:7000`,
/// `localhost:7000`, `0.0.0.0:7000`) to one socket address. Bad input otherwise.
pub fn listen_addr(flag: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    let bad = |why: String| BadInput(format!("{flag} {addr}: {why}"));
    let mut found = addr
        .to_socket_addrs()
        .map_err(|e| bad(format!("expected host:port ({e})")))?;
    found
        .next()
        .ok_or_else(|| bad("resolves to no address".into()).into())
}

/// Bind a listener, naming the address when it cannot be bound.
pub async fn bind(flag: &str, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{flag} {addr}: cannot listen: {e}"))
}

/// The refusal of plaintext on an address that is not loopback.
pub fn plaintext_refused(what: &str, addr: SocketAddr) -> anyhow::Error {
    BadInput(format!(
        "refusing to serve the {what} in plaintext on {addr}: plaintext is only for loopback \
         addresses (127.0.0.1, ::1); give --tls-cert, --tls-key and --client-ca to serve mTLS"
    ))
    .into()
}

/// `--tls-cert/--tls-key/--client-ca` of a server: mTLS with this identity,
/// accepting clients whose certificates chain to the client CA.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerTls {
    /// This server's certificate (PEM), e.g. from `rollover pki issue`; serves mTLS.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PKCS#8 PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM certificate; a key in the file is ignored) that clients'
    /// certificates must chain to. Also the CA this server trusts when it is a client.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// The credentials, when the flags are given.
    pub fn credentials(&self) -> anyhow::Result<Option<Arc<LiveCredentials>>> {
        match (&self.tls_cert, &self.tls_key, &self.client_ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some(load_credentials(cert, key, ca)?)),
            _ => Ok(None),
        }
    }
}

/// What one caller may cost a server: `--max-request-bytes`,
/// `--max-concurrent-requests`, `--max-connections`, `--idle-timeout`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// The largest request accepted, in bytes; a larger one fails at once
    /// (RESOURCE_EXHAUSTED or OUT_OF_RANGE) from its frame header, before it is read.
    /// Default: 32 MiB for the planner and the executor, 4 MiB for an agent.
    #[arg(long, value_name = "BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Requests served at once on one client connection (HTTP/2 streams); more wait
    /// for a free slot.
    #[arg(long, value_name = "N", default_value_t = ServerLimits::DEFAULT_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: u32,
    /// Client connections open at once; a connection beyond it is closed as soon as it
    /// is accepted.
    #[arg(long, value_name = "N", default_value_t = ServerLimits::DEFAULT_CONNECTIONS)]
    pub max_connections: usize,
    /// Close a connection on which nothing was read or written for this many seconds
    /// (clients holding a quiet stream longer send HTTP/2 keepalive pings, as
    /// rollover's own do).
    #[arg(long, value_name = "SECS", default_value_t = ServerLimits::DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub idle_timeout: u64,
}

impl LimitArgs {
    /// The limits, with `default` for what the flags leave out.
    pub fn limits(&self, default: ServerLimits) -> anyhow::Result<ServerLimits> {
        let bad = |flag: &str, why: &str| BadInput(format!("{flag}: {why}"));
        if self.max_concurrent_requests == 0 {
            return Err(bad("--max-concurrent-requests", "must be at least 1").into());
        }
        if self.max_connections == 0 {
            return Err(bad("--max-connections", "must be at least 1").into());
        }
        if self.idle_timeout == 0 {
            return Err(bad("--idle-timeout", "must be at least 1 second").into());
        }
        let max_request_bytes = self.max_request_bytes.unwrap_or(default.max_request_bytes);
        if max_request_bytes == 0 {
            return Err(bad("--max-request-bytes", "must be at least 1").into());
        }
        Ok(ServerLimits {
            max_request_bytes,
            max_concurrent_requests: self.max_concurrent_requests,
            max_connections: self.max_connections,
            idle_timeout: Duration::from_secs(self.idle_timeout),
        })
    }
}

/// `--tls-cert/--tls-key/--ca/--executor-id` of a client of the executor (each also
/// from its environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientTls {
    /// Client certificate (PEM) to reach an executor served with mTLS.
    #[arg(long, value_name = "FILE", env = "ROLLOVER_TLS_CERT", requires_all = ["tls_key", "ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PKCS#8 PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "ROLLOVER_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM certificate) the executor's certificate must chain to.
    #[arg(long, value_name = "FILE", env = "ROLLOVER_CA", requires = "tls_cert")]
    pub ca: Option<PathBuf>,
    /// The id (certificate CN) of the executor's certificate with mTLS.
    #[arg(
        long,
        value_name = "ID",
        env = "ROLLOVER_EXECUTOR_ID",
        default_value = "executor"
    )]
    pub executor_id: String,
}

/// `--executor URL` and its TLS flags: how a command reaches the executor.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorArgs {
    /// The executor: `host:port` (plaintext, loopback) or `https://host:port` (mTLS).
    /// Several, comma-separated (`A,B,C`), for executors sharing a PostgreSQL journal:
    /// the command uses the first that answers, in order (each member answers reads
    /// from the journal and forwards the rest to the leader), and looks again if it
    /// goes away while following a rotation.
    #[arg(long, value_name = "URL", env = "ROLLOVER_EXECUTOR")]
    pub executor: String,
    #[command(flatten)]
    pub tls: ClientTls,
}

impl ExecutorArgs {
    /// The addresses given, in order.
    pub fn urls(&self) -> Vec<&str> {
        self.executor
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether several executors were given (a group with one leader).
    pub fn is_group(&self) -> bool {
        self.urls().len() > 1
    }

    /// A client of the executor, and its address. With one address the client is
    /// lazy (dialled by its first call, whose error names the address); with several,
    /// the first that answers a health check, in the order given.
    pub async fn connect(&self) -> anyhow::Result<(ExecutorServiceClient<Channel>, String)> {
        let urls = self.urls();
        let [first, ..] = urls.as_slice() else {
            return Err(BadInput("--executor: no address given".into()).into());
        };
        if urls.len() == 1 {
            return Ok((executor_client(first, &self.tls)?, first.to_string()));
        }
        let mut tried = Vec::new();
        for url in urls {
            let channel = executor_channel(url, &self.tls)?;
            match serving(channel.clone()).await {
                Ok(()) => return Ok((client_of(channel), url.to_string())),
                Err(why) => tried.push(format!("{url}: {why}")),
            }
        }
        Err(anyhow::anyhow!(
            "no executor of --executor {} answers: {}",
            self.executor,
            tried.join("; ")
        ))
    }
}

/// Whether the server behind `channel` answers a gRPC health check as serving,
/// within [`rollover_transport::CONNECT_TIMEOUT`].
async fn serving(channel: Channel) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = health.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(rollover_transport::CONNECT_TIMEOUT, check).await {
        Err(_) => Err("no answer in time".into()),
        Ok(Err(status)) => Err(status_detail(&status)),
        Ok(Ok(answer)) if answer.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
        Ok(Ok(_)) => Err("not serving".into()),
    }
}

/// A client of the executor at `url`: mTLS with `tls`'s files when given, else
/// plaintext, which only a loopback address may use. Lazy: nothing is dialled yet.
pub fn executor_client(
    url: &str,
    tls: &ClientTls,
) -> anyhow::Result<ExecutorServiceClient<Channel>> {
    Ok(client_of(executor_channel(url, tls)?))
}

fn client_of(channel: Channel) -> ExecutorServiceClient<Channel> {
    ExecutorServiceClient::new(channel)
        .max_decoding_message_size(rollover_executor::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rollover_executor::MAX_MESSAGE_BYTES)
}

/// The (lazy) channel of [`executor_client`].
fn executor_channel(url: &str, tls: &ClientTls) -> anyhow::Result<Channel> {
    let channel = match (&tls.tls_cert, &tls.tls_key, &tls.ca) {
        (Some(cert), Some(key), Some(ca)) => {
            let creds = load_credentials(cert, key, ca)?;
            rollover_transport::tls_channel(url, creds, &tls.executor_id)
                .map_err(|e| BadInput(format!("--executor {url}: {e}")))?
        }
        _ => {
            if url.starts_with("https://") {
                return Err(BadInput(format!(
                    "--executor {url}: https needs --tls-cert, --tls-key and --ca"
                ))
                .into());
            }
            rollover_transport::plain_channel(url).map_err(|e| {
                BadInput(format!(
                    "--executor {url}: {e}; give --tls-cert, --tls-key and --ca to use mTLS"
                ))
            })?
        }
    };
    Ok(channel)
}

/// Credentials presenting `cert` (with `key`) and trusting the certificates in
/// `ca` both ways. Unreadable or mismatched files are bad input naming them.
pub fn load_credentials(
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> anyhow::Result<Arc<LiveCredentials>> {
    let leaf = certificates(cert)?
        .into_iter()
        .next()
        .expect("certificates() returns at least one");
    let key_text = read_text(key)?;
    let key_pair = NodeKey::from_pem(&key_text)
        .map_err(|e| BadInput(format!("{}: not a PKCS#8 private key: {e}", key.display())))?;
    let roots = certificates(ca)?;
    let set = CredentialSet {
        server_roots: roots.clone(),
        client_roots: roots,
        held: vec![HeldLeaf::new(leaf, key_pair)],
        presents: Some(0),
        ..CredentialSet::default()
    };
    LiveCredentials::new(set).map_err(|e| {
        BadInput(format!(
            "{} with {}: unusable credentials: {e}",
            cert.display(),
            key.display()
        ))
        .into()
    })
}

/// Every CERTIFICATE block of a PEM file (other blocks, e.g. a root's key, are
/// skipped); at least one.
pub fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let text = read_text(path)?;
    let blocks = pem::parse_many(&text)
        .map_err(|e| BadInput(format!("{}: not PEM: {e}", path.display())))?;
    let certs: Vec<_> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect();
    if certs.is_empty() {
        return Err(BadInput(format!("{}: no CERTIFICATE in the file", path.display())).into());
    }
    Ok(certs)
}

/// A file's text; bad input naming it when unreadable.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("{}: cannot read: {e}", path.display())).into())
}

/// Write `text` to `path` readable by its owner only (mode 0600), atomically
/// (a temporary file in the same directory, synced, then renamed over `path`).
/// Refuses to replace an existing file unless `overwrite`.
pub fn write_private(path: &Path, text: &str, overwrite: bool) -> anyhow::Result<()> {
    write_file(path, text, overwrite, 0o600)
}

/// Like [`write_private`] for a file others may read (mode 0644): certificates.
pub fn write_public(path: &Path, text: &str, overwrite: bool) -> anyhow::Result<()> {
    write_file(path, text, overwrite, 0o644)
}

fn write_file(path: &Path, text: &str, overwrite: bool, mode: u32) -> anyhow::Result<()> {
    if !overwrite && path.exists() {
        return Err(BadInput(format!(
            "{}: already exists (pass --force to replace it)",
            path.display()
        ))
        .into());
    }
    let name = path
        .file_name()
        .ok_or_else(|| BadInput(format!("{}: not a file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let cannot = |e: std::io::Error| anyhow::anyhow!("{}: cannot write: {e}", path.display());
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(cannot)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(e));
    }
    Ok(())
}

/// Create `dir` if needed and make it owner-only (0700).
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| anyhow::anyhow!("{}: cannot make it owner-only: {e}", dir.display()))
}

/// GetRotation of `rotation_id` (without its plan) from the executor at `url`, its
/// failures as messages naming the executor.
pub async fn get_rotation(
    client: &mut ExecutorServiceClient<Channel>,
    url: &str,
    rotation_id: &str,
) -> anyhow::Result<v1::RotationStatus> {
    client
        .get_rotation(v1::GetRotationRequest {
            rotation_id: rotation_id.to_string(),
            include_plan: false,
        })
        .await
        .map_err(|s| call_error("executor", url, s))?
        .into_inner()
        .rotation
        .ok_or_else(|| anyhow::anyhow!("executor {url}: GetRotation answered without a rotation"))
}

/// A failed call to the service `service` at `url` as a readable error: unreachable
/// services name the URL and the cause (e.g. connection refused); invalid arguments
/// and unknown rotations are bad input (exit 2).
pub fn call_error(service: &str, url: &str, status: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let detail = status_detail(&status);
    // A plaintext client of an mTLS server fails in several ways depending on timing
    // (h2 protocol error, broken pipe, reset, a cancelled call on a closed connection):
    // each gets the same hint.
    let hint = if url.starts_with("https://") {
        ""
    } else {
        " (if it serves mTLS, use https://host:port with --tls-cert, --tls-key and --ca)"
    };
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => {
            anyhow::anyhow!("cannot reach the {service} at {url}: {detail}{hint}")
        }
        Code::Unknown | Code::Cancelled if std::error::Error::source(&status).is_some() => {
            anyhow::anyhow!("cannot reach the {service} at {url}: {detail}{hint}")
        }
        Code::InvalidArgument | Code::NotFound => BadInput(detail).into(),
        Code::Internal if detail.contains("h2 protocol error") => {
            anyhow::anyhow!("cannot talk to the {service} at {url}: {detail}{hint}")
        }
        code => anyhow::anyhow!("the {service} at {url} answered {code:?}: {detail}"),
    }
}

/// A status's message followed by each cause in its chain not already in it (a
/// transport failure's message is terse; the cause says e.g. "connection refused").
fn status_detail(status: &tonic::Status) -> String {
    let mut detail = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.contains(&text) {
            if !detail.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(&text);
        }
        source = cause.source();
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only_and_not_replaced_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_private(&path, "secret", false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write_private(&path, "other", false).is_err());
        write_private(&path, "other", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "other");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn listen_addresses_resolve() {
        assert!(
            listen_addr("--listen", "127.0.0.1:7000")
                .unwrap()
                .ip()
                .is_loopback()
        );
        assert!(listen_addr("--listen", "localhost:7000").is_ok());
        assert!(listen_addr("--listen", "7000").is_err());
    }
}
