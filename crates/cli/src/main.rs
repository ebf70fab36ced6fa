//! The `rollover` binary: argument parsing, dispatch to one module per subcommand, and
//! the exit codes every subcommand shares.
//!
//! * `0`: done (for `verify`: the plan is safe);
//! * `1`: the plan is unsafe, or the command failed for a reason other than its input
//!   (e.g. the output file cannot be written);
//! * `2`: bad input (unreadable or malformed files, bad arguments), with the error on
//!   stderr as `error: <file>:<line>:<col>: field `x`: message`.
//!
//! Logs go to stderr through `tracing`, filtered by `RUST_LOG` (default `warn`).

mod cmd;
mod input;
mod output;
mod render;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::status::Status;

const ABOUT: &str = "Rotate a root CA across a fleet of mTLS nodes without breaking handshakes";

const LONG_ABOUT: &str = "\
Rotate a root CA across a fleet of mTLS nodes without breaking handshakes.

rollover reads a topology (which CA rotates, which nodes hold it, who is client of
whom), computes a plan of per-node steps (stage/present/retire for nodes that can hold
two roots, switch/finalize for constrained `atomic` nodes) ordered so that every link
keeps a working handshake, and checks any plan independently against the handshake
rule.

Exit codes: 0 ok, 1 unsafe plan or failure, 2 bad input.
Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to see more.";

const EXAMPLES: &str = "\
Examples:
  rollover plan examples/mesh.yaml
  rollover plan examples/mixed.yaml --format json -o mixed.plan.json
  rollover verify examples/mixed.yaml mixed.plan.json";

/// Command line of `rollover`.
#[derive(Debug, Parser)]
#[command(name = "rollover", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each lives in its own module under `cmd/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Compute a rotation plan for a topology.
    #[command(long_about = cmd::plan::LONG_ABOUT, after_help = cmd::plan::EXAMPLES)]
    Plan(cmd::plan::PlanArgs),
    /// Check that a plan keeps every undeclared link up.
    #[command(long_about = cmd::verify::LONG_ABOUT, after_help = cmd::verify::EXAMPLES)]
    Verify(cmd::verify::VerifyArgs),
    /// Rotate a topology across in-process agents doing real TLS handshakes.
    #[command(long_about = cmd::simulate::LONG_ABOUT, after_help = cmd::simulate::EXAMPLES)]
    Simulate(cmd::simulate::SimulateArgs),
    /// Measure handshake rates and memory per agent (figures, not pass/fail).
    #[command(subcommand, long_about = cmd::bench::LONG_ABOUT, after_help = cmd::bench::EXAMPLES)]
    Bench(cmd::bench::BenchArgs),
    /// Make a root CA (or a service leaf) for demos and bootstrap.
    #[command(subcommand, long_about = cmd::pki::LONG_ABOUT, after_help = cmd::pki::EXAMPLES)]
    Pki(cmd::pki::PkiArgs),
    /// Run the planner or the executor as a server.
    #[command(subcommand, long_about = cmd::serve::LONG_ABOUT, after_help = cmd::serve::EXAMPLES)]
    Serve(cmd::serve::ServeArgs),
    /// Run one node's agent.
    #[command(long_about = cmd::agent::LONG_ABOUT, after_help = cmd::agent::EXAMPLES)]
    Agent(cmd::agent::AgentArgs),
    /// Start a rotation on an executor and follow it to its end.
    #[command(long_about = cmd::rotate::LONG_ABOUT, after_help = cmd::rotate::EXAMPLES)]
    Rotate(cmd::rotate::RotateArgs),
    /// Show a rotation's status on an executor, or list its rotations.
    #[command(long_about = cmd::status::LONG_ABOUT, after_help = cmd::status::EXAMPLES)]
    Status(cmd::status::StatusArgs),
}

impl Command {
    fn run(&self) -> anyhow::Result<Status> {
        match self {
            Command::Plan(args) => cmd::plan::run(args),
            Command::Verify(args) => cmd::verify::run(args),
            Command::Simulate(args) => cmd::simulate::run(args),
            Command::Bench(args) => cmd::bench::run(args),
            Command::Pki(args) => cmd::pki::run(args),
            Command::Serve(args) => cmd::serve::run(args),
            Command::Agent(args) => cmd::agent::run(args),
            Command::Rotate(args) => cmd::rotate::run(args),
            Command::Status(args) => cmd::status::run(args),
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    // Usage errors are reported by clap itself, with exit code 2.
    let cli = Cli::parse();
    init_tracing();
    match cli.command.run() {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            Status::of_error(&err).into()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
