//! Graphviz view of a fleet and its plan, readable at hundreds of nodes.
//!
//! * Nodes are grouped in one cluster per wave (`cluster_wN`): the wave where the node
//!   starts presenting its new leaf, which in a safe plan is also the wave from which
//!   every link it serves runs on the new key (see [`super::view`]).
//! * `bundle` nodes are ellipses, `atomic` nodes boxes; endpoints that only appear on
//!   links of other CAs are grey and dashed, outside the clusters.
//! * One edge per rotated link (`client -> server`, distinct, self-links included),
//!   labelled `wN`: the wave from which the link runs on the new key. Disrupted links
//!   are dashed red. One grey edge per distinct link under another CA.
//! * `@executor` (MODEL §6) is a client of every target: drawing those edges turns a
//!   large fleet into a hairball that Graphviz takes minutes to lay out. By default they
//!   are collapsed into `@executor` itself, drawn as a note that says how many links it
//!   has and from which waves they run on the new key; a disrupted one is still drawn.
//!   Focusing on `@executor` draws them all.
//! * With a focus, only the nodes within `depth` links of it are drawn (never walking
//!   through `@executor`), the focused node in bold.
//! * A fleet with more than [`MAX_EDGES`] edges to draw (the 300-node plant has
//!   1,294 without `@executor`'s) is a hairball Graphviz takes a minute or more to lay
//!   out and nobody can read. Without a focus, such a fleet is summarised instead: one
//!   box per wave group (or range of waves, see [`super::view::MAX_COLUMNS`]) listing
//!   its nodes, one edge per pair of groups standing for all
//!   the links between them (their count, waves and disruptions), one grey edge per
//!   pair of ends and CA for links under other CAs. The title says how to draw
//!   everything (`--full`) or a neighbourhood (`--focus`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use rollover_core::Mode;

use super::view::View;

/// What part of the fleet to draw.
#[derive(Debug, Clone, Default)]
pub struct DotOptions {
    /// Draw only the neighbourhood of this node (an id of the topology).
    pub focus: Option<String>,
    /// How many links away from the focus to go.
    pub depth: u32,
    /// Draw every node and link even beyond [`MAX_EDGES`].
    pub full: bool,
}

/// Beyond this many edges, a picture without a focus is summarised by wave group:
/// Graphviz lays out a few hundred edges in about a second, the plant's 1,294 in
/// 40 s to almost 4 min on 2 busy cores (1.6 MB of SVG).
pub const MAX_EDGES: usize = 300;

/// The edges the full picture draws: every rotated link but `@executor`'s (unless
/// disrupted), and every link under another CA.
fn full_edges(view: &View<'_>) -> usize {
    let executor = view.executor();
    let rotated = view
        .links
        .iter()
        .filter(|l| Some(l.client) != executor || l.disrupted)
        .count();
    rotated + view.foreign.len()
}

