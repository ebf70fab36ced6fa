//! One simulated rotation, end to end: stand the fleet up, start the services, start
//! the rotation through the executor's API, watch its events while the background
//! prober runs, then check the end state and write the report.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rollover_core::report::{REPORT_FORMAT, SimReport};
use rollover_core::{Document, Fleet, Plan, PlanOrder, Topology, Verdict, linearize, verify};
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;

use crate::chaos::{CHAOS_DEADLINE, CHAOS_RETRY, Chaos, ChaosConnector, ChaosReport, invariants};
use crate::checks::{FinalChecks, final_handshakes, new_only};
use crate::error::SimError;
use crate::limits::Listening;
use crate::observe::{Observer, finished_outcome};
use crate::options::SimOptions;
use crate::prober::{background, probe_links};
use crate::services::Services;
use crate::setup::{AgentStore, SimFleet, start_fleet};

/// Longest a simulated rotation may take before it is reported stuck.
pub const ROTATION_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// What a simulation produced.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    /// The report of MODEL §10.
    pub report: SimReport,
    /// The plan the executor ran.
    pub plan: Plan,
    /// The verifier's verdict on that plan.
    pub verdict: Verdict,
    /// The executor's id of the rotation.
    pub rotation_id: String,
    /// The background probe schedule (link indices, first picks), for reproducibility.
    pub probe_schedule: Vec<usize>,
    /// With `SimOptions::chaos`: the faults injected and the invariants broken.
    pub chaos: Option<ChaosReport>,
}

impl SimOutcome {
    /// Exit status the CLI uses: no undeclared failure and every node on the new key
    /// (and, in a chaotic run, no invariant broken).
    pub fn passed(&self) -> bool {
        self.report.failed_undeclared == 0
            && self.report.all_new
            && self.chaos.as_ref().is_none_or(|c| c.violations.is_empty())
    }
}

/// Simulate a rotation of `topology`.
pub async fn simulate(
    topology: &Topology,
    mut options: SimOptions,
) -> Result<SimOutcome, SimError> {
    check_group_faults(&mut options)?;
    if let (Some(group), Some(spec)) = (&mut options.group, &options.chaos) {
        group.db_delay = spec.postgres_slow;
        group.seed = options.seed;
        if spec.postgres_blip > 0 || !spec.postgres_slow.is_zero() {
            // Blips (up to 3 s) and slow queries must stay shorter than the lease,
            // which the leader gives up 1 s before it expires.
            group.lease = group.lease.max(Duration::from_secs(5));
            group.renew = group.renew.max(Duration::from_secs(1));
        }
    }
    let schema = match &options.group {
        Some(group) => Some(group.fresh_schema(options.seed).await?),
        None => None,
    };
    options.group = schema.as_ref().map(|s| s.options.clone());
    let result = simulate_on(topology, options).await;
    if let Some(schema) = schema
        && let Err(e) = schema.drop_now().await
    {
        tracing::warn!(error = %e, "cannot drop the run's schema");
    }
    result
}

