//! The runner loop: control calls (pause, resume, abort, rollback), the scheduler's
//! commands spawned as tasks, their results fed back, the pause state journaled, the
//! counters GetRotation reports, and the end of the rotation.
//!
//! The journal is the truth. A change of the rotation's state is journaled before it
//! is shown or acted on, and a transition the journal cannot take (its store down for
//! longer than the committer retries) is never decided in memory alone: the runner
//! **stalls**, drops its in-flight work, and once the journal answers again resumes
//! the rotation from what the journal holds, as a restarted executor would. An
//! executor group's leader that loses its database meanwhile loses its lease, and
//! whoever leads next resumes from the same journal.

use super::*;

/// Why one run of the loop ended.
enum RunEnd {
    /// The rotation reached a terminal state, journaled.
    Finished,
    /// The executor let the rotation go (its control channel closed).
    Detached,
    /// The journal could not take a transition: resume from it once it answers.
    Stalled(JournalError),
}

/// The first wait before a stalled rotation is read back from the journal, and the
/// longest.
const STALL_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

impl Rotation {
    /// Run the rotation until it reaches a terminal state (or its task is dropped).
    /// Control calls are accepted (queued) from the moment this returns.
    pub fn run(self: Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.control.lock().expect("control lock") = Some(tx.clone());
        let span = tracing::info_span!("rotation", rotation_id = %self.id, ca = %self.fleet.ca);
        self.ctx.metrics.rotation_started();
        async move {
            let (mut tx, mut rx) = (tx, rx);
            loop {
                let end = self
                    .clone()
                    .run_inner(tx, rx)
                    .instrument(span.clone())
                    .await;
                *self.control.lock().expect("control lock") = None;
                let RunEnd::Stalled(error) = end else {
                    return;
                };
                self.stalled.store(true, Ordering::Relaxed);
                self.ctx.metrics.journal_stalled();
                let resumed = self
                    .resume_from_journal(&error)
                    .instrument(span.clone())
                    .await;
                self.stalled.store(false, Ordering::Relaxed);
                if !resumed {
                    return;
                }
                (tx, rx) = mpsc::unbounded_channel();
                *self.control.lock().expect("control lock") = Some(tx.clone());
            }
        }
    }

