//! The data-plane exchange between nodes: after the mTLS handshake the client writes
//! `ping\n` and the server answers `pong\n`.
//!
//! Both halves live here, so the agent's data plane, the agents' probes and the
//! executor's own probes speak one protocol. With TLS 1.3 the client finishes its
//! handshake before the server has checked the client's certificate: a refused client
//! only shows when the client reads, so a probe counts as ok once `pong` is read back.
//! Failures are [`ProbeError`]s, whose kind (a TLS refusal or a connection failure)
//! is what the executor and the simulator decide on.

use std::sync::Arc;
use std::time::Duration;

use rollover_proto::v1::ProbeFailure;
use rustls::ClientConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::client::connect_tls;
use crate::probe_error::ProbeError;

/// What the client sends.
pub const PING: &str = "ping\n";
/// What the server answers.
pub const PONG: &str = "pong\n";
/// Longest line either side of `ping`/`pong` reads.
pub const MAX_LINE: u64 = 64;

/// On an established stream: send `ask`, then read the first line of the answer (at
/// most `limit` bytes) within `timeout`. `addr` names the peer in errors. A peer that
/// closes without a word fails as a connection failure; an I/O error is classified by
/// [`ProbeError::from_error`] (the server's TLS alert refusing this client shows here).
pub async fn ask_line<S>(
    stream: &mut S,
    addr: &str,
    ask: &[u8],
    limit: u64,
    timeout: Duration,
) -> Result<String, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        stream.write_all(ask).await?;
        stream.flush().await?;
        let mut line = String::new();
        BufReader::new(&mut *stream)
            .take(limit)
            .read_line(&mut line)
            .await?;
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(line)) if line.is_empty() => Err(ProbeError::new(
            ProbeFailure::Connection,
            format!("{addr}: connection closed before an answer"),
        )),
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(ProbeError::new(
            ProbeError::from_error(&e).kind,
            format!("tls with {addr}: {e}"),
        )),
        Err(_) => Err(ProbeError::new(
            ProbeFailure::Connection,
            format!("no answer from {addr} within {timeout:?}"),
        )),
    }
}

/// On an established stream: send `ping` and check that `pong` comes back within
/// `timeout` (any other answer: [`ProbeFailure::BadAnswer`]).
pub async fn ping_pong<S>(stream: &mut S, addr: &str, timeout: Duration) -> Result<(), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let line = ask_line(stream, addr, PING.as_bytes(), MAX_LINE, timeout).await?;
    if line == PONG {
        Ok(())
    } else {
        Err(ProbeError::new(
            ProbeFailure::BadAnswer,
            format!("{addr}: expected pong, got {line:?}"),
        ))
    }
}

/// Dial `server_node_id` at `addr` with `config` (see [`connect_tls`]) and exchange
/// `ping`/`pong`, the whole within `timeout`.
pub async fn ping(
    addr: &str,
    config: Arc<ClientConfig>,
    server_node_id: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let work = async {
        let mut tls = connect_tls(addr, config, server_node_id)
            .await
            .map_err(|e| ProbeError::from_error(&e))?;
        ping_pong(&mut tls, addr, timeout).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::new(
                ProbeFailure::Connection,
                format!("{addr}: timed out after {timeout:?}"),
            ))
        })
}

/// The server half, on an accepted stream: read one line within `timeout` and, if it
/// is `ping`, answer `pong` and close. Anything else closes without an answer.
pub async fn answer_ping<S>(stream: S, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    let mut limited = (&mut stream).take(MAX_LINE);
    let read = limited.read_line(&mut line);
    if let Ok(Ok(_)) = tokio::time::timeout(timeout, read).await
        && line == PING
    {
        let inner = stream.get_mut();
        let _ = inner.write_all(PONG.as_bytes()).await;
        let _ = inner.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ping_is_answered_with_pong() {
        let (mut client, server) = tokio::io::duplex(256);
        let served = tokio::spawn(answer_ping(server, Duration::from_secs(5)));
        ping_pong(&mut client, "peer", Duration::from_secs(5))
            .await
            .unwrap();
        served.await.unwrap();
    }

    #[tokio::test]
    async fn silence_is_a_connection_failure() {
        let (mut client, server) = tokio::io::duplex(256);
        drop(server);
        let e = ping_pong(&mut client, "peer", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ProbeFailure::Connection, "{e}");
        assert!(!e.is_refusal());

        // A server that reads but never answers: the client gives up after `timeout`.
        let (mut client, _server) = tokio::io::duplex(256);
        let e = ping_pong(&mut client, "peer", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ProbeFailure::Connection, "{e}");
        assert!(e.message.contains("no answer from peer"), "{e}");
    }

    #[tokio::test]
    async fn a_wrong_answer_is_a_bad_answer() {
        let (mut client, mut server) = tokio::io::duplex(256);
        let served = tokio::spawn(async move {
            let mut buf = [0u8; 5];
            server.read_exact(&mut buf).await.unwrap();
            server.write_all(b"nope\n").await.unwrap();
        });
        let e = ping_pong(&mut client, "peer", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ProbeFailure::BadAnswer, "{e}");
        assert!(e.message.contains("nope"), "{e}");
        served.await.unwrap();
    }

    #[tokio::test]
    async fn the_server_half_ignores_anything_but_ping() {
        let (mut client, server) = tokio::io::duplex(256);
        let served = tokio::spawn(answer_ping(server, Duration::from_secs(5)));
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "{got:?}");
        served.await.unwrap();
    }
}
