//! `rollover check`: the pre-flight check of a fleet, changing nothing; `rotate` runs
//! it first.

use std::time::Duration;

use rollover_core::Topology;
use rollover_proto::labels::lower_label_of;
use rollover_proto::v1;
use serde_json::{Value, json};

use super::net::{self, ExecutorArgs};
use crate::input::{self, Source};
use crate::lint;
use crate::output::OutputArgs;
use crate::status::Status;

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Check a fleet before rotating it, changing nothing.

From the topology alone: every target node must have an agent `address`, and a node
named only in `links` while `nodes` is given is a problem (usually a typo'd id, which
would be rotated as a bundle node with no agent). Then the executor (CheckFleet) asks
its planner for a plan and every agent for its state (one try each, 3 s at most),
compares each agent's mode with the topology's and every node's current root with the
others' (and with the executor's own when it rotates its control channel), reports
nodes that are mid-rotation, and an active rotation of the CA (only one may run at a
time). Every problem is listed, not only the first: three dead agents are three
lines. `rollover rotate` runs the same check before it starts (unless --no-check).

Each agent also says whether it builds chains and how many identities it has, and
both are compared with the node's `chains` and `identity` in the topology. An agent
started with --no-chains whose node says `chains: true` (the default) is a problem:
a bridge plan would count on it using bridges. So is an agent run with --export (its
workload presents one leaf to every peer) whose node says `identity: multi` (the
default): the plan would miss the prerequisites such a node needs. The other way
round (`chains: false` or `identity: single` for an agent that can do more) is only
a note: the plan is more cautious than needed, not unsafe.

Exit status: 0 when no problem was found, 1 when one was (or the executor cannot be
reached), 2 on bad input (an unreadable or invalid topology).";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover check --executor 127.0.0.1:7001 fleet.yaml
  ROLLOVER_EXECUTOR=127.0.0.1:7001 rollover check fleet.yaml -f json";

/// Arguments of `rollover check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub executor: ExecutorArgs,
    /// Topology file (YAML or JSON) with every node's agent `address`; `-` reads stdin.
    /// Node ids: 1 to 253 bytes, printable (no control or bidi characters).
    #[arg(value_name = "TOPOLOGY")]
    pub topology: String,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem, as (kind, node, message).
    pub problems: Vec<(String, String, String)>,
    /// Agents reached: node, mode, root fingerprint.
    pub nodes: Vec<v1::NodeCheck>,
    /// What the planner said.
    pub planner: String,
    /// Harmless differences between the topology and the agents, as (node, message).
    pub notes: Vec<(String, String)>,
}

impl Report {
    fn add(&mut self, kind: &str, node: &str, message: String) {
        self.problems
            .push((kind.to_string(), node.to_string(), message));
    }

    /// The report for people: one line per problem.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if !self.planner.is_empty() {
            out.push_str(&format!("planner: {}\n", self.planner));
        }
        out.push_str(&format!("agents reached: {}\n", self.nodes.len()));
        out.push_str(&self.notes_text());
        if self.problems.is_empty() {
            out.push_str("no problem found: the fleet is ready to rotate\n");
            return out;
        }
        out.push_str(&format!("{} problem(s):\n", self.problems.len()));
        for (kind, _, message) in &self.problems {
            out.push_str(&format!("  {kind}: {message}\n"));
        }
        out
    }

    /// One `note:` line per note (empty without notes).
    pub fn notes_text(&self) -> String {
        self.notes
            .iter()
            .map(|(_, message)| format!("note: {message}\n"))
            .collect()
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        json!({
            "ok": self.problems.is_empty(),
            "planner": self.planner,
            "problems": self.problems.iter().map(|(kind, node, message)| json!({
                "kind": kind, "node": node, "message": message,
            })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().map(|n| json!({
                "node": n.node,
                "mode": lower_label_of::<v1::NodeMode>(n.mode).unwrap_or_else(|| "?".into()),
                "root_fingerprint": n.root_fingerprint,
                "address": n.address,
                // Null when the agent does not tell.
                "chains": n.chains,
                "identity": (n.identity != v1::NodeIdentity::Unspecified as i32)
                    .then(|| lower_label_of::<v1::NodeIdentity>(n.identity))
                    .flatten(),
            })).collect::<Vec<_>>(),
            "notes": self.notes.iter().map(|(node, message)| json!({
                "node": node, "message": message,
            })).collect::<Vec<_>>(),
        })
    }
}

fn kind_name(kind: i32) -> String {
    lower_label_of::<v1::FleetProblemKind>(kind)
        .map_or_else(|| "problem".to_string(), |k| k.replace('_', " "))
}

/// Run the check: the topology's own problems, then the executor's CheckFleet.
pub async fn run_checks(
    executor: &ExecutorArgs,
    source: &Source,
    topology: &Topology,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for id in lint::link_only_nodes(topology) {
        report.add(
            "link only node",
            &id,
            lint::link_only_text(&source.origin, &id),
        );
    }
    let (mut client, url) = executor.connect().await?;
    let url = url.as_str();
    let request = v1::CheckFleetRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Document(v1::Document {
                text: source.text.clone(),
                format: v1::DocumentFormat::Unspecified as i32,
                origin: source.origin.clone(),
            })),
        }),
    };
    match client.check_fleet(request).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            for p in answer.problems {
                report.add(&kind_name(p.kind), &p.node, p.message);
            }
            report.nodes = answer.nodes;
            report.planner = answer.planner;
            report.notes = answer
                .notes
                .into_iter()
                .map(|n| (n.node, n.message))
                .collect();
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            return Err(net::call_error("executor", url, status));
        }
        Err(status) => {
            // Without the executor nothing else can be checked: say so as a problem.
            let error = net::call_error("executor", url, status);
            report.add("executor", "", format!("{error:#}"));
            for id in lint::missing_addresses(topology) {
                report.add(
                    "missing address",
                    &id,
                    lint::missing_address_text(&source.origin, &id),
                );
            }
        }
    }
    Ok(report)
}

/// Run `rollover check`.
pub fn run(args: &CheckArgs) -> anyhow::Result<Status> {
    let source = input::read(&args.topology)?;
    let topology = Topology::parse(&source.origin, &source.text)?;
    let runtime = net::runtime()?;
    let report = runtime.block_on(run_checks(&args.executor, &source, &topology))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let text = if args.out.is_json() {
        format!("{:#}\n", report.json())
    } else {
        report.text()
    };
    args.out.write(&text)?;
    Ok(if report.problems.is_empty() {
        Status::Success
    } else {
        Status::Failure
    })
}
