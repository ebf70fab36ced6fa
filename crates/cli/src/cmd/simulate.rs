//! `rollover simulate`: rotate a topology across in-process agents doing real rustls
//! handshakes, through the real planner and executor, and report every failure.

use std::io::IsTerminal;
use std::sync::Arc;

use clap::ValueEnum;
use rollover_core::{Fleet, Plan, Strategy, Topology};
use rollover_simulator::{
    ChaosReport, ChaosSpec, GroupOptions, Progress, SimOptions, SimOutcome, simulate,
};

use crate::input;
use crate::logs::{self, Verbosity};
use crate::output::OutputArgs;
use crate::render;
use crate::status::{BadInput, Status};

/// Failures listed in the summary (all of them with -v, in the report and the page).
const SUMMARY_FAILURES: usize = 10;

/// Failures kept for `--html`, where every one is drawn on its link.
const HTML_FAILURES: usize = 100_000;

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Simulate a rotation with real agents and real TLS handshakes.

One in-process agent per target node (the same code as `rollover agent`: a rustls
server and client whose credentials are swapped live), the planner and the executor
run on loopback; the executor drives the agents over gRPC with mTLS exactly as in a
real rotation. After every step every link touching the stepped node is handshaken,
and random links are handshaken in the background while steps run. Links under other
CAs are simulated with their own CA and must stay up. At the end, with the old root
withdrawn everywhere, every link is handshaken once more, every node must hold and
trust only the new root, and a client holding only an old-root leaf must be refused.

With --plan the given plan is run as is, even an unsafe one (the negative control),
as the one interleaving --seed picks; the report names every failed link, the step
that was running and the TLS error.

With --chaos SPEC faults are injected, all drawn from --seed: `agent-crash=p` (after
a step, kill the agent and restart it on its state directory and ports), `strand=p`
(before a step, take the agent down past the executor's retries: the rotation pauses
naming it and is resumed once it is back), `executor-crash=N` (kill the executor N
times and reopen it on its journal), `drop=p` (lose a control call, before or after the
agent acted), `delay=D` (hold every call back up to D), `partition=p` (cut the executor
off from an agent for a while), `duplicate=p` (send a call twice). After the run the
invariants are checked: no undeclared handshake failure, every step applied exactly
once per node, no journal entry lost, every node on the new key, no private key in
any call. --seeds N runs N seeded runs (--seed, --seed + 1, ...) and prints the counts
(runs, faults by kind, violations).

With --journal postgres://user@host:port/db --executors N the executor is a group of N
executors on that database (the same group loop as `serve executor --journal`): one
leads through the lease, the others wait. Each reaches the database through a relay of
its own, so `leader-crash=N` (kill the leader N times; its lease expires and another
takes over), `postgres-cut=N` (drop the leader's database connections for longer
than its lease), `postgres-blip=N` (drop them N times for 0.2 to 3 s, shorter than the
lease: the leader keeps leading and must neither lose nor invent a transition while it
cannot write its journal) and `postgres-slow=D` (hold everything each executor sends
the database back up to D) can be injected; with blips or a slow database the group's
lease is 5 s, renewed every second. The run is checked as a chaotic one, and the counts
add the executors, the changes of leader and the late calls of deposed leaders that
agents refused by epoch. Use an empty database: the run's rotation stays in it.

Output: a progress bar on a terminal, then a summary. Warnings logged during the run
(a bad plan logs one per failed probe) are counted and the first few shown after the
summary; -v prints every log line as it happens (through the progress bar), -q prints
only the final PASS/FAIL line. --html FILE writes one self-contained page (inline SVG,
no script, nothing fetched): the waves as a timeline, the fleet graph, and every failed
handshake on its link and step.

