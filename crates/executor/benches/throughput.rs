//! Executor throughput: one rotation of 1,000 agents that apply steps instantly
//! (minimal fake Agent gRPC servers on loopback, one per node, probes off), over
//! plaintext gRPC, with the real redb journal (every transition committed, group
//! commit). Reports steps per second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rollover_core::synth::{FleetShape, layered_fleet};
use rollover_core::{Fleet, Mode, Topology};
use rollover_executor::{Executor, ExecutorConfig};
use rollover_pki::{KeyAlg, NodeKey};
use rollover_proto::v1;
use rollover_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use tonic::{Request, Response, Status};

const NODES: usize = 1000;

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

/// Start one fake agent per node; returns the topology with their addresses.
async fn fleet() -> Topology {
    let mut topology = layered_fleet(&FleetShape {
        nodes: NODES,
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
        let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
        let agent = InstantAgent {
            id: node.id.clone(),
            mode: modes[&node.id],
            csr: key.csr_der(&node.id).unwrap().to_vec(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        node.address = Some(listener.local_addr().unwrap().to_string());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(agent))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
    }
    topology
}

/// Run one rotation; returns (steps, elapsed).
async fn rotate(executor: &Executor, topology: &Topology) -> (usize, Duration) {
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
    let start = Instant::now();
    let id = executor.start_rotation(request).await.unwrap().rotation_id;
    loop {
        let s = executor.get_rotation(&id, false).unwrap();
        if s.state == v1::RotationState::Succeeded as i32 {
            break;
        }
        assert!(
            s.state == v1::RotationState::Running as i32
                || s.state == v1::RotationState::Pending as i32,
            "{s:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (plan.steps.len(), start.elapsed())
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (executor, topology) = runtime.block_on(async {
        let topology = fleet().await;
        let executor = Executor::open(ExecutorConfig::new(dir.path())).unwrap();
        (executor, topology)
    });
    // Warm up connections, then report one rotation explicitly.
    let (steps, elapsed) = runtime.block_on(rotate(&executor, &topology));
    let (steps, elapsed) = {
        let _ = (steps, elapsed);
        runtime.block_on(rotate(&executor, &topology))
    };
    println!(
        "executor throughput: {steps} steps over {NODES} agents in {:.3} s = {:.0} steps/s",
        elapsed.as_secs_f64(),
        steps as f64 / elapsed.as_secs_f64()
    );
    let mut group = c.benchmark_group("executor");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(criterion::Throughput::Elements(steps as u64));
    group.bench_function("rotation_1000_agents", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += runtime.block_on(rotate(&executor, &topology)).1;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
