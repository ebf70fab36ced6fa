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

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// At most this many columns (HTML) or boxes (DOT summary) of wave groups: a plan
/// with more waves (a linearised plan has one step per wave) has consecutive waves
/// merged into one column, so the pictures stay the same size whatever the plan.
pub const MAX_COLUMNS: u32 = 10;

/// All the rotated links from the nodes of one column to those of another (columns as
/// in [`View::column`], `None` for nodes without a step), drawn as one edge when a
/// fleet has too many links to draw one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The clients' column.
    pub client: Option<u32>,
    /// The servers' column.
    pub server: Option<u32>,
    /// How many links.
    pub links: usize,
    /// How many of them the plan declares disruptions.
    pub disrupted: usize,
    /// The earliest and latest waves from which they run on the new key, if known.
    pub waves: Option<(u32, u32)>,
}

impl Bundle {
    /// `wA` or `wA..wB`: the waves from which its links run on the new key.
    pub fn wave_range(&self) -> String {
        match self.waves {
            Some((a, b)) if a == b => format!("w{a}"),
            Some((a, b)) => format!("w{a}..w{b}"),
            None => "w?".to_string(),
        }
    }
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

    /// How many consecutive waves one column of a picture spans: 1 unless the plan
    /// has more than [`MAX_COLUMNS`] waves.
    pub fn span(&self) -> u32 {
        self.waves.div_ceil(MAX_COLUMNS).max(1)
    }

    /// The column of a node in the pictures: its group (see [`NodeView::group`]), or
    /// the range of [`View::span`] waves it falls in.
    pub fn column(&self, ix: usize) -> Option<u32> {
        self.nodes[ix].group().map(|g| g / self.span())
    }

    /// What a column stands for: `wave N`, `waves A-B`, or `no step`.
    pub fn column_name(&self, column: Option<u32>) -> String {
        let span = self.span();
        match column {
            Some(c) if span == 1 => format!("wave {c}"),
            Some(c) => format!(
                "waves {}-{}",
                c * span,
                (c * span + span - 1).min(self.waves.saturating_sub(1))
            ),
            None => "no step".to_string(),
        }
    }

    /// The rotated links between nodes for which `shown` holds, bundled by the columns
    /// of their ends, in column order; `@executor`'s links are left out (the pictures
    /// collapse them into the executor itself), self-links included.
    pub fn bundles(&self, shown: impl Fn(usize) -> bool) -> Vec<Bundle> {
        let executor = self.executor();
        let mut by_pair: BTreeMap<(Option<u32>, Option<u32>), Bundle> = BTreeMap::new();
        for l in &self.links {
            if Some(l.client) == executor || !shown(l.client) || !shown(l.server) {
                continue;
            }
            let key = (self.column(l.client), self.column(l.server));
            let b = by_pair.entry(key).or_insert(Bundle {
                client: key.0,
                server: key.1,
                links: 0,
                disrupted: 0,
                waves: None,
            });
            b.links += 1;
            b.disrupted += usize::from(l.disrupted);
            if let Some(w) = l.wave {
                b.waves = Some(b.waves.map_or((w, w), |(a, z)| (a.min(w), z.max(w))));
            }
        }
        by_pair.into_values().collect()
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
    fn bundles_count_the_links_between_groups_without_the_executor() {
        // Every node stages in w0 and starts showing the new key in w1.
        with_view(
            "ca: r\ncontrol: {ca: r}\nnodes:\n  - {id: m, mode: atomic}\nlinks:\n  - {client: a, server: b}\n  - {client: b, server: m}\n  - {client: a, server: m}\n  - {client: x, server: \"y\", ca: other}\n",
            Strategy::Waves,
            |v| {
                let bundles = v.bundles(|_| true);
                let links: usize = bundles.iter().map(|b| b.links).sum();
                assert_eq!(links, 3, "{bundles:?}");
                assert!(bundles.iter().all(|b| b.disrupted == 0));
                let within_w1 = bundles
                    .iter()
                    .find(|b| b.client == Some(1) && b.server == Some(1))
                    .expect("links among wave-1 nodes");
                assert_eq!(
                    (within_w1.links, within_w1.wave_range().as_str()),
                    (3, "w1")
                );
                let only_a = v.node("a").unwrap();
                assert!(v.bundles(|ix| ix != only_a).iter().all(|b| b.links == 1));
            },
        );
    }

    #[test]
    fn many_waves_are_merged_into_at_most_max_columns() {
        // The claim's order runs one step per wave: about 3 waves per node.
        let mut t = String::from("ca: r\nlinks:\n");
        for i in 1..40 {
            t.push_str(&format!("  - {{client: n{}, server: n{i}}}\n", i - 1));
        }
        with_view(&t, Strategy::Claim, |v| {
            assert!(v.waves > MAX_COLUMNS, "{} waves", v.waves);
            let columns: BTreeSet<Option<u32>> = (0..v.nodes.len()).map(|i| v.column(i)).collect();
            assert!(columns.len() <= MAX_COLUMNS as usize, "{columns:?}");
            let span = v.span();
            assert_eq!(
                v.column_name(Some(1)),
                format!("waves {span}-{}", 2 * span - 1)
            );
            let links: usize = v.bundles(|_| true).iter().map(|b| b.links).sum();
            assert_eq!(links, 39);
        });
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
