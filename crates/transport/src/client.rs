//! Clients: tonic channels whose every new connection runs an mTLS handshake with the
//! credentials current at connect time, and the same handshake for raw connections.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rollover_pki::{LiveCredentials, node_dns_name};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{ALPN_H2, HANDSHAKE_TIMEOUT, TransportError};

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazy channel to the gRPC server at `addr` (`host:port`, or `http://host:port`),
/// over mTLS with `creds`, expecting the server to be `server_node_id`.
///
/// Nothing is dialled until the first call. Each new connection (the first, and any
/// reconnect) dials TCP and handshakes with the credentials current at that moment:
/// `creds.client_config()` of that moment (plus ALPN `h2`), verifying the server's certificate as `node_dns_name(server_node_id)`.
pub fn tls_channel(
    addr: &str,
    creds: Arc<LiveCredentials>,
    server_node_id: &str,
) -> Result<Channel, TransportError> {
    let authority = authority(addr)?;
    let connector = LiveTlsConnector {
        creds,
        server_name: server_name(server_node_id)?,
    };
    Ok(endpoint(&authority)?.connect_with_connector_lazy(connector))
}

/// A lazy plaintext channel to `addr`, which must be a loopback address (an IP in
/// 127.0.0.0/8 or `::1`, or `localhost`).
pub fn plain_channel(addr: &str) -> Result<Channel, TransportError> {
    let authority = authority(addr)?;
    let uri: Uri = format!("http://{authority}")
        .parse()
        .map_err(|e| bad(addr, e))?;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(TransportError::NotLoopback {
            addr: addr.to_owned(),
        });
    }
    Ok(endpoint(&authority)?.connect_lazy())
}

/// Dials `addr` (`host:port`) and completes a TLS handshake with `config`, verifying
/// the server as `node_dns_name(server_node_id)`: the client half of a data-plane link
/// or a probe. Both steps are bounded by a timeout.
///
/// With TLS 1.3 the client's handshake completes before the server has checked the
/// client's certificate: a rejection shows up on the first read.
pub async fn connect_tls(
    addr: &str,
    config: Arc<ClientConfig>,
    server_node_id: &str,
) -> Result<TlsStream<TcpStream>, TransportError> {
    let name = server_name(server_node_id)?;
    dial(authority(addr)?, config, name).await
}

async fn dial(
    authority: String,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> Result<TlsStream<TcpStream>, TransportError> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => {
            return Err(TransportError::Connect {
                addr: authority,
                source,
            });
        }
        Err(_) => {
            return Err(TransportError::Timeout {
                what: "connect",
                addr: authority,
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    let handshake = TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(source)) => Err(TransportError::Handshake {
            addr: authority,
            source,
        }),
        Err(_) => Err(TransportError::Timeout {
            what: "tls handshake",
            addr: authority,
        }),
    }
}

/// The tower connector behind [`tls_channel`].
#[derive(Clone)]
struct LiveTlsConnector {
    creds: Arc<LiveCredentials>,
    server_name: ServerName<'static>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<TlsStream<TcpStream>>, TransportError>> + Send>>;

impl tower::Service<Uri> for LiveTlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = TransportError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The set current at dial time, for the whole handshake.
        let mut config = (*self.creds.client_config()).clone();
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        let (config, name) = (Arc::new(config), self.server_name.clone());
        Box::pin(async move {
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .ok_or_else(|| bad(&uri.to_string(), "no host:port"))?;
            let tls = dial(authority, config, name).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

fn endpoint(authority: &str) -> Result<Endpoint, TransportError> {
    Ok(Endpoint::from_shared(format!("http://{authority}"))?.connect_timeout(CONNECT_TIMEOUT))
}

fn server_name(node_id: &str) -> Result<ServerName<'static>, TransportError> {
    ServerName::try_from(node_dns_name(node_id))
        .map_err(|_| TransportError::ServerName(node_id.to_owned()))
}

/// `host:port` out of `host:port`, `http://host:port` or `https://host:port`.
fn authority(addr: &str) -> Result<String, TransportError> {
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| addr.strip_prefix(scheme))
        .unwrap_or(addr);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let uri: Uri = format!("http://{rest}").parse().map_err(|e| bad(addr, e))?;
    match (uri.authority(), uri.path()) {
        (Some(auth), "/") if auth.port_u16().is_some() && !auth.host().is_empty() => {
            Ok(auth.as_str().to_owned())
        }
        _ => Err(bad(addr, "expected host:port")),
    }
}

fn bad(addr: &str, reason: impl ToString) -> TransportError {
    TransportError::Address {
        addr: addr.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        for (given, want) in [
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("http://localhost:7/", "localhost:7"),
            ("https://[::1]:9", "[::1]:9"),
        ] {
            assert_eq!(authority(given).unwrap(), want);
        }
        for bad in ["127.0.0.1", "", "http://h:1/path", "ftp://h:1", "h:port"] {
            assert!(authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_channels_are_loopback_only() {
        assert!(matches!(
            plain_channel("10.0.0.1:80"),
            Err(TransportError::NotLoopback { .. })
        ));
        assert!(matches!(
            plain_channel("example.com:80"),
            Err(TransportError::NotLoopback { .. })
        ));
    }
}
