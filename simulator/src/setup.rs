//! Standing up the simulated fleet: the old root of the rotated CA, the control CA,
//! one real agent per target node (bootstrapped in its own state directory, serving
//! its data plane and control plane on loopback), the executor's own credentials, and
//! static credentials for links under other CAs.
//!
//! Agents listen either on ports of their own, as deployed agents do, or (the
//! default for a simulation: the only way to fit 10,000 agents in one process's file
//! descriptors and loopback ports) on two listeners shared by the whole fleet, which
//! route each connection to its agent by the TLS server name the client asks for
//! (`node_dns_name(id)`, as every client in rollover does). Each agent then runs its
//! own TLS handshake on the routed connection, exactly as on its own port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollover_agent::{
    Agent, AgentConfig, AgentHandle, ControlCreds, MemFiles, StateDir, StateFiles, bootstrap_in,
    single_root_credentials,
};
use rollover_core::{EXECUTOR_ID, Fleet, Mode, Topology};
use rollover_pki::{KeyAlg, LiveCredentials, RootCa, Validity, node_dns_name};
use rollover_proto::v1;
use rollover_transport::SniRouter;

use crate::error::SimError;
use crate::handshake_rate::endpoint;
use crate::limits::Listening;

/// Agents started at once while standing the fleet up.
const START_BATCH: usize = 64;

/// The fleet's shared listeners ([`Listening::Shared`]).
pub struct Routers {
    data: SniRouter,
    control: SniRouter,
}

impl Routers {
    fn bind() -> Result<Self, SimError> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        Ok(Routers {
            data: SniRouter::bind(loopback)?,
            control: SniRouter::bind(loopback)?,
        })
    }

    /// Start `config`'s agent on routes of its own name.
    async fn start(&self, config: AgentConfig) -> Result<AgentHandle, rollover_agent::AgentError> {
        let name = node_dns_name(&config.id);
        let (data, control) = (self.data.register(&name), self.control.register(&name));
        Agent::start_on(config, data, control).await
    }
}

/// Where simulated agents keep their state directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStore {
    /// In memory, each agent in its own [`MemFiles`] (the same file formats and the
    /// same agent code as on the disk): nothing of a simulated agent outlives the
    /// run, and creating, renaming and deleting thousands of small files would be
    /// most of the kernel's work in a rotation.
    Memory,
    /// On the disk, under the work directory: chaos runs read the agents' key files
    /// afterwards (no private key may have left its node).
    Disk,
}

/// The running fleet.
pub struct SimFleet {
    /// The rotated CA's root before the rotation.
    pub old_root: Arc<RootCa>,
    /// Agents by target node index (`None` for `@executor`).
    pub agents: Vec<Option<AgentSlot>>,
    /// The executor's own control-channel credentials (`@executor`).
    pub executor_creds: Arc<LiveCredentials>,
    /// Credentials of nodes on links under other CAs: (node, CA) -> credentials.
    pub foreign: HashMap<(String, String), Arc<LiveCredentials>>,
    /// Distinct links under other CAs: (client, server, CA).
    pub foreign_links: Vec<(String, String, String)>,
    /// The shared listeners, with [`Listening::Shared`] (dropped after the agents).
    pub routers: Option<Arc<Routers>>,
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

    /// The topology the executor receives: every agent with its control address,
    /// and no `probe:` address (a simulation runs no workloads: its agents' data
    /// planes stand in for them, so the executor's probes go there).
    pub fn addressed_topology(&self, topology: &Topology, fleet: &Fleet) -> Topology {
        let mut out = topology.clone();
        let listed: std::collections::HashSet<String> =
            out.nodes.iter().map(|n| n.id.clone()).collect();
        for (ix, id) in fleet.ids.iter().enumerate() {
            if id != EXECUTOR_ID && !listed.contains(id) {
                let mut node = rollover_core::topology::NodeSpec::new(id.clone(), fleet.modes[ix]);
                node.identity = fleet.identities[ix];
                node.chains = fleet.chains[ix];
                out.nodes.push(node);
            }
        }
        for node in &mut out.nodes {
            node.probe = None;
            if let Some(ix) = fleet.node(&node.id)
                && let Some(agent) = &self.agents[ix as usize]
            {
                node.address = Some(agent.control_addr().to_string());
            }
        }
        out
    }

