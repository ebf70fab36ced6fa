//! Standing up the simulated fleet: the old root of the rotated CA, the control CA,
//! one real agent per target node (bootstrapped in its own state directory, serving
//! its data plane and control plane on loopback), the executor's own credentials, and
//! static credentials for links under other CAs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rollover_agent::{
    Agent, AgentConfig, AgentHandle, ControlCreds, bootstrap, single_root_credentials,
};
use rollover_core::{EXECUTOR_ID, Fleet, Topology};
use rollover_pki::{KeyAlg, LiveCredentials, RootCa, Validity};

use crate::error::SimError;
use crate::handshake_rate::endpoint;

/// Agents started at once while standing the fleet up.
const START_BATCH: usize = 64;

/// The running fleet.
pub struct SimFleet {
    /// The rotated CA's root before the rotation.
    pub old_root: Arc<RootCa>,
    /// Agents by target node index (`None` for `@executor`).
    pub agents: Vec<Option<AgentHandle>>,
    /// The executor's own control-channel credentials (`@executor`).
    pub executor_creds: Arc<LiveCredentials>,
    /// Credentials of nodes on links under other CAs: (node, CA) -> credentials.
    pub foreign: HashMap<(String, String), Arc<LiveCredentials>>,
    /// Distinct links under other CAs: (client, server, CA).
    pub foreign_links: Vec<(String, String, String)>,
}

impl SimFleet {
    /// The credentials a node uses as a client of the rotated CA.
    pub fn client_creds(&self, fleet: &Fleet, node: u32) -> Arc<LiveCredentials> {
        match &self.agents[node as usize] {
            Some(agent) => agent.credentials(),
            None => {
                debug_assert_eq!(fleet.id(node), EXECUTOR_ID);
                self.executor_creds.clone()
            }
        }
    }

    /// A node's data-plane address (`None` for `@executor`, which only connects).
    pub fn data_addr(&self, node: u32) -> Option<SocketAddr> {
        self.agents[node as usize].as_ref().map(|a| a.data_addr())
    }

    /// The topology the executor receives: every agent with its control address.
    pub fn addressed_topology(&self, topology: &Topology, fleet: &Fleet) -> Topology {
        let mut out = topology.clone();
        let listed: std::collections::HashSet<String> =
            out.nodes.iter().map(|n| n.id.clone()).collect();
        for (ix, id) in fleet.ids.iter().enumerate() {
            if id != EXECUTOR_ID && !listed.contains(id) {
                out.nodes.push(rollover_core::topology::NodeSpec {
                    id: id.clone(),
                    mode: fleet.modes[ix],
                    address: None,
                });
            }
        }
        for node in &mut out.nodes {
            if let Some(ix) = fleet.node(&node.id)
                && let Some(agent) = &self.agents[ix as usize]
            {
                node.address = Some(agent.control_addr().to_string());
            }
        }
        out
    }

    /// Stop every agent.
    pub async fn shutdown(self) {
        for agent in self.agents.into_iter().flatten() {
            agent.shutdown().await;
        }
    }
}

/// Bootstrap and start one agent per target node under `dir`.
pub async fn start_fleet(
    topology: &Topology,
    fleet: &Fleet,
    dir: &Path,
) -> Result<SimFleet, SimError> {
    let validity = Validity::default();
    let old_root = Arc::new(RootCa::generate(&fleet.ca, 0, KeyAlg::default(), validity)?);
    let control_in_rotated = topology.control_in_rotated_ca();
    let control_root = if control_in_rotated {
        None
    } else {
        Some(Arc::new(RootCa::generate(
            "simulated-control-ca",
            0,
            KeyAlg::default(),
            validity,
        )?))
    };
    let executor_set = single_root_credentials(
        EXECUTOR_ID,
        control_root.as_deref().unwrap_or(&old_root),
        validity,
    )
    .map_err(|e| SimError::Setup(e.to_string()))?;
    let executor_creds = LiveCredentials::new(executor_set)?;

    let mut agents: Vec<Option<AgentHandle>> = Vec::with_capacity(fleet.len());
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let ids: Vec<(u32, String)> = fleet
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (i as u32, id.clone()))
        .collect();
    for batch in ids.chunks(START_BATCH) {
        let mut starting = Vec::with_capacity(batch.len());
        for (ix, id) in batch {
            if id == EXECUTOR_ID {
                starting.push(None);
                continue;
            }
            let mode = fleet.mode(*ix);
            let state_dir = dir.join("agents").join(format!("{ix}"));
            let (root, control) = (old_root.clone(), control_root.clone());
            let id = id.clone();
            starting.push(Some(tokio::spawn(async move {
                let dir = state_dir.clone();
                let node = id.clone();
                let control_creds =
                    tokio::task::spawn_blocking(move || -> Result<ControlCreds, SimError> {
                        bootstrap(&dir, &node, mode, &root, validity)
                            .map_err(|e| SimError::Setup(e.to_string()))?;
                        Ok(match control {
                            None => ControlCreds::Rotated,
                            Some(ca) => ControlCreds::Separate(LiveCredentials::new(
                                single_root_credentials(&node, &ca, validity)
                                    .map_err(|e| SimError::Setup(e.to_string()))?,
                            )?),
                        })
                    })
                    .await
                    .map_err(|e| SimError::Setup(e.to_string()))??;
                Agent::start(AgentConfig {
                    id,
                    mode,
                    state_dir,
                    data_listen: loopback,
                    control_listen: loopback,
                    control: control_creds,
                })
                .await
                .map_err(|e| SimError::Setup(e.to_string()))
            })));
        }
        for task in starting {
            match task {
                None => agents.push(None),
                Some(task) => {
                    let agent = task.await.map_err(|e| SimError::Setup(e.to_string()))??;
                    agents.push(Some(agent));
                }
            }
        }
    }

    let (foreign, foreign_links) = foreign_credentials(topology)?;
    Ok(SimFleet {
        old_root,
        agents,
        executor_creds,
        foreign,
        foreign_links,
    })
}

/// Links under other CAs get a root per CA and a static leaf per node: the rotation
/// never touches them, and they must stay up throughout.
#[allow(clippy::type_complexity)]
fn foreign_credentials(
    topology: &Topology,
) -> Result<
    (
        HashMap<(String, String), Arc<LiveCredentials>>,
        Vec<(String, String, String)>,
    ),
    SimError,
> {
    let mut roots: HashMap<String, RootCa> = HashMap::new();
    let mut creds = HashMap::new();
    let mut links = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for link in &topology.links {
        let ca = topology.link_ca(link);
        if ca == topology.ca {
            continue;
        }
        let key = (link.client.clone(), link.server.clone(), ca.to_string());
        if !seen.insert(key.clone()) {
            continue;
        }
        let root = match roots.entry(ca.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(RootCa::generate(
                ca,
                0,
                KeyAlg::default(),
                Validity::default(),
            )?),
        };
        for node in [&link.client, &link.server] {
            if let std::collections::hash_map::Entry::Vacant(e) =
                creds.entry((node.clone(), ca.to_string()))
            {
                e.insert(endpoint(root, node, KeyAlg::default())?);
            }
        }
        links.push(key);
    }
    Ok((creds, links))
}
