//! `rollover rotate`: start a rotation on an executor and follow it to its end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use rollover_core::{Plan, Topology};
use rollover_proto::labels::label_of;
use rollover_proto::v1;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::rotation_event::Event;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::net::{self, ExecutorArgs};
use crate::input::{self, Source};
use crate::output::{OutputArgs, Sink, escape};
use crate::status::{BadInput, Status};

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Start a rotation on a running executor, then follow it until it finishes.

The topology is sent as a document, so the executor's errors name the file, the line
and the field; every node needs an `address`: the host:port of its agent's control API
(`rollover agent --listen`). First the same pre-flight check as `rollover check` runs
(the executor reaches its planner and every agent, compares their modes and roots, and
looks for an active rotation of the CA); any problem stops here, before anything
changes, with every problem listed (--no-check skips it). Without --plan the executor
asks its planner for a plan (--strategy). A given plan is verified first: an unsafe
one is refused at once, listing the links it would break (exit 1), here and by the
executor (INVALID_ARGUMENT); nothing starts.

One rotation per CA: while a rotation of the CA is PENDING, RUNNING, PAUSED or
ROLLING_BACK, the executor refuses another; `rotate` names the active one and exits 1.

Then every event is shown as it happens: a progress bar on a terminal, one line per
event otherwise, or one JSON object per line with -f json. While the executor waits
on an agent (a call failed and is retried), each retry says which node, which call,
which attempt and the error. A dry run is marked DRY RUN on every summary.

Ctrl-C stops watching only: the rotation goes on on the executor (see `rollover
status` and `rollover watch`). Failed probes on undeclared links pause the rotation on
the executor; the watch waits, since the rotation is not finished: steer it from
another terminal with `rollover resume|abort|rollback ID`.

Exit status: 0 when the rotation succeeded, 1 when it failed, was aborted or rolled
back, watching stopped, the pre-flight check found a problem, the plan is unsafe or
another rotation of the CA is active; 2 on bad input (also when the executor rejects
the topology or the plan as malformed).";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover rotate --executor 127.0.0.1:7001 fleet.yaml
  ROLLOVER_EXECUTOR=127.0.0.1:7001 rollover rotate fleet.yaml --dry-run
  rollover rotate --executor 127.0.0.1:7001 fleet.yaml --plan fleet.plan.json -f json
  rollover rotate --executor 127.0.0.1:7001 fleet.yaml --strategy claim --max-concurrency 1
  rollover rotate --executor https://executor.example:7001 fleet.yaml \\
      --tls-cert ops.pem --tls-key ops-key.pem --ca ops-ca.pem";

