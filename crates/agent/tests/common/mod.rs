//! Fixtures: roots, agents on 127.0.0.1 port 0, and an `@executor` test client.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rollover_agent::{
    Agent, AgentConfig, AgentHandle, ControlCreds, EXECUTOR_ID, bootstrap, single_root_credentials,
};
use rollover_core::state::{Action, Mode};
use rollover_pki::{KeyAlg, LiveCredentials, RootCa, Validity};
use rollover_proto::v1::agent_service_client::AgentServiceClient;
use rollover_proto::v1::{
    AgentState, ApplyStepRequest, ApplyStepResponse, CreateCsrRequest, GetStateRequest,
    ProbeRequest, ProbeResponse, StepAction,
};
use rollover_transport::tls_channel;
use tonic::Status;
use tonic::transport::Channel;

pub const CA: &str = "corp-root";
pub const ROTATION: &str = "rot-1";

/// Runs a test body, failing it if it takes more than a minute.
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(60), body)
        .await
        .expect("test finished within a minute");
}

pub fn root(name: &str, generation: u32) -> RootCa {
    RootCa::generate(name, generation, KeyAlg::EcdsaP256, Validity::default()).unwrap()
}

pub fn localhost() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Bootstraps `id` in `dir` from `old` (unless already there) and starts it.
pub async fn start_agent(
    dir: &Path,
    id: &str,
    mode: Mode,
    old: &RootCa,
    control: ControlCreds,
) -> AgentHandle {
    if !rollover_agent::is_bootstrapped(dir) {
        bootstrap(dir, id, mode, old, Validity::default()).unwrap();
    }
    Agent::start(AgentConfig {
        id: id.into(),
        mode,
        state_dir: dir.to_path_buf(),
        state_files: None,
        data_listen: localhost(),
        control_listen: localhost(),
        control,
        limits: rollover_agent::DEFAULT_LIMITS,
        chains: true,
    })
    .await
    .unwrap()
}

/// Control credentials of `id` from the control CA.
pub fn control_creds(id: &str, control_ca: &RootCa) -> Arc<LiveCredentials> {
    LiveCredentials::new(single_root_credentials(id, control_ca, Validity::default()).unwrap())
        .unwrap()
}

/// A test stand-in for the executor: it calls agents as `creds` (an `@executor` leaf,
/// or another identity to test refusals), on a fresh channel per call so every call
/// handshakes with the credentials current at that moment.
pub struct Executor {
    pub creds: Arc<LiveCredentials>,
    pub new_root: RootCa,
    pub old_fingerprint: String,
}

impl Executor {
    pub fn client(&self, agent: &AgentHandle) -> AgentServiceClient<Channel> {
        let addr = agent.control_addr().to_string();
        AgentServiceClient::new(tls_channel(&addr, self.creds.clone(), agent.id()).unwrap())
    }

    pub async fn state(&self, agent: &AgentHandle) -> Result<AgentState, Status> {
        Ok(self
            .client(agent)
            .get_state(GetStateRequest {})
            .await?
            .into_inner()
            .state
            .unwrap())
    }

    /// Applies (or undoes) `action` as step `step_id`; the first step of a mode
    /// first gets a CSR from the agent and issues its leaf from the new root.
    pub async fn step(
        &self,
        agent: &AgentHandle,
        step_id: u64,
        action: Action,
        undo: bool,
    ) -> Result<ApplyStepResponse, Status> {
        self.step_as(0, agent, step_id, action, undo).await
    }

    /// [`Self::step`] as a leader of `leader_epoch` (its CreateCsr too).
    pub async fn step_as(
        &self,
        leader_epoch: u64,
        agent: &AgentHandle,
        step_id: u64,
        action: Action,
        undo: bool,
    ) -> Result<ApplyStepResponse, Status> {
        let mut client = self.client(agent);
        let mut request = ApplyStepRequest {
            rotation_id: ROTATION.into(),
            step_id,
            action: StepAction::from(action).into(),
            old_root_fingerprint: self.old_fingerprint.clone(),
            undo,
            leader_epoch,
            ..Default::default()
        };
        if matches!(action, Action::Stage | Action::Switch) && !undo {
            let csr = client
                .create_csr(CreateCsrRequest {
                    ca_name: CA.into(),
                    generation: 2,
                    rotation_id: ROTATION.into(),
                    leader_epoch,
                })
                .await?
                .into_inner()
                .csr_der;
            let leaf = self
                .new_root
                .issue_leaf(&csr, agent.id(), Validity::default())
                .unwrap();
            request.new_root_der = self.new_root.cert_der().to_vec();
            request.issued_leaf_der = leaf.to_vec();
        }
        Ok(client.apply_step(request).await?.into_inner())
    }

    /// Has `client` probe `server`'s data plane.
    pub async fn probe(&self, client: &AgentHandle, server: &AgentHandle) -> ProbeResponse {
        self.client(client)
            .probe(ProbeRequest {
                peer_id: server.id().into(),
                peer_address: server.data_addr().to_string(),
                workload: false,
            })
            .await
            .unwrap()
            .into_inner()
    }
}

/// Bundle node `a`, its control identity (from a separate control CA) in its state
/// directory, and an executor for it: for tests that restart the agent on its state.
pub struct LoneAgent {
    _dirs: tempfile::TempDir,
    pub dir: std::path::PathBuf,
    pub old: RootCa,
    pub exec: Executor,
}

impl LoneAgent {
    pub fn new() -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let dir = dirs.path().join("a");
        let (old, new, control) = (root(CA, 1), root(CA, 2), root("control", 1));
        rollover_agent::bootstrap_control(&dir, "a", &control, Validity::default()).unwrap();
        let exec = Executor {
            creds: control_creds(executor_id(), &control),
            new_root: new,
            old_fingerprint: old.fingerprint(),
        };
        Self {
            _dirs: dirs,
            dir,
            old,
            exec,
        }
    }

    /// Start (or start again) the agent on its state directory.
    pub async fn start(&self) -> AgentHandle {
        start_agent(
            &self.dir,
            "a",
            Mode::Bundle,
            &self.old,
            ControlCreds::StateDir,
        )
        .await
    }
}

pub fn executor_id() -> &'static str {
    EXECUTOR_ID
}