Exit status: 0 when no undeclared link failed and every node ends on the new key only
(and, with --chaos, no invariant was broken), 1 otherwise, 2 on bad input.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover simulate examples/plant-300.yaml
  rollover simulate examples/chain-60.yaml --strategy bridge
  rollover simulate examples/mixed.yaml --report mixed.sim.json --seed 7
  rollover simulate examples/claim-unsafe.yaml --strategy claim --html claim.html
  rollover plan examples/mixed.yaml --strategy naive -f json -o naive.json
  rollover simulate examples/mixed.yaml --plan naive.json
  rollover simulate examples/mixed.yaml --chaos agent-crash=0.05,executor-crash=3,drop=0.02,delay=50ms,partition=0.01,duplicate=0.02 --seed 7
  rollover simulate examples/mesh.yaml --chaos agent-crash=0.1,strand=0.02,drop=0.05 --seeds 20
  rollover simulate examples/plant-300.yaml --journal postgres://rollover@127.0.0.1:5432/sim --executors 3 --chaos leader-crash=3 --seed 1";

/// Arguments of `rollover simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Topology file (YAML or JSON); `-` reads standard input.
    /// Node ids: 1 to 253 bytes, printable (no control or bidi characters).
    #[arg(value_name = "TOPOLOGY")]
    pub topology: String,
    /// Run this plan as is instead of asking the planner (e.g. an unsafe one).
    #[arg(long, value_name = "PLAN")]
    pub plan: Option<String>,
    /// Planning strategy when no plan is given.
    #[arg(long, value_enum, default_value_t = SimStrategy::Waves)]
    pub strategy: SimStrategy,
    /// Start node of the `claim` strategy (default: the first target).
    #[arg(long, value_name = "NODE")]
    pub start: Option<String>,
    /// Write the JSON report (`rollover-sim/1`) here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<String>,
    /// Write a self-contained HTML page of the run here: timeline, fleet graph and
    /// every failed handshake on its link and step.
    #[arg(long, value_name = "FILE")]
    pub html: Option<String>,
    /// Seed of the background probe schedule and of a given plan's interleaving.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Background handshakes per second on random links while steps run (0: none).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub probe_rate: u32,
    /// Most steps in flight at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_concurrency: u32,
    /// `-f json`: print the report as JSON instead of the summary (with --chaos: the
    /// chaos counts of all runs); `-o FILE`: write it there instead of standard output.
    #[command(flatten)]
    pub out: OutputArgs,
    /// Inject faults, e.g.
    /// `agent-crash=0.05,executor-crash=3,drop=0.02,delay=50ms,partition=0.01,duplicate=0.02`
    /// (kinds: agent-crash, strand, executor-crash, drop, delay, partition, duplicate;
    /// with --journal also leader-crash, postgres-cut, postgres-blip, postgres-slow).
    #[arg(long, value_name = "SPEC", value_parser = parse_chaos)]
    pub chaos: Option<ChaosSpec>,
    /// With --chaos or --journal: run N seeded runs, from --seed on.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Run a group of executors on this PostgreSQL database
    /// (`postgres://user@host:port/db`, best empty) instead of one executor on an
    /// in-memory journal; allows `--chaos leader-crash=N,postgres-cut=N,postgres-blip=N,
    /// postgres-slow=D`.
    #[arg(long, value_name = "URL")]
    pub journal: Option<String>,
    /// With --journal: how many executors in the group (one leads at a time).
    #[arg(long, value_name = "N", default_value_t = 3, requires = "journal",
          value_parser = clap::value_parser!(u64).range(1..=16))]
    pub executors: u64,
}

fn parse_chaos(text: &str) -> Result<ChaosSpec, String> {
    text.parse()
        .map_err(|e: rollover_simulator::chaos::ChaosSpecError| e.to_string())
}

/// `--strategy` of `simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimStrategy {
    /// Fewest waves, provably safe (default).
    Waves,
    /// The source design's literal breadth-first order.
    Claim,
    /// Cross-signed bridges first (MODEL §11): every node sends bridges, so any
    /// order of the usual steps keeps links up; the executor must hold the old
    /// root's key (the simulator gives it the one it made).
    Bridge,
}

