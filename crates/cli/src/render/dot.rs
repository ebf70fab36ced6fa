//! Graphviz view of a fleet and its plan.
//!
//! * Nodes: `bundle` nodes are ellipses, `atomic` nodes boxes, `@executor` a double
//!   ellipse; endpoints that only appear on links of other CAs are grey and dashed.
//! * One edge per rotated link (`client -> server`, distinct, self-links and control
//!   links included), labelled `wN`: the wave after which the link runs on the new key.
//!   Disrupted links are dashed red.
//! * One grey edge per distinct link under another CA (not rotated, no wave).
//!
//! **When a link runs on the new key.** By the handshake rule (MODEL §2), `c -> s`
//! authenticates the server with the root of the leaf `s` presents, and the client
//! with a held leaf of a root `s` trusts. The server side is on the new key from the
//! step where `s` starts presenting its new leaf (`present`, or `switch` for an atomic
//! node). The client side can be on the new key from the step where `c` first holds a
//! new leaf (`stage`, or `switch`), since every server trusts the new root from its own
//! first step on, which comes no later than its `present`/`switch` (MODEL §3). So the
//! label is the later of the two waves: `max(wave(shows(s)), wave(first(c)))`. In a
//! safe plan `first(c)` comes before `shows(s)`, so this is the wave of the server's
//! `present`/`switch`; the `max` matters for unsafe or disrupted orders. (From that wave
//! on, the new key *can* carry both directions; a client still holding both leaves may
//! keep offering the old one until the server drops it at `retire`/`switch`.)

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use rollover_core::{Action, Fleet, Mode, Plan, Topology};

/// Render the fleet as a Graphviz digraph, rotated links labelled by wave.
pub fn plan(topology: &Topology, fleet: &Fleet, plan: &Plan) -> String {
    let waves = NodeWaves::of(plan);
    let disrupted: BTreeSet<(&str, &str)> = plan
        .disruptions
        .iter()
        .map(|d| (d.client.as_str(), d.server.as_str()))
        .collect();
    let mut out = String::new();
    out.push_str("digraph rollover {\n");
    let _ = writeln!(
        out,
        "  graph [label={}, labelloc=t, rankdir=LR];",
        quote(&format!(
            "rotation of {}: wN = wave after which the link runs on the new key",
            fleet.ca
        ))
    );
    out.push_str("  node [shape=ellipse];\n");
    for (ix, id) in fleet.ids.iter().enumerate() {
        let attrs = if fleet.executor == Some(ix as u32) {
            "peripheries=2"
        } else if fleet.modes[ix] == Mode::Atomic {
            "shape=box"
        } else {
            ""
        };
        if attrs.is_empty() {
            let _ = writeln!(out, "  {};", quote(id));
        } else {
            let _ = writeln!(out, "  {} [{attrs}];", quote(id));
        }
    }
    let foreign = foreign_links(topology);
    let outsiders: BTreeSet<&str> = foreign
        .iter()
        .flat_map(|(c, s, _)| [*c, *s])
        .filter(|id| fleet.node(id).is_none())
        .collect();
    for id in outsiders {
        let _ = writeln!(
            out,
            "  {} [color=grey, fontcolor=grey, style=dashed];",
            quote(id)
        );
    }
    for link in &fleet.links {
        let (client, server) = (fleet.id(link.client), fleet.id(link.server));
        let label = match waves.new_key_wave(client, server) {
            Some(w) => format!("w{w}"),
            None => "w?".to_string(),
        };
        let style = if disrupted.contains(&(client, server)) {
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
    for (client, server, ca) in foreign {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}, color=grey, fontcolor=grey];",
            quote(client),
            quote(server),
            quote(ca)
        );
    }
    out.push_str("}\n");
    out
}

/// Distinct links anchored in another CA than the rotated one, in file order, as
/// `(client, server, ca)`.
pub fn foreign_links(topology: &Topology) -> Vec<(&str, &str, &str)> {
    let mut seen = BTreeSet::new();
    topology
        .links
        .iter()
        .filter(|l| topology.link_ca(l) != topology.ca)
        .map(|l| (l.client.as_str(), l.server.as_str(), topology.link_ca(l)))
        .filter(|l| seen.insert(*l))
        .collect()
}

/// Per node, the waves of its first step and of the step where it starts presenting
/// its new leaf, read from the plan.
struct NodeWaves<'a> {
    first: HashMap<&'a str, u32>,
    shows: HashMap<&'a str, u32>,
}

impl<'a> NodeWaves<'a> {
    fn of(plan: &'a Plan) -> NodeWaves<'a> {
        let mut first = HashMap::new();
        let mut shows = HashMap::new();
        for step in &plan.steps {
            let node = step.node.as_str();
            if matches!(step.action, Action::Stage | Action::Switch) {
                first.entry(node).or_insert(step.wave);
            }
            if matches!(step.action, Action::Present | Action::Switch) {
                shows.entry(node).or_insert(step.wave);
            }
        }
        NodeWaves { first, shows }
    }

    /// `max(wave(shows(server)), wave(first(client)))`, see the module doc.
    fn new_key_wave(&self, client: &str, server: &str) -> Option<u32> {
        let shows = *self.shows.get(server)?;
        let first = *self.first.get(client)?;
        Some(shows.max(first))
    }
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
    use rollover_core::{PlanOptions, Strategy, planner};

    use super::*;

    fn render(topology: &str, strategy: Strategy) -> String {
        let t = Topology::parse("t.yaml", topology).unwrap();
        let fleet = Fleet::new(&t);
        let p = planner::plan(
            &fleet,
            &PlanOptions {
                strategy,
                start: None,
            },
        )
        .unwrap();
        plan(&t, &fleet, &p)
    }

    #[test]
    fn link_wave_is_when_the_server_shows_new_in_a_safe_plan() {
        // stage all (w0); present b after stage a (w1); switch m after stage b (w1).
        let dot = render(
            "ca: r\nnodes:\n  - {id: m, mode: atomic}\nlinks:\n  - {client: a, server: b}\n  - {client: b, server: m}\n  - {client: x, server: \"y\", ca: other}\n",
            Strategy::Waves,
        );
        assert!(dot.starts_with("digraph rollover {\n"), "{dot}");
        assert!(dot.contains("\"a\" -> \"b\" [label=\"w1\"];"), "{dot}");
        assert!(dot.contains("\"b\" -> \"m\" [label=\"w1\"];"), "{dot}");
        assert!(dot.contains("\"m\" [shape=box];"), "{dot}");
        assert!(
            dot.contains("\"x\" -> \"y\" [label=\"other\", color=grey"),
            "{dot}"
        );
        assert!(dot.ends_with("}\n"));
    }

    #[test]
    fn link_wave_is_the_later_of_server_shows_and_client_first() {
        // The claim runs one step at a time, so waves are step positions.
        let dot = render(
            "ca: r\nlinks:\n  - {client: c, server: s}\n",
            Strategy::Claim,
        );
        // Claim order [c, s]: stage c (0), stage s (1), present c (2), present s (3).
        assert!(dot.contains("\"c\" -> \"s\" [label=\"w3\"];"), "{dot}");
        let waves = NodeWaves {
            first: [("c", 5)].into_iter().collect(),
            shows: [("s", 2)].into_iter().collect(),
        };
        assert_eq!(waves.new_key_wave("c", "s"), Some(5));
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
