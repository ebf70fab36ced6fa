//! `rollover rotate`: start a rotation on an executor and follow it to its end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use rollover_core::{EXECUTOR_ID, Fleet, Plan, Topology};
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;
use serde_json::{Value, json};

use super::net::{self, ClientTls};
use crate::input::{self, Source};
use crate::status::{BadInput, Status};

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Start a rotation on a running executor, then follow it until it finishes.

The topology is sent as a document, so the executor's errors name the file, the line
and the field; every node needs an `address`: the host:port of its agent's control API
(`rollover agent --listen`). Without --plan the executor asks its planner for a plan
(--strategy); a given plan is verified first and refused if unsafe. Then every event is
shown as it happens: a progress bar on a terminal, one line per event otherwise, or one
JSON object per line with --json.

Ctrl-C stops watching only: the rotation goes on on the executor (see `rollover
status`). Failed probes on undeclared links pause the rotation on the executor; the
watch waits, since the rotation is not finished.

Exit status: 0 when the rotation succeeded, 1 when it failed, was aborted or rolled
back (or watching stopped), 2 on bad input (also when the executor rejects the
topology or the plan).";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover rotate --executor 127.0.0.1:7001 fleet.yaml
  rollover rotate --executor 127.0.0.1:7001 fleet.yaml --plan fleet.plan.json --json
  rollover rotate --executor 127.0.0.1:7001 fleet.yaml --strategy claim --max-concurrency 1
  rollover rotate --executor https://executor.example:7001 fleet.yaml \\
      --tls-cert ops.pem --tls-key ops-key.pem --ca ops-ca.pem";

/// Arguments of `rollover rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The executor: `host:port` (plaintext, loopback) or `https://host:port` (mTLS).
    #[arg(long, value_name = "URL")]
    pub executor: String,
    /// Topology file (YAML or JSON) with every node's agent `address`; `-` reads stdin.
    #[arg(value_name = "TOPOLOGY")]
    pub topology: String,
    /// Run this plan (e.g. from `rollover plan --format json`) instead of asking the
    /// planner; it is verified first and refused if unsafe.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<String>,
    /// Planning strategy when no plan is given.
    #[arg(long, value_enum, default_value_t = RotateStrategy::Waves)]
    pub strategy: RotateStrategy,
    /// Start node of the `claim` strategy (default: the first target).
    #[arg(long, value_name = "NODE")]
    pub start: Option<String>,
    /// Most steps running at once (0: only the plan's order limits them).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_concurrency: u32,
    /// Do not probe the links of a node after each of its steps.
    #[arg(long)]
    pub no_probe: bool,
    /// Walk the plan and report without changing any agent.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per event per line on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: ClientTls,
}

/// `--strategy` of `rotate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RotateStrategy {
    /// Fewest waves, provably safe (default).
    Waves,
    /// The source design's literal breadth-first order.
    Claim,
}

/// Times the watch reconnects after losing the event stream before giving up.
const RECONNECTS: u32 = 10;

/// Run `rollover rotate`.
pub fn run(args: &RotateArgs) -> anyhow::Result<Status> {
    let plan_path = args.plan.as_deref().unwrap_or("");
    input::at_most_one_stdin(&[&args.topology, plan_path])?;
    let topology_source = input::read(&args.topology)?;
    let topology = Topology::parse(&topology_source.origin, &topology_source.text)?;
    check_addresses(&topology_source.origin, &topology)?;
    let plan_source = match &args.plan {
        Some(path) => {
            let source = input::read(path)?;
            Plan::parse(&source.origin, &source.text)?;
            Some(source)
        }
        None => None,
    };
    let runtime = net::runtime()?;
    let status = runtime.block_on(rotate(args, topology_source, plan_source))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(status)
}

