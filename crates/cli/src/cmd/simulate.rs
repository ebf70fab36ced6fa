//! `rollover simulate`: rotate a topology across in-process agents doing real rustls
//! handshakes, through the real planner and executor, and report every failure.

use std::io::IsTerminal;
use std::sync::Arc;

use clap::ValueEnum;
use rollover_core::{Plan, Strategy, Topology};
use rollover_simulator::{ChaosReport, ChaosSpec, Progress, SimOptions, SimOutcome, simulate};

use crate::input;
use crate::output::OutputArgs;
use crate::status::Status;

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

Exit status: 0 when no undeclared link failed and every node ends on the new key only
(and, with --chaos, no invariant was broken), 1 otherwise, 2 on bad input.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover simulate examples/plant-300.yaml
  rollover simulate examples/chain-60.yaml --strategy bridge
  rollover simulate examples/mixed.yaml --report mixed.sim.json --seed 7
  rollover plan examples/mixed.yaml --strategy naive -f json -o naive.json
  rollover simulate examples/mixed.yaml --plan naive.json
  rollover simulate examples/mixed.yaml --chaos agent-crash=0.05,executor-crash=3,drop=0.02,delay=50ms,partition=0.01,duplicate=0.02 --seed 7
  rollover simulate examples/mesh.yaml --chaos agent-crash=0.1,strand=0.02,drop=0.05 --seeds 20";

/// Arguments of `rollover simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Topology file (YAML or JSON); `-` reads standard input.
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
    /// (kinds: agent-crash, strand, executor-crash, drop, delay, partition, duplicate).
    #[arg(long, value_name = "SPEC", value_parser = parse_chaos)]
    pub chaos: Option<ChaosSpec>,
    /// With --chaos: run N seeded runs, from --seed on.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "chaos",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
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
    if args.chaos.is_some() {
        return run_chaos(args, &topology, plan);
    }
    let bar = progress_bar();
    let options = options(args, plan, args.seed, bar.as_ref());
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(simulate(&topology, options))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    write_report(args, &outcome)?;
    let text = if args.out.is_json() {
        serde_json::to_string_pretty(&outcome.report)? + "\n"
    } else {
        summary(&outcome)
    };
    args.out.write(&text)?;
    Ok(if outcome.passed() {
        Status::Success
    } else {
        Status::Failure
    })
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
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let bar = progress_bar();
        let options = options(args, plan.clone(), seed, bar.as_ref());
        let result = runtime.block_on(simulate(topology, options));
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let line = match result {
            Ok(outcome) => {
                write_report(args, &outcome)?;
                let chaos = outcome.chaos.clone().unwrap_or_default();
                if args.seeds == 1 && !args.out.is_json() {
                    text.push_str(&summary(&outcome));
                }
                failed += u64::from(!outcome.passed());
                let line = format!(
                    "seed {seed}: {}, {} faults, {} violations, {} handshakes ({} failed on undeclared links), {:.2} s\n",
                    if outcome.passed() { "PASS" } else { "FAIL" },
                    chaos.faults(),
                    chaos.violations.len(),
                    outcome.report.handshakes_total,
                    outcome.report.failed_undeclared,
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
        if !args.out.is_json() {
            // One line per run as it ends, so a long series shows progress.
            sink.line(line.trim_end());
        }
    }
    if args.out.is_json() {
        text = serde_json::to_string_pretty(&total)? + "\n";
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
    Ok(if failed == 0 && total.violations.is_empty() {
        Status::Success
    } else {
        Status::Failure
    })
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
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

/// The short text summary.
pub fn summary(outcome: &SimOutcome) -> String {
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
        out.push_str(&format!("failures (first {}):\n", r.failures.len()));
        for f in &r.failures {
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
    out.push_str(&format!(
        "{}: {} undeclared failures, all_new {}\n",
        if outcome.passed() { "PASS" } else { "FAIL" },
        r.failed_undeclared,
        r.all_new
    ));
    out
}