/// Run `rollover simulate`.
pub fn run(args: &SimulateArgs) -> anyhow::Result<Status> {
    let source = input::read(&args.topology)?;
    let topology = Topology::parse(&source.origin, &source.text)?;
    let plan = match &args.plan {
        Some(path) => {
            let plan_source = input::read(path)?;
            Some(Plan::parse(&plan_source.origin, &plan_source.text)?)
        }
        None => None,
    };
    if let Some(url) = &args.journal
        && !rollover_journal_postgres::is_postgres_url(url)
    {
        return Err(BadInput(format!(
            "--journal {url}: expected postgres://user@host:port/db"
        ))
        .into());
    }
    if let Some(spec) = &args.chaos {
        if args.journal.is_none() && spec.needs_group() {
            return Err(BadInput(
                "--chaos leader-crash/postgres-cut/postgres-blip/postgres-slow need an \
                 executor group: \
                 --journal postgres://... --executors N"
                    .into(),
            )
            .into());
        }
        if args.journal.is_some() && spec.executor_crash > 0 {
            return Err(BadInput(
                "--chaos executor-crash reopens the single executor's embedded journal; \
                 with --journal use leader-crash=N"
                    .into(),
            )
            .into());
        }
    }
    if args.chaos.is_some() || args.journal.is_some() {
        return run_chaos(args, &topology, plan);
    }
    if args.seeds > 1 {
        return Err(BadInput("--seeds needs --chaos or --journal".into()).into());
    }
    let verbosity = logs::verbosity();
    let bar = progress_bar(verbosity);
    let options = options(args, plan, args.seed, bar.as_ref());
    let held = with_logs(verbosity, bar.as_ref(), || -> anyhow::Result<SimOutcome> {
        let runtime = tokio::runtime::Runtime::new()?;
        Ok(runtime.block_on(simulate(&topology, options))?)
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (outcome, held) = held;
    let outcome = outcome?;
    write_report(args, &outcome)?;
    write_html(args, &topology, &outcome)?;
    let text = if args.out.is_json() {
        serde_json::to_string_pretty(&outcome.report)? + "\n"
    } else if verbosity == Verbosity::Quiet {
        verdict_line(&outcome)
    } else {
        let listed = match verbosity {
            Verbosity::Verbose(_) => usize::MAX,
            _ => SUMMARY_FAILURES,
        };
        summary_listing(&outcome, listed)
    };
    args.out.write(&text)?;
    // After the summary, so that on a terminal it is what the eye lands on last.
    if verbosity != Verbosity::Quiet {
        eprint!("{}", held.summary());
    }
    Ok(if outcome.passed() {
        Status::Success
    } else {
        Status::Failure
    })
}

/// Run `work` with log lines routed for `verbosity`: held and summarised by default,
/// through the progress bar with -v. Returns what was held.
fn with_logs<T>(
    verbosity: Verbosity,
    bar: Option<&indicatif::ProgressBar>,
    work: impl FnOnce() -> T,
) -> (T, logs::Held) {
    let sink = logs::sink();
    if let Some(bar) = bar {
        sink.attach_bar(bar);
    }
    if verbosity == Verbosity::Normal {
        sink.hold();
    }
    let result = work();
    let held = sink.release();
    sink.detach_bar();
    (result, held)
}

fn write_html(
    args: &SimulateArgs,
    topology: &Topology,
    outcome: &SimOutcome,
) -> anyhow::Result<()> {
    let Some(path) = &args.html else {
        return Ok(());
    };
    let fleet = Fleet::new(topology);
    let view = render::view::View::new(topology, &fleet, &outcome.plan);
    let page = render::html::page(&render::html::Page {
        view: &view,
        plan: &outcome.plan,
        verdict: &outcome.verdict,
        report: Some(&outcome.report),
    });
    std::fs::write(path, page)
        .map_err(|e| anyhow::anyhow!("{path}: cannot write the HTML page: {e}"))
}

fn options(
    args: &SimulateArgs,
    plan: Option<Plan>,
    seed: u64,
    bar: Option<&indicatif::ProgressBar>,
) -> SimOptions {
    SimOptions {
        plan,
        strategy: match args.strategy {
            SimStrategy::Waves => Strategy::Waves,
            SimStrategy::Claim => Strategy::Claim,
            SimStrategy::Bridge => Strategy::Bridge,
        },
        start: args.start.clone(),
        seed,
        probe_rate: args.probe_rate,
        max_concurrency: args.max_concurrency,
        progress: bar.cloned().map(|bar| {
            Arc::new(move |p: &Progress| update(&bar, p)) as rollover_simulator::ProgressFn
        }),
        chaos: args.chaos.clone(),
        group: args
            .journal
            .as_ref()
            .map(|url| GroupOptions::new(url.clone(), args.executors as usize)),
        max_failures_listed: if args.html.is_some() {
            HTML_FAILURES
        } else {
            SimOptions::default().max_failures_listed
        },
        ..SimOptions::default()
    }
}

fn write_report(args: &SimulateArgs, outcome: &SimOutcome) -> anyhow::Result<()> {
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&outcome.report)? + "\n")
            .map_err(|e| anyhow::anyhow!("{path}: cannot write the report: {e}"))?;
    }
    Ok(())
}

