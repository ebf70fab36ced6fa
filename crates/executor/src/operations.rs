//! What the executor does for a request, as library calls: start a rotation
//! (idempotent by `request_id`), get and list rotations, control one (pause, resume,
//! abort, rollback), watch its events. Each refusal is an [`ApiError`] naming the field
//! or the rotation; the gRPC service (`service.rs`) only maps them to status codes.

use std::sync::Arc;

use rollover_core::{Document, Fleet, Plan, PlanOrder, Topology};
use rollover_proto::convert::{self, PLAN_ORIGIN};
use rollover_proto::status::excerpt;
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::journal::{RotationMeta, StartRequestKey, State, StoredOptions};
use crate::rotation::{Control, Rotation, now_ms};
use crate::wire::{state_to_wire, status_of};
use crate::{Executor, root_keys};

/// A position in the list of rotations: creation time (ms) and id.
pub type ListPosition = (u64, String);

/// One page of rotations, and the position of its last one when more follow.
pub type RotationPage = (Vec<v1::RotationStatus>, Option<ListPosition>);

/// One page of rotations keyed by (creation time, id), newest first: at most `size`
/// after the position `after`, and the position of the last one returned when more
/// follow. The leader pages its rotations with it, a follower the journal's
/// ([`crate::reader`]), so page tokens are the same on both.
pub(crate) fn page_of<T>(
    mut keyed: Vec<((u64, String), T)>,
    size: usize,
    after: Option<&(u64, String)>,
) -> (Vec<T>, Option<ListPosition>) {
    keyed.retain(|(key, _)| after.is_none_or(|after| key < after));
    keyed.sort_by(|a, b| b.0.cmp(&a.0));
    let more = keyed.len() > size;
    keyed.truncate(size);
    let next = more
        .then(|| keyed.last().map(|(key, _)| key.clone()))
        .flatten();
    (keyed.into_iter().map(|(_, item)| item).collect(), next)
}

/// Sends journaled events (`batch`: sequence, encoded event) to a watcher, moving
/// `*next` past each; false once the Finished event was sent or the watcher left. An
/// event that does not decode is skipped, and not read again. The leader's watch
/// replays the journal with it, a follower's ([`crate::reader`]) follows it.
pub(crate) async fn send_journaled(
    tx: &mpsc::Sender<Result<v1::RotationEvent, ApiError>>,
    batch: Vec<(u64, Vec<u8>)>,
    next: &mut u64,
) -> bool {
    for (seq, data) in batch {
        *next = seq + 1;
        let Ok(event) = <v1::RotationEvent as prost::Message>::decode(data.as_slice()) else {
            continue;
        };
        let finished = matches!(event.event, Some(Event::Finished(_)));
        if tx.send(Ok(event)).await.is_err() || finished {
            return false;
        }
    }
    true
}

/// The longest `request_id` StartRotation accepts.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// The digest of a StartRotation request without its `request_id`.
fn request_digest(request: &v1::StartRotationRequest) -> String {
    use prost::Message;
    use sha2::{Digest, Sha256};
    let mut request = request.clone();
    request.request_id.clear();
    hex::encode(Sha256::digest(request.encode_to_vec()))
}

fn unsafe_reason(verdict: &rollover_core::Verdict) -> String {
    let shown: Vec<String> = verdict
        .broken
        .iter()
        .take(5)
        .map(|b| {
            format!(
                "{} -> {} ({}: {})",
                b.client,
                b.server,
                convert::describe_witness(&b.steps),
                b.reason
            )
        })
        .collect();
    let more = verdict.broken.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!(
        "{} undeclared link(s) can break: {}{more}",
        verdict.undeclared_count,
        shown.join("; ")
    )
}

impl Executor {
    /// Accept a rotation and start it in the background (StartRotation).
    pub async fn start_rotation(
        &self,
        request: v1::StartRotationRequest,
    ) -> Result<v1::StartRotationResponse, ApiError> {
        if request.request_id.is_empty() {
            return self.start_new(request, None).await;
        }
        if request.request_id.chars().count() > MAX_REQUEST_ID_CHARS
            || request.request_id.chars().any(char::is_control)
        {
            return Err(ApiError::Invalid(format!(
                "request_id: `{}` is not an id (at most {MAX_REQUEST_ID_CHARS} \
                 characters, no control characters)",
                excerpt(&request.request_id)
            )));
        }
        let key = StartRequestKey {
            id: request.request_id.clone(),
            digest: request_digest(&request),
        };
        // One start with a request_id at a time, so that two concurrent retries of
        // one request cannot both start a rotation.
        let _one = self.inner.start_lock.lock().await;
        if let Some((rotation, earlier)) = self.started_by(&key.id) {
            if earlier.digest != key.digest {
                return Err(ApiError::Invalid(format!(
                    "request_id: `{}` already started rotation `{}` with a different \
                     request; use a new request_id for a new rotation",
                    excerpt(&key.id),
                    rotation.id
                )));
            }
            tracing::info!(rotation_id = %rotation.id, request_id = %excerpt(&key.id), "StartRotation retried: same rotation");
            return Ok(v1::StartRotationResponse {
                rotation_id: rotation.id.clone(),
                plan: Some(v1::Plan::from(&rotation.plan)),
                deduplicated: true,
            });
        }
        self.start_new(request, Some(key)).await
    }