/// Every target node (but `@executor`) needs its agent's address.
fn check_addresses(origin: &str, topology: &Topology) -> anyhow::Result<()> {
    let fleet = Fleet::new(topology);
    let missing: Vec<&str> = fleet
        .ids
        .iter()
        .map(String::as_str)
        .filter(|id| *id != EXECUTOR_ID)
        .filter(|id| {
            !topology
                .nodes
                .iter()
                .any(|n| n.id == *id && n.address.as_deref().is_some_and(|a| !a.is_empty()))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = missing.iter().take(5).map(|id| format!("`{id}`")).collect();
    let more = if missing.len() > 5 {
        format!(" and {} more", missing.len() - 5)
    } else {
        String::new()
    };
    Err(BadInput(format!(
        "{origin}: {} target node(s) without an `address` ({}{more}): list each in `nodes` \
         with `address: \"host:port\"` of its agent's --listen, so the executor can reach it",
        missing.len(),
        shown.join(", ")
    ))
    .into())
}

fn document(source: Source) -> v1::Document {
    v1::Document {
        text: source.text,
        format: v1::DocumentFormat::Unspecified as i32,
        origin: source.origin,
    }
}

async fn rotate(
    args: &RotateArgs,
    topology: Source,
    plan: Option<Source>,
) -> anyhow::Result<Status> {
    let url = args.executor.as_str();
    let mut client = net::executor_client(url, &args.tls)?;
    let request = v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Document(document(topology))),
        }),
        plan: plan.map(|p| v1::PlanSource {
            source: Some(v1::plan_source::Source::Document(document(p))),
        }),
        options: Some(v1::RotationOptions {
            max_concurrency: args.max_concurrency,
            probe: !args.no_probe,
            dry_run: args.dry_run,
            strategy: match args.strategy {
                RotateStrategy::Waves => v1::Strategy::Waves,
                RotateStrategy::Claim => v1::Strategy::Claim,
            } as i32,
            start_node: args.start.clone(),
            ..v1::RotationOptions::default()
        }),
    };
    let started = client
        .start_rotation(request)
        .await
        .map_err(|s| net::call_error("executor", url, s))?
        .into_inner();
    let id = started.rotation_id.clone();
    let plan = started.plan.unwrap_or_default();
    let waves = plan.steps.iter().map(|s| s.wave + 1).max().unwrap_or(0);
    let mut view = View::new(args.json, plan.steps.len() as u64);
    view.accepted(&id, url, &plan, waves);

    let began = Instant::now();
    let mut tally = Tally::default();
    let mut next = 1u64;
    let mut attempts = 0u32;
    let stop = net::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let request = v1::WatchRotationRequest {
            rotation_id: id.clone(),
            from_sequence: next,
        };
        let lost = tokio::select! {
            answer = client.watch_rotation(request) => match answer {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        let message = tokio::select! {
                            m = stream.message() => m,
                            signal = &mut stop => return Ok(stopped(&mut view, signal, &id, url)),
                        };
                        match message {
                            Ok(Some(event)) => {
                                if event.sequence < next {
                                    continue;
                                }
                                next = event.sequence + 1;
                                attempts = 0;
                                tally.count(&event);
                                view.event(&event);
                                if let Some(Event::Finished(f)) = &event.event {
                                    return Ok(view.finished(&id, f, &tally, began.elapsed()));
                                }
                            }
                            Ok(None) => break "the event stream ended before the rotation finished".to_string(),
                            Err(s) => break net::call_error("executor", url, s).to_string(),
                        }
                    }
                }
                Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
                    return Err(net::call_error("executor", url, s));
                }
                Err(s) => net::call_error("executor", url, s).to_string(),
            },
            signal = &mut stop => return Ok(stopped(&mut view, signal, &id, url)),
        };
        attempts += 1;
        if attempts > RECONNECTS {
            view.clear();
            return Err(anyhow::anyhow!(
                "lost the events of rotation {id}: {lost}; the rotation may still be running \
                 on the executor: `rollover status --executor {url} {id}`"
            ));
        }
        view.note(&format!(
            "{lost}; watching again from event {next} (attempt {attempts} of {RECONNECTS})"
        ));
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500 * u64::from(attempts.min(4)))) => {}
            signal = &mut stop => return Ok(stopped(&mut view, signal, &id, url)),
        }
    }
}

fn stopped(view: &mut View, signal: &str, id: &str, url: &str) -> Status {
    view.clear();
    eprintln!(
        "stopped watching ({signal}): rotation {id} continues on the executor at {url}; \
         `rollover status --executor {url} {id}` shows where it is"
    );
    Status::Failure
}

/// What the events said so far.
#[derive(Debug, Default)]
struct Tally {
    steps_done: u64,
    steps_undone: u64,
    step_failures: u64,
    probes: u64,
    probes_failed: u64,
}

impl Tally {
    fn count(&mut self, event: &v1::RotationEvent) {
        match &event.event {
            Some(Event::StepDone(d)) if d.undo => self.steps_undone += 1,
            Some(Event::StepDone(_)) => self.steps_done += 1,
            Some(Event::StepFailed(_)) => self.step_failures += 1,
            Some(Event::ProbeResult(p)) => {
                self.probes += 1;
                if !p.ok {
                    self.probes_failed += 1;
                }
            }
            _ => {}
        }
    }
}

/// How events are shown.
enum View {
    /// One JSON object per line on stdout.
    Json,
    /// One readable line per event on stdout.
    Lines,
    /// A progress bar on stderr (a terminal); notable events printed above it.
    Bar(indicatif::ProgressBar),
}

impl View {
    fn new(json: bool, steps: u64) -> View {
        if json {
            return View::Json;
        }
        if !std::io::stderr().is_terminal() {
            return View::Lines;
        }
        let bar = indicatif::ProgressBar::new(steps);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} steps  wave {prefix}  {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("0");
        bar.enable_steady_tick(Duration::from_millis(120));
        View::Bar(bar)
    }