/// Arguments of `rollover rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub executor: ExecutorArgs,
    /// Topology file (YAML or JSON) with every node's agent `address`; `-` reads stdin.
    /// Node ids: 1 to 253 bytes, printable (no control or bidi characters).
    #[arg(value_name = "TOPOLOGY")]
    pub topology: String,
    /// Run this plan (e.g. from `rollover plan --format json`) instead of asking the
    /// planner; it is verified first and refused (exit 1) if unsafe.
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
    /// Skip the pre-flight check (`rollover check`) before starting.
    #[arg(long)]
    pub no_check: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `--strategy` of `rotate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RotateStrategy {
    /// Fewest waves, provably safe (default).
    Waves,
    /// The source design's literal breadth-first order.
    Claim,
    /// Cross-signed bridges first: every node that can build chains sends both
    /// bridges during the rotation, so the usual steps run in a few waves with no
    /// disruption; the executor must hold the current root's key (`serve executor
    /// --ca-key`, or a root it made in an earlier rotation).
    Bridge,
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
            let (_, verdict) =
                rollover_core::verify_document(&topology, &source.origin, &source.text)?;
            if !verdict.safe {
                // Refused before anything is sent: the executor would refuse it too.
                let plan = Plan::parse(&source.origin, &source.text)?;
                eprint!("{}", crate::render::verdict::text(&plan, &verdict));
                eprintln!(
                    "error: {}: the plan is unsafe: refused, nothing started (`rollover plan` \
                     makes a safe one)",
                    source.origin
                );
                return Ok(Status::Failure);
            }
            Some(source)
        }
        None => None,
    };
    let runtime = net::runtime()?;
    let status = runtime.block_on(async {
        if !args.no_check {
            let report =
                super::check::run_checks(&args.executor, &topology_source, &topology).await?;
            if !report.problems.is_empty() {
                eprint!("{}", report.text());
                eprintln!(
                    "error: the pre-flight check found {} problem(s): nothing started \
                     (--no-check skips the check)",
                    report.problems.len()
                );
                return Ok(Status::Failure);
            }
            eprint!("{}", report.notes_text());
        }
        rotate(args, topology_source, plan_source).await
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(status)
}

/// Every target node (but `@executor`) needs its agent's address.
fn check_addresses(origin: &str, topology: &Topology) -> anyhow::Result<()> {
    let missing = crate::lint::missing_addresses(topology);
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
    let (mut client, mut url) = args.executor.connect().await?;
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
                RotateStrategy::Bridge => v1::Strategy::Bridge,
            } as i32,
            start_node: args.start.clone(),
            // --no-check skips the executor's own comparison too, by name.
            skip_agent_checks: args.no_check,
            ..v1::RotationOptions::default()
        }),
        request_id: String::new(),
    };
    let started = client
        .start_rotation(request)
        .await
        .map_err(|s| start_error(&url, s))?
        .into_inner();
    let id = started.rotation_id.clone();
    let plan = started.plan.unwrap_or_default();
    let waves = plan
        .steps
        .iter()
        .map(|s| s.wave.saturating_add(1))
        .max()
        .unwrap_or(0);
    let mut view = View::new(&args.out, plan.steps.len() as u64, args.dry_run)?;
    view.accepted(&id, &url, &plan, waves);
    follow(&args.executor, &mut client, &mut url, &id, &mut view, 1).await
}

/// StartRotation's refusal: an unsafe plan is a failure (exit 1, like `verify`), not
/// bad input.
fn start_error(url: &str, status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::InvalidArgument && status.message().contains("unsafe") {
        return anyhow::anyhow!(
            "the executor at {url} refused the plan: {}",
            status.message()
        );
    }
    net::call_error("executor", url, status)
}

/// Follow rotation `id`'s events from `from` until it finishes (reconnecting when the
/// stream is lost, to whichever executor of a group leads then) or Ctrl-C; the exit
/// status says how it ended.
pub async fn follow(
    executor: &ExecutorArgs,
    client: &mut ExecutorServiceClient<Channel>,
    url: &mut String,
    id: &str,
    view: &mut View,
    from: u64,
) -> anyhow::Result<Status> {
    let began = Instant::now();
    let mut tally = Tally::default();
    let mut next = from.max(1);
    let mut attempts = 0u32;
    let stop = net::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let request = v1::WatchRotationRequest {
            rotation_id: id.to_string(),
            from_sequence: next,
        };
        let lost = tokio::select! {
            answer = client.watch_rotation(request) => match answer {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        let message = tokio::select! {
                            m = stream.message() => m,
                            signal = &mut stop => return Ok(stopped(view, signal, id, url)),
                        };
                        match message {
                            Ok(Some(v1::WatchRotationResponse { event: None })) => continue,
                            Ok(Some(v1::WatchRotationResponse { event: Some(event) })) => {
                                if event.sequence < next {
                                    continue;
                                }
                                next = event.sequence + 1;
                                attempts = 0;
                                tally.count(&event);
                                view.event(&event);
                                if let Some(Event::Finished(f)) = &event.event {
                                    return Ok(view.finished(id, f, &tally, began.elapsed()));
                                }
                            }
                            Ok(None) => break "the event stream ended before the rotation finished".to_string(),
                            Err(s) => break net::call_error("executor", url.as_str(), s).to_string(),
                        }
                    }
                }
                Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
                    return Err(net::call_error("executor", url.as_str(), s));
                }
                Err(s) => net::call_error("executor", url.as_str(), s).to_string(),
            },
            signal = &mut stop => return Ok(stopped(view, signal, id, url)),
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
            signal = &mut stop => return Ok(stopped(view, signal, id, url)),
        }
        if executor.is_group() {
            // The leader may have changed: look for whichever executor answers now (a
            // follower serves the events from the journal).
            match executor.connect().await {
                Ok((leader, at)) => {
                    if at != *url {
                        view.note(&format!("the executor at {at} answers now: following it"));
                        *url = at;
                    }
                    *client = leader;
                }
                Err(e) => view.note(&format!("{e}")),
            }
        }
    }
}

