//! The `rollover` binary: argument parsing, dispatch to one module per subcommand, and
//! the exit codes every subcommand shares.
//!
//! * `0`: done (for `verify`: the plan is safe);
//! * `1`: the plan is unsafe, or the command failed for a reason other than its input
//!   (e.g. the output file cannot be written);
//! * `2`: bad input (unreadable or malformed files, bad arguments), with the error on
//!   stderr as `error: <file>:<line>:<col>: field `x`: message`.
//!
//! Logs go to stderr through `tracing` and [`logs`]: `-q` errors only, default warnings,
//! `-v`/`-vv`/`-vvv` more; `RUST_LOG` overrides the level.

mod cmd;
mod input;
mod lint;
mod logs;
mod output;
mod render;
mod status;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::status::Status;

/// mimalloc instead of the system allocator: a handshake allocates and frees many
/// small buffers on whichever thread runs it (rustls records, HTTP/2 frames, tokio
/// tasks), and glibc's malloc spent ~9% of a simulated rotation's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "Rotate a root CA across a fleet of mTLS nodes without breaking handshakes";

const LONG_ABOUT: &str = "\
Rotate a root CA across a fleet of mTLS nodes without breaking handshakes.

rollover reads a topology (which CA rotates, which nodes hold it, who is client of
whom), computes a plan of per-node steps (stage/present/retire for nodes that can hold
two roots, switch/finalize for constrained `atomic` nodes) ordered so that every link
keeps a working handshake, and checks any plan independently against the handshake
rule.

Running a rotation across real agents: `rollover check` (pre-flight), `rotate`,
`watch`, `status`, and the controls `pause`, `resume`, `abort`, `rollback`. Every
command that reports takes -f/--format text|json and -o/--output FILE; the executor's
address and the client TLS files come from flags or ROLLOVER_EXECUTOR,
ROLLOVER_TLS_CERT, ROLLOVER_TLS_KEY, ROLLOVER_CA (ROLLOVER_PLANNER for `serve
executor --planner`). `rollover completion bash|zsh|fish` prints shell completions.

Exit codes: 0 ok, 1 unsafe plan or failure, 2 bad input (every command's --help says
what each means for it).
Logs go to stderr: -q keeps only errors, -v adds rollover's info lines, -vv debug,
-vvv everything; RUST_LOG (e.g. RUST_LOG=debug) overrides the level. During a
simulation warnings are counted and the first few shown at the end, unless -v.";

const EXAMPLES: &str = "\
Examples:
  rollover plan examples/mesh.yaml
  rollover plan examples/mixed.yaml --format json -o mixed.plan.json
  rollover verify examples/mixed.yaml mixed.plan.json
  export ROLLOVER_EXECUTOR=127.0.0.1:7001
  rollover check fleet.yaml && rollover rotate fleet.yaml
  rollover resume r0195e1c2a3b4f00d9e8a7 --watch";

/// Command line of `rollover`.
#[derive(Debug, Parser)]
#[command(name = "rollover", version, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print only the result and errors: no progress bar, no warnings.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more log lines, as they happen (-v info, -vv debug, -vvv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
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
    /// Check a fleet before rotating it: planner, executor, every agent.
    #[command(long_about = cmd::check::LONG_ABOUT, after_help = cmd::check::EXAMPLES)]
    Check(cmd::check::CheckArgs),
    /// Follow a rotation's events until it ends.
    #[command(long_about = cmd::watch::LONG_ABOUT, after_help = cmd::watch::EXAMPLES)]
    Watch(cmd::watch::WatchArgs),
    /// Pause a rotation (no new steps until resumed).
    #[command(long_about = cmd::control::PAUSE_ABOUT, after_help = cmd::control::EXAMPLES)]
    Pause(cmd::control::ControlArgs),
    /// Resume a paused rotation.
    #[command(long_about = cmd::control::RESUME_ABOUT, after_help = cmd::control::EXAMPLES)]
    Resume(cmd::control::ControlArgs),
    /// Abort a rotation, leaving nodes where they are.
    #[command(long_about = cmd::control::ABORT_ABOUT, after_help = cmd::control::EXAMPLES)]
    Abort(cmd::control::ControlArgs),
    /// Roll a rotation back: every node back on the old root.
    #[command(long_about = cmd::control::ROLLBACK_ABOUT, after_help = cmd::control::EXAMPLES)]
    Rollback(cmd::control::ControlArgs),
    /// Print shell completions for bash, zsh or fish.
    #[command(long_about = cmd::completion::LONG_ABOUT, after_help = cmd::completion::EXAMPLES)]
    Completion(cmd::completion::CompletionArgs),
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
            Command::Check(args) => cmd::check::run(args),
            Command::Watch(args) => cmd::watch::run(args),
            Command::Pause(args) => cmd::control::run(cmd::control::Verb::Pause, args),
            Command::Resume(args) => cmd::control::run(cmd::control::Verb::Resume, args),
            Command::Abort(args) => cmd::control::run(cmd::control::Verb::Abort, args),
            Command::Rollback(args) => cmd::control::run(cmd::control::Verb::Rollback, args),
            Command::Completion(args) => cmd::completion::run(args, &mut Cli::command()),
        }
    }
}

fn main() -> ExitCode {
    // Usage errors are reported by clap itself, with exit code 2.
    let cli = Cli::parse();
    logs::init(logs::Verbosity::from_flags(cli.quiet, cli.verbose));
    match cli.command.run() {
        Ok(status) => status.into(),
        Err(err) => {
            // Errors quote input and servers' messages: escaped, and so on one line.
            eprintln!("error: {}", output::escape(&format!("{err:#}")));
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

    /// Every command says what its exit codes mean.
    #[test]
    fn every_command_documents_its_exit_codes() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.has_subcommands() {
                for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                    walk(sub, &path, missing);
                }
                return;
            }
            let help = [cmd.get_long_about(), cmd.get_about(), cmd.get_after_help()]
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect::<String>();
            if !(help.contains("Exit status") || help.contains("Exit codes")) {
                missing.push(path);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "no exit codes in the help of {missing:?}"
        );
    }
}