    /// Stop every agent, all at once (one after the other, 10,000 agents' graceful
    /// stops would take minutes).
    pub async fn shutdown(self) {
        futures::future::join_all(self.agents.into_iter().flatten().map(AgentSlot::shutdown)).await;
    }
}

/// One node's agent across its incarnations: the running one, if any, and what it
/// takes to start it again on the same state directory and the same ports (chaos
/// runs crash and restart agents; otherwise there is one incarnation).
pub struct AgentSlot {
    id: String,
    mode: Mode,
    state_dir: PathBuf,
    /// The files behind `state_dir` (`None`: on the disk).
    state_files: Option<Arc<dyn StateFiles>>,
    data_addr: SocketAddr,
    control_addr: SocketAddr,
    control: ControlCreds,
    /// Whether the node builds chains (topology `chains`, MODEL §11).
    chains: bool,
    routers: Option<Arc<Routers>>,
    running: Mutex<Option<AgentHandle>>,
    /// The live credentials of the latest incarnation (kept while it is down).
    creds: Mutex<Arc<LiveCredentials>>,
    /// Sockets keeping the ports bound (not listening) while the agent is down.
    holds: Mutex<Vec<tokio::net::TcpSocket>>,
    incarnations: AtomicU32,
}

/// How long a restarting agent retries binding its old ports.
const REBIND_DEADLINE: Duration = Duration::from_secs(10);

