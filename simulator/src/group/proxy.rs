//! [`CutProxy`]: a TCP relay between one simulated executor and PostgreSQL, so a
//! chaotic run can cut that executor's database connections (every open one dropped,
//! new ones refused for a while) without touching the other executors' links or the
//! server itself: what a leader sees when its network to the database fails.
//!
//! Relays run on a runtime of their own, like a network outside the process: the
//! executor's journal calls block the thread they are made on until the database
//! answers, and a relay that needed that same runtime to answer could wait behind
//! them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollover_core::synth::SeededRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::SimError;

/// A relay to `upstream` on a loopback port of its own.
pub struct CutProxy {
    addr: SocketAddr,
    cut_until: Arc<Mutex<Option<Instant>>>,
    cuts: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open relays end with the generation channel.
        self.cuts.send_modify(|n| *n += 1);
    }
}

fn is_cut(cut_until: &Mutex<Option<Instant>>) -> bool {
    let until = *cut_until.lock().unwrap_or_else(|p| p.into_inner());
    until.is_some_and(|t| Instant::now() < t)
}

/// How a slow relay holds data back: each chunk the executor sends waits a time drawn
/// in `0..=max` from a generator seeded with `seed` and the connection's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slowness {
    /// The longest wait.
    pub max: Duration,
    /// The seed of the waits.
    pub seed: u64,
}

impl CutProxy {
    /// Listen on a fresh loopback port and relay every connection to `upstream`,
    /// on the runtime of `relays`.
    pub fn start(relays: &Handle, upstream: SocketAddr) -> Result<CutProxy, SimError> {
        Self::start_slow(relays, upstream, None)
    }

    /// [`CutProxy::start`], holding back what the executor sends as `slow` says.
    pub fn start_slow(
        relays: &Handle,
        upstream: SocketAddr,
        slow: Option<Slowness>,
    ) -> Result<CutProxy, SimError> {
        let bound = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        bound.set_nonblocking(true)?;
        let addr = bound.local_addr()?;
        let cut_until = Arc::new(Mutex::new(None));
        let (cuts, _) = watch::channel(0u64);
        let task = {
            let cut_until = cut_until.clone();
            let cuts = cuts.clone();
            relays.spawn(async move {
                let Ok(listener) = TcpListener::from_std(bound) else {
                    return;
                };
                let mut accepted = 0u64;
                while let Ok((client, _)) = listener.accept().await {
                    if is_cut(&cut_until) {
                        continue; // refused: dropped at once
                    }
                    accepted += 1;
                    let mut cut = cuts.subscribe();
                    let slow =
                        slow.map(|s| (s.max, SeededRng::new(s.seed ^ accepted.rotate_left(32))));
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        match slow {
                            None => tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.changed() => {}
                            },
                            Some((max, rng)) => tokio::select! {
                                _ = relay_slowly(&mut client, &mut server, max, rng) => {}
                                _ = cut.changed() => {}
                            },
                        }
                    });
                }
            })
        };
        Ok(CutProxy {
            addr,
            cut_until,
            cuts,
            task,
        })
    }

    /// Where the relay listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop every relayed connection now and refuse new ones for `length`.
    pub fn cut(&self, length: Duration) {
        *self.cut_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + length);
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// Relay both ways, each chunk from `client` held back a seeded time in `0..=max`.
async fn relay_slowly(
    client: &mut TcpStream,
    server: &mut TcpStream,
    max: Duration,
    mut rng: SeededRng,
) {
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            tokio::time::sleep(max.mul_f64(rng.fraction())).await;
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    };
    let downstream = tokio::io::copy(&mut from_server, &mut to_client);
    tokio::select! {
        () = upstream => {}
        _ = downstream => {}
    }
}

/// The TCP address a `postgres://` URL names (the first host and port).
pub fn upstream_of(url: &str) -> Result<SocketAddr, SimError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| SimError::Setup(format!("--journal {url}: {e}")))?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => {
            return Err(SimError::Setup(format!(
                "--journal {url}: the simulator reaches PostgreSQL over TCP (host:port)"
            )));
        }
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    format!("{host}:{port}")
        .parse()
        .map_err(|_| SimError::Setup(format!("--journal {url}: `{host}` is not an IP address")))
}

/// `url` with its host and port replaced by `addr`.
pub fn through(url: &str, addr: SocketAddr) -> Result<String, SimError> {
    let bad = || {
        SimError::Setup(format!(
            "--journal {url}: expected postgres://user@host:port/db"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = match authority.rfind('@') {
        Some(at) => &authority[..=at],
        None => "",
    };
    Ok(format!("{scheme}://{user}{addr}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_pointed_at_the_relay() {
        let relay: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            through(
                "postgres://rollover@127.0.0.1:5433/db?sslmode=disable",
                relay
            )
            .unwrap(),
            "postgres://rollover@127.0.0.1:4000/db?sslmode=disable"
        );
        assert_eq!(
            through("postgresql://u:p@db.example:5432/x", relay).unwrap(),
            "postgresql://u:p@127.0.0.1:4000/x"
        );
        assert_eq!(
            upstream_of("postgres://u@localhost:5433/db").unwrap(),
            "127.0.0.1:5433".parse().unwrap()
        );
        assert!(through("no-scheme", relay).is_err());
    }

    #[tokio::test]
    async fn a_cut_drops_open_connections_and_refuses_new_ones() {
        let echo = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = CutProxy::start(&Handle::current(), upstream).unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        conn.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        proxy.cut(Duration::from_millis(300));
        let mut rest = Vec::new();
        let n = conn.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "the open connection is closed by the cut");
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = refused.write_all(b"x").await;
        assert_eq!(
            refused.read(&mut buf).await.unwrap_or(0),
            0,
            "refused while cut"
        );

        tokio::time::sleep(Duration::from_millis(350)).await;
        let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
        healed.write_all(b"back").await.unwrap();
        healed.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
    }
}
