//! Applying one step (or its undo): the journaled attempt, the agent call with the
//! new root and a leaf issued from a fresh CSR, retries, and `@executor`'s own steps
//! applied to the executor's live credentials.

use super::*;

impl Rotation {
    /// Send one step (or undo) until it is done, fails permanently, or retries run
    /// out; journal and report every attempt. With `refusal_is_done` (the scheduler's
    /// [`Scheduler::undo_refusal_is_done`]), an undo the agent refuses as
    /// FAILED_PRECONDITION counts as done: it never reached the agent.
    pub(super) async fn apply_step(&self, ix: StepIx, undo: bool, refusal_is_done: bool) -> Msg {
        let wave = self.wave_of[ix as usize];
        let mut local_attempt = 0;
        let mut delays = self.ctx.retry.delays();
        loop {
            local_attempt += 1;
            let attempt =
                self.attempts[usize::from(undo)][ix as usize].fetch_add(1, Ordering::Relaxed) + 1;
            let started = self
                .record(
                    vec![self.step_op(ix, undo, StepState::Started, attempt)],
                    vec![Event::StepStarted(v1::StepStarted {
                        step: Some(self.step_ref(ix)),
                        wave,
                        undo,
                        attempt,
                    })],
                )
                .wait()
                .await;
            if let Err(e) = started {
                return Msg::ApplyFailed {
                    step: ix,
                    undo,
                    maybe_applied: false,
                    reason: format!("{}: {e}", self.step_name(ix, undo)),
                };
            }
            tracing::debug!(attempt, "sending");
            let result = match self.send(ix, undo).await {
                Err(e) if refusal_is_done && e.code == tonic::Code::FailedPrecondition => Ok(false),
                r => r,
            };
            match result {
                Ok(applied) => {
                    self.ctx.metrics.step_done(undo);
                    let done = self
                        .record(
                            vec![self.step_op(ix, undo, StepState::Done, attempt)],
                            vec![Event::StepDone(v1::StepDone {
                                step: Some(self.step_ref(ix)),
                                undo,
                                applied,
                            })],
                        )
                        .wait()
                        .await;
                    return match done {
                        Ok(()) => Msg::Applied { step: ix, undo },
                        Err(e) => Msg::ApplyFailed {
                            step: ix,
                            undo,
                            maybe_applied: true,
                            reason: format!("{}: {e}", self.step_name(ix, undo)),
                        },
                    };
                }
                Err(e) => {
                    self.ctx.metrics.step_failed();
                    let will_retry = self.ctx.retry.should_retry(local_attempt, &e);
                    tracing::warn!(error = %e, will_retry, "step failed");
                    let failed_event = Event::StepFailed(v1::StepFailed {
                        step: Some(self.step_ref(ix)),
                        undo,
                        error: e.to_string(),
                        will_retry,
                    });
                    if will_retry {
                        let _ = self.record(vec![], vec![failed_event]).wait().await;
                        tokio::time::sleep(delays.next().unwrap_or(self.ctx.retry.max_delay)).await;
                        continue;
                    }
                    let maybe_applied = e.maybe_applied();
                    let _ = self
                        .record(
                            vec![self.step_op(
                                ix,
                                undo,
                                StepState::Failed { maybe_applied },
                                attempt,
                            )],
                            vec![failed_event],
                        )
                        .wait()
                        .await;
                    return Msg::ApplyFailed {
                        step: ix,
                        undo,
                        maybe_applied,
                        reason: format!("{} failed: {e}", self.step_name(ix, undo)),
                    };
                }
            }
        }
    }

    pub(super) fn prepared(&self) -> Arc<Prepared> {
        self.prepared
            .lock()
            .expect("prepared lock")
            .clone()
            .expect("steps run only once the rotation is prepared")
    }

