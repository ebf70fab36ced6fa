//! Every request gets a span recording the fleet's size, the waves and the duration.
//! (Its own test binary: it installs the process-wide subscriber.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use rollover_proto::v1;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn requests_are_traced_with_size_waves_and_duration() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();

    let served = Served::start().await;
    let mut client = served.client().await;
    let plan = client
        .plan(plan_request(
            topology_doc("examples/mixed.yaml", MIXED),
            v1::Strategy::Waves,
            None,
        ))
        .await
        .unwrap()
        .into_inner()
        .plan;
    client
        .verify(v1::VerifyRequest {
            topology: topology_doc("examples/mixed.yaml", MIXED),
            plan: plan.map(|p| v1::PlanSource {
                source: Some(v1::plan_source::Source::Plan(p)),
            }),
        })
        .await
        .unwrap();
    served.stop().await;

    let text = captured.text();
    let plan_line = text
        .lines()
        .find(|l| l.contains("planner.plan") && l.contains("close"))
        .unwrap_or_else(|| panic!("no closed plan span in:\n{text}"));
    for field in [
        "strategy=\"waves\"",
        "nodes=7",
        "links=12",
        "waves=4",
        "duration_ms=",
    ] {
        assert!(
            plan_line.contains(field),
            "{field} missing from: {plan_line}"
        );
    }
    let verify_line = text
        .lines()
        .find(|l| l.contains("planner.verify") && l.contains("close"))
        .unwrap_or_else(|| panic!("no closed verify span in:\n{text}"));
    for field in [
        "nodes=7",
        "links=12",
        "waves=4",
        "safe=true",
        "duration_ms=",
    ] {
        assert!(
            verify_line.contains(field),
            "{field} missing from: {verify_line}"
        );
    }
}