/// Render the fleet as a Graphviz digraph, rotated links labelled by wave. The caller
/// checks that a focus names a node of the picture.
pub fn plan(view: &View<'_>, options: &DotOptions) -> String {
    let edges = full_edges(view);
    if options.focus.is_none() && !options.full && edges > MAX_EDGES {
        return summary(view, edges);
    }
    let executor = view.executor();
    let focus = options.focus.as_deref();
    let expand_executor = focus.is_some() && focus == executor.map(|e| view.nodes[e].id);
    let (shown, outsiders): (BTreeSet<usize>, BTreeSet<&str>) = match focus {
        Some(id) => view.neighbourhood(id, options.depth),
        None => (
            (0..view.nodes.len()).collect(),
            view.outsiders.iter().copied().collect(),
        ),
    };
    let title = match focus {
        Some(id) => format!(
            "rotation of {}: {} nodes within {} link(s) of {id}; wN = wave from which the link runs on the new key",
            view.ca,
            shown.len() + outsiders.len(),
            options.depth
        ),
        None => format!(
            "rotation of {}: wN = wave from which the link runs on the new key; clusters: wave where a node starts presenting it",
            view.ca
        ),
    };
    let mut out = header(&title);

    // Clusters by wave, then the nodes that belong to none.
    let mut by_wave: Vec<Vec<usize>> = vec![Vec::new(); view.waves as usize];
    let mut loose = Vec::new();
    for &ix in &shown {
        let node = &view.nodes[ix];
        match node.group() {
            Some(w) if !node.executor && (w as usize) < by_wave.len() => {
                by_wave[w as usize].push(ix)
            }
            _ => loose.push(ix),
        }
    }
    for (wave, members) in by_wave.iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  subgraph cluster_w{wave} {{");
        let _ = writeln!(
            out,
            "    label={}; style=rounded; color=lightsteelblue;",
            quote(&format!("wave {wave}"))
        );
        for &ix in members {
            write_node(&mut out, view, ix, focus, "    ");
        }
        out.push_str("  }\n");
    }
    for &ix in &loose {
        if Some(ix) == executor && !expand_executor {
            write_executor_note(&mut out, view, ix, &shown);
        } else {
            write_node(&mut out, view, ix, focus, "  ");
        }
    }
    write_outsiders(&mut out, outsiders.iter().copied());

    for link in &view.links {
        if !shown.contains(&link.client) || !shown.contains(&link.server) {
            continue;
        }
        let from_executor = Some(link.client) == executor;
        if from_executor && !expand_executor && !link.disrupted {
            continue;
        }
        let (client, server) = (view.nodes[link.client].id, view.nodes[link.server].id);
        let label = match link.wave {
            Some(w) => format!("w{w}"),
            None => "w?".to_string(),
        };
        let style = if link.disrupted {
            ", style=dashed, color=red, fontcolor=red"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{style}];",
            quote(client),
            quote(server),
            quote(&label)
        );
    }
    for (client, server, ca) in &view.foreign {
        let drawn = |id: &str| {
            outsiders.contains(id) || view.node(id).is_some_and(|ix| shown.contains(&ix))
        };
        if drawn(client) && drawn(server) {
            let _ = writeln!(
                out,
                "  {} -> {} [label={}, color=grey, fontcolor=grey];",
                quote(client),
                quote(server),
                quote(ca)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// The start of the digraph, with its title and default styles.
fn header(title: &str) -> String {
    let mut out = String::from("digraph rollover {\n");
    let _ = writeln!(
        out,
        "  graph [label={}, labelloc=t, rankdir=LR, newrank=true, fontname=Helvetica];",
        quote(title)
    );
    out.push_str("  node [shape=ellipse, fontname=Helvetica];\n");
    out.push_str("  edge [fontname=Helvetica, fontsize=10];\n");
    out
}

fn write_outsiders<'a>(out: &mut String, outsiders: impl Iterator<Item = &'a str>) {
    for id in outsiders {
        let _ = writeln!(
            out,
            "  {} [color=grey, fontcolor=grey, style=dashed];",
            quote(id)
        );
    }
}

/// The DOT id of a column's box in the summary (`@` as for `@executor`: not a node
/// id).
fn group_id(view: &View<'_>, column: Option<u32>) -> String {
    format!("@{}", view.column_name(column))
}

/// A large fleet summarised: one box per wave group, one edge per pair of groups.
fn summary(view: &View<'_>, edges: usize) -> String {
    let title = format!(
        "rotation of {}: {} nodes and {edges} links to draw, too many to draw one by one.\nEach box holds the nodes that start presenting the new key in one wave; each arrow stands for all the links between two boxes (count; wN = waves from which they run on the new key).\nEvery node and link: --full (slow to lay out); one node's neighbourhood: --focus NODE --depth N",
        view.ca,
        view.nodes.len()
    );
    let mut out = header(&title);
    let mut groups: BTreeMap<Option<u32>, Vec<usize>> = BTreeMap::new();
    for (ix, node) in view.nodes.iter().enumerate() {
        if !node.executor {
            groups.entry(view.column(ix)).or_default().push(ix);
        }
    }
    for (group, members) in &groups {
        let ids = |mode: Mode| -> Vec<&str> {
            members
                .iter()
                .map(|&ix| &view.nodes[ix])
                .filter(|n| n.mode == mode)
                .map(|n| n.id)
                .collect()
        };
        let (atomic, bundle) = (ids(Mode::Atomic), ids(Mode::Bundle));
        let mut label = match group {
            Some(_) => format!(
                "{}: {} nodes start presenting the new key",
                view.column_name(*group),
                members.len()
            ),
            None => format!("no step: {} nodes", members.len()),
        };
        for (name, ids) in [("atomic", atomic), ("bundle", bundle)] {
            if !ids.is_empty() {
                let _ = write!(label, "\n{name} ({}):\n{}", ids.len(), wrap(&ids, 90));
            }
        }
        let _ = writeln!(
            out,
            "  {} [shape=box, style=rounded, color=lightsteelblue, label={}];",
            quote(&group_id(view, *group)),
            quote(&label)
        );
    }
    let all: BTreeSet<usize> = (0..view.nodes.len()).collect();
    if let Some(ix) = view.executor() {
        write_executor_note(&mut out, view, ix, &all);
    }
    write_outsiders(&mut out, view.outsiders.iter().copied());

    for b in view.bundles(|_| true) {
        let mut label = format!("{} link(s), {}", b.links, b.wave_range());
        let mut style = String::new();
        if b.disrupted > 0 {
            let _ = write!(label, ", {} disrupted", b.disrupted);
            style.push_str(", style=dashed, color=red, fontcolor=red");
        }
        // Thicker for more links, within what stays legible.
        let width = 1.0 + 0.7 * (b.links as f64).log2().min(10.0);
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, penwidth={width:.1}{style}];",
            quote(&group_id(view, b.client)),
            quote(&group_id(view, b.server)),
            quote(&label)
        );
    }
    // Links under other CAs, by their ends' boxes (or outsiders) and CA.
    let end = |id: &str| match view.node(id) {
        Some(ix) => group_id(view, view.column(ix)),
        None => id.to_string(),
    };
    let mut foreign: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
    for (client, server, ca) in &view.foreign {
        *foreign.entry((end(client), end(server), ca)).or_default() += 1;
    }
    for ((client, server, ca), n) in foreign {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=grey, fontcolor=grey];",
            quote(&client),
            quote(&server),
            quote(&format!("{ca}: {n} link(s)"))
        );
    }
    out.push_str("}\n");
    out
}

