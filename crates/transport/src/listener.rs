//! Where a server's TCP connections come from: a listener of its own, or a listener
//! shared by many servers that routes each connection by the name its client asked
//! for in the TLS ClientHello (SNI).
//!
//! A node serves on listeners of its own. A simulator hosting thousands of nodes in
//! one process cannot: two listening sockets per node would exhaust the process's file
//! descriptors (and loopback ports) long before 10,000 nodes. An [`SniRouter`] lets
//! them share one listener per plane instead. It only peeks at the ClientHello to
//! read the name, then hands the untouched TCP stream to the server registered under
//! it, which runs its own, unchanged, TLS handshake.
//!
//! The router accepts on a thread of its own, with a long backlog: one listener now
//! takes every node's connections, and an accept loop queued behind a busy runtime's
//! tasks would let the kernel's accept queue overflow (clients then see connect
//! timeouts, which a listener per node never showed).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The shared listener's backlog (the kernel caps it at `net.core.somaxconn`).
const SHARED_BACKLOG: u32 = 4096;
/// Connections queued for one routed server before the router waits for it.
const ROUTED_BACKLOG: usize = 16;
/// Longest ClientHello read to find the server name.
const MAX_HELLO: usize = 16 * 1024;
/// How long a client may take to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A source of accepted TCP connections.
#[derive(Debug)]
pub enum Listener {
    /// The server's own listening socket.
    Tcp(TcpListener),
    /// Connections routed to this server by an [`SniRouter`].
    Routed(RoutedListener),
}

impl Listener {
    /// The next connection and its peer's address.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        match self {
            Listener::Tcp(listener) => listener.accept().await,
            Listener::Routed(routed) => match routed.rx.recv().await {
                Some(conn) => Ok(conn),
                // The router is gone: no connection will come any more.
                None => std::future::pending().await,
            },
        }
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr(),
            Listener::Routed(routed) => Ok(routed.addr),
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Listener::Tcp(listener)
    }
}

/// The connections an [`SniRouter`] routes to one name; unregistered when dropped.
#[derive(Debug)]
pub struct RoutedListener {
    addr: SocketAddr,
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
}

type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<(TcpStream, SocketAddr)>>>>;

/// One shared listener whose connections go to the server registered under the
/// ClientHello's server name. A connection without a name, or with one nobody is
/// registered under (any more), is closed, as a port nobody listens on would refuse
/// it.
#[derive(Debug)]
pub struct SniRouter {
    addr: SocketAddr,
    routes: Routes,
    closed: Arc<AtomicBool>,
}

impl SniRouter {
    /// Listen on `addr` (e.g. `127.0.0.1:0`) and route its connections (must be
    /// called within a tokio runtime, which runs the routing).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(addr)?;
        let listener = socket.listen(SHARED_BACKLOG)?.into_std()?;
        listener.set_nonblocking(false)?;
        let addr = listener.local_addr()?;
        let routes = Routes::default();
        let closed = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let (r, c) = (routes.clone(), closed.clone());
        std::thread::Builder::new()
            .name("sni-router".into())
            .spawn(move || accept_loop(&listener, &runtime, &r, &c))?;
        Ok(SniRouter {
            addr,
            routes,
            closed,
        })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connections asking for `server_name` (a DNS name, e.g.
    /// `rollover_pki::node_dns_name(id)`), replacing an earlier registration.
    pub fn register(&self, server_name: &str) -> Listener {
        let (tx, rx) = mpsc::channel(ROUTED_BACKLOG);
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(server_name.to_ascii_lowercase(), tx);
        Listener::Routed(RoutedListener {
            addr: self.addr,
            rx,
        })
    }
}

impl Drop for SniRouter {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wake the accept thread, which then sees `closed` and lets the listener go.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept_loop(
    listener: &std::net::TcpListener,
    runtime: &tokio::runtime::Handle,
    routes: &Routes,
    closed: &AtomicBool,
) {
    loop {
        let accepted = listener.accept();
        if closed.load(Ordering::SeqCst) {
            return;
        }
        match accepted.and_then(|(tcp, peer)| {
            tcp.set_nonblocking(true)?;
            Ok((tcp, peer))
        }) {
            Ok((tcp, peer)) => {
                let routes = routes.clone();
                runtime.spawn(async move {
                    let Ok(tcp) = TcpStream::from_std(tcp) else {
                        return;
                    };
                    let name = match tokio::time::timeout(HELLO_TIMEOUT, server_name(&tcp)).await {
                        Ok(Some(name)) => name,
                        _ => return,
                    };
                    let route = routes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&name)
                        .cloned();
                    match route {
                        Some(tx) => {
                            if tx.send((tcp, peer)).await.is_err() {
                                // The server stopped: forget it.
                                let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
                                if routes.get(&name).is_some_and(|t| t.same_channel(&tx)) {
                                    routes.remove(&name);
                                }
                            }
                        }
                        None => tracing::debug!(%peer, name, "no server under this name"),
                    }
                });
            }
            Err(e) => {
                // E.g. out of file descriptors: say so and back off instead of spinning.
                tracing::warn!(error = %e, "shared listener: accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The server name of the ClientHello waiting on `tcp`, read without consuming it.
async fn server_name(tcp: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; MAX_HELLO];
    let mut seen = 0;
    loop {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let mut acceptor = Acceptor::default();
        let mut read = &buf[..n];
        while !read.is_empty() {
            acceptor.read_tls(&mut read).ok()?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return accepted
                    .client_hello()
                    .server_name()
                    .map(str::to_ascii_lowercase);
            }
            Ok(None) if n < MAX_HELLO => {
                // Only part of the ClientHello has arrived: peek again once more does
                // (a peek returns at once while any byte is waiting).
                if n == seen {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                seen = n;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn routes_by_server_name_and_closes_unknown_names() {
        let router = SniRouter::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let mut a = router.register("a.example");
        let mut b = router.register("b.example");
        let addr = router.local_addr();
        let hello = |name: &'static str| async move {
            let root = rustls::RootCertStore::empty();
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(root)
            .with_no_client_auth();
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut conn = rustls::ClientConnection::new(
                Arc::new(config),
                rustls::pki_types::ServerName::try_from(name).unwrap(),
            )
            .unwrap();
            let mut out = Vec::new();
            conn.write_tls(&mut out).unwrap();
            tcp.write_all(&out).await.unwrap();
            tcp
        };
        let _to_b = hello("b.example").await;
        let (mut routed, _) = b.accept().await.unwrap();
        // The ClientHello is still there for the server's own handshake.
        let mut first = [0u8; 1];
        routed.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], 0x16, "a TLS handshake record");
        let mut unknown = hello("nobody.example").await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), unknown.read_to_end(&mut rest))
            .await
            .expect("closed");
        assert!(closed.is_err() || rest.is_empty());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), a.accept())
                .await
                .is_err()
        );
        assert_eq!(a.local_addr().unwrap(), router.local_addr());
    }
}
