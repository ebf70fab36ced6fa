//! What the pictures show, computed once from a topology and a plan: per node its mode
//! and the waves of its steps, per link the wave from which it runs on the new key,
//! the declared disruptions and the links under other CAs. The DOT and HTML renderers
//! draw from this, so the two pictures never disagree.
//!
//! **When a link runs on the new key.** By the handshake rule (MODEL §2), `c -> s`
//! authenticates the server with the root of the leaf `s` presents, and the client
//! with a held leaf of a root `s` trusts. The server side is on the new key from the
//! step where `s` starts presenting its new leaf (`present`, or `switch` for an atomic
//! node). The client side can be on the new key from the step where `c` first holds a
//! new leaf (`stage`, or `switch`), since every server trusts the new root from its own
//! first step on, which comes no later than its `present`/`switch` (MODEL §3). So the
//! link's wave is the later of the two: `max(wave(shows(s)), wave(first(c)))`. In a
//! safe plan `first(c)` comes before `shows(s)`, so this is the wave of the server's
//! `present`/`switch`; the `max` matters for unsafe or disrupted orders. (From that
//! wave on, the new key *can* carry both directions; a client still holding both
//! leaves may keep offering the old one until the server drops it at
//! `retire`/`switch`.)

use std::collections::{BTreeSet, HashMap};

use rollover_core::{Action, Fleet, Mode, Plan, Topology};

/// A node of the picture.
#[derive(Debug, Clone)]
pub struct NodeView<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its mode.
    pub mode: Mode,
    /// Whether it is the virtual `@executor` node (MODEL §6).
    pub executor: bool,
    /// The wave of its first step (`stage`/`switch`), if it has one in the plan.
    pub first: Option<u32>,
    /// The wave where it starts presenting the new leaf (`present`/`switch`).
    pub shows: Option<u32>,
    /// Its steps as `(action, wave)`, in plan order.
    pub steps: Vec<(Action, u32)>,
}

impl NodeView<'_> {
    /// The wave the node is grouped under: where it starts presenting the new key
    /// (in a safe plan, also the wave of every link it serves), else its first step.
    pub fn group(&self) -> Option<u32> {
        self.shows.or(self.first)
    }
}

/// A rotated link of the picture.
#[derive(Debug, Clone, Copy)]
pub struct LinkView {
    /// Index of the client in [`View::nodes`].
    pub client: usize,
    /// Index of the server in [`View::nodes`].
    pub server: usize,
    /// From which wave it runs on the new key (see the module doc).
    pub wave: Option<u32>,
    /// Whether the plan declares it a disruption.
    pub disrupted: bool,
}

/// The whole picture's data.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// The rotated CA.
    pub ca: &'a str,
    /// Target nodes, in fleet order.
    pub nodes: Vec<NodeView<'a>>,
    /// Distinct rotated links, in fleet order (self-links and control links included).
    pub links: Vec<LinkView>,
    /// Distinct links under other CAs, as `(client, server, ca)`.
    pub foreign: Vec<(&'a str, &'a str, &'a str)>,
    /// Endpoints of foreign links that are not target nodes.
    pub outsiders: Vec<&'a str>,
    /// The number of waves in the plan.
    pub waves: u32,
    index: HashMap<&'a str, usize>,
}

