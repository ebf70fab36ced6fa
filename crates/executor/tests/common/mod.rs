//! An in-memory fleet of fake agents behind [`AgentApi`]: every node follows MODEL §3
//! (steps in order, idempotent by step key, undo of the last step only), and after
//! every applied step the handshake rule (core::handshake) is checked on every
//! undeclared link. Probes answer with the rule's verdict.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rollover_core::synth::{FleetShape, layered_fleet};
use rollover_core::{Fleet, Mode, Topology, handshake};
use rollover_executor::journal::State;
use rollover_executor::{
    AgentApi, AgentConnector, AgentError, Executor, ExecutorConfig, RetryPolicy,
};
use rollover_pki::{KeyAlg, NodeKey};
use rollover_proto::v1;

pub struct World {
    pub fleet: Fleet,
    pub disrupted: Mutex<HashSet<(String, String)>>,
    done: Mutex<Vec<usize>>,
    keys: Mutex<HashSet<(String, u64, bool)>>,
    pub applied: Vec<AtomicU64>,
    pub violations: Mutex<Vec<String>>,
    /// Links whose next probe fails (once each).
    pub fail_probe_once: Mutex<HashSet<(String, String)>>,
    /// Nodes whose next ApplyStep fails with UNAVAILABLE after applying (lost answer).
    pub lose_answer_once: Mutex<HashSet<String>>,
    /// Delay of every ApplyStep.
    pub delay: Mutex<Duration>,
    csr_keys: Mutex<HashMap<String, NodeKey>>,
    /// The generation of every CreateCsr, in order.
    pub csr_generations: Mutex<Vec<u32>>,
    /// (call, rotation id, leader epoch) of every CreateCsr and ApplyStep.
    pub fencing: Mutex<Vec<(&'static str, String, u64)>>,
    /// ApplySteps with a lower leader epoch are refused as a real agent refuses a
    /// deposed leader's (ABORTED "stale leader").
    pub newest_epoch: AtomicU64,
    /// Nodes whose agent says it exports one identity (`--export`).
    pub exporting: Mutex<HashSet<String>>,
    /// The root every agent reports it is on (`old-root`).
    pub root: Mutex<String>,
}

impl World {
    pub fn new(topology: &Topology) -> Arc<World> {
        let fleet = Fleet::new(topology);
        let n = fleet.len();
        Arc::new(World {
            fleet,
            disrupted: Mutex::new(HashSet::new()),
            done: Mutex::new(vec![0; n]),
            keys: Mutex::new(HashSet::new()),
            applied: (0..n).map(|_| AtomicU64::new(0)).collect(),
            violations: Mutex::new(Vec::new()),
            fail_probe_once: Mutex::new(HashSet::new()),
            lose_answer_once: Mutex::new(HashSet::new()),
            delay: Mutex::new(Duration::ZERO),
            csr_keys: Mutex::new(HashMap::new()),
            exporting: Mutex::new(HashSet::new()),
            csr_generations: Mutex::new(Vec::new()),
            fencing: Mutex::new(Vec::new()),
            newest_epoch: AtomicU64::new(0),
            root: Mutex::new("old-root".into()),
        })
    }

    pub fn done(&self, node: &str) -> usize {
        self.done.lock().unwrap()[self.fleet.node(node).unwrap() as usize]
    }

    fn state(&self, done: &[usize], n: u32) -> rollover_core::NodeState {
        self.fleet.mode(n).state_after(done[n as usize])
    }

    /// The handshake rule on every undeclared link (links from `@executor` are
    /// skipped: its steps are local to the executor, not seen here).
    fn check(&self, done: &[usize], after: &str) {
        let disrupted = self.disrupted.lock().unwrap();
        for link in &self.fleet.links {
            if link.is_self() || Some(link.client) == self.fleet.executor {
                continue;
            }
            let (c, s) = (self.fleet.id(link.client), self.fleet.id(link.server));
            if disrupted.contains(&(c.to_string(), s.to_string())) {
                continue;
            }
            if let Err(e) = handshake(self.state(done, link.client), self.state(done, link.server))
            {
                self.violations
                    .lock()
                    .unwrap()
                    .push(format!("after {after}: {c} -> {s}: {e}"));
            }
        }
    }

