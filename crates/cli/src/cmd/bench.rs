//! `rollover bench`: figures for the simulator's targets, measured in one run (never
//! a pass/fail timing test): handshake rates and memory per idle agent.

use clap::Subcommand;
use rollover_simulator::bench::{agent_memory, handshake_bench, peak_resident_bytes};

use crate::output;
use crate::status::Status;

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Measure the simulator's speed and memory, in one run.

`handshake` measures (a) bare rustls mutual handshakes per second between two
in-process endpoints with the same key type (ECDSA P-256) and the same live-credential
machinery, on as many threads as the machine has cores, then (b) the simulator's
handshakes per second during a rotation of a generated fleet (real agents, planner
and executor running alongside), and prints both and their ratio (target: b >= 70%
of a). (b) counts every completed mutual handshake of the rotation: the probes after
every step (loopback TCP, as in `simulate`) and the background prober's, unthrottled
here (in memory, one thread per core, with both ends' live credentials of the
moment); the output says how many of each.

`scale` simulates a rotation of a generated fleet (default 1,000 nodes, ~5,000 links)
and prints the handshakes per second, the wall time and the peak resident memory.
The agents share two listeners (routed by TLS server name) and the executor keeps a
bounded number of connections, so 10,000 nodes fit in a few thousand open files; the
soft open-files limit is raised to the hard one, and a fleet that still does not fit
is refused up front with the figures, never left to hang.

`memory` starts N idle agents and prints the resident memory each one costs
(target: under 200 KB).

Exit status: 0 when the figures were measured (whatever they are), 1 when the
measurement could not run, 2 on bad input.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover bench handshake
  rollover bench handshake --nodes 1000 --seconds 5
  rollover bench scale --nodes 1000 --fan-out 5
  rollover bench scale --nodes 10000
  rollover bench memory --agents 1000";

/// What every measurement's help says about its exit codes.
const EXIT_STATUS: &str = "\
Exit status: 0 when the figures were measured (whatever they are), 1 when the
measurement could not run, 2 on bad input.";

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchArgs {
    /// Bare handshakes per second against the simulator's, in one run.
    #[command(after_help = EXIT_STATUS)]
    Handshake {
        /// Nodes of the generated fleet rotated for (b).
        #[arg(long, default_value_t = 300)]
        nodes: usize,
        /// Seconds spent measuring (a).
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Most steps in flight during (b).
        #[arg(long, default_value_t = 64)]
        max_concurrency: u32,
    },
    /// Simulate a rotation of a generated layered fleet (fan-out links per node, 30%
    /// atomic, control channel in the rotated CA) and print the summary.
    #[command(after_help = EXIT_STATUS)]
    Scale {
        /// Nodes of the generated fleet.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Servers per client.
        #[arg(long, default_value_t = 5)]
        fan_out: usize,
        /// Background handshakes per second while steps run.
        #[arg(long, default_value_t = 200)]
        probe_rate: u32,
    },
    /// Resident memory per idle agent.
    #[command(after_help = EXIT_STATUS)]
    Memory {
        /// Agents to start.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
    },
}

/// Run `rollover bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<Status> {
    let runtime = tokio::runtime::Runtime::new()?;
    let text = match args {
        BenchArgs::Handshake {
            nodes,
            seconds,
            max_concurrency,
        } => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let bench =
                runtime.block_on(handshake_bench(*nodes, *seconds, threads, *max_concurrency))?;
            let r = &bench.simulated.report;
            format!(
                "(a) bare in-process mutual handshakes: {:.0}/s ({} in {:.2} s on {} threads)\n\
                 (b) simulator during a rotation:        {:.0}/s ({} handshakes in {:.2} s; {} nodes, {} links, {} steps, {} failed undeclared)\n\
                 \x20   of which {} after steps (over loopback TCP), {} background (in memory)\n\
                 ratio b/a: {:.0}%\n",
                bench.bare.per_second(),
                bench.bare.handshakes,
                bench.bare.seconds,
                bench.bare.threads,
                r.handshakes_per_second,
                r.handshakes_total - r.final_handshakes,
                r.rotation_seconds,
                r.nodes,
                r.links,
                r.steps,
                r.failed_undeclared,
                r.probes_after_steps,
                r.background_handshakes,
                bench.ratio() * 100.0
            )
        }
        BenchArgs::Scale {
            nodes,
            fan_out,
            probe_rate,
        } => {
            let topology = rollover_core::synth::layered_fleet(&rollover_core::synth::FleetShape {
                nodes: *nodes,
                fan_out: *fan_out,
                atomic_share: 0.3,
                control: true,
                seed: 5,
            });
            let options = rollover_simulator::SimOptions {
                probe_rate: *probe_rate,
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let outcome = runtime.block_on(rollover_simulator::simulate(&topology, options))?;
            format!(
                "{}whole run (setup, rotation, final checks): {:.1} s, peak resident memory {}\n",
                super::simulate::summary(&outcome),
                started.elapsed().as_secs_f64(),
                peak_resident_bytes()
                    .map_or_else(|| "unknown".into(), |b| format!("{:.0} MB", b as f64 / 1e6))
            )
        }
        BenchArgs::Memory { agents } => {
            let per_agent = runtime.block_on(agent_memory(*agents))?;
            format!(
                "{agents} idle agents: {:.0} KB resident memory per agent\n",
                per_agent / 1024.0
            )
        }
    };
    output::write(None, &text)?;
    Ok(Status::Success)
}
