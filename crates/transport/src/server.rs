//! Serving tonic over tokio-rustls with live credentials, and who the caller is.
//!
//! [`TlsIncoming`] owns the listener's accept loop. Each accepted TCP connection gets
//! its TLS handshake in a task of its own (bounded by [`HANDSHAKE_TIMEOUT`]), so a slow
//! or silent client never holds up the next accept; only completed handshakes reach
//! tonic. Dropping the stream (tonic does so on shutdown) stops the loop and every
//! handshake still running.
//!
//! tonic runs each accepted connection in a task of its own, which outlives the
//! server future if that is aborted or dropped. So that nothing is left behind, every
//! connection is a [`ServerTlsStream`] tied to the incoming's [`ConnectionCloser`]:
//! when the closer is dropped, every connection still open fails its next read or
//! write, and tonic's task ends. [`serve_tls`] holds the closer for as long as it
//! runs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rollover_pki::{LiveCredentials, node_id_from_cert};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::{Connected, Router, TcpConnectInfo, TlsConnectInfo};

use crate::listener::Listener;
use crate::{ALPN_H2, ServerLimits, TransportError};

/// How long an accepted connection may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Completed connections waiting for tonic to pick them up.
const BACKLOG: usize = 64;

/// Counts of server-side TLS handshakes, shareable with metrics.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl HandshakeStats {
    /// Handshakes that completed (the client's certificate verified).
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Handshakes that failed or timed out.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Counts one completed handshake.
    pub fn record_ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failed handshake.
    pub fn record_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stream of TLS connections accepted on a listener with a node's live server
/// config; the incoming side of tonic's `serve_with_incoming*`.
///
/// Every connection is accepted with the config of the credential set current when it
/// arrives (`creds.server_config()` with ALPN `h2` added), kept for its whole handshake,
/// so credential swaps apply to every new handshake and never split one.
pub struct TlsIncoming {
    rx: mpsc::Receiver<ServerTlsStream>,
    task: JoinHandle<()>,
    local_addr: Option<SocketAddr>,
    closer: Option<watch::Sender<bool>>,
}

impl TlsIncoming {
    /// Starts accepting on `listener` (must be called within a tokio runtime).
    pub fn new(listener: impl Into<Listener>, creds: &Arc<LiveCredentials>) -> Self {
        Self::with_stats(listener, creds, Arc::default(), HANDSHAKE_TIMEOUT)
    }

    /// [`TlsIncoming::new`], counting handshakes into `stats`, each bounded by `timeout`.
    pub fn with_stats(
        listener: impl Into<Listener>,
        creds: &Arc<LiveCredentials>,
        stats: Arc<HandshakeStats>,
        timeout: Duration,
    ) -> Self {
        let listener = listener.into();
        let creds = creds.clone();
        let local_addr = listener.local_addr().ok();
        let (tx, rx) = mpsc::channel(BACKLOG);
        let (closer, closed) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, creds, tx, stats, timeout, closed));
        Self {
            rx,
            task,
            local_addr,
            closer: Some(closer),
        }
    }

    /// The closer of every connection this stream accepts (first call only; `None`
    /// afterwards). Hold it for as long as the server runs: dropping it (or calling
    /// [`ConnectionCloser::close`]) fails every connection still open. Without it,
    /// connections end only when their clients close them.
    pub fn closer(&mut self) -> Option<ConnectionCloser> {
        self.closer.take().map(ConnectionCloser)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
}

