//! The node's data plane: an mTLS listener that answers `ping\n` with `pong\n`, and
//! probes, its client half (the exchange itself is `rollover_transport`'s, shared
//! with the executor's own probes).
//!
//! Both use the node's live credentials, so every handshake follows the node's
//! current MODEL §3 state. With TLS 1.3 the client finishes its handshake before the
//! server has checked the client's certificate, so a probe only counts as ok once the
//! `pong` has been read back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollover_pki::{LiveCredentials, fingerprint};
use rollover_proto::v1::{ProbeFailure, ProbeResponse};
use rollover_transport::{
    HANDSHAKE_TIMEOUT, HandshakeStats, Listener, ProbeError, answer_ping, ask_line, connect_tls,
    ping_pong,
};
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long either side waits for the other's line.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest HTTP status line a workload probe reads.
const MAX_STATUS_LINE: u64 = 512;

/// Accepts data-plane connections until `stop` turns true (or its sender is gone).
/// Connections still open then are dropped with the task.
pub(crate) async fn serve(
    mut listener: Listener,
    creds: Arc<LiveCredentials>,
    stats: Arc<HandshakeStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            () = &mut stopping => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // The set current now serves this whole handshake.
                    let acceptor = TlsAcceptor::from(creds.server_config());
                    conns.spawn(answer(acceptor, tcp, peer, stats.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "data plane accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn answer(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    stats: Arc<HandshakeStats>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            stats.record_ok();
            tls
        }
        Ok(Err(e)) => {
            stats.record_failed();
            tracing::debug!(%peer, error = %e, "data plane handshake refused");
            return;
        }
        Err(_) => {
            stats.record_failed();
            tracing::debug!(%peer, "data plane handshake timed out");
            return;
        }
    };
    answer_ping(tls, LINE_TIMEOUT).await;
}

/// What a probe talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Another agent's data plane: `ping` / `pong`.
    DataPlane,
    /// A workload's own TLS endpoint (the topology's `probe:`, e.g. nginx): an HTTP
    /// `GET /`, ok iff an answer comes back that is not an HTTP error (nginx answers
    /// 400 to a client whose certificate it could not take; a refused certificate
    /// ends the connection with a TLS alert).
    Workload,
}

/// Dials `peer_id` at `peer_address` as a client with `creds` and checks that the
/// peer accepted the connection (see [`Target`]).
pub(crate) async fn probe(
    creds: &LiveCredentials,
    peer_id: &str,
    peer_address: &str,
    target: Target,
) -> ProbeResponse {
    let base = creds.client_config();
    let recorder = Arc::new(Recording {
        inner: base.client_auth_cert_resolver.clone(),
        chosen: Mutex::new(None),
    });
    let mut config = (*base).clone();
    config.client_auth_cert_resolver = recorder.clone();

    let mut peer_presented = String::new();
    let outcome = async {
        let mut tls = connect_tls(peer_address, Arc::new(config), peer_id)
            .await
            .map_err(|e| ProbeError::from_error(&e))?;
        if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            peer_presented = fingerprint(cert);
        }
        match target {
            Target::DataPlane => ping_pong(&mut tls, peer_address, LINE_TIMEOUT).await,
            Target::Workload => {
                let ask = format!(
                    "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    rollover_pki::node_dns_name(peer_id)
                );
                let line = ask_line(
                    &mut tls,
                    peer_address,
                    ask.as_bytes(),
                    MAX_STATUS_LINE,
                    LINE_TIMEOUT,
                )
                .await?;
                http_answer(line.trim_end())
            }
        }
    }
    .await;
    let local_presented = recorder
        .chosen
        .lock()
        .map(|c| {
            c.as_ref()
                .and_then(|k| k.cert.first())
                .map(|c| fingerprint(c))
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    let (error, failure) = match outcome {
        Ok(()) => (String::new(), ProbeFailure::Unspecified),
        Err(e) => (e.message, e.kind),
    };
    ProbeResponse {
        ok: failure == ProbeFailure::Unspecified,
        error,
        peer_presented_fingerprint: peer_presented,
        local_presented_fingerprint: local_presented,
        failure: failure as i32,
    }
}

/// Delegates to the live resolver and remembers which leaf it chose.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ResolvesClientCert>,
    chosen: Mutex<Option<Arc<CertifiedKey>>>,
}

impl ResolvesClientCert for Recording {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let chosen = self.inner.resolve(root_hint_subjects, sigschemes);
        if let Ok(mut slot) = self.chosen.lock() {
            slot.clone_from(&chosen);
        }
        chosen
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// A workload's first answer line: an HTTP error status fails the probe; any other
/// answer (a success or redirect status, or a protocol that is not HTTP) passes.
fn http_answer(line: &str) -> Result<(), ProbeError> {
    let status = line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(code) if code >= 400 => Err(ProbeError::new(
            ProbeFailure::BadAnswer,
            format!("the workload answered {line:?}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::http_answer;

    #[test]
    fn http_errors_fail_a_workload_probe() {
        assert!(http_answer("HTTP/1.1 200 OK").is_ok());
        assert!(http_answer("HTTP/1.1 301 Moved Permanently").is_ok());
        assert!(http_answer("+OK redis").is_ok());
        let err = http_answer("HTTP/1.1 400 Bad Request").unwrap_err();
        assert!(err.message.contains("400 Bad Request"), "{err}");
        assert_eq!(err.kind, super::ProbeFailure::BadAnswer);
        assert!(http_answer("HTTP/1.0 503 Service Unavailable").is_err());
    }
}