/// `--chaos`: one or `--seeds` seeded chaotic runs; a line per run, then the counts.
fn run_chaos(
    args: &SimulateArgs,
    topology: &Topology,
    plan: Option<Plan>,
) -> anyhow::Result<Status> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut total = ChaosReport::default();
    let mut failed = 0u64;
    let mut text = String::new();
    let mut sink = args.out.sink()?;
    let verbosity = logs::verbosity();
    let mut held_total = logs::Held::default();
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let bar = progress_bar(verbosity);
        let options = options(args, plan.clone(), seed, bar.as_ref());
        let (result, held) = with_logs(verbosity, bar.as_ref(), || {
            runtime.block_on(simulate(topology, options))
        });
        held_total.count += held.count;
        for line in held.first {
            if held_total.first.len() < logs::KEEP {
                held_total.first.push(line);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let line = match result {
            Ok(outcome) => {
                write_report(args, &outcome)?;
                let chaos = outcome.chaos.clone().unwrap_or_default();
                write_html(args, topology, &outcome)?;
                if args.seeds == 1 && !args.out.is_json() && verbosity != Verbosity::Quiet {
                    text.push_str(&summary(&outcome));
                }
                failed += u64::from(!outcome.passed());
                let leaders = if chaos.executors > 0 {
                    format!(", {} leader changes", chaos.leader_changes)
                } else {
                    String::new()
                };
                let line = format!(
                    "seed {seed}: {}, {} faults, {} violations{leaders}, {} handshakes ({} failed on undeclared links), all new {}, {:.2} s\n",
                    if outcome.passed() { "PASS" } else { "FAIL" },
                    chaos.faults(),
                    chaos.violations.len(),
                    outcome.report.handshakes_total,
                    outcome.report.failed_undeclared,
                    outcome.report.all_new,
                    outcome.report.rotation_seconds
                );
                total.merge(&chaos);
                line
            }
            Err(e) => {
                failed += 1;
                total.merge(&ChaosReport {
                    runs: 1,
                    violations: vec![format!("seed {seed}: the simulation did not finish: {e}")],
                    ..ChaosReport::default()
                });
                format!("seed {seed}: FAIL, the simulation did not finish: {e}\n")
            }
        };
        if !args.out.is_json() && verbosity != Verbosity::Quiet {
            // One line per run as it ends, so a long series shows progress.
            sink.line(line.trim_end());
        }
    }
    if args.out.is_json() {
        text = serde_json::to_string_pretty(&total)? + "\n";
    } else if verbosity == Verbosity::Quiet {
        text = format!(
            "{}: {} of {} runs passed\n",
            if failed == 0 { "PASS" } else { "FAIL" },
            total.runs - failed,
            total.runs
        );
    } else {
        text.push_str(&total.summary());
        text.push_str(&format!(
            "{}: {} of {} runs passed\n",
            if failed == 0 { "PASS" } else { "FAIL" },
            total.runs - failed,
            total.runs
        ));
    }
    sink.line(text.trim_end());
    if verbosity != Verbosity::Quiet {
        eprint!("{}", held_total.summary());
    }
    Ok(if failed == 0 && total.violations.is_empty() {
        Status::Success
    } else {
        Status::Failure
    })
}

