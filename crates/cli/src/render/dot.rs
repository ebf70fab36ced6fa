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

use std::collections::BTreeSet;
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
}

/// Render the fleet as a Graphviz digraph, rotated links labelled by wave. The caller
/// checks that a focus names a node of the picture.
pub fn plan(view: &View<'_>, options: &DotOptions) -> String {
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
    let mut out = String::new();
    out.push_str("digraph rollover {\n");
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
    let _ = writeln!(
        out,
        "  graph [label={}, labelloc=t, rankdir=LR, newrank=true, fontname=Helvetica];",
        quote(&title)
    );
    out.push_str("  node [shape=ellipse, fontname=Helvetica];\n");
    out.push_str("  edge [fontname=Helvetica, fontsize=10];\n");

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
    for id in &outsiders {
        let _ = writeln!(
            out,
            "  {} [color=grey, fontcolor=grey, style=dashed];",
            quote(id)
        );
    }

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
            },
        );
        assert!(wider.contains("\"a\" -> \"b\""), "{wider}");
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