fn stopped(view: &mut View, signal: &str, id: &str, url: &str) -> Status {
    view.clear();
    let (id, url) = (escape(id), escape(url));
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
enum Shape {
    /// One JSON object per line.
    Json,
    /// One readable line per event.
    Lines,
    /// A progress bar on stderr (a terminal); notable events printed above it.
    Bar(indicatif::ProgressBar),
}

/// Where and how a rotation's events are shown (`-f`, `-o`), and whether it is a dry
/// run (marked DRY RUN wherever it shows).
pub struct View {
    shape: Shape,
    sink: Sink,
    dry_run: bool,
    /// How the rotation ended, once its Finished event was seen.
    pub outcome: Option<v1::RotationState>,
}

impl View {
    /// A view of a rotation of `steps` steps.
    pub fn new(out: &OutputArgs, steps: u64, dry_run: bool) -> anyhow::Result<View> {
        let sink = out.sink()?;
        let shape = if out.is_json() {
            Shape::Json
        } else if !sink.is_stdout() || !std::io::stderr().is_terminal() {
            Shape::Lines
        } else {
            let bar = indicatif::ProgressBar::new(steps);
            let template = if dry_run {
                "{spinner} DRY RUN [{bar:30}] {pos}/{len} steps  wave {prefix}  {wide_msg}"
            } else {
                "{spinner} [{bar:30}] {pos}/{len} steps  wave {prefix}  {wide_msg}"
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix("0");
            bar.enable_steady_tick(Duration::from_millis(120));
            Shape::Bar(bar)
        };
        Ok(View {
            shape,
            sink,
            dry_run,
            outcome: None,
        })
    }

    /// A line for people goes through [`escape`] (its ids, reasons and messages come
    /// from the executor); a JSON line is already escaped by serde.
    fn println(&mut self, line: &str) {
        match &self.shape {
            Shape::Bar(bar) => bar.println(escape(line)),
            Shape::Lines => self.sink.line(&escape(line)),
            Shape::Json => self.sink.line(line),
        }
    }

    fn marker(&self) -> &'static str {
        if self.dry_run { "DRY RUN: " } else { "" }
    }

    /// The first line: what the executor accepted.
    pub fn accepted(&mut self, id: &str, url: &str, plan: &v1::Plan, waves: u32) {
        if let Shape::Json = self.shape {
            let line = json!({
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
                "dry_run": self.dry_run,
            });
            return self.println(&line.to_string());
        }
        let line = format!(
            "{}rotation {id} of CA `{}` accepted by the executor at {url}: {} steps in {waves} waves, {} declared disruption(s){}",
            self.marker(),
            plan.ca,
            plan.steps.len(),
            plan.disruptions.len(),
            if self.dry_run {
                " (no agent is changed)"
            } else {
                ""
            }
        );
        self.println(&line);
        for d in &plan.disruptions {
            self.println(&format!(
                "  declared disruption {} -> {}: {}",
                d.client, d.server, d.reason
            ));
        }
    }

    /// The first line of `rollover watch`: the rotation's status when watching began.
    pub fn watching(&mut self, url: &str, status: &v1::RotationStatus) {
        if let Shape::Json = self.shape {
            let line = json!({
                "rotation_id": status.id,
                "sequence": 0,
                "event": "watching",
                "executor": url,
                "ca": status.ca,
                "state": state_name(status.state).to_lowercase(),
                "steps": status.steps_total,
                "steps_done": status.steps_done,
                "waves": status.waves_total,
                "dry_run": self.dry_run,
            });
            return self.println(&line.to_string());
        }
        if let Shape::Bar(bar) = &self.shape {
            bar.set_position(u64::from(status.steps_done));
        }
        let line = format!(
            "{}watching rotation {} of CA `{}` on the executor at {url}: {}, {}/{} steps done, wave {} of {}",
            self.marker(),
            status.id,
            status.ca,
            state_name(status.state),
            status.steps_done,
            status.steps_total,
            status.current_wave.min(status.waves_total),
            status.waves_total
        );
        self.println(&line);
    }

    fn event(&mut self, event: &v1::RotationEvent) {
        match &self.shape {
            Shape::Json => self.sink.line(&event_json(event).to_string()),
            Shape::Lines => self.sink.line(&event_line(event)),
            Shape::Bar(bar) => {
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
                    // Failures, waits, pauses, resumes, the end: worth a line of their own.
                    _ => bar.println(event_line(event)),
                }
            }
        }
    }

    fn note(&mut self, text: &str) {
        match &self.shape {
            Shape::Json => {
                self.sink
                    .line(&json!({"event": "note", "message": text}).to_string());
            }
            Shape::Bar(bar) => bar.println(escape(text)),
            Shape::Lines => eprintln!("{}", escape(text)),
        }
    }

    fn clear(&mut self) {
        if let Shape::Bar(bar) = &self.shape {
            bar.finish_and_clear();
        }
    }

    fn finished(&mut self, id: &str, f: &v1::Finished, tally: &Tally, took: Duration) -> Status {
        self.clear();
        self.outcome = v1::RotationState::try_from(f.outcome).ok();
        let outcome = state_name(f.outcome);
        let succeeded = f.outcome == v1::RotationState::Succeeded as i32;
        if !matches!(self.shape, Shape::Json) {
            let mut line = format!(
                "{}rotation {id} {outcome}: {} steps done{}, {} probes ({} failed), {:.1} s",
                self.marker(),
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
            if self.dry_run {
                line.push_str(" (dry run: no agent was changed)");
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
    label_of::<v1::RotationState>(value).map_or_else(|| format!("UNKNOWN({value})"), str::to_string)
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

/// One readable line for an event, [`escape`]d: node ids, errors and reasons come from
/// the executor, and must not act on the terminal nor break the line.
pub fn event_line(event: &v1::RotationEvent) -> String {
    escape(&unescaped_event_line(event)).into_owned()
}

fn unescaped_event_line(event: &v1::RotationEvent) -> String {
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
        Some(Event::Waiting(w)) => format!(
            "waiting for `{}`: {} attempt {} failed, retrying: {}",
            w.node, w.call, w.attempt, w.error
        ),
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
        Some(Event::Waiting(w)) => (
            "waiting",
            json!({"node": w.node, "call": w.call, "attempt": w.attempt, "error": w.error}),
        ),
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
            failure: v1::ProbeFailure::TlsRefused as i32,
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

    /// What the executor sends is printed escaped in a watch's lines: an id, a reason
    /// or an error cannot retitle the terminal, return the carriage or forge a line.
    #[test]
    fn event_lines_escape_what_the_executor_sends() {
        let paused = event(Event::Paused(v1::Paused {
            reason: "freeze\u{1b}]0;owned\u{7}\rDONE\nfinished: SUCCEEDED".into(),
        }));
        let line = event_line(&paused);
        assert_eq!(
            line,
            "PAUSED: freeze\\u{1b}]0;owned\\u{7}\\rDONE\\nfinished: SUCCEEDED \
             (the executor waits for Resume, Abort or Rollback)"
        );
        let failed = event(Event::StepFailed(v1::StepFailed {
            step: Some(v1::StepRef {
                id: 1,
                node: "g\u{1b}[2Jw".into(),
                action: v1::StepAction::Stage as i32,
            }),
            error: "no\u{7}".into(),
            ..Default::default()
        }));
        assert_eq!(
            event_line(&failed),
            "step 1 (stage g\\u{1b}[2Jw) FAILED: no\\u{7}"
        );
        // JSON keeps the text as sent: serde escapes it.
        assert_eq!(
            event_json(&paused)["reason"],
            "freeze\u{1b}]0;owned\u{7}\rDONE\nfinished: SUCCEEDED"
        );
    }
}
