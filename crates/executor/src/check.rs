//! The pre-flight check of a fleet (CheckFleet): everything a rotation would need,
//! tried before anything changes, with every problem listed rather than the first.
//!
//! The executor asks its planner for a plan, every agent for its state (one short try
//! each: a pre-flight check must answer in seconds, not wait out the retries of a
//! rotation), compares each agent's mode, chain support and identity with the
//! topology's (MODEL §11, §12) and every node's current root with the others' (and,
//! when it rotates its own control channel, with its own), and looks for an active
//! rotation of the CA.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rollover_core::{Fleet, Identity, Profile, Topology};
use rollover_proto::convert;
use rollover_proto::v1;
use rollover_proto::v1::FleetProblemKind as Kind;
use tokio::task::JoinSet;

use crate::Executor;
use crate::error::ApiError;
use crate::rotation::{check_mode, current_root};

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

/// One difference between what the topology declares about a node and what its
/// agent reports: a problem (the plan would count on something the agent does not
/// do) or a note (the plan is only more cautious than the agent needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Difference {
    Problem(Kind, String),
    Note(String),
}

/// Compares the topology's `chains` and `identity` for node `id` with what its agent
/// reports; an agent that does not report one (an older agent) is not compared on it.
///
/// Which way round matters: a node declared to build chains whose agent does not
/// would be given a `bridge` step it refuses, and its links planned as if bridges kept
/// them up (MODEL §11); a node declared multi-identity whose agent presents one
/// exported leaf to every peer would miss the prerequisites of §12, so links break.
/// The other way round the plan only adds prerequisites the agent does not need
/// (§12's are a superset of §4's; a `chains: false` end keeps its link on §4's).
pub(crate) fn compare_profile(
    id: &str,
    declared: Profile,
    state: &v1::AgentState,
) -> Vec<Difference> {
    let mut out = Vec::new();
    match (declared.chains, state.chains) {
        (true, Some(false)) => out.push(Difference::Problem(
            Kind::ChainsMismatch,
            format!(
                "`{id}`: the topology says `chains: true` (the default) but its agent runs \
                 with --no-chains: a bridge plan would give it a `bridge` step it refuses \
                 and count on its links using bridges; declare `chains: false` for `{id}`, \
                 or start its agent without --no-chains"
            ),
        )),
        (false, Some(true)) => out.push(Difference::Note(format!(
            "`{id}`: the topology says `chains: false` but its agent builds chains: \
             harmless, a bridge plan only keeps its links on their plain prerequisites; \
             declare `chains: true` (or leave it out) for fewer constraints, or start its \
             agent with --no-chains"
        ))),
        _ => {}
    }
    let reported = match v1::NodeIdentity::try_from(state.identity) {
        Ok(v1::NodeIdentity::Multi) => Some(Identity::Multi),
        Ok(v1::NodeIdentity::Single) => Some(Identity::Single),
        _ => None,
    };
    match (declared.identity, reported) {
        (Identity::Multi, Some(Identity::Single)) => out.push(Difference::Problem(
            Kind::IdentityMismatch,
            format!(
                "`{id}`: the topology says `identity: multi` (the default) but its agent \
                 exports its credentials (--export): its workload presents one leaf to \
                 every peer, and the plan would miss the prerequisites that keep links \
                 up (MODEL §12); declare `identity: single` for `{id}`, or start its agent \
                 without --export"
            ),
        )),
        (Identity::Single, Some(Identity::Multi)) => out.push(Difference::Note(format!(
            "`{id}`: the topology says `identity: single` but its agent picks its leaf \
             per server (no --export): harmless, the plan is only more cautious than it \
             needs to be; declare `identity: multi` (or leave it out) for fewer \
             prerequisites"
        ))),
        _ => {}
    }
    out
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

        if let Some(busy) = self.active_conflict(&fleet, None) {
            problems.push(problem(
                Kind::ActiveRotation,
                "",
                format!(
                    "{}; a new rotation is refused until it ends",
                    busy.message()
                ),
            ));
        }

        let planner = self.check_planner(&topology, &mut problems).await;
        let mut notes = Vec::new();
        let nodes = self
            .check_agents(&topology, &fleet, &mut problems, &mut notes)
            .await;
        Ok(v1::CheckFleetResponse {
            problems,
            nodes,
            planner,
            notes,
        })
    }

    /// StartRotation's own pre-flight: refuse (FAILED_PRECONDITION) a fleet whose
    /// reachable agents contradict the topology (mode, chains, identity), are
    /// mid-rotation or on different roots: the problems CheckFleet reports, found by
    /// the same code. Unreachable agents are not refused here: the rotation's
    /// preparation waits for them with retries.
    pub(crate) async fn refuse_mismatched_agents(
        &self,
        topology: &Topology,
        fleet: &Fleet,
    ) -> Result<(), ApiError> {
        let (mut problems, mut notes) = (Vec::new(), Vec::new());
        self.check_agents(topology, fleet, &mut problems, &mut notes)
            .await;
        problems.retain(|p| {
            !matches!(
                Kind::try_from(p.kind),
                Ok(Kind::Unreachable | Kind::MissingAddress)
            )
        });
        if problems.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 5;
        let mut message = format!(
            "the agents do not match the topology ({} problem(s)): ",
            problems.len()
        );
        let shown: Vec<&str> = problems
            .iter()
            .take(SHOWN)
            .map(|p| p.message.as_str())
            .collect();
        message.push_str(&shown.join("; "));
        if problems.len() > SHOWN {
            message.push_str(&format!("; and {} more", problems.len() - SHOWN));
        }
        message.push_str(
            " (CheckFleet lists them all; options.skip_agent_checks starts anyway, \
             journaled)",
        );
        Err(ApiError::Refused(message))
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
        notes: &mut Vec<v1::FleetNote>,
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
            let want = fleet.profile(node);
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
            if let Err(e) = check_mode(&id, want.mode, &state) {
                problems.push(problem(Kind::ModeMismatch, &id, e.to_string()));
            }
            for difference in compare_profile(&id, want, &state) {
                match difference {
                    Difference::Problem(kind, message) => {
                        problems.push(problem(kind, &id, message));
                    }
                    Difference::Note(message) => notes.push(v1::FleetNote {
                        node: id.clone(),
                        message,
                    }),
                }
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
                    chains: state.chains,
                    identity: state.identity,
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

#[cfg(test)]
mod tests {
    use rollover_core::Mode;

    use super::*;

    fn reported(chains: Option<bool>, identity: v1::NodeIdentity) -> v1::AgentState {
        v1::AgentState {
            chains,
            identity: identity.into(),
            ..Default::default()
        }
    }

    fn declared(chains: bool, identity: Identity) -> Profile {
        Profile {
            mode: Mode::Bundle,
            identity,
            chains,
        }
    }

    #[test]
    fn an_agent_that_matches_its_node_is_neither_a_problem_nor_a_note() {
        for chains in [true, false] {
            for (identity, wire) in [
                (Identity::Multi, v1::NodeIdentity::Multi),
                (Identity::Single, v1::NodeIdentity::Single),
            ] {
                let state = reported(Some(chains), wire);
                let found = compare_profile("n", declared(chains, identity), &state);
                assert_eq!(found, vec![], "{chains} {identity:?}");
            }
        }
    }

    #[test]
    fn no_chains_under_a_chains_node_is_a_problem_naming_both_sides_and_the_fix() {
        let state = reported(Some(false), v1::NodeIdentity::Multi);
        let found = compare_profile("plc-3", declared(true, Identity::Multi), &state);
        let [Difference::Problem(Kind::ChainsMismatch, message)] = found.as_slice() else {
            panic!("{found:?}");
        };
        for said in [
            "`plc-3`",
            "`chains: true`",
            "--no-chains",
            "declare `chains: false` for `plc-3`",
        ] {
            assert!(message.contains(said), "{said:?} not in {message}");
        }
    }

    #[test]
    fn an_exporting_agent_under_a_multi_identity_node_is_a_problem() {
        let state = reported(Some(true), v1::NodeIdentity::Single);
        let found = compare_profile("web-1", declared(true, Identity::Multi), &state);
        let [Difference::Problem(Kind::IdentityMismatch, message)] = found.as_slice() else {
            panic!("{found:?}");
        };
        for said in [
            "`web-1`",
            "`identity: multi`",
            "--export",
            "declare `identity: single` for `web-1`",
        ] {
            assert!(message.contains(said), "{said:?} not in {message}");
        }
    }

    #[test]
    fn a_node_declared_more_cautious_than_its_agent_is_a_note() {
        let state = reported(Some(true), v1::NodeIdentity::Multi);
        let found = compare_profile("h", declared(false, Identity::Single), &state);
        assert_eq!(found.len(), 2, "{found:?}");
        for (difference, said) in found.iter().zip(["`chains: false`", "`identity: single`"]) {
            let Difference::Note(message) = difference else {
                panic!("{difference:?}");
            };
            assert!(
                message.contains(said) && message.contains("harmless"),
                "{message}"
            );
        }
    }

    #[test]
    fn both_problems_at_once_are_both_listed() {
        let state = reported(Some(false), v1::NodeIdentity::Single);
        let found = compare_profile("n", declared(true, Identity::Multi), &state);
        let kinds: Vec<Kind> = found
            .iter()
            .filter_map(|d| match d {
                Difference::Problem(kind, _) => Some(*kind),
                Difference::Note(_) => None,
            })
            .collect();
        assert_eq!(kinds, vec![Kind::ChainsMismatch, Kind::IdentityMismatch]);
    }

    #[test]
    fn an_agent_that_does_not_tell_is_not_compared() {
        // An older agent, or a test double: no `chains`, identity UNSPECIFIED.
        let state = reported(None, v1::NodeIdentity::Unspecified);
        for chains in [true, false] {
            for identity in [Identity::Multi, Identity::Single] {
                let found = compare_profile("n", declared(chains, identity), &state);
                assert_eq!(found, vec![]);
            }
        }
    }
}
