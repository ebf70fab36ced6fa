//! Executor metrics, kept and encoded by `prometheus-client` (OpenMetrics text), and an
//! opt-in HTTP endpoint (`--metrics ADDR`; the CLI refuses a non-loopback address
//! unless told otherwise) served by hyper on any path.
//!
//! Counters: steps done / failed, probes ok / failed (declared disruptions included
//! in failed), rotations finished by outcome; the duration of finished rotations as
//! a histogram (with its sum and count) plus the last one; rotations running now;
//! journal stalls (a transition the journal could not take, resumed from it later).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The media type of the OpenMetrics text `render` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long a scraper may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UndoLabel {
    undo: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The executor's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    steps_done: Family<UndoLabel, Counter>,
    steps_failed: Counter,
    probes: Family<ResultLabel, Counter>,
    finished: Family<OutcomeLabel, Counter>,
    running: Gauge,
    journal_stalls: Counter,
    duration: Histogram,
    last_duration: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            steps_done: Family::default(),
            steps_failed: Counter::default(),
            probes: Family::default(),
            finished: Family::default(),
            running: Gauge::default(),
            journal_stalls: Counter::default(),
            // 1 s to about 9 h: rotations of a few nodes to large fleets.
            duration: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            last_duration: Gauge::default(),
        };
        // Zero samples from the start, as scrapers expect of counters that exist.
        for undo in ["false", "true"] {
            drop(m.steps_done.get_or_create(&UndoLabel { undo }));
        }
        for result in ["ok", "failed"] {
            drop(m.probes.get_or_create(&ResultLabel { result }));
        }
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "rollover_executor_steps_done",
            "Steps confirmed by their agent",
            m.steps_done.clone(),
        );
        r.register(
            "rollover_executor_steps_failed",
            "Failed step attempts (retried or not)",
            m.steps_failed.clone(),
        );
        r.register(
            "rollover_executor_probes",
            "Link probes by result",
            m.probes.clone(),
        );
        r.register(
            "rollover_executor_rotations_finished",
            "Rotations that reached a terminal state",
            m.finished.clone(),
        );
        r.register(
            "rollover_executor_rotations_running",
            "Rotations running now",
            m.running.clone(),
        );
        r.register(
            "rollover_executor_journal_stalls",
            "Times a rotation stopped because its journal could not record a transition, \
             to resume from the journal once it answered",
            m.journal_stalls.clone(),
        );
        r.register(
            "rollover_executor_rotation_duration_seconds",
            "Time from acceptance to a terminal state",
            m.duration.clone(),
        );
        r.register(
            "rollover_executor_last_rotation_duration_seconds",
            "Duration of the last finished rotation",
            m.last_duration.clone(),
        );
        m
    }
}

impl Metrics {
    /// A step (or undo) confirmed by its agent.
    pub fn step_done(&self, undo: bool) {
        let undo = if undo { "true" } else { "false" };
        self.steps_done.get_or_create(&UndoLabel { undo }).inc();
    }

    /// A failed attempt at a step (retried or not).
    pub fn step_failed(&self) {
        self.steps_failed.inc();
    }

    /// A probe's outcome.
    pub fn probe(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.probes.get_or_create(&ResultLabel { result }).inc();
    }

    /// A rotation's runner stalled on its journal (see `rotation::runner`).
    pub fn journal_stalled(&self) {
        self.journal_stalls.inc();
    }

    /// A rotation started (or resumed after a restart) running.
    pub fn rotation_started(&self) {
        self.running.inc();
    }

    /// A rotation that was running reached a terminal state (`outcome` as in the
    /// `outcome` label: succeeded, failed, aborted, rolled_back), having run for
    /// `duration` since it was accepted.
    pub fn rotation_finished(&self, outcome: &'static str, duration: Duration) {
        // Never below zero, even for a rotation finished that this process did not
        // count as started.
        let _ = self
            .running
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n > 0).then_some(n - 1)
            });
        self.finished.get_or_create(&OutcomeLabel { outcome }).inc();
        self.duration.observe(duration.as_secs_f64());
        self.last_duration.set(duration.as_secs_f64());
    }

    /// Steps (not undos) done so far.
    pub fn steps_done_total(&self) -> u64 {
        self.steps_done
            .get_or_create(&UndoLabel { undo: "false" })
            .get()
    }

    /// Everything, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Serve `metrics.render()` over HTTP/1.1 on `listener` until `shutdown`, to every
/// request whatever its path.
pub async fn serve_metrics<F>(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| {
                let body = metrics.render();
                async move {
                    hyper::Response::builder()
                        .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

/// Bind `addr` and serve metrics in the background; returns the bound address.
pub async fn spawn_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(serve_metrics(listener, metrics, std::future::pending()));
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn renders_openmetrics_text() {
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
            "rollover_executor_last_rotation_duration_seconds 1.5",
            "# TYPE rollover_executor_rotation_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(m.steps_done_total(), 2);
        // A finish this process never saw start leaves the gauge at zero.
        m.rotation_finished("failed", Duration::from_secs(1));
        assert!(
            m.render()
                .lines()
                .any(|l| l == "rollover_executor_rotations_running 0")
        );
    }

    #[tokio::test]
    async fn http_endpoint_answers() {
        let m = Arc::new(Metrics::default());
        m.probe(true);
        let (addr, task) = spawn_metrics("127.0.0.1:0".parse().unwrap(), m)
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("application/openmetrics-text"), "{got}");
        assert!(got.contains("rollover_executor_probes_total{result=\"ok\"} 1"));
        task.abort();
    }
}