impl<'a> View<'a> {
    /// Compute the picture of `plan` on `fleet`.
    pub fn new(topology: &'a Topology, fleet: &'a Fleet, plan: &'a Plan) -> View<'a> {
        let mut nodes: Vec<NodeView<'a>> = fleet
            .ids
            .iter()
            .enumerate()
            .map(|(ix, id)| NodeView {
                id: id.as_str(),
                mode: fleet.modes[ix],
                executor: fleet.executor == Some(ix as u32),
                first: None,
                shows: None,
                steps: Vec::new(),
            })
            .collect();
        let index: HashMap<&'a str, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        for step in &plan.steps {
            let Some(&ix) = index.get(step.node.as_str()) else {
                continue;
            };
            let node = &mut nodes[ix];
            node.steps.push((step.action, step.wave));
            if matches!(step.action, Action::Stage | Action::Switch) && node.first.is_none() {
                node.first = Some(step.wave);
            }
            if matches!(step.action, Action::Present | Action::Switch) && node.shows.is_none() {
                node.shows = Some(step.wave);
            }
        }
        let disrupted: BTreeSet<(&str, &str)> = plan
            .disruptions
            .iter()
            .map(|d| (d.client.as_str(), d.server.as_str()))
            .collect();
        let links = fleet
            .links
            .iter()
            .map(|l| {
                let (client, server) = (l.client as usize, l.server as usize);
                let wave = match (nodes[server].shows, nodes[client].first) {
                    (Some(shows), Some(first)) => Some(shows.max(first)),
                    _ => None,
                };
                LinkView {
                    client,
                    server,
                    wave,
                    disrupted: disrupted.contains(&(nodes[client].id, nodes[server].id)),
                }
            })
            .collect();
        let foreign = foreign_links(topology);
        let outsiders: Vec<&str> = foreign
            .iter()
            .flat_map(|(c, s, _)| [*c, *s])
            .filter(|id| !index.contains_key(id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        View {
            ca: &fleet.ca,
            nodes,
            links,
            foreign,
            outsiders,
            waves: plan.wave_count(),
            index,
        }
    }

    /// The index of a target node.
    pub fn node(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The index of the `@executor` node, if it is planned.
    pub fn executor(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.executor)
    }

    /// Nodes within `depth` links of `focus` (either direction, rotated and foreign
    /// links), never walking *through* `@executor`: it is a client of every target, so
    /// passing through it would make every neighbourhood the whole fleet. Returns the
    /// target node indices and the outsider ids reached.
    pub fn neighbourhood(&self, focus: &str, depth: u32) -> (BTreeSet<usize>, BTreeSet<&'a str>) {
        let executor = self.executor();
        let mut adjacent: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut add = |a: &'a str, b: &'a str| {
            adjacent.entry(a).or_default().push(b);
            adjacent.entry(b).or_default().push(a);
        };
        for l in &self.links {
            add(self.nodes[l.client].id, self.nodes[l.server].id);
        }
        for &(c, s, _) in &self.foreign {
            add(c, s);
        }
        let mut seen: BTreeSet<&str> = BTreeSet::from([focus]);
        let mut frontier = vec![focus];
        for _ in 0..depth {
            let mut next = Vec::new();
            for id in frontier {
                let through_executor =
                    executor.is_some_and(|e| self.nodes[e].id == id) && id != focus;
                if through_executor {
                    continue;
                }
                for &peer in adjacent.get(id).map(Vec::as_slice).unwrap_or_default() {
                    if seen.insert(peer) {
                        next.push(peer);
                    }
                }
            }
            frontier = next;
        }
        let mut targets = BTreeSet::new();
        let mut outsiders = BTreeSet::new();
        for id in seen {
            match self.node(id) {
                Some(ix) => {
                    targets.insert(ix);
                }
                None => {
                    if let Some(o) = self.outsiders.iter().find(|o| **o == id) {
                        outsiders.insert(*o);
                    }
                }
            }
        }
        (targets, outsiders)
    }
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

#[cfg(test)]
mod tests {
    use rollover_core::{PlanOptions, Strategy, planner};

    use super::*;

    fn with_view(topology: &str, strategy: Strategy, check: impl FnOnce(&View<'_>)) {
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
        check(&View::new(&t, &fleet, &p));
    }

    #[test]
    fn link_wave_is_when_the_server_shows_new_in_a_safe_plan() {
        // stage all (w0); present b after stage a (w1); switch m after stage b (w1).
        with_view(
            "ca: r\nnodes:\n  - {id: m, mode: atomic}\nlinks:\n  - {client: a, server: b}\n  - {client: b, server: m}\n  - {client: x, server: \"y\", ca: other}\n",
            Strategy::Waves,
            |v| {
                let waves: Vec<Option<u32>> = v.links.iter().map(|l| l.wave).collect();
                assert_eq!(waves, [Some(1), Some(1)]);
                assert_eq!(v.foreign, [("x", "y", "other")]);
                assert_eq!(v.outsiders, ["x", "y"]);
                assert_eq!(v.nodes[v.node("m").unwrap()].group(), Some(1));
            },
        );
    }

    #[test]
    fn link_wave_is_the_later_of_server_shows_and_client_first() {
        // Claim order [c, s]: stage c (0), stage s (1), present c (2), present s (3).
        with_view(
            "ca: r\nlinks:\n  - {client: c, server: s}\n",
            Strategy::Claim,
            |v| assert_eq!(v.links[0].wave, Some(3)),
        );
    }

    #[test]
    fn neighbourhood_does_not_walk_through_the_executor() {
        with_view(
            "ca: r\ncontrol: {ca: r}\nlinks:\n  - {client: a, server: b}\n  - {client: b, server: c}\n  - {client: d, server: e}\n",
            Strategy::Waves,
            |v| {
                let ids = |set: BTreeSet<usize>| -> Vec<&str> {
                    set.into_iter().map(|i| v.nodes[i].id).collect()
                };
                let (near, _) = v.neighbourhood("a", 1);
                assert_eq!(ids(near), ["a", "b", "@executor"]);
                let (near, _) = v.neighbourhood("a", 3);
                assert_eq!(ids(near), ["a", "b", "c", "@executor"]);
                let (near, _) = v.neighbourhood("@executor", 1);
                assert_eq!(near.len(), v.nodes.len());
            },
        );
    }
}