fn progress_bar(verbosity: Verbosity) -> Option<indicatif::ProgressBar> {
    if verbosity == Verbosity::Quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg:20} [{bar:30}] {pos}/{len} steps  {prefix}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

fn update(bar: &indicatif::ProgressBar, p: &Progress) {
    bar.set_message(p.phase.clone());
    if p.steps_total > 0 {
        bar.set_length(p.steps_total);
        bar.set_position(p.steps_done);
    }
    bar.set_prefix(format!("{} handshakes, {} failed", p.handshakes, p.failed));
}

/// The last line of the summary, alone with `--quiet`.
fn verdict_line(outcome: &SimOutcome) -> String {
    let r = &outcome.report;
    format!(
        "{}: {} undeclared failures, all_new {}\n",
        if outcome.passed() { "PASS" } else { "FAIL" },
        r.failed_undeclared,
        r.all_new
    )
}

/// The short text summary, listing the first few failures.
pub fn summary(outcome: &SimOutcome) -> String {
    summary_listing(outcome, SUMMARY_FAILURES)
}

/// The short text summary, listing at most `listed` failures.
pub fn summary_listing(outcome: &SimOutcome, listed: usize) -> String {
    let r = &outcome.report;
    let mut out = String::new();
    let v = &outcome.verdict;
    out.push_str(&format!(
        "simulated rotation: {} nodes, {} links ({} under other CAs), {} steps in {} waves, strategy `{}`, seed {}\n",
        r.nodes, r.links, r.foreign_links, r.steps, r.waves, r.strategy, r.seed
    ));
    out.push_str(&format!(
        "verifier on this plan: {} ({} undeclared broken links, {} declared disruptions)\n",
        if v.safe { "safe" } else { "UNSAFE" },
        v.undeclared_count,
        r.declared_disruptions
    ));
    out.push_str(&format!(
        "handshakes: {} total ({} after steps, {} background, {} final), {} failed, {} on undeclared links\n",
        r.handshakes_total,
        r.probes_after_steps,
        r.background_handshakes,
        r.final_handshakes,
        r.handshakes_failed,
        r.failed_undeclared
    ));
    out.push_str(&format!(
        "coverage: {:.1}% of links touching a stepped node probed right after the step\n",
        r.links_probed_every_step * 100.0
    ));
    out.push_str(&format!(
        "rotation: {:.2} s, {:.0} handshakes/s; outcome {}\n",
        r.rotation_seconds, r.handshakes_per_second, r.outcome
    ));
    out.push_str(&format!(
        "end state: {} nodes on the new root only, old-root client refused by {}/{} nodes, final handshakes failed: {}\n",
        r.nodes_on_new_only, r.old_key_refused, r.old_key_checks, r.final_failed
    ));
    if !r.failures.is_empty() {
        let shown = r.failures.len().min(listed);
        out.push_str(&format!(
            "failures (first {shown} of {}{}):\n",
            r.handshakes_failed,
            if shown < r.handshakes_failed as usize {
                "; -v, --report FILE or --html FILE list more"
            } else {
                ""
            }
        ));
        for f in r.failures.iter().take(shown) {
            out.push_str(&format!(
                "  {} -> {}{} during {}: {}\n",
                f.client,
                f.server,
                if f.declared { " (declared)" } else { "" },
                f.step,
                f.error
            ));
        }
    }
    out.push_str(&verdict_line(outcome));
    out
}