    async fn start_new(
        &self,
        request: v1::StartRotationRequest,
        request_key: Option<StartRequestKey>,
    ) -> Result<v1::StartRotationResponse, ApiError> {
        let source = request
            .topology
            .ok_or_else(|| ApiError::Invalid("topology: required".into()))?;
        let topology: Topology = convert::topology_from_source(&source)
            .map_err(|e| ApiError::Invalid(format!("topology: {e}")))?;
        let options = request.options.unwrap_or_default();
        let strategy = convert::strategy_from_i32(options.strategy)
            .map_err(|e| ApiError::Invalid(format!("options.strategy: {e}")))?;
        let given = request.plan.is_some();
        let plan_doc = match request.plan.as_ref().and_then(|p| p.source.as_ref()) {
            Some(v1::plan_source::Source::Document(d)) => Some(d.clone()),
            _ => None,
        };
        let fleet = Fleet::new(&topology);
        let plan: Plan = match &request.plan {
            Some(source) => convert::plan_from_source(source)
                .map_err(|e| ApiError::Invalid(format!("plan: {e}")))?,
            None => {
                // Bad input is INVALID_ARGUMENT whatever else runs, so the planner sees the
                // request first; then fail fast before verifying (`admit` checks again,
                // atomically).
                let plan = self
                    .ask_planner(&topology, strategy, options.start_node.clone())
                    .await?;
                self.check_idle(&fleet)?;
                plan
            }
        };
        let doc = match &plan_doc {
            Some(d) => convert::core_document(d, PLAN_ORIGIN)
                .map_err(|e| ApiError::Invalid(format!("plan: {e}")))?,
            None => Document::new(PLAN_ORIGIN, ""),
        };
        let order = PlanOrder::resolve(&plan, &fleet, &doc)
            .map_err(|e| ApiError::Invalid(format!("plan: {e}")))?;
        if order.bridged {
            self.check_bridge_keys(&fleet, &topology.ca)?;
        }
        let verdict = rollover_core::verify(&fleet, &plan, &order);
        // An unsafe plan is refused before anything changes (observe-only simulations
        // run it on purpose: they must see every failure the order causes).
        if !verdict.safe && !options.observe_only {
            return Err(if given {
                ApiError::Invalid(format!(
                    "plan: unsafe, refused: {}",
                    unsafe_reason(&verdict)
                ))
            } else {
                ApiError::Refused(format!(
                    "plan: the planner's {} plan is unsafe, refused: {}",
                    strategy.as_str(),
                    unsafe_reason(&verdict)
                ))
            });
        }
        if !verdict.safe {
            tracing::warn!("running an unsafe plan in observe-only mode (simulation)");
        }
        // Whoever calls: the executor compares the agents with the topology itself
        // (what CheckFleet does), unless told by name not to. Observe-only runs
        // (simulations) watch what happens instead of refusing.
        if options.skip_agent_checks {
            tracing::warn!(
                "starting without comparing the agents with the topology (skip_agent_checks)"
            );
        } else if !options.observe_only {
            self.refuse_mismatched_agents(&topology, &fleet).await?;
        }
        let now = now_ms();
        let meta = RotationMeta {
            id: self.new_rotation_id(),
            ca: topology.ca.clone(),
            state: State::Pending,
            rolling_back: false,
            paused_reason: None,
            error: None,
            options: StoredOptions {
                max_concurrency: options.max_concurrency,
                probe: options.probe,
                dry_run: options.dry_run,
                strategy: (!given).then(|| strategy.as_str().to_string()),
                start_node: options.start_node.clone(),
                observe_only: options.observe_only,
                skip_agent_checks: options.skip_agent_checks,
            },
            // Given under the admission lock.
            generation: 0,
            created_ms: now,
            updated_ms: now,
            finished_ms: None,
            request: request_key,
        };
        let rotation = Rotation::build(
            self.inner.ctx.clone(),
            meta,
            topology,
            plan,
            fleet,
            order,
            verdict,
        )
        .map_err(|e| ApiError::Invalid(format!("topology: {}", e.message)))?;
        self.admit(rotation.clone()).await?;
        let response = v1::StartRotationResponse {
            rotation_id: rotation.id.clone(),
            plan: Some(v1::Plan::from(&rotation.plan)),
            deduplicated: false,
        };
        tracing::info!(rotation_id = %rotation.id, steps = rotation.plan.steps.len(), given, "rotation accepted");
        self.spawn_runner(rotation);
        Ok(response)
    }

