//! `rollover plan`: read a topology, plan its rotation, print the plan in one of five
//! formats.

use std::path::PathBuf;
use std::time::Instant;

use clap::ValueEnum;
use rollover_core::{Figures, Fleet, PlanOptions, Strategy, Topology, planner, verify_plan};

use crate::render;
use crate::status::{BadInput, Status};
use crate::{input, output};

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Compute a rotation plan for a topology.

The default strategy (`waves`) orders every node's steps so that clients trust and hold
the new key before their servers start presenting it, runs independent steps in
parallel waves (the fewest possible), and, when constrained `atomic` nodes form a cycle
that no order can keep up, declares the fewest links as disruptions and says why.
`bridge` first has every node send cross-signed bridges (the new root certified by the
old and the other way round), so that any order of the usual steps keeps links up:
a fixed, small number of waves and no disruption whatever the depth or the cycles of
the graph (links with a `chains: false` end keep the `waves` order). After a `waves`
plan, a line says what `bridge` would give on the same fleet.
`claim` reproduces the source design's literal one-node-at-a-time order, for comparison;
check it with `rollover verify`. `naive` lets every node switch at once: the negative
control, unsafe whenever target nodes are linked.

Formats:
  text   the plan by wave, its disruptions, the comparison with `bridge` (after a
         `waves` plan) and a summary line
         `N nodes, L links, W waves, D disruptions` (N counts @executor when the
         control channel is anchored in the rotated CA; L counts the distinct links
         anchored in the rotated CA, self-links and control links included)
  json   the plan file (`rollover-plan/1`), input to `rollover verify`; after a
         `waves` plan its optional `comparison` field gives waves and disruptions of
         this plan and of `bridge`
  dot    Graphviz of the fleet, nodes clustered by the wave where they start
         presenting the new key; each rotated link is labelled `wN`, the wave from
         which it runs on the new key; disrupted links dashed red, atomic nodes boxes,
         links under other CAs grey. `@executor`'s links (one to every target) are
         collapsed into a note; --focus NODE [--depth N] draws only a neighbourhood
         (--focus @executor draws the executor's links). Beyond 300 edges (e.g.
         the 300-node plant), the default is a summary Graphviz lays out in a
         second: one box per wave listing its nodes, one edge per pair of boxes
         with the count of links it stands for; --full draws every link
  html   one self-contained page (inline SVG, no script, nothing fetched): the waves
         as a timeline, the fleet graph, and every link the verifier finds can break,
         on its link and with the two steps whose order breaks it
  order  the nodes, one per line, in the order they first act

A node named only in `links` while `nodes` is given is planned (as a bundle node) with
a warning on stderr: it is usually a typo'd id (`rollover check` counts it as an
error).

Exit status: 0 when planned, 1 when the output cannot be written, 2 on bad input (the
error names the file, line, column and field).";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover plan examples/mesh.yaml
  rollover plan examples/ring.yaml --format json -o ring.plan.json
  rollover plan examples/chain-60.yaml --strategy bridge
  rollover plan examples/mixed.yaml --format dot | dot -Tsvg > mixed.svg
  rollover plan examples/plant-300.yaml --format dot | dot -Tsvg > plant.svg
  rollover plan examples/plant-300.yaml --format dot --focus plc-a1-01 --depth 2 | dot -Tsvg > plc.svg
  rollover plan examples/claim-unsafe.yaml --strategy claim --format html -o claim.html
  rollover plan examples/claim-unsafe.yaml --strategy claim --start meter-1
  cat examples/mesh.yaml | rollover plan - --format order";

/// Arguments of `rollover plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Topology file (YAML or JSON); `-` reads standard input.
    /// Node ids: 1 to 253 bytes, printable (no control or bidi characters).
    #[arg(value_name = "TOPOLOGY")]
    pub topology: String,
    /// Ordering strategy.
    #[arg(long, value_enum, default_value_t = StrategyArg::Waves)]
    pub strategy: StrategyArg,
    /// Node the `claim` strategy starts from (default: the first target node).
    #[arg(long, value_name = "NODE")]
    pub start: Option<String>,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Write the output to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With `--format dot`: draw only the nodes within --depth links of NODE.
    #[arg(long, value_name = "NODE")]
    pub focus: Option<String>,
    /// With --focus: how many links away from NODE to draw.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "focus")]
    pub depth: u32,
    /// With `--format dot`: draw every node and link, even on a fleet so large that
    /// the default summarises it by wave (Graphviz then takes minutes).
    #[arg(long, conflicts_with = "focus")]
    pub full: bool,
}