    pub fn assert_all(&self, target_final: bool) {
        let v = self.violations.lock().unwrap();
        assert!(v.is_empty(), "handshake rule broken: {v:?}");
        let done = self.done.lock().unwrap();
        for n in 0..self.fleet.len() as u32 {
            if Some(n) == self.fleet.executor {
                continue;
            }
            let want = if target_final {
                self.fleet.mode(n).steps().len()
            } else {
                0
            };
            assert_eq!(done[n as usize], want, "node {}", self.fleet.id(n));
        }
    }

    /// Every agent applied exactly its mode's steps (no step applied twice).
    pub fn assert_applied_once(&self) {
        for n in 0..self.fleet.len() as u32 {
            if Some(n) == self.fleet.executor {
                continue;
            }
            assert_eq!(
                self.applied[n as usize].load(Ordering::SeqCst) as usize,
                self.fleet.mode(n).steps().len(),
                "node {}",
                self.fleet.id(n)
            );
        }
    }
}

pub struct FakeAgent {
    world: Arc<World>,
    node: u32,
}

impl AgentApi for FakeAgent {
    fn get_state(&self) -> BoxFuture<'_, Result<v1::AgentState, AgentError>> {
        Box::pin(async move {
            let mode = match self.world.fleet.mode(self.node) {
                Mode::Bundle => v1::NodeMode::Bundle,
                Mode::Atomic => v1::NodeMode::Atomic,
            };
            let id = self.world.fleet.id(self.node);
            let identity = if self.world.exporting.lock().unwrap().contains(id) {
                v1::NodeIdentity::Single
            } else {
                v1::NodeIdentity::Unspecified
            };
            // Bound first: a guard in the struct expression would live to its end.
            let root = self.world.root.lock().unwrap().clone();
            Ok(v1::AgentState {
                node_id: id.to_string(),
                mode: mode as i32,
                identity: identity as i32,
                client_roots: vec![root.clone()],
                server_roots: vec![root],
                applied_step_count: self.world.applied[self.node as usize].load(Ordering::SeqCst),
                data_address: Some(format!("fake:{id}")),
                ..Default::default()
            })
        })
    }