    /// A bridged rotation needs the key of the root the nodes are on, to sign `b_new`
    /// (MODEL §11): refused here when the executor holds no key of any root of `ca`,
    /// or, when `@executor` is a node of the fleet, not the key of its own current root
    /// (the nodes' roots are known only once preparation asks them, which checks again).
    fn check_bridge_keys(&self, fleet: &Fleet, ca: &str) -> Result<(), ApiError> {
        let ctx = &self.inner.ctx;
        let known = root_keys::known(&ctx.root_keys, ctx.committer.journal().as_ref(), ca);
        if known.is_empty() {
            return Err(ApiError::Refused(root_keys::missing_message(ca)));
        }
        if let (Some(_), Some(creds)) = (fleet.executor, &ctx.own_creds)
            && let [root] = creds.current().server_roots.as_slice()
        {
            root_keys::find(&known, ca, &rollover_pki::fingerprint(root))
                .map_err(|e| ApiError::Refused(e.to_string()))?;
        }
        Ok(())
    }

    pub(crate) async fn ask_planner(
        &self,
        topology: &Topology,
        strategy: rollover_core::Strategy,
        start_node: Option<String>,
    ) -> Result<Plan, ApiError> {
        let Some(mut planner) = self.inner.planner.clone() else {
            return Err(ApiError::Refused(
                "plan: none given and no planner configured".into(),
            ));
        };
        let request = v1::PlanRequest {
            topology: Some(v1::TopologySource {
                source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                    topology,
                ))),
            }),
            strategy: v1::Strategy::from(strategy) as i32,
            start_node,
        };
        let response = planner
            .plan(request)
            .await
            .map_err(ApiError::Planner)?
            .into_inner();
        let plan = response
            .plan
            .ok_or_else(|| ApiError::BadPlanner("answered without a plan".into()))?;
        Plan::try_from(plan).map_err(|e| ApiError::BadPlanner(format!("bad plan: {e}")))
    }

    fn rotation(&self, id: &str) -> Result<Arc<Rotation>, ApiError> {
        ApiError::require_rotation_id(id)?;
        self.inner
            .rotations
            .lock()
            .expect("rotations lock")
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::no_rotation(id))
    }

    /// The status of one rotation (GetRotation).
    pub fn get_rotation(
        &self,
        id: &str,
        include_plan: bool,
    ) -> Result<v1::RotationStatus, ApiError> {
        Ok(status_of(&*self.rotation(id)?, include_plan))
    }

    /// Every rotation, newest first (ListRotations without paging).
    pub fn list_rotations(&self, active_only: bool) -> Vec<v1::RotationStatus> {
        self.list_page(active_only, usize::MAX, None).0
    }

    /// One page of rotations, newest first: at most `size` after the position
    /// `after` (creation time, id), and the position of the last one returned when
    /// more follow.
    pub fn list_page(
        &self,
        active_only: bool,
        size: usize,
        after: Option<ListPosition>,
    ) -> RotationPage {
        let mut all = self.all_rotations();
        all.retain(|r| !active_only || !r.snapshot().meta.state.is_terminal());
        let keyed = all
            .into_iter()
            .map(|r| {
                let m = r.snapshot().meta;
                ((m.created_ms, m.id), r)
            })
            .collect();
        let (page, next) = page_of(keyed, size, after.as_ref());
        (page.iter().map(|r| status_of(r, false)).collect(), next)
    }

    /// The rotation an earlier StartRotation with this `request_id` started, if any.
    fn started_by(&self, request_id: &str) -> Option<(Arc<Rotation>, StartRequestKey)> {
        self.inner
            .rotations
            .lock()
            .expect("rotations lock")
            .values()
            .find_map(|r| {
                let key = r.snapshot().meta.request?;
                (key.id == request_id).then(|| (r.clone(), key))
            })
    }

    /// Pause, Resume, Abort or Rollback a rotation.
    pub async fn control(
        &self,
        id: &str,
        control: Control,
    ) -> Result<v1::RotationStatus, ApiError> {
        let rotation = self.rotation(id)?;
        let state = rotation.snapshot().meta.state;
        let name = match &control {
            Control::Pause(_) => "Pause",
            Control::Resume => "Resume",
            Control::Abort(_) => "Abort",
            Control::Rollback(_) => "Rollback",
        };
        if let Control::Rollback(_) = control
            && matches!(state, State::RollingBack | State::RolledBack)
        {
            return Ok(status_of(&rotation, false));
        }
        if rotation.control(control.clone()).await.is_some() {
            return Ok(status_of(&rotation, false));
        }
        // No runner: the rotation is terminal (or just became so), or its runner
        // waits for the journal to answer again before it resumes from it.
        let state = rotation.snapshot().meta.state;
        if !state.is_terminal() {
            return Err(ApiError::Unavailable(format!(
                "{name}: rotation `{}` is {:?} and waits for its journal, which could not \
                 record its last transition; it resumes from the journal once that answers: \
                 try again shortly",
                excerpt(id),
                state_to_wire(state)
            )));
        }
        match control {
            Control::Rollback(reason) if state != State::RolledBack => {
                // Undoing a finished rotation makes it active again: admitted like a
                // new one, and only while no other active rotation shares its nodes
                // or CA, and none that does has changed nodes since.
                let _admission = self.inner.admission.lock().await;
                let meta = rotation.snapshot().meta;
                if let Some(busy) = self.active_conflict(&rotation.fleet, Some(id)) {
                    return Err(busy.into());
                }
                if let Some(newer) = self.newer_applied(&rotation) {
                    return Err(ApiError::Refused(format!(
                        "Rollback: rotation `{newer}`, over nodes or the CA (`{}`) of \
                         `{id}`, came after it and changed nodes: roll that one back first",
                        meta.ca
                    )));
                }
                rotation
                    .restart_for_rollback(&reason)
                    .await
                    .map_err(|source| ApiError::Record {
                        what: "the rollback",
                        source,
                    })?;
                self.spawn_runner(rotation.clone());
                drop(_admission);
                Ok(status_of(&rotation, false))
            }
            Control::Rollback(_) => Ok(status_of(&rotation, false)),
            _ => Err(ApiError::Refused(format!(
                "{name}: rotation `{}` is {:?}, which is final",
                excerpt(id),
                state_to_wire(state)
            ))),
        }
    }

    /// A stream of a rotation's events from `from_sequence`, then live ones; it ends
    /// after the Finished event.
    pub fn watch(
        &self,
        id: &str,
        from_sequence: u64,
    ) -> Result<ReceiverStream<Result<v1::RotationEvent, ApiError>>, ApiError> {
        let rotation = self.rotation(id)?;
        let mut live = rotation.subscribe();
        // Weak: the task must not keep the rotation (and its live sender) alive, or the
        // stream would never see Closed when the executor goes away.
        let rotation = Arc::downgrade(&rotation);
        let journal = self.inner.ctx.committer.journal().clone();
        let (tx, rx) = mpsc::channel(256);
        let id = id.to_string();
        tokio::spawn(async move {
            let mut next = from_sequence.max(1);
            // Replay from the journal up to (at least) `upto`; false once finished or
            // the watcher left.
            let replay = async |next: &mut u64, upto: u64| -> bool {
                loop {
                    let batch = match journal.events(&id, *next, 1024) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(ApiError::Journal(e))).await;
                            return false;
                        }
                    };
                    if batch.is_empty() {
                        return true;
                    }
                    if !send_journaled(&tx, batch, next).await {
                        return false;
                    }
                    if *next > upto {
                        return true;
                    }
                }
            };
            if !replay(&mut next, u64::MAX).await {
                return;
            }
            // Asked for events past the Finished event: none will come.
            let last = journal.last_sequence(&id).unwrap_or(0);
            if last > 0 && last < next {
                let finished = journal.events(&id, last, 1).ok().and_then(|batch| {
                    let (_, data) = batch.into_iter().next()?;
                    <v1::RotationEvent as prost::Message>::decode(data.as_slice()).ok()
                });
                if finished.is_some_and(|e| matches!(e.event, Some(Event::Finished(_)))) {
                    return;
                }
                // Over, and asked for events past the next one: none will come.
                if last + 1 < next
                    && rotation
                        .upgrade()
                        .is_none_or(|r| r.snapshot().meta.state.is_terminal())
                {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(event) => {
                        if event.sequence < next {
                            // Sent already, or before `from_sequence`; a Finished
                            // event still ends the stream.
                            if matches!(event.event, Some(Event::Finished(_))) {
                                return;
                            }
                            continue;
                        }
                        if event.sequence > next && !replay(&mut next, event.sequence - 1).await {
                            return;
                        }
                        if event.sequence < next {
                            continue;
                        }
                        next = event.sequence + 1;
                        let finished = matches!(event.event, Some(Event::Finished(_)));
                        if tx.send(Ok((*event).clone())).await.is_err() || finished {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !replay(&mut next, u64::MAX).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