    /// One attempt at a step: returns whether the node changed.
    pub(super) async fn send(&self, ix: StepIx, undo: bool) -> Result<bool, AgentError> {
        if self.snapshot().meta.options.dry_run {
            return Ok(false);
        }
        let node = self.order.step_node[ix as usize];
        let rank = self.order.step_rank[ix as usize] as usize;
        if Some(node) == self.fleet.executor {
            return self.apply_local(node, rank, undo).await;
        }
        let agent = self.agents[node as usize]
            .as_ref()
            .expect("every node but @executor has an agent");
        let prepared = self.prepared();
        let step = &self.plan.steps[ix as usize];
        let mut request = v1::ApplyStepRequest {
            rotation_id: self.id.clone(),
            step_id: step.id,
            action: v1::StepAction::from(step.action) as i32,
            new_root_der: Vec::new(),
            issued_leaf_der: Vec::new(),
            old_root_fingerprint: prepared.facts[node as usize].old_root.clone(),
            undo,
            bridge_new_der: Vec::new(),
            bridge_old_der: Vec::new(),
            leader_epoch: self.ctx.leader_epoch,
        };
        if !undo && step.action == self.fleet.mode(node).steps()[0] {
            // The mode's first step brings the new generation (no CSR before it).
            request.new_root_der = prepared.new_root_der.clone();
            request.issued_leaf_der = self.leaf_for(node, agent.as_ref(), &prepared).await?;
        }
        if !undo && step.action == Action::Bridge {
            let bridges = prepared.bridges.as_ref().ok_or_else(|| {
                AgentError::new(
                    tonic::Code::Internal,
                    "a bridge step, but the rotation has no bridges",
                )
            })?;
            request.bridge_new_der = bridges.b_new.to_vec();
            request.bridge_old_der = bridges.b_old.to_vec();
        }
        Ok(agent.apply_step(request).await?.applied)
    }

    /// The node's new leaf: journaled, or issued now from a fresh CSR.
    pub(super) async fn leaf_for(
        &self,
        node: u32,
        agent: &dyn AgentApi,
        prepared: &Prepared,
    ) -> Result<Vec<u8>, AgentError> {
        let id = self.fleet.id(node);
        if let Some(der) = self.leaves.lock().expect("leaves lock").get(id) {
            return Ok(der.clone());
        }
        let csr = agent
            .create_csr(v1::CreateCsrRequest {
                ca_name: self.fleet.ca.clone(),
                generation: self.snapshot().meta.generation,
                rotation_id: self.id.clone(),
                leader_epoch: self.ctx.leader_epoch,
            })
            .await?;
        let leaf = prepared
            .new_root
            .issue_leaf(
                &csr.csr_der,
                id,
                Validity::for_duration(self.ctx.leaf_validity),
            )
            .map_err(|e| {
                AgentError::new(
                    tonic::Code::FailedPrecondition,
                    format!("the CSR of `{id}` was refused: {e}"),
                )
            })?
            .to_vec();
        self.ctx
            .committer
            .commit(vec![Op::Leaf {
                rotation: self.id.clone(),
                node: id.to_string(),
                der: leaf.clone(),
            }])
            .await
            .map_err(|e| AgentError::new(tonic::Code::Internal, e.to_string()))?;
        self.leaves
            .lock()
            .expect("leaves lock")
            .insert(id.to_string(), leaf.clone());
        Ok(leaf)
    }

    /// `@executor`'s own step: swap the executor's credentials (journaled first).
    pub(super) async fn apply_local(
        &self,
        node: u32,
        rank: usize,
        undo: bool,
    ) -> Result<bool, AgentError> {
        let (Some(creds), Some(ex)) = (&self.ctx.own_creds, &self.prepared().executor) else {
            // No credentials of its own (plaintext control channel): nothing to do.
            return Ok(false);
        };
        let k = if undo { rank } else { rank + 1 };
        let prepared = self.prepared();
        let root = rollover_pki::CertificateDer::from(prepared.new_root_der.clone());
        let bridged = self.bridged(node);
        let state = Profile::of(Mode::Bundle).state_after(bridged, k);
        let set = executor_set(ex, &root, prepared.bridges.as_ref(), state);
        self.ctx
            .committer
            .commit(vec![Op::Identity(encode_identity(&set))])
            .await
            .map_err(|e| AgentError::new(tonic::Code::Internal, e.to_string()))?;
        creds
            .swap(set)
            .map_err(|e| AgentError::new(tonic::Code::Internal, e.to_string()))?;
        tracing::info!(steps_done = k, "executor credentials swapped");
        Ok(true)
    }

    /// Whether `node` takes `bridge` and `unbridge` steps in this plan.
    pub(super) fn bridged(&self, node: u32) -> bool {
        let id = self.fleet.id(node);
        self.plan
            .steps
            .iter()
            .any(|s| s.node == id && s.action == Action::Bridge)
    }
}
