//! A fleet of agents that apply every step at once, for measuring the executor
//! itself: its scheduler, its gRPC calls and above all its journal. One minimal Agent
//! gRPC server per node on loopback (no TLS, no state, no handshakes); a rotation of
//! such a fleet costs only what the executor does. Used by the throughput benchmarks
//! of every journal backend (redb here, PostgreSQL in `rollover-journal-postgres`),
//! so their figures compare like with like.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rollover_core::synth::{FleetShape, layered_fleet};
use rollover_core::{Fleet, Mode, Topology};
use rollover_pki::{KeyAlg, NodeKey};
use rollover_proto::v1;
use rollover_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use tonic::{Request, Response, Status};

use crate::{ApiError, Executor, ExecutorError};

/// An agent that applies every step at once and remembers nothing.
struct InstantAgent {
    id: String,
    mode: Mode,
    csr: Vec<u8>,
}

#[tonic::async_trait]
impl AgentService for InstantAgent {
    async fn get_state(
        &self,
        _: Request<v1::GetStateRequest>,
    ) -> Result<Response<v1::GetStateResponse>, Status> {
        let mode = match self.mode {
            Mode::Bundle => v1::NodeMode::Bundle,
            Mode::Atomic => v1::NodeMode::Atomic,
        };
        Ok(Response::new(v1::GetStateResponse {
            state: Some(v1::AgentState {
                node_id: self.id.clone(),
                mode: mode as i32,
                client_roots: vec!["old".into()],
                ..Default::default()
            }),
        }))
    }

    async fn create_csr(
        &self,
        _: Request<v1::CreateCsrRequest>,
    ) -> Result<Response<v1::CreateCsrResponse>, Status> {
        Ok(Response::new(v1::CreateCsrResponse {
            csr_der: self.csr.clone(),
        }))
    }

    async fn apply_step(
        &self,
        _: Request<v1::ApplyStepRequest>,
    ) -> Result<Response<v1::ApplyStepResponse>, Status> {
        Ok(Response::new(v1::ApplyStepResponse {
            applied: true,
            state: None,
        }))
    }

    async fn probe(
        &self,
        _: Request<v1::ProbeRequest>,
    ) -> Result<Response<v1::ProbeResponse>, Status> {
        Ok(Response::new(v1::ProbeResponse {
            ok: true,
            ..Default::default()
        }))
    }
}

/// Start one instant agent per node of a generated layered fleet of `nodes` nodes
/// (fan-out 3, a fifth atomic, no control channel), each on its own loopback port;
/// returns the topology with their addresses. The servers run until the runtime
/// stops.
pub async fn start(nodes: usize) -> Result<Topology, ExecutorError> {
    let mut topology = layered_fleet(&FleetShape {
        nodes,
        fan_out: 3,
        atomic_share: 0.2,
        control: false,
        seed: 42,
    });
    let modes: HashMap<String, Mode> = topology
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.mode))
        .collect();
    for node in &mut topology.nodes {
        let key =
            NodeKey::generate(KeyAlg::EcdsaP256).map_err(|e| ExecutorError::Serve(e.into()))?;
        let agent = InstantAgent {
            id: node.id.clone(),
            mode: modes.get(&node.id).copied().unwrap_or(Mode::Bundle),
            csr: key
                .csr_der(&node.id)
                .map_err(|e| ExecutorError::Serve(e.into()))?
                .to_vec(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ExecutorError::Serve(e.into()))?;
        node.address = Some(
            listener
                .local_addr()
                .map_err(|e| ExecutorError::Serve(e.into()))?
                .to_string(),
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(agent))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
    }
    Ok(topology)
}

/// One rotation run to its end.
#[derive(Debug, Clone, Copy)]
pub struct Rotated {
    /// Steps in the plan.
    pub steps: usize,
    /// From StartRotation to the final state.
    pub elapsed: Duration,
    /// The final state.
    pub state: v1::RotationState,
}

impl Rotated {
    /// Steps per second.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Rotate `topology` (from [`start`]) with `executor`, probes off, and wait for the
/// end (polling the status every millisecond).
pub async fn rotate(executor: &Executor, topology: &Topology) -> Result<Rotated, ApiError> {
    let plan = rollover_core::plan_waves(&Fleet::new(topology));
    let request = v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                topology,
            ))),
        }),
        plan: Some(v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&plan))),
        }),
        options: Some(v1::RotationOptions {
            probe: false,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let started = Instant::now();
    let id = executor.start_rotation(request).await?.rotation_id;
    loop {
        let status = executor.get_rotation(&id, false)?;
        let state = v1::RotationState::try_from(status.state).unwrap_or_default();
        if !matches!(
            state,
            v1::RotationState::Running | v1::RotationState::Pending
        ) {
            return Ok(Rotated {
                steps: plan.steps.len(),
                elapsed: started.elapsed(),
                state,
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