/// `ids` joined by commas, in lines of about `width` characters.
fn wrap(ids: &[&str], width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
            if line + id.len() + 2 > width {
                out.push('\n');
                line = 0;
            } else {
                out.push(' ');
                line += 2;
            }
        }
        out.push_str(id);
        line += id.len();
    }
    out
}

fn write_node(out: &mut String, view: &View<'_>, ix: usize, focus: Option<&str>, indent: &str) {
    let node = &view.nodes[ix];
    let mut attrs = Vec::new();
    if node.executor {
        attrs.push("peripheries=2");
    } else if node.mode == Mode::Atomic {
        attrs.push("shape=box");
    }
    if focus == Some(node.id) {
        attrs.push("penwidth=3, style=bold");
    }
    if attrs.is_empty() {
        let _ = writeln!(out, "{indent}{};", quote(node.id));
    } else {
        let _ = writeln!(out, "{indent}{} [{}];", quote(node.id), attrs.join(", "));
    }
}

/// `@executor` as a note standing for its collapsed links.
fn write_executor_note(out: &mut String, view: &View<'_>, ix: usize, shown: &BTreeSet<usize>) {
    let links: Vec<_> = view
        .links
        .iter()
        .filter(|l| l.client == ix && shown.contains(&l.server))
        .collect();
    let waves: BTreeSet<u32> = links.iter().filter_map(|l| l.wave).collect();
    let range = match (waves.first(), waves.last()) {
        (Some(a), Some(b)) if a == b => format!("w{a}"),
        (Some(a), Some(b)) => format!("w{a}..w{b}"),
        _ => "w?".to_string(),
    };
    let label = format!(
        "{}\nclient of every target: {} link(s), new key from {range}\n(edges collapsed; --focus {} draws them)",
        view.nodes[ix].id,
        links.len(),
        view.nodes[ix].id
    );
    let _ = writeln!(
        out,
        "  {} [shape=note, peripheries=2, label={}];",
        quote(view.nodes[ix].id),
        quote(&label)
    );
}