async fn simulate_on(topology: &Topology, options: SimOptions) -> Result<SimOutcome, SimError> {
    let fleet = Arc::new(Fleet::new(topology));
    let given = match &options.plan {
        Some(plan) => {
            let order = PlanOrder::resolve(plan, &fleet, &Document::new("<plan>", ""))?;
            Some(linearize(plan, &order, options.seed))
        }
        None => None,
    };
    let temp;
    let dir = match &options.work_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("rollover-sim-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let progress = |phase: &str| {
        if let Some(p) = &options.progress {
            p(&crate::options::Progress {
                phase: phase.to_string(),
                ..Default::default()
            });
        }
    };
    progress("starting agents");
    // Chaos runs crash agents, whose own ports then refuse connections.
    let listening = if options.chaos.is_some() {
        Listening::OwnPorts
    } else {
        Listening::Shared
    };
    // Chaos runs keep agents' state on the disk: their checks read the key files.
    let store = if options.chaos.is_some() {
        AgentStore::Disk
    } else {
        AgentStore::Memory
    };
    let sim = Arc::new(start_fleet(topology, &fleet, &dir, listening, store).await?);
    progress("starting planner and executor");
    let chaos = options
        .chaos
        .as_ref()
        .map(|spec| Chaos::new(spec.clone(), options.seed, &sim));
    // The executor holds the old root's key, as it would had it made that root in an
    // earlier rotation: the bridge strategy signs `b_new` with it (MODEL §11).
    let root_keys = vec![sim.old_root.clone()];
    let mut services = match &chaos {
        None => Services::start(&dir, sim.executor_creds.clone(), root_keys).await?,
        Some(chaos) => {
            // The executor's normal connector, behind the fault injector.
            let normal = Arc::new(rollover_executor::GrpcConnector::tls(
                sim.executor_creds.clone(),
            ));
            let connector = Arc::new(ChaosConnector::new(chaos.clone(), normal));
            Services::start_with(
                &dir,
                sim.executor_creds.clone(),
                root_keys,
                Some(connector),
                Some(CHAOS_RETRY),
                options.group.clone(),
            )
            .await?
        }
    };
    let mut result = rotate(
        topology,
        &fleet,
        &sim,
        &mut services,
        given,
        &options,
        chaos.as_ref(),
    )
    .await;
    if let (Some(chaos), Some(group)) = (&chaos, services.group()) {
        let refusals = sim
            .agents
            .iter()
            .flatten()
            .map(|a| a.epoch_refusals())
            .sum();
        chaos.set_group(group.executors() as u64, group.leader_changes(), refusals);
    }
    services.shutdown().await;
    if let Some(chaos) = &chaos {
        chaos.settle().await;
        if let Ok(outcome) = &mut result {
            // The executor is stopped: its journal on disk must hold everything.
            let watched = chaos.noted().len() as u64;
            let stored = match &options.group {
                None => invariants::JournalAt::Dir(dir.join("executor")),
                Some(group) => invariants::JournalAt::Postgres(group.url.clone()),
            };
            chaos.record(
                invariants::check_journal(&stored, &outcome.rotation_id, &outcome.plan, watched)
                    .await,
            );
            chaos.record(invariants::check_report(&outcome.report));
            let report = chaos.report();
            tracing::info!(
                seed = options.seed,
                faults = report.faults(),
                violations = report.violations.len(),
                "chaos: run checked"
            );
            outcome.chaos = Some(report);
        }
    }
    drop(chaos);
    if let Ok(sim) = Arc::try_unwrap(sim) {
        sim.shutdown().await;
    }
    result
}

/// How long a chaotic rotation of `steps` steps may take: [`CHAOS_DEADLINE`], plus,
/// on a slowed database (`postgres-slow=D`), D for each of the few journal commits of
/// every step (started, done, probed), which a chain of steps pays one after another.
fn chaos_deadline(chaos: &Chaos, steps: usize) -> Duration {
    let per_step = chaos.spec.postgres_slow.saturating_mul(4);
    CHAOS_DEADLINE.saturating_add(per_step.saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX)))
}

/// An executor group runs as a chaotic run (its invariants checked), with or without
/// faults; the group's faults need a group, and the single executor's crash (which
/// reopens the embedded journal) has no meaning in one.
fn check_group_faults(options: &mut SimOptions) -> Result<(), SimError> {
    if options.group.is_some() && options.chaos.is_none() {
        options.chaos = Some(crate::ChaosSpec::default());
    }
    let Some(spec) = &options.chaos else {
        return Ok(());
    };
    match &options.group {
        None if spec.needs_group() => Err(SimError::Setup(
            "leader-crash, postgres-cut, postgres-blip and postgres-slow need an executor \
             group on PostgreSQL \
             (--journal postgres://... --executors N)"
                .into(),
        )),
        Some(_) if spec.executor_crash > 0 => Err(SimError::Setup(
            "executor-crash reopens the single executor's embedded journal; with an executor \
             group use leader-crash=N"
                .into(),
        )),
        _ => Ok(()),
    }
}

