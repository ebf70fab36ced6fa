//! Following a chaotic rotation: the executor is killed at seeded moments (counted in
//! step events) and opened again on its journal (or, in an executor group, the leader
//! is killed or cut off its database and another takes over), and the watcher reconnects to the new
//! address from the last sequence it saw plus one; a pause caused by a stranded or
//! cut-off node is resumed once the node is reachable again; any other pause is a
//! violation (and the rotation is aborted). Each pause must have an outage of its own:
//! a node that pauses the rotation again after a resume, with no outage since, is
//! failing for another reason (an unsafe plan's refused handshake, retried forever
//! otherwise while agent crashes keep the node "recently down").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_core::Plan;
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;

use super::invariants::Noted;
use super::{Chaos, FaultKind, RESUME_DEADLINE};
use crate::error::SimError;
use crate::observe::{Observer, finished_outcome};
use crate::services::Services;

/// Reconnections tolerated that no crash of ours explains.
const RECONNECTS: u32 = 5;

/// `n` seeded step-event counts for the fault `key`, within the rotation's first
/// `2 * steps - 1` step events, in order.
fn points(chaos: &Chaos, key: &str, n: u32, steps: usize) -> Vec<u64> {
    let mut rng = chaos.draw(key);
    let span = u32::try_from((2 * steps).saturating_sub(1).max(1)).unwrap_or(u32::MAX);
    let mut points: Vec<u64> = (0..n).map(|_| 1 + u64::from(rng.below(span))).collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// Every executor fault of the run, by the step event it follows, in order.
fn executor_faults(chaos: &Chaos, steps: usize) -> Vec<(u64, FaultKind)> {
    let spec = &chaos.spec;
    let mut faults: Vec<(u64, FaultKind)> = [
        (
            "executor-crash",
            spec.executor_crash,
            FaultKind::ExecutorCrash,
        ),
        ("leader-crash", spec.leader_crash, FaultKind::LeaderCrash),
        ("postgres-cut", spec.postgres_cut, FaultKind::PostgresCut),
        ("postgres-blip", spec.postgres_blip, FaultKind::PostgresBlip),
    ]
    .into_iter()
    .flat_map(|(key, n, kind)| {
        points(chaos, key, n, steps)
            .into_iter()
            .map(move |p| (p, kind))
    })
    .collect();
    faults.sort_unstable();
    faults
}

/// Inject one executor fault; the services then point at the executor to watch.
async fn inject(services: &mut Services, kind: FaultKind) -> Result<(), SimError> {
    match kind {
        FaultKind::LeaderCrash => services.crash_leader().await,
        FaultKind::PostgresCut => services.cut_leader().await,
        _ => services.restart_executor().await,
    }
}

/// The journal of an executor group, read directly (not through any member's relay)
/// to compare with what the leader says.
type GroupJournal = Option<Arc<rollover_journal_postgres::PgJournal>>;

async fn group_journal(services: &Services) -> Result<GroupJournal, SimError> {
    let Some(group) = services.group() else {
        return Ok(None);
    };
    let url = group.url().to_string();
    let journal =
        tokio::task::spawn_blocking(move || rollover_journal_postgres::PgJournal::connect(&url))
            .await
            .map_err(|e| SimError::Setup(e.to_string()))?
            .map_err(|e| SimError::Setup(format!("the group's journal: {e}")))?;
    Ok(Some(Arc::new(journal)))
}

/// The journal is the truth: a leader may only call the rotation terminal once its
/// journal says so, in the same state. A disagreement is described.
async fn disagreement(
    services: &Services,
    journal: &GroupJournal,
    rotation_id: &str,
) -> Option<String> {
    let journal = journal.clone()?;
    let (epoch, said) = services.group()?.leader_view(rotation_id)?;
    let id = rotation_id.to_string();
    let meta =
        tokio::task::spawn_blocking(move || rollover_executor::Journal::rotation(&*journal, &id))
            .await
            .ok()?
            .ok()??;
    let said_terminal = matches!(
        said,
        v1::RotationState::Succeeded
            | v1::RotationState::Failed
            | v1::RotationState::Aborted
            | v1::RotationState::RolledBack
    );
    let journaled = rollover_executor::state_to_wire(meta.state);
    (said_terminal && said != journaled).then(|| {
        format!(
            "the leader (epoch {epoch}) says the rotation is {said:?} while its journal says \
             {journaled:?}"
        )
    })
}

/// Follow the rotation to its end through crashes; returns its outcome.
pub async fn watch(
    services: &mut Services,
    rotation_id: &str,
    observer: &Observer,
    chaos: &Arc<Chaos>,
    plan: &Plan,
) -> Result<String, SimError> {
    let mut faults = executor_faults(chaos, plan.steps.len())
        .into_iter()
        .peekable();
    let mut last_seq = 0u64;
    let mut step_events = 0u64;
    let mut unexplained = 0u32;
    // When the rotation was last resumed after a pause on each node.
    let mut resumed_at: HashMap<String, Instant> = HashMap::new();
    let journal = group_journal(services).await?;
    let mut blips = chaos.draw("postgres-blip-length");
    let mut budget = RECONNECTS;
    'connect: loop {
        let opened = services
            .executor
            .clone()
            .watch_rotation(v1::WatchRotationRequest {
                rotation_id: rotation_id.to_string(),
                from_sequence: last_seq + 1,
            })
            .await;
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(e) if unexplained < budget => {
                tracing::warn!(error = %e, "chaos: cannot watch the rotation; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                if !services.follow_new_leader().await? {
                    unexplained += 1;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            let event = match stream.message().await {
                Ok(Some(response)) => match response.event {
                    Some(event) => event,
                    None => continue,
                },
                Ok(None) | Err(_) if unexplained < budget => {
                    tracing::warn!("chaos: the event stream broke; reconnecting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // A leader that stepped down (its lease not renewed in time on a
                    // slow or blipped database) ends its streams: explained.
                    if !services.follow_new_leader().await? {
                        unexplained += 1;
                    }
                    continue 'connect;
                }
                Ok(None) => {
                    return Err(SimError::Rpc(
                        "the event stream ended before the rotation finished".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            chaos.note(Noted::of(&event));
            last_seq = last_seq.max(event.sequence);
            let Some(kind) = event.event.as_ref() else {
                continue;
            };
            observer.event(kind);
            if let Some(what) = disagreement(services, &journal, rotation_id).await {
                chaos.violation(format!("at event {}: {what}", event.sequence));
            }
            match kind {
                Event::StepStarted(_) | Event::StepDone(_) => {
                    step_events += 1;
                    if let Some((_, kind)) = faults.next_if(|&(p, _)| p <= step_events) {
                        if kind == FaultKind::PostgresBlip {
                            // Shorter than the lease: the leader may well keep leading,
                            // and the stream with it; if it steps down, reconnecting is
                            // explained.
                            let length = super::within(&mut blips, super::BLIP);
                            chaos.fault(
                                kind,
                                "leader",
                                &format!(
                                    "{} ms after step event {step_events} (sequence {last_seq})",
                                    length.as_millis()
                                ),
                            );
                            services.blip_leader(length).await?;
                            budget += 2;
                            continue;
                        }
                        // Whatever the executor has in flight is cut off; nothing of
                        // the old incarnation may be held across the restart.
                        drop(stream);
                        let target = if kind == FaultKind::ExecutorCrash {
                            "@executor"
                        } else {
                            "leader"
                        };
                        chaos.fault(
                            kind,
                            target,
                            &format!("after step event {step_events} (sequence {last_seq})"),
                        );
                        inject(services, kind).await?;
                        chaos.executor_restarted();
                        tracing::info!(seed = chaos.seed, addr = %services.executor_addr, from = last_seq + 1, "chaos: executor faulted; watching again");
                        continue 'connect;
                    }
                }
                Event::Paused(p) => {
                    let mut nodes = chaos.stranded_in(&p.reason);
                    nodes.retain(|n| {
                        resumed_at
                            .get(n)
                            .is_none_or(|&at| chaos.outage_since(n, at))
                    });
                    if nodes.is_empty() {
                        chaos.violation(format!(
                            "the rotation paused for a reason no injected fault explains: {}",
                            p.reason
                        ));
                        return abort(services, rotation_id, &p.reason).await;
                    }
                    tracing::info!(?nodes, reason = %p.reason, seed = chaos.seed, "chaos: rotation paused on a stranded node; waiting for it");
                    if !chaos.wait_reachable(&nodes, RESUME_DEADLINE).await {
                        chaos.violation(format!(
                            "{nodes:?} did not come back within {}s of the pause: {}",
                            RESUME_DEADLINE.as_secs(),
                            p.reason
                        ));
                        return abort(services, rotation_id, &p.reason).await;
                    }
                    let now = Instant::now();
                    for n in &nodes {
                        resumed_at.insert(n.clone(), now);
                    }
                    services
                        .executor
                        .clone()
                        .resume(v1::ResumeRequest {
                            rotation_id: rotation_id.to_string(),
                        })
                        .await?;
                    chaos.resumed();
                    tracing::info!(?nodes, seed = chaos.seed, "chaos: resumed");
                }
                Event::Finished(f) => return Ok(finished_outcome(f)),
                _ => {}
            }
        }
    }
}

async fn abort(services: &Services, rotation_id: &str, reason: &str) -> Result<String, SimError> {
    let _ = services
        .executor
        .clone()
        .abort(v1::AbortRequest {
            rotation_id: rotation_id.to_string(),
            reason: format!("simulation stops on pause: {reason}"),
        })
        .await;
    Ok(format!("paused: {reason}"))
}
