//! The fleet as the planner and verifier see it: the target nodes of the rotated CA,
//! indexed densely, and the distinct links anchored in that CA.
//!
//! Built from a [`Topology`] by the rules of MODEL §6 and §7: every listed node is a
//! target; nodes named only in links of the rotated CA are `bundle` targets; links under
//! other CAs are ignored; a repeated link counts once; when the control channel is
//! anchored in the rotated CA, `@executor` is a `bundle` client of every target.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::state::{Identity, Mode, Profile};
use crate::topology::{EXECUTOR_ID, Topology};

/// Dense index of a target node.
pub type NodeIx = u32;

/// A link `client -> server` between two target nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link {
    /// The connecting node.
    pub client: NodeIx,
    /// The serving node.
    pub server: NodeIx,
}

impl Link {
    /// Whether both ends are the same node (never breaks, MODEL §4).
    pub fn is_self(self) -> bool {
        self.client == self.server
    }
}

/// Target nodes and rotated links of one topology.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The rotated CA.
    pub ca: String,
    /// Node ids, by index.
    pub ids: Vec<String>,
    /// Node modes, by index.
    pub modes: Vec<Mode>,
    /// Node identities, by index (MODEL §12).
    pub identities: Vec<Identity>,
    /// Whether each node supports chains (MODEL §11).
    pub chains: Vec<bool>,
    /// Distinct rotated links, in order of first appearance (self-links included).
    pub links: Vec<Link>,
    /// The `@executor` node, when the control channel is anchored in the rotated CA.
    pub executor: Option<NodeIx>,
    /// Distinct links anchored in other CAs (left untouched by the rotation).
    pub foreign_links: usize,
    index: FxHashMap<String, NodeIx>,
}

impl Fleet {
    /// Compile a topology.
    pub fn new(topology: &Topology) -> Fleet {
        let mut fleet = Fleet {
            ca: topology.ca.clone(),
            ids: Vec::with_capacity(topology.nodes.len()),
            modes: Vec::with_capacity(topology.nodes.len()),
            identities: Vec::with_capacity(topology.nodes.len()),
            chains: Vec::with_capacity(topology.nodes.len()),
            links: Vec::with_capacity(topology.links.len()),
            executor: None,
            foreign_links: 0,
            index: FxHashMap::default(),
        };
        for node in &topology.nodes {
            fleet.intern(&node.id, node.profile());
        }
        let mut seen = FxHashSet::default();
        seen.reserve(topology.links.len());
        let mut foreign = FxHashSet::default();
        for link in &topology.links {
            let ca = topology.link_ca(link);
            if ca != topology.ca {
                foreign.insert((link.client.as_str(), link.server.as_str(), ca));
                continue;
            }
            let client = fleet.intern(&link.client, Profile::of(Mode::Bundle));
            let server = fleet.intern(&link.server, Profile::of(Mode::Bundle));
            let link = Link { client, server };
            if seen.insert(link) {
                fleet.links.push(link);
            }
        }
        fleet.foreign_links = foreign.len();
        if topology.control_in_rotated_ca() {
            let targets = fleet.ids.len() as NodeIx;
            // The executor picks its client leaf per agent (rustls) and builds chains.
            let executor = fleet.intern(EXECUTOR_ID, Profile::of(Mode::Bundle));
            fleet.executor = Some(executor);
            fleet.links.extend((0..targets).map(|server| Link {
                client: executor,
                server,
            }));
        }
        fleet
    }

    fn intern(&mut self, id: &str, profile: Profile) -> NodeIx {
        if let Some(&ix) = self.index.get(id) {
            return ix;
        }
        let ix = self.ids.len() as NodeIx;
        self.ids.push(id.to_string());
        self.modes.push(profile.mode);
        self.identities.push(profile.identity);
        self.chains.push(profile.chains);
        self.index.insert(id.to_string(), ix);
        ix
    }

    /// The index of a target node.
    pub fn node(&self, id: &str) -> Option<NodeIx> {
        self.index.get(id).copied()
    }

    /// A node's id.
    pub fn id(&self, node: NodeIx) -> &str {
        &self.ids[node as usize]
    }

    /// A node's mode.
    pub fn mode(&self, node: NodeIx) -> Mode {
        self.modes[node as usize]
    }

    /// A node's mode, identity and chain support.
    pub fn profile(&self, node: NodeIx) -> Profile {
        let n = node as usize;
        Profile {
            mode: self.modes[n],
            identity: self.identities[n],
            chains: self.chains[n],
        }
    }

    /// Whether a node presents one leaf as client and server (MODEL §12).
    pub fn single(&self, node: NodeIx) -> bool {
        self.identities[node as usize] == Identity::Single
    }

    /// Whether both ends of a link support chains, so that bridges keep it up
    /// whatever the order of their steps (MODEL §11).
    pub fn bridgeable(&self, link: Link) -> bool {
        self.chains[link.client as usize] && self.chains[link.server as usize]
    }

    /// Number of target nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the rotation has no target at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Total number of steps in any plan for this fleet without bridges.
    pub fn step_count(&self) -> usize {
        self.modes.iter().map(|m| m.steps().len()).sum()
    }

    /// A node's steps in a plan that bridges (`bridged`) or not (MODEL §3, §11).
    pub fn steps(&self, node: NodeIx, bridged: bool) -> &'static [crate::state::Action] {
        self.profile(node).steps(bridged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_links_and_executor_follow_model() {
        let t = Topology::parse(
            "t.yaml",
            "ca: r\ncontrol: {ca: r}\nnodes:\n  - {id: a, mode: atomic}\n  - {id: lonely}\nlinks:\n  - {client: b, server: a}\n  - {client: b, server: a}\n  - {client: a, server: a}\n  - {client: a, server: x, ca: other}\n  - {client: a, server: x, ca: other}\n",
        )
        .unwrap();
        let f = Fleet::new(&t);
        assert_eq!(f.ids, ["a", "lonely", "b", "@executor"]);
        assert_eq!(f.modes[2], Mode::Bundle);
        assert_eq!(f.foreign_links, 1);
        // b->a once, a->a, then @executor -> a, lonely, b.
        assert_eq!(f.links.len(), 2 + 3);
        assert_eq!(f.executor, Some(3));
        assert!(f.node("x").is_none());
    }
}