/// A Graphviz double-quoted string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use rollover_core::{Fleet, PlanOptions, Strategy, Topology, planner};

    use super::*;

    fn render(topology: &str, options: &DotOptions) -> String {
        let t = Topology::parse("t.yaml", topology).unwrap();
        let fleet = Fleet::new(&t);
        let p = planner::plan(
            &fleet,
            &PlanOptions {
                strategy: Strategy::Waves,
                start: None,
            },
        )
        .unwrap();
        plan(&View::new(&t, &fleet, &p), options)
    }

    const FLEET: &str = "ca: r\ncontrol: {ca: r}\nnodes:\n  - {id: m, mode: atomic}\nlinks:\n  - {client: a, server: b}\n  - {client: b, server: m}\n  - {client: x, server: \"y\", ca: other}\n";

    #[test]
    fn nodes_cluster_by_wave_and_links_carry_theirs() {
        let dot = render(FLEET, &DotOptions::default());
        assert!(dot.starts_with("digraph rollover {\n"), "{dot}");
        // `a` presents in wave 1 (after @executor staged), so do `b` and `m`.
        assert!(dot.contains("subgraph cluster_w1 {"), "{dot}");
        assert!(dot.contains("\"a\" -> \"b\" [label=\"w1\"];"), "{dot}");
        assert!(dot.contains("\"b\" -> \"m\" [label=\"w1\"];"), "{dot}");
        assert!(dot.contains("    \"m\" [shape=box];"), "{dot}");
        assert!(
            dot.contains("\"x\" -> \"y\" [label=\"other\", color=grey"),
            "{dot}"
        );
        assert!(dot.ends_with("}\n"));
    }

    #[test]
    fn executor_edges_are_collapsed_into_a_note_unless_focused() {
        let dot = render(FLEET, &DotOptions::default());
        assert!(!dot.contains("\"@executor\" ->"), "{dot}");
        assert!(
            dot.contains("\"@executor\" [shape=note, peripheries=2, label=\"@executor\\nclient of every target: 3 link(s)"),
            "{dot}"
        );
        let focused = render(
            FLEET,
            &DotOptions {
                focus: Some("@executor".into()),
                depth: 1,
                full: false,
            },
        );
        assert_eq!(focused.matches("\"@executor\" ->").count(), 3, "{focused}");
    }

    #[test]
    fn focus_draws_the_neighbourhood_only() {
        let dot = render(
            FLEET,
            &DotOptions {
                focus: Some("m".into()),
                depth: 1,
                full: false,
            },
        );
        assert!(
            dot.contains("\"m\" [shape=box, penwidth=3, style=bold];"),
            "{dot}"
        );
        assert!(dot.contains("\"b\" -> \"m\""), "{dot}");
        assert!(!dot.contains("\"a\""), "{dot}");
        assert!(!dot.contains("\"x\""), "{dot}");
        let wider = render(
            FLEET,
            &DotOptions {
                focus: Some("m".into()),
                depth: 2,
                full: false,
            },
        );
        assert!(wider.contains("\"a\" -> \"b\""), "{wider}");
    }

    #[test]
    fn a_fleet_with_too_many_links_is_summarised_by_wave_group() {
        // A hub and MAX_EDGES + 1 clients: one box per group, one edge for them all.
        let mut topology = String::from("ca: r\ncontrol: {ca: r}\nlinks:\n");
        for i in 0..=MAX_EDGES {
            let _ = writeln!(topology, "  - {{client: c{i}, server: hub}}");
        }
        let dot = render(&topology, &DotOptions::default());
        let edges: Vec<&str> = dot.lines().filter(|l| l.contains(" -> ")).collect();
        assert_eq!(edges.len(), 1, "{dot}");
        assert!(
            edges[0].contains(&format!("[label=\"{} link(s), w1\"", MAX_EDGES + 1)),
            "{dot}"
        );
        assert!(
            dot.contains("--full"),
            "the title says how to see everything"
        );
        assert!(dot.contains("\"@executor\" [shape=note"), "{dot}");
        let full = render(
            &topology,
            &DotOptions {
                full: true,
                ..DotOptions::default()
            },
        );
        assert_eq!(full.matches("\" -> \"hub\"").count(), MAX_EDGES + 1);
    }

    #[test]
    fn wrapping_keeps_lines_short() {
        assert_eq!(wrap(&["aaa", "bbb", "ccc"], 9), "aaa, bbb,\nccc");
        assert_eq!(wrap(&[], 9), "");
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