impl Stream for TlsIncoming {
    type Item = Result<ServerTlsStream, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for TlsIncoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIncoming")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Closes every connection of a [`TlsIncoming`] when dropped (see
/// [`TlsIncoming::closer`]).
#[derive(Debug)]
#[must_use = "dropping the closer closes every connection at once"]
pub struct ConnectionCloser(watch::Sender<bool>);

impl ConnectionCloser {
    /// Fails every connection still open on its next read or write.
    pub fn close(&self) {
        self.0.send_replace(true);
    }
}

impl Drop for ConnectionCloser {
    fn drop(&mut self) {
        self.close();
    }
}

type Closed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server-side TLS connection from [`TlsIncoming`]: a tokio-rustls stream that
/// fails once its [`ConnectionCloser`] closes. tonic sees the same connection info as
/// for a plain tokio-rustls stream, so `Request::peer_certs` and [`peer_node_id`] work.
pub struct ServerTlsStream {
    inner: TlsStream<TcpStream>,
    /// Completes when the closer fires; `None` once it has.
    closed: Option<Closed>,
}

impl ServerTlsStream {
    fn new(inner: TlsStream<TcpStream>, mut closed: watch::Receiver<bool>) -> Self {
        let closed: Closed = Box::pin(async move {
            // A closer dropped without closing (never taken) never closes.
            if closed.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        Self {
            inner,
            closed: Some(closed),
        }
    }

    /// The underlying tokio-rustls stream.
    pub fn get_ref(&self) -> &TlsStream<TcpStream> {
        &self.inner
    }

    /// `Err` once the closer has fired.
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match &mut self.closed {
            None => Err(closed_error()),
            Some(closed) => match closed.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.closed = None;
                    Err(closed_error())
                }
                Poll::Pending => Ok(()),
            },
        }
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "server stopped")
}

impl AsyncRead for ServerTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_open(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for ServerTlsStream {
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl std::fmt::Debug for ServerTlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsStream")
            .field("open", &self.closed.is_some())
            .finish_non_exhaustive()
    }
}

async fn accept_loop(
    mut listener: Listener,
    creds: Arc<LiveCredentials>,
    tx: mpsc::Sender<ServerTlsStream>,
    stats: Arc<HandshakeStats>,
    timeout: Duration,
    closed: watch::Receiver<bool>,
) {
    // Dropped with this task (on abort too), which aborts every pending handshake.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = tx.closed() => break,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let mut config = (*creds.server_config()).clone();
                    config.alpn_protocols = vec![ALPN_H2.to_vec()];
                    let acceptor = TlsAcceptor::from(Arc::new(config));
                    let (tx, stats) = (tx.clone(), stats.clone());
                    let closed = closed.clone();
                    handshakes.spawn(async move {
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                stats.record_ok();
                                let _ = tx.send(ServerTlsStream::new(tls, closed)).await;
                            }
                            Ok(Err(e)) => {
                                stats.record_failed();
                                tracing::debug!(%peer, error = %e, "tls handshake failed");
                            }
                            Err(_) => {
                                stats.record_failed();
                                tracing::debug!(%peer, "tls handshake timed out");
                            }
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves `router` over mTLS on `listener` until `shutdown` completes, then stops
/// accepting and waits for open connections to finish their requests.
///
/// The server presents the node's current leaf and requires a client certificate that
/// verifies against its current `server_roots`; credential swaps apply to every new
/// connection. Handlers read the caller's identity with [`peer_node_id`].
///
/// `limits` bounds open connections and idle time (build the router from
/// [`ServerLimits::server`] for the per-connection limits).
pub async fn serve_tls<F>(
    router: Router,
    listener: TcpListener,
    creds: Arc<LiveCredentials>,
    limits: &ServerLimits,
    shutdown: F,
) -> Result<(), TransportError>
where
    F: Future<Output = ()>,
{
    let mut incoming = TlsIncoming::new(listener, &creds);
    // Dropped when this future ends or is dropped: no connection outlives the server.
    let _closer = incoming.closer();
    router
        .serve_with_incoming_shutdown(limits.guard(incoming), shutdown)
        .await?;
    Ok(())
}

/// Serves `router` in plaintext on `listener` until `shutdown` completes. Refuses a
/// listener that is not bound to a loopback address: plaintext is for local use only.
pub async fn serve_plain<F>(
    router: Router,
    listener: TcpListener,
    limits: &ServerLimits,
    shutdown: F,
) -> Result<(), TransportError>
where
    F: Future<Output = ()>,
{
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(TransportError::NotLoopback {
            addr: addr.to_string(),
        });
    }
    router
        .serve_with_incoming_shutdown(limits.guard(TcpListenerStream::new(listener)), shutdown)
        .await?;
    Ok(())
}

/// The node id (certificate CN) of the verified client that sent `req`, when it came
/// over a connection accepted by [`serve_tls`] or [`TlsIncoming`]; `None` otherwise
/// (plaintext, or a certificate without exactly one CN).
pub fn peer_node_id<T>(req: &tonic::Request<T>) -> Option<String> {
    let certs = req.peer_certs()?;
    node_id_from_cert(certs.first()?)
}