    /// After a stall: wait (with backoff) until the journal answers, and read the
    /// rotation back from it. Whether it is to run again (it is not terminal there).
    async fn resume_from_journal(&self, error: &JournalError) -> bool {
        tracing::error!(
            %error,
            "the journal cannot record the rotation's next transition: nothing is decided \
             without it; resuming from the journal once it answers"
        );
        let mut wait = STALL_RETRY.0;
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(STALL_RETRY.1);
            match self.reload() {
                Ok(meta) if meta.state.is_terminal() => {
                    tracing::info!(state = ?meta.state, "the journal says the rotation is over");
                    return false;
                }
                Ok(meta) => {
                    tracing::info!(state = ?meta.state, "resuming the rotation from the journal");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "the journal still cannot be read");
                }
            }
        }
    }

    /// End a run with a journal error: a store that cannot be reached stalls the
    /// rotation (resumed from the journal later); a write fenced off by another
    /// leader stops this runner (the leader resumes the rotation); anything else
    /// fails it, if the journal can record that.
    async fn journal_failed(&self, e: JournalError) -> RunEnd {
        match e {
            JournalError::Fenced(_) => Self::superseded(&e),
            e if e.is_transient() => RunEnd::Stalled(e),
            e => self.finish(State::Failed, e.to_string()).await,
        }
    }

    fn superseded(e: &JournalError) -> RunEnd {
        tracing::warn!(error = %e, "another executor leads now: this one stops running the rotation");
        RunEnd::Detached
    }

    async fn run_inner(
        self: Arc<Self>,
        tx: mpsc::UnboundedSender<Msg>,
        mut rx: mpsc::UnboundedReceiver<Msg>,
    ) -> RunEnd {
        tracing::info!(steps = self.plan.steps.len(), "rotation running");
        let meta = self.working_meta();
        let (fwd, undo) = match self.recorded() {
            Ok(r) => (r.fwd, r.undo),
            Err(e) => return self.journal_failed(e).await,
        };
        let options = SchedOptions {
            max_concurrency: meta.options.max_concurrency as usize,
            probe: meta.options.probe,
            observe_only: meta.options.observe_only,
        };
        let mut sched = Scheduler::restore(
            &self.order,
            options,
            &fwd,
            &undo,
            meta.rolling_back,
            meta.paused_reason.clone(),
        );
        // The preparation may wait long on unreachable agents: control calls are
        // answered meanwhile, not after it (the scheduler dispatches nothing until
        // it is done).
        sched.await_preparation();
        let prepare = self.prepare();
        tokio::pin!(prepare);
        let mut preparing = true;
        let mut wave_left = vec![0u32; self.waves_total as usize + 1];
        for (i, &w) in self.wave_of.iter().enumerate() {
            if sched.phase(i as StepIx, false) != Phase::Settled {
                wave_left[w as usize] += 1;
            }
        }
        let mut counted: Vec<bool> = (0..sched.len())
            .map(|i| sched.phase(i as StepIx, false) == Phase::Settled)
            .collect();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut recorded_pause = meta.paused_reason.clone();
        // The step the last message was about (`None`: look at every step).
        let mut touched: Option<StepIx> = None;
        loop {
            if let Err(e) = self
                .sync_pause(
                    sched.paused().map(str::to_string),
                    sched.rolling_back(),
                    &mut recorded_pause,
                )
                .await
            {
                tasks.abort_all();
                return self.journal_failed(e).await;
            }
            for cmd in sched.drain() {
                self.spawn(&mut tasks, &sched, cmd, &tx);
            }
            if !preparing {
                self.update_status(&sched, touched.take(), &mut wave_left, &mut counted);
            }
            if let Some(outcome) = sched.outcome() {
                let (state, message) = match outcome {
                    Outcome::Succeeded => (State::Succeeded, "every step done"),
                    Outcome::RolledBack => (State::RolledBack, "every applied step undone"),
                    Outcome::NothingStarted => (State::RolledBack, "no step had started"),
                };
                return self.finish(state, message.to_string()).await;
            }
            let msg = tokio::select! {
                prepared = &mut prepare, if preparing => {
                    match prepared {
                        Err(RotationError::Journal(e))
                            if e.is_transient() || matches!(e, JournalError::Fenced(_)) =>
                        {
                            tasks.abort_all();
                            return self.journal_failed(e).await;
                        }
                        Err(reason) => {
                            tracing::warn!(%reason, "rotation cannot start");
                            return self.finish(State::Failed, reason.to_string()).await;
                        }
                        Ok(()) => {}
                    }
                    preparing = false;
                    sched.prepared();
                    continue;
                }
                msg = rx.recv() => match msg {
                    Some(m) => m,
                    None => return RunEnd::Detached,
                },
                Some(joined) = tasks.join_next() => {
                    if let Err(e) = joined
                        && e.is_panic()
                    {
                        tracing::error!(error = %e, "step task panicked");
                        sched.pause(format!("internal error: a step task panicked: {e}"));
                    }
                    continue;
                }
            };
            touched = match &msg {
                Msg::Applied { step, .. }
                | Msg::ApplyFailed { step, .. }
                | Msg::Probed { step, .. } => Some(*step),
                Msg::Control(..) => None,
            };
            match msg {
                Msg::Applied { step, undo } => {
                    sched.applied(step, undo);
                    if sched.phase(step, undo) == Phase::Probing {
                        self.spawn(&mut tasks, &sched, Command::Probe { step, undo }, &tx);
                    }
                }
                Msg::ApplyFailed {
                    step,
                    undo,
                    maybe_applied,
                    reason,
                } => {
                    self.note_error(&reason);
                    sched.apply_failed(step, undo, maybe_applied, reason);
                }
                Msg::Probed {
                    step,
                    undo,
                    held,
                    total,
                    failed,
                } => {
                    let mut status = self.status.lock().expect("status lock");
                    status.probes_total += total;
                    status.probes_failed += failed;
                    drop(status);
                    sched.probed(step, undo, held);
                }
                Msg::Control(control, reply) => {
                    match control {
                        Control::Pause(reason) => {
                            let reason = if reason.is_empty() {
                                "paused by request".to_string()
                            } else {
                                reason
                            };
                            sched.pause(reason);
                        }
                        Control::Resume => {
                            sched.resume();
                        }
                        Control::Abort(reason) => {
                            tasks.abort_all();
                            let reason = if reason.is_empty() {
                                "aborted by request".to_string()
                            } else {
                                format!("aborted: {reason}")
                            };
                            // Answer once ABORTED is recorded, so the answer says so.
                            let end = self.finish(State::Aborted, reason).await;
                            let _ = reply.send(());
                            return end;
                        }
                        Control::Rollback(reason) => {
                            if !sched.rolling_back() {
                                if let Err(e) = self.begin_rollback(&reason).await {
                                    tracing::error!(error = %e, "cannot record the rollback");
                                    if e.is_transient() || matches!(e, JournalError::Fenced(_)) {
                                        tasks.abort_all();
                                        let _ = reply.send(());
                                        return self.journal_failed(e).await;
                                    }
                                } else {
                                    sched.rollback();
                                    recorded_pause = None;
                                }
                            }
                        }
                    }
                    if let Err(e) = self
                        .sync_pause(
                            sched.paused().map(str::to_string),
                            sched.rolling_back(),
                            &mut recorded_pause,
                        )
                        .await
                    {
                        tracing::error!(error = %e, "cannot record a pause or resume");
                        tasks.abort_all();
                        let _ = reply.send(());
                        return self.journal_failed(e).await;
                    }
                    if let Some(Outcome::NothingStarted) = sched.outcome() {
                        // Answer once ROLLED_BACK is recorded, so the answer says so.
                        let end = self
                            .finish(State::RolledBack, "no step had started".into())
                            .await;
                        let _ = reply.send(());
                        return end;
                    }
                    if !preparing {
                        self.update_status(&sched, None, &mut wave_left, &mut counted);
                    }
                    let _ = reply.send(());
                }
            }
        }
    }

    /// The last step error, shown by GetRotation (journaled with the next change of
    /// the meta record).
    fn note_error(&self, reason: &str) {
        self.working.lock().expect("meta lock").error = Some(reason.to_string());
        self.status.lock().expect("status lock").meta.error = Some(reason.to_string());
    }

    /// Record a change of pause state (Paused / Resumed) before acting on it.
    pub(super) async fn sync_pause(
        &self,
        paused: Option<String>,
        rolling_back: bool,
        recorded: &mut Option<String>,
    ) -> Result<(), JournalError> {
        if paused == *recorded {
            return Ok(());
        }
        let (op, event) = match paused.clone() {
            Some(reason) if recorded.is_none() => {
                tracing::warn!(%reason, "rotation paused");
                let op = self.meta_op(|m| {
                    m.state = State::Paused;
                    m.paused_reason = Some(reason.clone());
                });
                (op, Event::Paused(v1::Paused { reason }))
            }
            Some(_) => {
                // Still paused (the first reason is kept).
                return Ok(());
            }
            None => {
                tracing::info!("rotation resumed");
                let op = self.meta_op(|m| {
                    m.state = if rolling_back {
                        State::RollingBack
                    } else {
                        State::Running
                    };
                    m.paused_reason = None;
                });
                (op, Event::Resumed(v1::Resumed {}))
            }
        };
        self.record(vec![op], vec![event]).wait().await?;
        *recorded = paused;
        Ok(())
    }

    /// Turn a terminal rotation (no runner) into a rollback; spawn a runner next.
    pub async fn restart_for_rollback(&self, reason: &str) -> Result<(), JournalError> {
        self.begin_rollback(reason).await
    }

    pub(super) async fn begin_rollback(&self, reason: &str) -> Result<(), JournalError> {
        tracing::warn!(%reason, "rolling back");
        let why = if reason.is_empty() {
            "rollback requested".to_string()
        } else {
            format!("rollback requested: {reason}")
        };
        let op = self.meta_op(|m| {
            m.state = State::RollingBack;
            m.rolling_back = true;
            m.paused_reason = None;
            m.finished_ms = None;
        });
        self.record(
            vec![op],
            vec![
                Event::Paused(v1::Paused { reason: why }),
                Event::Resumed(v1::Resumed {}),
            ],
        )
        .wait()
        .await
    }

    pub(super) fn update_status(
        &self,
        sched: &Scheduler,
        touched: Option<StepIx>,
        wave_left: &mut [u32],
        counted: &mut [bool],
    ) {
        let mut count = |i: usize| {
            if !counted[i] && sched.phase(i as StepIx, false) == Phase::Settled {
                counted[i] = true;
                wave_left[self.wave_of[i] as usize] -= 1;
            }
        };
        match touched {
            Some(step) => count(step as usize),
            None => (0..self.wave_of.len()).for_each(count),
        }
        let current_wave = wave_left
            .iter()
            .position(|&n| n > 0)
            .unwrap_or(self.waves_total as usize) as u32;
        let mut status = self.status.lock().expect("status lock");
        status.steps_done = sched.steps_done() as u32;
        status.steps_running = sched.in_flight() as u32;
        status.current_wave = current_wave.min(self.waves_total);
    }

    pub(super) fn spawn(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        sched: &Scheduler,
        cmd: Command,
        tx: &mpsc::UnboundedSender<Msg>,
    ) {
        let (step, undo, probe) = match cmd {
            Command::Apply { step, undo } => (step, undo, false),
            Command::Probe { step, undo } => (step, undo, true),
        };
        let s = &self.plan.steps[step as usize];
        let span = tracing::info_span!(
            "step",
            step_id = s.id,
            node = %s.node,
            action = %s.action,
            undo,
        );
        let (this, tx) = (self.clone(), tx.clone());
        if probe {
            tasks.spawn(
                async move {
                    let msg = this.clone().probe_step(step, undo).await;
                    let _ = tx.send(msg);
                }
                .instrument(span),
            );
        } else {
            let refusal_is_done = undo && sched.undo_refusal_is_done(step);
            tasks.spawn(
                async move {
                    let msg = this.apply_step(step, undo, refusal_is_done).await;
                    let _ = tx.send(msg);
                }
                .instrument(span),
            );
        }
    }

    /// Reach a terminal state: journal it with the Finished event. The rotation is
    /// terminal (for watchers, Resume, the one-rotation check) only once that is
    /// durable; a journal that cannot take it stalls the rotation instead.
    async fn finish(&self, state: State, message: String) -> RunEnd {
        let now = now_ms();
        let failed = state == State::Failed;
        let op = self.meta_op(|m| {
            m.state = state;
            m.paused_reason = None;
            m.finished_ms = Some(now);
            if failed {
                m.error = Some(message.clone());
            }
        });
        let outcome = match state {
            State::Succeeded => v1::RotationState::Succeeded,
            State::Aborted => v1::RotationState::Aborted,
            State::RolledBack => v1::RotationState::RolledBack,
            _ => v1::RotationState::Failed,
        };
        let event = Event::Finished(v1::Finished {
            outcome: outcome as i32,
            message: message.clone(),
        });
        if let Err(e) = self.record(vec![op], vec![event]).wait().await {
            if let JournalError::Fenced(_) = e {
                return Self::superseded(&e);
            }
            tracing::error!(error = %e, ?state, "cannot journal the end of the rotation");
            return RunEnd::Stalled(e);
        }
        tracing::info!(?state, %message, "rotation finished");
        let created = self.snapshot().meta.created_ms;
        let label = match state {
            State::Succeeded => "succeeded",
            State::Aborted => "aborted",
            State::RolledBack => "rolled_back",
            _ => "failed",
        };
        self.ctx
            .metrics
            .rotation_finished(label, Duration::from_millis(now.saturating_sub(created)));
        let mut status = self.status.lock().expect("status lock");
        status.steps_running = 0;
        RunEnd::Finished
    }
}
