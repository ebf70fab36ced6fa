//! The end-of-rotation checks behind `all_new`: with the old root withdrawn
//! everywhere, every link still handshakes; every node trusts, holds and presents
//! only certificates of one new root and sends no bridge (MODEL §11); and a client
//! holding only an old-root leaf is refused by every node.

use std::time::Duration;

use futures::StreamExt;
use rollover_agent::single_root_credentials;
use rollover_core::Fleet;
use rollover_executor::driver::tls_probe;
use rollover_pki::{LiveCredentials, Validity, fingerprint};

use crate::error::SimError;
use crate::observe::{Observer, Source};
use crate::prober::{ProbeLink, ends, handshake};
use crate::setup::SimFleet;

/// Final handshakes in flight at once.
const PARALLEL: usize = 16;

/// What the final checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalChecks {
    /// Nodes (agents and `@executor`) on the new root only.
    pub nodes_on_new_only: u64,
    /// Nodes checked.
    pub nodes_checked: u64,
    /// Nodes that refused the old-root client.
    pub old_key_refused: u64,
    /// Nodes tried with the old-root client.
    pub old_key_checks: u64,
}

/// Handshake every link once (recorded as final handshakes).
pub async fn final_handshakes(
    fleet: &Fleet,
    sim: &SimFleet,
    links: &[ProbeLink],
    observer: &Observer,
) {
    futures::stream::iter(links)
        .for_each_concurrent(PARALLEL, |link| async move {
            let result = handshake(fleet, sim, link).await;
            let (client, server, declared) = ends(fleet, link);
            observer.handshake(Source::Final, client, server, result, declared, None);
        })
        .await;
}

/// Check every node's state and try an old-root client against every agent.
pub async fn new_only(fleet: &Fleet, sim: &SimFleet) -> Result<FinalChecks, SimError> {
    let old = sim.old_root.fingerprint();
    let mut checks = FinalChecks::default();
    let mut new_roots = std::collections::BTreeSet::new();
    for agent in sim.agents.iter().flatten() {
        let state = agent.state();
        checks.nodes_checked += 1;
        let roots: Vec<&String> = state
            .server_roots
            .iter()
            .chain(&state.client_roots)
            .collect();
        let leaves_new = !state.held_leaves.is_empty()
            && state.held_leaves.iter().all(|l| {
                roots
                    .first()
                    .is_some_and(|r| **r == l.issuer_root_fingerprint)
            });
        let one_root = state.server_roots.len() == 1
            && state.client_roots.len() == 1
            && state.server_roots[0] == state.client_roots[0]
            && state.server_roots[0] != old;
        if one_root && leaves_new && state.sent_bridges.is_empty() {
            checks.nodes_on_new_only += 1;
            new_roots.insert(state.server_roots[0].clone());
        }
    }
    if fleet.executor.is_some() {
        checks.nodes_checked += 1;
        let set = sim.executor_creds.current();
        let fps: Vec<String> = set
            .server_roots
            .iter()
            .chain(&set.client_roots)
            .map(|r| fingerprint(r))
            .collect();
        if !fps.is_empty()
            && fps.iter().all(|f| *f != old && new_roots.contains(f))
            && set.held.len() == 1
            && set.sends.is_empty()
        {
            checks.nodes_on_new_only += 1;
        }
    }
    if new_roots.len() > 1 {
        // Nodes disagree on the new root: none of them counts.
        checks.nodes_on_new_only = 0;
    }

    let impostor = LiveCredentials::new(
        single_root_credentials("old-key-client", &sim.old_root, Validity::default())
            .map_err(|e| SimError::Setup(e.to_string()))?,
    )?;
    let config = impostor.client_config();
    let results: Vec<bool> = futures::stream::iter(sim.agents.iter().flatten())
        .map(|agent| {
            let config = config.clone();
            async move {
                tls_probe(
                    config,
                    agent.id(),
                    &agent.data_addr().to_string(),
                    Duration::from_secs(10),
                )
                .await
                .is_err()
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    checks.old_key_checks = results.len() as u64;
    checks.old_key_refused = results.iter().filter(|r| **r).count() as u64;
    Ok(checks)
}