    fn create_csr(
        &self,
        request: v1::CreateCsrRequest,
    ) -> BoxFuture<'_, Result<v1::CreateCsrResponse, AgentError>> {
        Box::pin(async move {
            assert!(request.generation > 0);
            self.world.fencing.lock().unwrap().push((
                "CreateCsr",
                request.rotation_id.clone(),
                request.leader_epoch,
            ));
            self.world
                .csr_generations
                .lock()
                .unwrap()
                .push(request.generation);
            let id = self.world.fleet.id(self.node).to_string();
            let key = self
                .world
                .csr_keys
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_insert_with(|| NodeKey::generate(KeyAlg::EcdsaP256).unwrap())
                .clone();
            Ok(v1::CreateCsrResponse {
                csr_der: key.csr_der(&id).unwrap().to_vec(),
            })
        })
    }

    fn apply_step(
        &self,
        request: v1::ApplyStepRequest,
    ) -> BoxFuture<'_, Result<v1::ApplyStepResponse, AgentError>> {
        Box::pin(async move {
            self.world.fencing.lock().unwrap().push((
                "ApplyStep",
                request.rotation_id.clone(),
                request.leader_epoch,
            ));
            let newest = self.world.newest_epoch.load(Ordering::SeqCst);
            if request.leader_epoch < newest {
                return Err(AgentError::new(
                    tonic::Code::Aborted,
                    format!("stale leader: epoch {} < {newest}", request.leader_epoch),
                ));
            }
            let delay = *self.world.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let w = &self.world;
            let id = w.fleet.id(self.node).to_string();
            let action = rollover_proto::convert::action_from_i32(request.action)
                .map_err(|e| AgentError::new(tonic::Code::InvalidArgument, e.to_string()))?;
            let mode = w.fleet.mode(self.node);
            let Some(rank) = mode.steps().iter().position(|a| *a == action) else {
                return Err(AgentError::new(
                    tonic::Code::FailedPrecondition,
                    format!("{mode} node cannot {action}"),
                ));
            };
            let key = (request.rotation_id.clone(), request.step_id, request.undo);
            let applied = {
                let mut keys = w.keys.lock().unwrap();
                let mut done = w.done.lock().unwrap();
                if keys.contains(&key) {
                    false
                } else {
                    let n = self.node as usize;
                    if request.undo {
                        if done[n] != rank + 1 {
                            return Err(AgentError::new(
                                tonic::Code::FailedPrecondition,
                                format!("{id}: cannot undo {action} at {}", done[n]),
                            ));
                        }
                        done[n] = rank;
                    } else {
                        if done[n] != rank {
                            return Err(AgentError::new(
                                tonic::Code::FailedPrecondition,
                                format!("{id}: {action} out of order at {}", done[n]),
                            ));
                        }
                        if rank == 0
                            && (request.issued_leaf_der.is_empty()
                                || request.new_root_der.is_empty())
                        {
                            return Err(AgentError::new(
                                tonic::Code::InvalidArgument,
                                "first step without root and leaf",
                            ));
                        }
                        done[n] = rank + 1;
                    }
                    keys.insert(key);
                    w.applied[n].fetch_add(1, Ordering::SeqCst);
                    let what = format!("{id} {}{action}", if request.undo { "undo " } else { "" });
                    w.check(&done, &what);
                    true
                }
            };
            if w.lose_answer_once.lock().unwrap().remove(&id) {
                return Err(AgentError::new(
                    tonic::Code::Unavailable,
                    "connection reset",
                ));
            }
            Ok(v1::ApplyStepResponse {
                applied,
                state: None,
            })
        })
    }

    fn probe(
        &self,
        request: v1::ProbeRequest,
    ) -> BoxFuture<'_, Result<v1::ProbeResponse, AgentError>> {
        Box::pin(async move {
            let w = &self.world;
            let client = w.fleet.id(self.node).to_string();
            assert_eq!(request.peer_address, format!("fake:{}", request.peer_id));
            let server = w.fleet.node(&request.peer_id).expect("known peer");
            if w.fail_probe_once
                .lock()
                .unwrap()
                .remove(&(client.clone(), request.peer_id.clone()))
            {
                return Ok(v1::ProbeResponse {
                    ok: false,
                    error: "injected: received fatal alert: BadCertificate".into(),
                    failure: v1::ProbeFailure::TlsRefused as i32,
                    ..Default::default()
                });
            }
            let done = w.done.lock().unwrap().clone();
            Ok(
                match handshake(w.state(&done, self.node), w.state(&done, server)) {
                    Ok(()) => v1::ProbeResponse {
                        ok: true,
                        ..Default::default()
                    },
                    Err(e) => v1::ProbeResponse {
                        ok: false,
                        error: e.to_string(),
                        failure: v1::ProbeFailure::TlsRefused as i32,
                        ..Default::default()
                    },
                },
            )
        })
    }
}

pub struct FakeConnector(pub Arc<World>);

impl AgentConnector for FakeConnector {
    fn connect(
        &self,
        node_id: &str,
        _address: Option<&str>,
    ) -> Result<Arc<dyn AgentApi>, AgentError> {
        let node = self.0.fleet.node(node_id).ok_or_else(|| {
            AgentError::new(
                tonic::Code::InvalidArgument,
                format!("unknown node {node_id}"),
            )
        })?;
        Ok(Arc::new(FakeAgent {
            world: self.0.clone(),
            node,
        }))
    }
}

/// A mixed fleet with a control channel.
pub fn mixed_topology(nodes: usize, seed: u64) -> Topology {
    layered_fleet(&FleetShape {
        nodes,
        fan_out: 2,
        atomic_share: 0.3,
        control: true,
        seed,
    })
}

pub fn config(dir: &std::path::Path, world: &Arc<World>) -> ExecutorConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut c = ExecutorConfig::new(dir);
    c.connector = Some(Arc::new(FakeConnector(world.clone())));
    c.retry = RetryPolicy {
        initial: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_attempts: 5,
    };
    c
}

/// Wait until the rotation is in one of `states` (or panic after 30 s).
pub async fn wait_for(
    executor: &Executor,
    id: &str,
    states: &[v1::RotationState],
) -> v1::RotationStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = executor.get_rotation(id, false).unwrap();
        if states.iter().any(|s| *s as i32 == status.state) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation stuck in {:?}",
            status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn is_terminal(state: State) -> bool {
    state.is_terminal()
}
