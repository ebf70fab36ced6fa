//! Continuous traffic over every link of the mesh: real curl processes for the
//! curl clients (each request reads its node's files afresh), plain requests to the
//! proxying nginx for the nginx-to-nginx link, every outcome tallied per link.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::nginx::Programs;

/// How a link's requests are made.
#[derive(Debug, Clone)]
pub enum Via {
    /// A curl client node: `curl --cert --key --cacert` from the node's current
    /// snapshot of its exported files (see [`client_reload_script`]).
    Curl {
        /// The client node's directory (holding `live`, `lock`, `wanted`).
        node_dir: PathBuf,
        /// The server's DNS name and mTLS port.
        server_dns: String,
        port: u16,
    },
    /// An nginx client: plain HTTP to its proxy port, which it forwards over mTLS.
    Proxy { plain_port: u16 },
}

/// One link's traffic.
#[derive(Debug, Clone)]
pub struct Route {
    pub client: String,
    pub server: String,
    pub via: Via,
}

/// Per-link counts.
#[derive(Debug, Default)]
pub struct LinkTally {
    /// Requests begun (one at a time per link: at most one more than finished).
    pub started: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub first_errors: Mutex<Vec<String>>,
}

/// Traffic running in the background until [`Traffic::stop`].
pub struct Traffic {
    pub routes: Vec<Route>,
    pub tallies: Vec<Arc<LinkTally>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Traffic {
    /// Starts one request loop per route.
    pub fn start(programs: &Programs, routes: Vec<Route>) -> Traffic {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let tallies: Vec<Arc<LinkTally>> = routes.iter().map(|_| Arc::default()).collect();
        for (route, tally) in routes.iter().zip(&tallies) {
            let (route, tally, stopped, programs) = (
                route.clone(),
                tally.clone(),
                stopped.clone(),
                programs.clone(),
            );
            tasks.spawn(async move {
                while !*stopped.borrow() {
                    tally.started.fetch_add(1, Ordering::Relaxed);
                    match request(&programs, &route).await {
                        Ok(()) => tally.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            let mut first = tally.first_errors.lock().expect("errors lock");
                            if first.len() < 3 {
                                first.push(e);
                            }
                            tally.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
        Traffic {
            routes,
            tallies,
            stop,
            tasks,
        }
    }

    /// (requests, failed) so far, over every link.
    pub fn totals(&self) -> (u64, u64) {
        self.tallies.iter().fold((0, 0), |(r, f), t| {
            let failed = t.failed.load(Ordering::Relaxed);
            (r + t.ok.load(Ordering::Relaxed) + failed, f + failed)
        })
    }

    /// Waits until every link has carried `n` successful requests (the mesh works
    /// before the rotation starts).
    pub async fn until_each_ok(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self
            .tallies
            .iter()
            .any(|t| t.ok.load(Ordering::Relaxed) < n)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the mesh does not carry traffic: {}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Holds every reload made while `dir/on` exists (see [`hold_snippet`]) until each
    /// link has finished a request begun after it: every state the rotation passes
    /// through then carries traffic on every link, however short the step.
    pub fn hold_reloads(&mut self, dir: &Path) {
        let (dir, tallies, stopped) = (
            dir.to_path_buf(),
            self.tallies.clone(),
            self.stop.subscribe(),
        );
        self.tasks.spawn(async move {
            while !*stopped.borrow() {
                let waiting: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|entries| {
                        entries
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| {
                                p.file_name()
                                    .is_some_and(|n| n.to_string_lossy().starts_with("wait."))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for wait in waiting {
                    // Requests numbered after `begun` start after the reload.
                    let begun: Vec<u64> = tallies
                        .iter()
                        .map(|t| t.started.load(Ordering::Relaxed))
                        .collect();
                    while !*stopped.borrow()
                        && tallies.iter().zip(&begun).any(|(t, b)| {
                            t.ok.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed) <= *b
                        })
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let name = wait
                        .file_name()
                        .map(|n| n.to_string_lossy().replacen("wait.", "ack.", 1));
                    if let Some(ack) = name {
                        let _ = std::fs::rename(&wait, dir.join(ack));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    /// Waits until `n` requests have been made in all.
    pub async fn until_total(&self, n: u64) {
        while self.totals().0 < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Links with failed requests, as (client, server, failed, first errors).
    pub fn failed_links(&self) -> Vec<(String, String, u64, Vec<String>)> {
        self.routes
            .iter()
            .zip(&self.tallies)
            .filter_map(|(r, t)| {
                let failed = t.failed.load(Ordering::Relaxed);
                (failed > 0).then(|| {
                    let errors = t.first_errors.lock().expect("errors lock").clone();
                    (r.client.clone(), r.server.clone(), failed, errors)
                })
            })
            .collect()
    }

    /// One line per link: ok and failed counts, and the first errors.
    pub fn describe(&self) -> String {
        self.routes
            .iter()
            .zip(&self.tallies)
            .map(|(r, t)| {
                format!(
                    "  {} -> {}: {} ok, {} failed {:?}\n",
                    r.client,
                    r.server,
                    t.ok.load(Ordering::Relaxed),
                    t.failed.load(Ordering::Relaxed),
                    t.first_errors.lock().expect("errors lock")
                )
            })
            .collect()
    }

    /// Stops every loop after its request in flight.
    pub async fn stop(mut self) -> Self {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self
    }
}

/// One request over `route`; the error names what failed.
async fn request(programs: &Programs, route: &Route) -> Result<(), String> {
    let mut command = match &route.via {
        Via::Curl {
            node_dir,
            server_dns,
            port,
        } => {
            // A reload is swapping the client's files: start no request until it
            // has (it waits for the requests in flight, see client_reload_script).
            while node_dir.join("wanted").exists() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let live = node_dir.join("live");
            let mut c = Command::new(&programs.flock);
            c.arg("-s")
                .arg(node_dir.join("lock"))
                .arg(&programs.curl)
                .args(["-sS", "--fail", "--max-time", "20"])
                .arg("--cert")
                .arg(live.join("cert.pem"))
                .arg("--key")
                .arg(live.join("key.pem"))
                .arg("--cacert")
                .arg(live.join("trust-servers.pem"))
                .arg("--resolve")
                .arg(format!("{server_dns}:{port}:127.0.0.1"))
                .arg(format!("https://{server_dns}:{port}/"));
            c
        }
        Via::Proxy { plain_port } => {
            let mut c = Command::new(&programs.curl);
            c.args(["-sS", "--fail", "--max-time", "20"])
                .arg(format!("http://127.0.0.1:{plain_port}/"));
            c
        }
    };
    let out = command
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let body = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && body.trim() == route.server {
        return Ok(());
    }
    Err(format!(
        "{} {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        if out.status.success() {
            format!(" (answered {:?})", body.trim())
        } else {
            String::new()
        }
    ))
}

/// The end of every reload command: while `dir/on` exists, announce the reload
/// (`wait.N`) and wait for the test to let it finish (`ack.N`, see
/// [`Traffic::hold_reloads`]).
pub fn hold_snippet(dir: &Path) -> String {
    format!(
        r#"hold='{dir}'
if [ -e "$hold/on" ]; then
    n="$$.$(date +%s%N)"
    touch "$hold/wait.$n"
    while [ ! -e "$hold/ack.$n" ]; do sleep 0.01; done
    rm -f "$hold/ack.$n"
fi
"#,
        dir = dir.display()
    )
}

/// The reload command of a curl node: refuse while `fail_flag` exists; copy the
/// exported files into a fresh snapshot directory; then, holding the node's lock
/// exclusively (curl requests hold it shared, and none starts while `wanted`
/// exists), point `live` at the snapshot. So a request never mixes two generations'
/// certificate and key, and once the step is reported done no request still uses
/// the previous files: what a client library's "reload" must guarantee.
pub fn client_reload_script(
    flock: &Path,
    node_dir: &Path,
    fail_flag: &Path,
    hold: &Path,
) -> String {
    let script = format!(
        r#"#!/bin/sh
set -e
if [ -e '{flag}' ]; then echo "curl client reload refused: the test made {flag}" >&2; exit 1; fi
dir='{dir}'
snap="$dir/snap.$(date +%s%N)"
mkdir "$snap"
cp "$ROLLOVER_EXPORT_DIR"/*.pem "$snap/"
touch "$dir/wanted"
'{flock}' -x "$dir/lock" sh -c 'ln -sfn "$1" "$2/live.tmp" && mv -T "$2/live.tmp" "$2/live"' sh "$snap" "$dir"
rm -f "$dir/wanted"
"#,
        flag = fail_flag.display(),
        dir = node_dir.display(),
        flock = flock.display(),
    );
    script + &hold_snippet(hold)
}

/// One curl request to nginx `server` with the given files: the body of a 200
/// answer, or the HTTP status and the title of nginx's error page (or curl's error).
pub async fn curl_once(
    programs: &Programs,
    (cert, key, cacert): (&Path, &Path, &Path),
    server: &str,
    port: u16,
) -> Result<String, String> {
    let dns = rollover_pki::node_dns_name(server);
    let out = Command::new(&programs.curl)
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("--cacert")
        .arg(cacert)
        .arg("--resolve")
        .arg(format!("{dns}:{port}:127.0.0.1"))
        .arg(format!("https://{dns}:{port}/"))
        .output()
        .await
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    if !out.status.success() {
        return Err(format!(
            "{} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if code == "200" {
        return Ok(body.trim().to_string());
    }
    let title = body
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or(body);
    Err(format!("HTTP {code}: {}", title.trim()))
}