async fn rotate(
    topology: &Topology,
    fleet: &Arc<Fleet>,
    sim: &Arc<SimFleet>,
    services: &mut Services,
    given: Option<Plan>,
    options: &SimOptions,
    chaos: Option<&Arc<Chaos>>,
) -> Result<SimOutcome, SimError> {
    // The simulator observes: probes still run after every step and still come before
    // a step's dependents, but a failed one is reported instead of pausing.
    let sequential = given.is_some();
    let request = v1::StartRotationRequest {
        topology: Some(v1::TopologySource {
            source: Some(v1::topology_source::Source::Topology(
                (&sim.addressed_topology(topology, fleet)).into(),
            )),
        }),
        plan: given.as_ref().map(|plan| v1::PlanSource {
            source: Some(v1::plan_source::Source::Plan(plan.into())),
        }),
        options: Some(v1::RotationOptions {
            max_concurrency: if sequential {
                1
            } else {
                options.max_concurrency
            },
            probe: true,
            dry_run: false,
            strategy: v1::Strategy::from(options.strategy) as i32,
            start_node: options.start.clone(),
            observe_only: true,
            skip_agent_checks: false,
        }),
        request_id: String::new(),
    };
    let started = Instant::now();
    let response = services
        .executor
        .clone()
        .start_rotation(request)
        .await?
        .into_inner();
    let wire_plan = response
        .plan
        .ok_or_else(|| SimError::Rpc("StartRotation returned no plan".into()))?;
    let plan = Plan::try_from(wire_plan).map_err(|e| SimError::Rpc(e.to_string()))?;
    let order = PlanOrder::resolve(&plan, fleet, &Document::new("<plan>", ""))?;
    let verdict = verify(fleet, &plan, &order);
    tracing::info!(rotation = %response.rotation_id, steps = plan.steps.len(), waves = verdict.waves, safe = verdict.safe, "simulated rotation started");

    let mut observer = Observer::new(
        plan.steps.len() as u64,
        options.max_failures_listed,
        options.progress.clone(),
    );
    if let Some(chaos) = chaos {
        observer = observer.with_excuse(chaos.excuse_fn());
    }
    let observer = Arc::new(observer);
    let links = Arc::new(probe_links(fleet, sim, &order.disrupted));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let prober = tokio::spawn(background(
        fleet.clone(),
        sim.clone(),
        links.clone(),
        observer.clone(),
        options.seed,
        options.probe_rate,
        stopped,
    ));

    let watched = match chaos {
        None => {
            tokio::time::timeout(
                ROTATION_DEADLINE,
                watch(
                    &mut services.executor.clone(),
                    &response.rotation_id,
                    &observer,
                ),
            )
            .await
        }
        Some(chaos) => {
            let watched = tokio::time::timeout(
                chaos_deadline(chaos, plan.steps.len()),
                crate::chaos::watch::watch(
                    services,
                    &response.rotation_id,
                    &observer,
                    chaos,
                    &plan,
                ),
            )
            .await;
            // Crashed agents come back before the final checks.
            chaos.settle().await;
            watched
        }
    };
    let rotation_seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let probe_schedule = prober.await.unwrap_or_default();
    let handshakes_during = observer.total.load(Ordering::Relaxed);
    let outcome = match watched {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            let _ = services
                .executor
                .clone()
                .abort(v1::AbortRequest {
                    rotation_id: response.rotation_id.clone(),
                    reason: "simulation deadline".into(),
                })
                .await;
            return Err(SimError::Stuck(format!(
                "no end after {}s",
                if let Some(chaos) = chaos {
                    chaos_deadline(chaos, plan.steps.len())
                } else {
                    ROTATION_DEADLINE
                }
                .as_secs()
            )));
        }
    };

    observer.report_progress("final checks", plan.steps.len() as u64);
    final_handshakes(fleet, sim, &links, &observer).await;
    let checks = new_only(fleet, sim).await?;
    if let Some(chaos) = chaos {
        chaos.set_excused(observer.excused.load(Ordering::Relaxed));
        chaos.record(invariants::check_agents(sim, &plan));
        chaos.record(invariants::check_events(&plan, &chaos.noted()));
    }
    let report = build_report(
        fleet,
        sim,
        &plan,
        &verdict,
        &observer,
        &checks,
        options,
        &outcome,
        rotation_seconds,
        handshakes_during,
    );
    Ok(SimOutcome {
        report,
        plan,
        verdict,
        probe_schedule,
        rotation_id: response.rotation_id,
        chaos: None,
    })
}

