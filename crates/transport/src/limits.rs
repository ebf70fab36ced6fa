//! What one caller may cost a server: request size, requests in flight per
//! connection, open connections, and how long a connection may sit idle.
//!
//! * Request size is checked by tonic from the gRPC frame header, before the message
//!   is buffered, so an oversized request costs the server a few bytes, not its size
//!   (each service applies [`ServerLimits::max_request_bytes`] with
//!   `max_decoding_message_size`).
//! * Requests in flight per connection: HTTP/2 `MAX_CONCURRENT_STREAMS` tells clients
//!   the limit, and tonic's per-connection concurrency limit holds any excess until a
//!   slot frees ([`ServerLimits::server`]).
//! * Connections: beyond [`ServerLimits::max_connections`] open at once, a new one is
//!   closed as soon as it is accepted ([`ServerLimits::guard`]).
//! * Idle connections: one on which nothing is read or written for
//!   [`ServerLimits::idle_timeout`] is closed. The server sends no keepalive pings of
//!   its own (they would count as traffic); a client that holds a quiet stream open
//!   for longer (a WatchRotation of a paused rotation) keeps it with HTTP/2 keepalive
//!   pings, as rollover's own clients do, or reconnects.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Server;
use tonic::transport::server::Connected;

/// A server's limits on its callers (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// The largest request message accepted, in bytes (larger: RESOURCE_EXHAUSTED
    /// or OUT_OF_RANGE from tonic, before the message is read).
    pub max_request_bytes: usize,
    /// Requests served at once on one connection.
    pub max_concurrent_requests: u32,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a connection may see no traffic before it is closed.
    pub idle_timeout: Duration,
}

impl ServerLimits {
    /// Default requests in flight per connection.
    pub const DEFAULT_CONCURRENT_REQUESTS: u32 = 64;
    /// Default open connections.
    pub const DEFAULT_CONNECTIONS: usize = 1024;
    /// Default idle timeout.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

    /// The defaults, with `max_request_bytes`.
    pub const fn with_max_request_bytes(max_request_bytes: usize) -> Self {
        ServerLimits {
            max_request_bytes,
            max_concurrent_requests: Self::DEFAULT_CONCURRENT_REQUESTS,
            max_connections: Self::DEFAULT_CONNECTIONS,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// A tonic server builder with the per-connection limits set.
    pub fn server(&self) -> Server {
        let requests = self.max_concurrent_requests.max(1);
        Server::builder()
            .concurrency_limit_per_connection(requests as usize)
            .max_concurrent_streams(requests)
            .http2_keepalive_interval(None)
            .tcp_nodelay(true)
    }

    /// `incoming` with at most [`Self::max_connections`] connections open at once
    /// (an excess one is dropped, which closes it) and each closed after
    /// [`Self::idle_timeout`] without traffic.
    pub fn guard<S, E, I>(
        &self,
        incoming: I,
    ) -> impl Stream<Item = Result<Guarded<S>, E>> + use<S, E, I>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        I: Stream<Item = Result<S, E>>,
    {
        let open = Arc::new(Semaphore::new(self.max_connections.max(1)));
        let (max, idle) = (self.max_connections, self.idle_timeout);
        incoming.filter_map(move |accepted| match accepted {
            Err(e) => Some(Err(e)),
            Ok(conn) => match open.clone().try_acquire_owned() {
                Ok(permit) => Some(Ok(Guarded::new(conn, permit, idle))),
                Err(_) => {
                    tracing::warn!(max, "connection refused: too many open connections");
                    None
                }
            },
        })
    }
}

/// A connection counted against [`ServerLimits::max_connections`] (until dropped)
/// and closed after [`ServerLimits::idle_timeout`] without traffic.
pub struct Guarded<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
    idle: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl<S> Guarded<S> {
    fn new(inner: S, permit: OwnedSemaphorePermit, timeout: Duration) -> Self {
        Guarded {
            inner,
            _permit: permit,
            idle: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `Err` once the connection has been idle too long; registers for the wake-up.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connection idle for {:?}", self.timeout),
            )),
            Poll::Pending => Ok(()),
        }
    }

    fn active(&mut self) {
        let deadline = Instant::now() + self.timeout;
        self.idle.as_mut().reset(deadline);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.active(),
            Poll::Pending => this.check_idle(cx)?,
            _ => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        match &polled {
            Poll::Ready(Ok(n)) if *n > 0 => this.active(),
            Poll::Pending => this.check_idle(cx)?,
            _ => {}
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S> std::fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("idle_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_stream::wrappers::TcpListenerStream;

    fn limits(max_connections: usize, idle: Duration) -> ServerLimits {
        ServerLimits {
            max_connections,
            idle_timeout: idle,
            ..ServerLimits::with_max_request_bytes(1024)
        }
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_busy_ones_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let guarded = limits(8, Duration::from_millis(300)).guard(TcpListenerStream::new(listener));
        tokio::spawn(async move {
            let mut guarded = Box::pin(guarded);
            while let Some(Ok(mut conn)) = guarded.next().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    // Echo until the connection fails (idle) or closes.
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        // Busy: a byte every 100 ms for a second keeps the connection.
        let mut busy = TcpStream::connect(addr).await.unwrap();
        for _ in 0..10 {
            busy.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            busy.read_exact(&mut one).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Idle: closed by the server after 300 ms.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        // Ends (EOF or reset) instead of waiting for data that never comes.
        let _ = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest))
            .await
            .expect("the idle connection is closed");
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let guarded = limits(2, Duration::from_secs(60)).guard(TcpListenerStream::new(listener));
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut guarded = Box::pin(guarded);
            while let Some(Ok(conn)) = guarded.next().await {
                // Held open until the test ends.
                let _ = tx.send(conn).await;
            }
        });
        let (mut kept, mut served) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            kept.push(TcpStream::connect(addr).await.unwrap());
            // The server side holds its permit until dropped: keep it.
            served.push(rx.recv().await.expect("accepted"));
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut rest))
            .await
            .expect("the third connection is closed at once");
        assert!(read.map(|n| n == 0).unwrap_or(true));
        drop((kept, served));
    }
}