/// `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Parallel waves, provably safe, fewest waves and disruptions.
    Waves,
    /// Cross-signed bridges first, then every node's steps: a fixed number of waves
    /// and no disruption on links whose ends support chains (MODEL §11).
    Bridge,
    /// The source design's literal order, one node at a time (may be unsafe).
    Claim,
    /// Every node switches at once with no cross-node order: the negative control
    /// for `verify` and `simulate --plan` (unsafe whenever target nodes are linked).
    Naive,
}

/// `--format` of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Readable plan by wave, with a summary line.
    Text,
    /// The plan file (`rollover-plan/1`).
    Json,
    /// Graphviz digraph of the fleet, clustered and labelled by wave.
    Dot,
    /// One self-contained HTML page: timeline, fleet graph, breakable links.
    Html,
    /// Node ids, one per line, in the order they first act.
    Order,
}

/// Run `rollover plan`.
pub fn run(args: &PlanArgs) -> anyhow::Result<Status> {
    let source = input::read(&args.topology)?;
    let topology = Topology::parse(&source.origin, &source.text)?;
    // Planned anyway (the document is valid), but almost always a typo.
    for id in crate::lint::link_only_nodes(&topology) {
        eprintln!(
            "warning: {}",
            crate::lint::link_only_text(&source.origin, &id)
        );
    }
    let fleet = Fleet::new(&topology);
    if args.full && args.format != PlanFormat::Dot {
        return Err(BadInput("`--full` only applies to `--format dot`".into()).into());
    }
    if let Some(focus) = &args.focus {
        if args.format != PlanFormat::Dot {
            return Err(BadInput("`--focus` only applies to `--format dot`".into()).into());
        }
        let known = fleet.node(focus).is_some()
            || render::view::foreign_links(&topology)
                .iter()
                .any(|(c, s, _)| c == focus || s == focus);
        if !known {
            return Err(BadInput(format!(
                "`--focus {focus}`: no such node in {}",
                source.origin
            ))
            .into());
        }
    }
    tracing::debug!(
        nodes = fleet.len(),
        links = fleet.links.len(),
        foreign = fleet.foreign_links,
        "parsed topology"
    );
    let started = Instant::now();
    let strategy = match args.strategy {
        StrategyArg::Waves => Some(Strategy::Waves),
        StrategyArg::Bridge => Some(Strategy::Bridge),
        StrategyArg::Claim => Some(Strategy::Claim),
        StrategyArg::Naive => None,
    };
    let mut plan = match strategy {
        Some(strategy) => planner::plan(
            &fleet,
            &PlanOptions {
                strategy,
                start: args.start.clone(),
            },
        )?,
        None if args.start.is_some() => {
            return Err(BadInput("`--start` only applies to the `claim` strategy".into()).into());
        }
        None => rollover_core::plan_naive(&fleet),
    };
    tracing::info!(
        strategy = plan.strategy.as_deref().unwrap_or_default(),
        steps = plan.steps.len(),
        waves = plan.wave_count(),
        disruptions = plan.disruptions.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "planned"
    );
    if strategy == Some(Strategy::Waves) {
        // Say whether bridging would pay on this fleet.
        let bridge = rollover_core::plan_bridge(&fleet);
        plan.comparison = vec![Figures::of(&plan), Figures::of(&bridge)];
    }
    let text = match args.format {
        PlanFormat::Text => {
            // The text form says whether the plan is safe: `waves` plans are by
            // construction, `claim` plans often are not.
            let verdict = verify_plan(&topology, &plan)?;
            render::text::plan(&topology, &fleet, &plan, &verdict)
        }
        PlanFormat::Json => format!("{}\n", plan.to_json()),
        PlanFormat::Dot => render::dot::plan(
            &render::view::View::new(&topology, &fleet, &plan),
            &render::dot::DotOptions {
                focus: args.focus.clone(),
                depth: args.depth,
                full: args.full,
            },
        ),
        PlanFormat::Html => {
            let verdict = verify_plan(&topology, &plan)?;
            render::html::page(&render::html::Page {
                view: &render::view::View::new(&topology, &fleet, &plan),
                plan: &plan,
                verdict: &verdict,
                report: None,
            })
        }
        PlanFormat::Order => render::order::nodes(&plan),
    };
    output::write(args.output.as_deref(), &text)?;
    Ok(Status::Success)
}