/// Follow the rotation's events until it finishes; returns its outcome.
async fn watch(
    client: &mut rollover_proto::v1::executor_service_client::ExecutorServiceClient<
        tonic::transport::Channel,
    >,
    rotation_id: &str,
    observer: &Observer,
) -> Result<String, SimError> {
    let mut stream = client
        .watch_rotation(v1::WatchRotationRequest {
            rotation_id: rotation_id.to_string(),
            from_sequence: 0,
        })
        .await?
        .into_inner();
    while let Some(event) = stream.message().await? {
        let Some(event) = event.event.and_then(|e| e.event) else {
            continue;
        };
        observer.event(&event);
        match event {
            Event::Paused(p) => {
                // Observe-only rotations pause only on a real problem (an agent refusing
                // a step): stop and report it rather than wait for an operator.
                let _ = client
                    .abort(v1::AbortRequest {
                        rotation_id: rotation_id.to_string(),
                        reason: format!("simulation stops on pause: {}", p.reason),
                    })
                    .await;
                return Ok(format!("paused: {}", p.reason));
            }
            Event::Finished(f) => return Ok(finished_outcome(&f)),
            _ => {}
        }
    }
    Err(SimError::Rpc(
        "the event stream ended before the rotation finished".into(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    fleet: &Fleet,
    sim: &SimFleet,
    plan: &Plan,
    verdict: &Verdict,
    observer: &Observer,
    checks: &FinalChecks,
    options: &SimOptions,
    outcome: &str,
    rotation_seconds: f64,
    handshakes_during: u64,
) -> SimReport {
    // Coverage: for every step done, the links touching its node probed right after.
    let mut touching: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for l in fleet.links.iter().filter(|l| !l.is_self()) {
        let pair = (
            fleet.id(l.client).to_string(),
            fleet.id(l.server).to_string(),
        );
        touching
            .entry(fleet.id(l.client))
            .or_default()
            .push(pair.clone());
        touching.entry(fleet.id(l.server)).or_default().push(pair);
    }
    let (mut expected, mut covered) = (0u64, 0u64);
    for (step, node) in observer.done_steps() {
        let probed = observer.probed_after(step);
        for pair in touching.get(node.as_str()).into_iter().flatten() {
            expected += 1;
            covered += u64::from(probed.contains(pair));
        }
    }
    let coverage = if expected == 0 {
        1.0
    } else {
        covered as f64 / expected as f64
    };
    let all_new = outcome.starts_with("succeeded")
        && observer.final_failed.load(Ordering::Relaxed) == 0
        && checks.nodes_on_new_only == checks.nodes_checked
        && checks.old_key_refused == checks.old_key_checks;
    SimReport {
        format: REPORT_FORMAT.to_string(),
        nodes: fleet.len(),
        links: fleet.links.len() + sim.foreign_links.len(),
        handshakes_total: observer.total.load(Ordering::Relaxed),
        handshakes_failed: observer.failed.load(Ordering::Relaxed),
        failed_undeclared: observer.failed_undeclared.load(Ordering::Relaxed),
        failures: observer.failures(),
        links_probed_every_step: coverage,
        rotation_seconds,
        handshakes_per_second: if rotation_seconds > 0.0 {
            handshakes_during as f64 / rotation_seconds
        } else {
            0.0
        },
        all_new,
        seed: options.seed,
        strategy: plan.strategy.clone().unwrap_or_default(),
        steps: plan.steps.len(),
        waves: verdict.waves,
        declared_disruptions: plan.disruptions.len(),
        probes_after_steps: observer.after_steps.load(Ordering::Relaxed),
        background_handshakes: observer.background.load(Ordering::Relaxed),
        foreign_links: sim.foreign_links.len(),
        final_handshakes: observer.final_total.load(Ordering::Relaxed),
        final_failed: observer.final_failed.load(Ordering::Relaxed),
        old_key_refused: checks.old_key_refused,
        old_key_checks: checks.old_key_checks,
        nodes_on_new_only: checks.nodes_on_new_only,
        outcome: outcome.to_string(),
    }
}
