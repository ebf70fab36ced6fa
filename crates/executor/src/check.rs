//! The pre-flight check of a fleet (CheckFleet): everything a rotation would need,
//! tried before anything changes, with every problem listed rather than the first.
//!
//! The executor asks its planner for a plan, every agent for its state (one short try
//! each: a pre-flight check must answer in seconds, not wait out the retries of a
//! rotation), compares each agent's mode with the topology's and every node's current
//! root with the others' (and, when it rotates its own control channel, with its own),
//! and looks for an active rotation of the CA.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rollover_core::{Fleet, Topology};
use rollover_proto::convert;
use rollover_proto::v1;
use rollover_proto::v1::FleetProblemKind as Kind;
use tokio::task::JoinSet;

use crate::Executor;
use crate::error::ApiError;
use crate::rotation::{check_mode, current_root};
use crate::wire::state_name;

/// How long one agent may take to answer the check's GetState.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the planner may take to answer the check's Plan.
pub const PLANNER_TIMEOUT: Duration = Duration::from_secs(10);

fn problem(kind: Kind, node: &str, message: String) -> v1::FleetProblem {
    v1::FleetProblem {
        kind: kind as i32,
        node: node.to_string(),
        message,
    }
}

/// A short form of a fingerprint, for messages.
fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

impl Executor {
    /// CheckFleet: every problem a rotation of the topology would run into.
    pub async fn check_fleet(
        &self,
        request: v1::CheckFleetRequest,
    ) -> Result<v1::CheckFleetResponse, ApiError> {
        let source = request
            .topology
            .ok_or_else(|| ApiError::Invalid("topology: required".into()))?;
        let topology: Topology = convert::topology_from_source(&source)
            .map_err(|e| ApiError::Invalid(format!("topology: {e}")))?;
        let fleet = Fleet::new(&topology);
        let mut problems = Vec::new();

        if let Some((id, state)) = self.active_rotation(&topology.ca, None) {
            problems.push(problem(
                Kind::ActiveRotation,
                "",
                format!(
                    "CA `{}` has an active rotation: {id} is {}; a new one is refused until \
                     it ends",
                    topology.ca,
                    state_name(state)
                ),
            ));
        }

        let planner = self.check_planner(&topology, &mut problems).await;
        let nodes = self.check_agents(&topology, &fleet, &mut problems).await;
        Ok(v1::CheckFleetResponse {
            problems,
            nodes,
            planner,
        })
    }

    async fn check_planner(
        &self,
        topology: &Topology,
        problems: &mut Vec<v1::FleetProblem>,
    ) -> String {
        if self.inner.planner.is_none() {
            return "no planner configured: rotations need a given plan".into();
        }
        let asked = tokio::time::timeout(
            PLANNER_TIMEOUT,
            self.ask_planner(topology, rollover_core::Strategy::Waves, None),
        )
        .await;
        match asked {
            Ok(Ok(plan)) => format!(
                "{} steps in {} waves, {} declared disruption(s)",
                plan.steps.len(),
                plan.wave_count(),
                plan.disruptions.len()
            ),
            Ok(Err(e)) => {
                problems.push(problem(Kind::Planner, "", e.to_string()));
                String::new()
            }
            Err(_) => {
                problems.push(problem(
                    Kind::Planner,
                    "",
                    format!("planner: no answer in {} s", PLANNER_TIMEOUT.as_secs()),
                ));
                String::new()
            }
        }
    }

    async fn check_agents(
        &self,
        topology: &Topology,
        fleet: &Fleet,
        problems: &mut Vec<v1::FleetProblem>,
    ) -> Vec<v1::NodeCheck> {
        let ctx = &self.inner.ctx;
        let addresses: BTreeMap<&str, &str> = topology
            .nodes
            .iter()
            .filter_map(|n| Some((n.id.as_str(), n.address.as_deref()?)))
            .collect();
        let limit = Arc::new(tokio::sync::Semaphore::new(ctx.prepare_concurrency.max(1)));
        let mut asks = JoinSet::new();
        for node in 0..fleet.len() as u32 {
            if Some(node) == fleet.executor {
                continue;
            }
            let id = fleet.id(node).to_string();
            let want = fleet.mode(node);
            let address = addresses.get(id.as_str()).map(|a| a.to_string());
            let agent = match ctx.connector.connect(&id, address.as_deref()) {
                Ok(agent) => agent,
                Err(e) => {
                    let kind = if address.is_none() {
                        Kind::MissingAddress
                    } else {
                        Kind::Unreachable
                    };
                    problems.push(problem(kind, &id, format!("`{id}`: {e}")));
                    continue;
                }
            };
            let limit = limit.clone();
            asks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let state = tokio::time::timeout(AGENT_TIMEOUT, agent.get_state()).await;
                (node, id, want, address, state)
            });
        }
        let mut reached = Vec::new();
        for (node, id, want, address, state) in asks.join_all().await {
            let state = match state {
                Ok(Ok(state)) => state,
                Ok(Err(e)) => {
                    problems.push(problem(
                        Kind::Unreachable,
                        &id,
                        format!("`{id}`: its agent did not answer: {e}"),
                    ));
                    continue;
                }
                Err(_) => {
                    problems.push(problem(
                        Kind::Unreachable,
                        &id,
                        format!(
                            "`{id}`: its agent did not answer in {} s",
                            AGENT_TIMEOUT.as_secs()
                        ),
                    ));
                    continue;
                }
            };
            if let Err(e) = check_mode(&id, want, &state) {
                problems.push(problem(Kind::ModeMismatch, &id, e.to_string()));
            }
            if state.held_leaves.len() > 1 || state.client_roots.len() > 1 {
                problems.push(problem(
                    Kind::MidRotation,
                    &id,
                    format!(
                        "`{id}`: holds {} roots and {} leaves: a rotation is under way on it \
                         (finish it or roll it back first)",
                        state.client_roots.len(),
                        state.held_leaves.len()
                    ),
                ));
            }
            let root = current_root(&state);
            reached.push((
                node,
                v1::NodeCheck {
                    node: id,
                    mode: state.mode,
                    root_fingerprint: root,
                    address: address.unwrap_or_default(),
                },
            ));
        }
        reached.sort_by_key(|r| r.0);
        let nodes: Vec<v1::NodeCheck> = reached.into_iter().map(|r| r.1).collect();

        // Every node should be on one root: the one the rotation replaces.
        let mut on: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &nodes {
            *on.entry(n.root_fingerprint.as_str()).or_default() += 1;
        }
        if let Some(creds) = (fleet.executor.is_some())
            .then_some(ctx.own_creds.as_ref())
            .flatten()
        {
            let own = creds
                .current()
                .client_roots
                .first()
                .map(|r| rollover_pki::fingerprint(r));
            if let Some(own) = own
                && !nodes.is_empty()
                && !on.contains_key(own.as_str())
            {
                problems.push(problem(
                    Kind::RootMismatch,
                    rollover_core::EXECUTOR_ID,
                    format!(
                        "the executor's control channel trusts root {}, which no agent is on",
                        short(&own)
                    ),
                ));
            }
        }
        if let Some((&common, &count)) = on.iter().max_by_key(|(_, c)| **c)
            && on.len() > 1
        {
            for n in nodes.iter().filter(|n| n.root_fingerprint != common) {
                problems.push(problem(
                    Kind::RootMismatch,
                    &n.node,
                    format!(
                        "`{}`: is on root {} but {count} other node(s) are on {}",
                        n.node,
                        short(&n.root_fingerprint),
                        short(common)
                    ),
                ));
            }
        }
        nodes
    }
}