    fn println(&self, line: &str) {
        match self {
            View::Bar(bar) => bar.println(line),
            _ => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }

    fn accepted(&self, id: &str, url: &str, plan: &v1::Plan, waves: u32) {
        match self {
            View::Json => self.println(
                &json!({
                    "rotation_id": id,
                    "sequence": 0,
                    "event": "accepted",
                    "executor": url,
                    "ca": plan.ca,
                    "steps": plan.steps.len(),
                    "waves": waves,
                    "disruptions": plan.disruptions.iter().map(|d| json!({
                        "client": d.client, "server": d.server, "reason": d.reason
                    })).collect::<Vec<_>>(),
                    "strategy": plan.strategy,
                })
                .to_string(),
            ),
            _ => {
                self.println(&format!(
                    "rotation {id} of CA `{}` accepted by the executor at {url}: {} steps in {waves} waves, {} declared disruption(s)",
                    plan.ca,
                    plan.steps.len(),
                    plan.disruptions.len()
                ));
                for d in &plan.disruptions {
                    self.println(&format!(
                        "  declared disruption {} -> {}: {}",
                        d.client, d.server, d.reason
                    ));
                }
            }
        }
    }

    fn event(&mut self, event: &v1::RotationEvent) {
        match self {
            View::Json => self.println(&event_json(event).to_string()),
            View::Lines => self.println(&event_line(event)),
            View::Bar(bar) => {
                match &event.event {
                    Some(Event::StepStarted(s)) => {
                        bar.set_prefix(s.wave.to_string());
                        bar.set_message(event_line(event));
                    }
                    Some(Event::StepDone(d)) => {
                        if d.undo {
                            bar.dec(1);
                        } else {
                            bar.inc(1);
                        }
                        bar.set_message(event_line(event));
                    }
                    Some(Event::ProbeResult(p)) if p.ok => bar.set_message(event_line(event)),
                    // Failures, pauses, resumes, the end: worth a line of their own.
                    _ => bar.println(event_line(event)),
                }
            }
        }
    }

    fn note(&self, text: &str) {
        match self {
            View::Json => self.println(&json!({"event": "note", "message": text}).to_string()),
            View::Bar(bar) => bar.println(text),
            View::Lines => eprintln!("{text}"),
        }
    }

    fn clear(&mut self) {
        if let View::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }

    fn finished(&mut self, id: &str, f: &v1::Finished, tally: &Tally, took: Duration) -> Status {
        self.clear();
        let outcome = state_name(f.outcome);
        let succeeded = f.outcome == v1::RotationState::Succeeded as i32;
        if !matches!(self, View::Json) {
            let mut line = format!(
                "rotation {id} {outcome}: {} steps done{}, {} probes ({} failed), {:.1} s",
                tally.steps_done,
                if tally.steps_undone > 0 {
                    format!(", {} undone", tally.steps_undone)
                } else {
                    String::new()
                },
                tally.probes,
                tally.probes_failed,
                took.as_secs_f64()
            );
            if !f.message.is_empty() {
                line.push_str(": ");
                line.push_str(&f.message);
            }
            self.println(&line);
        }
        if succeeded {
            Status::Success
        } else {
            Status::Failure
        }
    }
}

/// `ROTATION_STATE_SUCCEEDED` -> `SUCCEEDED`.
pub fn state_name(value: i32) -> String {
    v1::RotationState::try_from(value).map_or_else(
        |_| format!("UNKNOWN({value})"),
        |s| {
            s.as_str_name()
                .trim_start_matches("ROTATION_STATE_")
                .to_string()
        },
    )
}

fn action_name(value: i32) -> String {
    rollover_proto::convert::action_from_i32(value)
        .map_or_else(|_| format!("action {value}"), |a| a.as_str().to_string())
}

fn step_text(step: Option<&v1::StepRef>) -> String {
    step.map_or_else(
        || "step ?".to_string(),
        |s| format!("step {} ({} {})", s.id, action_name(s.action), s.node),
    )
}

fn step_json(step: Option<&v1::StepRef>) -> Value {
    step.map_or(
        Value::Null,
        |s| json!({"id": s.id, "node": s.node, "action": action_name(s.action)}),
    )
}

/// One readable line for an event.
pub fn event_line(event: &v1::RotationEvent) -> String {
    match &event.event {
        Some(Event::StepStarted(s)) => format!(
            "{}{} started{} (wave {})",
            if s.undo { "undo " } else { "" },
            step_text(s.step.as_ref()),
            if s.attempt > 1 {
                format!(", attempt {}", s.attempt)
            } else {
                String::new()
            },
            s.wave
        ),
        Some(Event::StepDone(d)) => format!(
            "{}{} done{}",
            if d.undo { "undo " } else { "" },
            step_text(d.step.as_ref()),
            if d.applied { "" } else { " (already applied)" }
        ),
        Some(Event::StepFailed(f)) => format!(
            "{}{} FAILED: {}{}",
            if f.undo { "undo " } else { "" },
            step_text(f.step.as_ref()),
            f.error,
            if f.will_retry { " (will retry)" } else { "" }
        ),
        Some(Event::ProbeResult(p)) => {
            let after = p
                .after_step_id
                .map_or_else(String::new, |s| format!(" after step {s}"));
            let declared = if p.declared_disruption {
                " (declared disruption)"
            } else {
                ""
            };
            if p.ok {
                format!("probe {} -> {} ok{after}{declared}", p.client, p.server)
            } else {
                format!(
                    "probe {} -> {} FAILED{after}{declared}: {}",
                    p.client, p.server, p.error
                )
            }
        }
        Some(Event::Paused(p)) => format!(
            "PAUSED: {} (the executor waits for Resume, Abort or Rollback)",
            p.reason
        ),
        Some(Event::Resumed(_)) => "resumed".to_string(),
        Some(Event::Finished(f)) => {
            if f.message.is_empty() {
                format!("finished: {}", state_name(f.outcome))
            } else {
                format!("finished: {}: {}", state_name(f.outcome), f.message)
            }
        }
        None => format!("event {} of an unknown kind", event.sequence),
    }
}

/// One JSON object for an event: `rotation_id`, `sequence`, `time`, `event` (its
/// kind) and the kind's fields.
pub fn event_json(event: &v1::RotationEvent) -> Value {
    let mut object = json!({
        "rotation_id": event.rotation_id,
        "sequence": event.sequence,
        "time": event.time.as_ref().map(ToString::to_string),
    });
    let (kind, fields) = match &event.event {
        Some(Event::StepStarted(s)) => (
            "step_started",
            json!({"step": step_json(s.step.as_ref()), "wave": s.wave, "undo": s.undo, "attempt": s.attempt}),
        ),
        Some(Event::StepDone(d)) => (
            "step_done",
            json!({"step": step_json(d.step.as_ref()), "undo": d.undo, "applied": d.applied}),
        ),
        Some(Event::StepFailed(f)) => (
            "step_failed",
            json!({"step": step_json(f.step.as_ref()), "undo": f.undo, "error": f.error, "will_retry": f.will_retry}),
        ),
        Some(Event::ProbeResult(p)) => (
            "probe",
            json!({"client": p.client, "server": p.server, "ok": p.ok, "error": p.error,
                   "after_step_id": p.after_step_id, "declared_disruption": p.declared_disruption}),
        ),
        Some(Event::Paused(p)) => ("paused", json!({"reason": p.reason})),
        Some(Event::Resumed(_)) => ("resumed", json!({})),
        Some(Event::Finished(f)) => (
            "finished",
            json!({"outcome": state_name(f.outcome).to_lowercase(), "message": f.message}),
        ),
        None => ("unknown", json!({})),
    };
    object["event"] = Value::from(kind);
    if let (Value::Object(o), Value::Object(fields)) = (&mut object, fields) {
        o.extend(fields);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(e: Event) -> v1::RotationEvent {
        v1::RotationEvent {
            rotation_id: "r1".into(),
            sequence: 3,
            time: None,
            event: Some(e),
        }
    }

    #[test]
    fn events_read_as_lines_and_json() {
        let step = v1::StepRef {
            id: 4,
            node: "gw".into(),
            action: v1::StepAction::Stage as i32,
        };
        let started = event(Event::StepStarted(v1::StepStarted {
            step: Some(step.clone()),
            wave: 0,
            undo: false,
            attempt: 1,
        }));
        assert_eq!(event_line(&started), "step 4 (stage gw) started (wave 0)");
        let j = event_json(&started);
        assert_eq!(j["event"], "step_started");
        assert_eq!(j["step"]["action"], "stage");
        assert_eq!(j["sequence"], 3);
        let probe = event(Event::ProbeResult(v1::ProbeResult {
            client: "gw".into(),
            server: "plc".into(),
            ok: false,
            error: "bad cert".into(),
            after_step_id: Some(4),
            declared_disruption: false,
        }));
        assert_eq!(
            event_line(&probe),
            "probe gw -> plc FAILED after step 4: bad cert"
        );
        let done = event(Event::Finished(v1::Finished {
            outcome: v1::RotationState::Succeeded as i32,
            message: String::new(),
        }));
        assert_eq!(event_line(&done), "finished: SUCCEEDED");
        assert_eq!(event_json(&done)["outcome"], "succeeded");
    }
}
