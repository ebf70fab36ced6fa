//! Executor metrics in the Prometheus text format, and a tiny opt-in HTTP endpoint
//! (`--metrics ADDR`) serving them on any path.
//!
//! Counters: steps done / failed, probes ok / failed (declared disruptions included
//! in failed), rotations finished by outcome; the duration of finished rotations as
//! a summary (sum and count) plus the last one; rotations running now.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The executor's counters. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    steps_done: AtomicU64,
    undos_done: AtomicU64,
    steps_failed: AtomicU64,
    probes_ok: AtomicU64,
    probes_failed: AtomicU64,
    rotations_running: AtomicU64,
    finished: Mutex<Finished>,
}

#[derive(Debug, Default)]
struct Finished {
    by_outcome: Vec<(&'static str, u64)>,
    seconds_sum: f64,
    count: u64,
    last_seconds: f64,
}

impl Metrics {
    /// A step (or undo) confirmed by its agent.
    pub fn step_done(&self, undo: bool) {
        let c = if undo {
            &self.undos_done
        } else {
            &self.steps_done
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A failed attempt at a step (retried or not).
    pub fn step_failed(&self) {
        self.steps_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A probe's outcome.
    pub fn probe(&self, ok: bool) {
        let c = if ok {
            &self.probes_ok
        } else {
            &self.probes_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A rotation started (or resumed after a restart) running.
    pub fn rotation_started(&self) {
        self.rotations_running.fetch_add(1, Ordering::Relaxed);
    }

    /// A rotation that was running reached a terminal state (`outcome` as in the
    /// `outcome` label: succeeded, failed, aborted, rolled_back), having run for
    /// `duration` since it was accepted.
    pub fn rotation_finished(&self, outcome: &'static str, duration: Duration) {
        let _ = self
            .rotations_running
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let mut f = self.finished.lock().expect("metrics lock");
        match f.by_outcome.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, n)) => *n += 1,
            None => f.by_outcome.push((outcome, 1)),
        }
        f.seconds_sum += duration.as_secs_f64();
        f.count += 1;
        f.last_seconds = duration.as_secs_f64();
    }

    /// Steps (not undos) done so far.
    pub fn steps_done_total(&self) -> u64 {
        self.steps_done.load(Ordering::Relaxed)
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "rollover_executor_steps_done_total",
            "Steps confirmed by their agent.",
            &[
                ("{undo=\"false\"}", load(&self.steps_done)),
                ("{undo=\"true\"}", load(&self.undos_done)),
            ],
        );
        counter(
            "rollover_executor_steps_failed_total",
            "Failed step attempts (retried or not).",
            &[("", load(&self.steps_failed))],
        );
        counter(
            "rollover_executor_probes_total",
            "Link probes by result.",
            &[
                ("{result=\"ok\"}", load(&self.probes_ok)),
                ("{result=\"failed\"}", load(&self.probes_failed)),
            ],
        );
        let f = self.finished.lock().expect("metrics lock");
        let outcomes: Vec<(String, u64)> = f
            .by_outcome
            .iter()
            .map(|(o, n)| (format!("{{outcome=\"{o}\"}}"), *n))
            .collect();
        let outcomes: Vec<(&str, u64)> = outcomes.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            "rollover_executor_rotations_finished_total",
            "Rotations that reached a terminal state.",
            &outcomes,
        );
        let _ = writeln!(
            out,
            "# HELP rollover_executor_rotations_running Rotations running now.\n\
             # TYPE rollover_executor_rotations_running gauge\n\
             rollover_executor_rotations_running {}",
            load(&self.rotations_running)
        );
        let _ = writeln!(
            out,
            "# HELP rollover_executor_rotation_duration_seconds Time from acceptance to a terminal state.\n\
             # TYPE rollover_executor_rotation_duration_seconds summary\n\
             rollover_executor_rotation_duration_seconds_sum {}\n\
             rollover_executor_rotation_duration_seconds_count {}\n\
             # HELP rollover_executor_last_rotation_duration_seconds Duration of the last finished rotation.\n\
             # TYPE rollover_executor_last_rotation_duration_seconds gauge\n\
             rollover_executor_last_rotation_duration_seconds {}",
            f.seconds_sum, f.count, f.last_seconds
        );
        out
    }
}

/// Serve `metrics.render()` over plain HTTP/1.1 on `listener` until `shutdown`.
/// Every request, whatever its path, gets the metrics; one request per connection.
pub async fn serve_metrics<F>(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        let (mut socket, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Read the request head (up to a blank line, 8 KiB, or 5 s), then answer.
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            let read_head = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), read_head).await;
            let body = metrics.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Bind `addr` and serve metrics in the background; returns the bound address.
pub async fn spawn_metrics(
    addr: SocketAddr,
    metrics: std::sync::Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(serve_metrics(listener, metrics, std::future::pending()));
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.step_done(false);
        m.step_done(false);
        m.step_done(true);
        m.step_failed();
        m.probe(true);
        m.probe(false);
        m.rotation_started();
        m.rotation_finished("succeeded", Duration::from_millis(1500));
        let text = m.render();
        for line in [
            "rollover_executor_steps_done_total{undo=\"false\"} 2",
            "rollover_executor_steps_done_total{undo=\"true\"} 1",
            "rollover_executor_steps_failed_total 1",
            "rollover_executor_probes_total{result=\"ok\"} 1",
            "rollover_executor_probes_total{result=\"failed\"} 1",
            "rollover_executor_rotations_finished_total{outcome=\"succeeded\"} 1",
            "rollover_executor_rotations_running 0",
            "rollover_executor_rotation_duration_seconds_sum 1.5",
            "rollover_executor_rotation_duration_seconds_count 1",
            "# TYPE rollover_executor_rotation_duration_seconds summary",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn http_endpoint_answers() {
        let m = Arc::new(Metrics::default());
        m.probe(true);
        let (addr, task) = spawn_metrics("127.0.0.1:0".parse().unwrap(), m)
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("rollover_executor_probes_total{result=\"ok\"} 1"));
        task.abort();
    }
}
