//! Checks of a topology that its parser accepts but that are likely mistakes or that
//! a rotation across real agents cannot work with: `plan` warns about them, `check`
//! (and `rotate` before it starts) counts them as problems.

use rollover_core::{EXECUTOR_ID, Fleet, Topology};

/// Nodes of the rotated CA named only in `links` although the topology lists its
/// `nodes`: usually a typo'd id, which silently adds a bundle node with no agent.
pub fn link_only_nodes(topology: &Topology) -> Vec<String> {
    if topology.nodes.is_empty() {
        return Vec::new();
    }
    Fleet::new(topology)
        .ids
        .iter()
        .filter(|id| id.as_str() != EXECUTOR_ID)
        .filter(|id| !topology.nodes.iter().any(|n| &n.id == *id))
        .cloned()
        .collect()
}

/// Target nodes (all but `@executor`) without an agent `address`.
pub fn missing_addresses(topology: &Topology) -> Vec<String> {
    Fleet::new(topology)
        .ids
        .iter()
        .filter(|id| id.as_str() != EXECUTOR_ID)
        .filter(|id| {
            !topology
                .nodes
                .iter()
                .any(|n| &n.id == *id && n.address.as_deref().is_some_and(|a| !a.is_empty()))
        })
        .cloned()
        .collect()
}

/// The problem of [`link_only_nodes`] in words.
pub fn link_only_text(origin: &str, id: &str) -> String {
    format!(
        "{origin}: node `{id}` is named only in `links`, not in `nodes` (a typo? it would \
         be rotated as a bundle node with no agent)"
    )
}

/// The problem of [`missing_addresses`] in words.
pub fn missing_address_text(origin: &str, id: &str) -> String {
    format!(
        "{origin}: node `{id}` has no `address`: give `address: \"host:port\"` of its \
         agent's --listen, so the executor can reach it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_in_links_and_missing_addresses_are_found() {
        let t = Topology::parse(
            "t.yaml",
            "ca: c\nnodes:\n  - {id: a, address: \"127.0.0.1:1\"}\n  - {id: b}\n\
             links:\n  - {client: a, server: b}\n  - {client: a, server: bb}\n\
             \x20 - {client: a, server: erp, ca: other}\n",
        )
        .unwrap();
        assert_eq!(link_only_nodes(&t), ["bb"]);
        assert_eq!(missing_addresses(&t), ["b", "bb"]);
        let links_only =
            Topology::parse("t.yaml", "ca: c\nlinks:\n  - {client: a, server: b}\n").unwrap();
        assert!(link_only_nodes(&links_only).is_empty());
    }
}