impl AgentSlot {
    fn new(
        handle: AgentHandle,
        state_dir: PathBuf,
        state_files: Option<Arc<dyn StateFiles>>,
        control: ControlCreds,
        chains: bool,
        routers: Option<Arc<Routers>>,
    ) -> Self {
        AgentSlot {
            id: handle.id().to_string(),
            mode: handle.mode(),
            state_dir,
            state_files,
            data_addr: handle.data_addr(),
            control_addr: handle.control_addr(),
            control,
            chains,
            routers,
            creds: Mutex::new(handle.credentials()),
            running: Mutex::new(Some(handle)),
            holds: Mutex::default(),
            incarnations: AtomicU32::new(1),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<AgentHandle>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The agent's state directory (on the disk only with [`AgentStore::Disk`]).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where the data-plane server listens (the same in every incarnation).
    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    /// Where the Agent gRPC server listens (the same in every incarnation).
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The live credentials of the latest incarnation.
    pub fn credentials(&self) -> Arc<LiveCredentials> {
        self.creds.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The node's state as GetState answers it (default while the agent is down).
    pub fn state(&self) -> v1::AgentState {
        self.running()
            .as_ref()
            .map(AgentHandle::state)
            .unwrap_or_default()
    }

    /// Steps applied since the node's state began (persisted in its state directory,
    /// so it carries over restarts); `None` while the agent is down.
    pub fn applied_count(&self) -> Option<u64> {
        self.running().as_ref().map(AgentHandle::applied_count)
    }

    /// Late calls of a deposed executor that the running incarnation refused by
    /// their leader epoch (0 while down).
    pub fn epoch_refusals(&self) -> u64 {
        self.running()
            .as_ref()
            .map_or(0, |a| a.metrics().epoch_refusals)
    }

    /// Whether an incarnation is running.
    pub fn is_up(&self) -> bool {
        self.running().is_some()
    }

    /// Incarnations started so far.
    pub fn incarnations(&self) -> u32 {
        self.incarnations.load(Ordering::Relaxed)
    }

    /// Kill the running incarnation at once (its tasks are aborted, as in a crash);
    /// false if it was not running.
    pub fn crash(&self) -> bool {
        let handle = self.running().take();
        handle.is_some()
    }

    /// While the agent is down, keep its two ports bound without listening, so that
    /// connections to them are refused and no outgoing connection is given one of
    /// them as its local port (which would keep the agent from binding it again).
    /// Waits (briefly) for the crashed incarnation's listeners to close.
    pub async fn hold_ports(&self) {
        if self.routers.is_some() {
            // Shared listeners: a connection for a crashed agent finds no route and is
            // closed at once.
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for addr in [self.data_addr, self.control_addr] {
            loop {
                let held = (|| {
                    let socket = match addr {
                        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                    };
                    socket.set_reuseaddr(true)?;
                    socket.bind(addr)?;
                    Ok::<_, std::io::Error>(socket)
                })();
                match held {
                    Ok(socket) => {
                        self.holds
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(socket);
                        break;
                    }
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.id, %addr, error = %e, "cannot hold the port of a crashed agent");
                        break;
                    }
                }
            }
        }
    }

    /// Start a new incarnation on the same state directory and the same ports
    /// (retrying briefly while the old sockets are let go); the held ports are let go
    /// once it listens.
    pub async fn restart(&self) -> Result<(), SimError> {
        let result = self.start_again().await;
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).clear();
        result
    }

    async fn start_again(&self) -> Result<(), SimError> {
        let deadline = Instant::now() + REBIND_DEADLINE;
        loop {
            let config = AgentConfig {
                id: self.id.clone(),
                mode: self.mode,
                state_dir: self.state_dir.clone(),
                state_files: self.state_files.clone(),
                data_listen: self.data_addr,
                control_listen: self.control_addr,
                control: self.control.clone(),
                limits: rollover_agent::DEFAULT_LIMITS,
                chains: self.chains,
            };
            let started = match &self.routers {
                Some(routers) => routers.start(config).await,
                None => Agent::start(config).await,
            };
            match started {
                Ok(handle) => {
                    *self.creds.lock().unwrap_or_else(|p| p.into_inner()) = handle.credentials();
                    let old = self.running().replace(handle);
                    drop(old);
                    self.incarnations.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(rollover_agent::AgentError::Bind { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(SimError::Setup(format!(
                        "restarting the agent of `{}`: {e}",
                        self.id
                    )));
                }
            }
        }
    }

    /// Stop the running incarnation gracefully.
    pub async fn shutdown(self) {
        let handle = self.running.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = handle {
            handle.shutdown().await;
        }
    }
}

/// Bootstrap and start one agent per target node under `dir`, their state kept as
/// `store` says.
pub async fn start_fleet(
    topology: &Topology,
    fleet: &Fleet,
    dir: &Path,
    listening: Listening,
    store: AgentStore,
) -> Result<SimFleet, SimError> {
    // Simulated state directories are thrown away after the run: written the same
    // way, but not fsynced (which would make the rotation wait on the disk).
    rollover_agent::set_synced_writes(false);
    crate::limits::check(fleet.len(), listening)?;
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

    let routers = match listening {
        Listening::OwnPorts => None,
        Listening::Shared => Some(Arc::new(Routers::bind()?)),
    };
    let mut agents: Vec<Option<AgentSlot>> = Vec::with_capacity(fleet.len());
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
            let chains = fleet.chains[*ix as usize];
            let state_dir = dir.join("agents").join(format!("{ix}"));
            let state_files: Option<Arc<dyn StateFiles>> = match store {
                AgentStore::Memory => Some(Arc::new(MemFiles::new())),
                AgentStore::Disk => None,
            };
            let (root, control) = (old_root.clone(), control_root.clone());
            let routers = routers.clone();
            let id = id.clone();
            starting.push(Some(tokio::spawn(async move {
                let state = match &state_files {
                    Some(files) => StateDir::new(state_dir.clone(), files.clone()),
                    None => StateDir::on_disk(state_dir.clone()),
                };
                let node = id.clone();
                let control_creds =
                    tokio::task::spawn_blocking(move || -> Result<ControlCreds, SimError> {
                        bootstrap_in(&state, &node, mode, &root, validity)
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
                let config = AgentConfig {
                    id,
                    mode,
                    state_dir: state_dir.clone(),
                    state_files: state_files.clone(),
                    data_listen: loopback,
                    control_listen: loopback,
                    control: control_creds.clone(),
                    limits: rollover_agent::DEFAULT_LIMITS,
                    chains,
                };
                let handle = match &routers {
                    Some(routers) => routers.start(config).await,
                    None => Agent::start(config).await,
                }
                .map_err(|e| SimError::Setup(e.to_string()))?;
                Ok::<_, SimError>(AgentSlot::new(
                    handle,
                    state_dir,
                    state_files,
                    control_creds,
                    chains,
                    routers,
                ))
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
        routers,
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
