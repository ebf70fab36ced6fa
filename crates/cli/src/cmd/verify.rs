//! `rollover verify`: check a plan file against a topology with the independent
//! verifier; exit 0 when safe, 1 when some undeclared link can break.

use std::time::Instant;

use clap::ValueEnum;
use rollover_core::{Topology, verify_document};

use crate::render;
use crate::status::Status;
use crate::{input, output};

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Check that a plan keeps every undeclared link up.

The verifier does not trust the planner: from the plan's partial order (each node's
own steps in file order, plus every step's `after` list) it finds, for every link,
whether some interleaving the executor may run puts the two ends in states whose
handshake fails. A plan is safe iff that never happens except on the links it
declares as disruptions.

Exit status: 0 safe, 1 unsafe (each broken link is listed as `client -> server` with
the two steps whose order is not enforced and the TLS failure that results), 2 bad
input (the error names the file, line, column and field).";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover plan examples/mixed.yaml --format json -o mixed.plan.json
  rollover verify examples/mixed.yaml mixed.plan.json
  rollover plan examples/claim-unsafe.yaml --strategy claim --format json \\
    | rollover verify examples/claim-unsafe.yaml - --format json";

/// Arguments of `rollover verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Topology file (YAML or JSON); `-` reads standard input.
    /// Node ids: 1 to 253 bytes, printable (no control or bidi characters).
    #[arg(value_name = "TOPOLOGY")]
    pub topology: String,
    /// Plan file (`rollover-plan/1`, JSON or YAML); `-` reads standard input.
    #[arg(value_name = "PLAN")]
    pub plan: String,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = VerifyFormat::Text)]
    pub format: VerifyFormat,
    /// Write the output to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// `--format` of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    /// A verdict line, then one line per broken link.
    Text,
    /// The verdict as JSON (safe, waves, broken, undeclared_count, ...).
    Json,
}

/// Run `rollover verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<Status> {
    input::at_most_one_stdin(&[&args.topology, &args.plan])?;
    let topology_source = input::read(&args.topology)?;
    let topology = Topology::parse(&topology_source.origin, &topology_source.text)?;
    let plan_source = input::read(&args.plan)?;
    let started = Instant::now();
    let (plan, verdict) = verify_document(&topology, &plan_source.origin, &plan_source.text)?;
    tracing::info!(
        safe = verdict.safe,
        links = verdict.links_checked,
        undeclared = verdict.undeclared_count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "verified"
    );
    let text = match args.format {
        VerifyFormat::Text => render::verdict::text(&plan, &verdict),
        VerifyFormat::Json => format!("{}\n", serde_json::to_string_pretty(&verdict)?),
    };
    output::write(args.output.as_deref(), &text)?;
    Ok(if verdict.safe {
        Status::Success
    } else {
        Status::Failure
    })
}
