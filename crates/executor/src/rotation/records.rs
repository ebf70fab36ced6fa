//! A rotation's journal records: the event log (sequence numbers assigned and the
//! batch queued under one lock), step and meta records, the rotation's documents, and
//! what a restart reads back (counters, the event sequence, step states).

use super::*;

impl Rotation {
    /// Record events (and other ops) atomically: sequence numbers are assigned and
    /// the batch queued under one lock, so the journal and the live broadcast see
    /// events in sequence order.
    pub(super) fn record(&self, mut ops: Vec<Op>, events: Vec<Event>) -> CommitTicket {
        let mut seq = self.events.seq.lock().expect("event lock");
        let mut out = Vec::with_capacity(events.len());
        let time = prost_types::Timestamp::from(SystemTime::now());
        for event in events {
            *seq += 1;
            let e = v1::RotationEvent {
                rotation_id: self.id.clone(),
                sequence: *seq,
                time: Some(time),
                event: Some(event),
            };
            ops.push(Op::Event {
                rotation: self.id.clone(),
                seq: *seq,
                data: prost::Message::encode_to_vec(&e),
            });
            out.push(Arc::new(e));
        }
        let live = self.events.live.clone();
        let after: Option<crate::journal::AfterCommit> = if out.is_empty() {
            None
        } else {
            Some(Box::new(move || {
                for e in out {
                    let _ = live.send(e);
                }
            }))
        };
        let ticket = self.ctx.committer.submit(ops, after);
        drop(seq);
        ticket
    }

    pub(super) fn step_op(&self, ix: StepIx, undo: bool, state: StepState, attempts: u32) -> Op {
        Op::Step {
            rotation: self.id.clone(),
            step: self.plan.steps[ix as usize].id,
            undo,
            record: StepRecord { state, attempts },
        }
    }

    pub(super) fn meta_op(&self, f: impl FnOnce(&mut RotationMeta)) -> Op {
        let mut status = self.status.lock().expect("status lock");
        f(&mut status.meta);
        status.meta.updated_ms = now_ms();
        Op::Rotation(status.meta.clone())
    }

    /// Create the rotation's records: meta, documents, and the Paused event when it
    /// starts paused (an unsafe given plan).
    pub async fn create_records(&self) -> Result<(), JournalError> {
        let json = |v: &dyn erased::Json| v.json();
        let mut ops = vec![
            Op::Document {
                rotation: self.id.clone(),
                kind: DocKind::Topology,
                data: json(&self.topology),
            },
            Op::Document {
                rotation: self.id.clone(),
                kind: DocKind::Plan,
                data: json(&self.plan),
            },
            Op::Document {
                rotation: self.id.clone(),
                kind: DocKind::Verdict,
                data: json(&self.verdict),
            },
        ];
        let meta = self.snapshot().meta;
        let events = match &meta.paused_reason {
            Some(reason) => vec![Event::Paused(v1::Paused {
                reason: reason.clone(),
            })],
            None => vec![],
        };
        ops.push(Op::Rotation(meta));
        self.record(ops, events).wait().await
    }

    /// Restore counters and the event sequence from the journal (after a restart).
    pub fn load_progress(&self) -> Result<(), JournalError> {
        let journal = self.ctx.committer.journal();
        let last = journal.last_sequence(&self.id)?;
        *self.events.seq.lock().expect("event lock") = last;
        let (mut total, mut failed) = (0, 0);
        let mut from = 1;
        loop {
            let batch = journal.events(&self.id, from, 4096)?;
            let Some(&(last_seq, _)) = batch.last() else {
                break;
            };
            for (_, data) in &batch {
                if let Ok(v1::RotationEvent {
                    event: Some(Event::ProbeResult(p)),
                    ..
                }) = <v1::RotationEvent as prost::Message>::decode(data.as_slice())
                {
                    total += 1;
                    failed += u32::from(!p.ok);
                }
            }
            from = last_seq + 1;
        }
        let mut status = self.status.lock().expect("status lock");
        status.probes_total = total;
        status.probes_failed = failed;
        drop(status);
        let (fwd, undo) = self.recorded()?;
        let applied = |i: usize| {
            matches!(fwd[i], Recorded::Done | Recorded::Probed)
                && !matches!(undo[i], Recorded::Done | Recorded::Probed)
        };
        let done = (0..fwd.len()).filter(|&i| applied(i)).count();
        // As the runner reports it: the lowest wave with a step not applied (a
        // finished rotation's runner never runs again to say so).
        let current_wave = (0..fwd.len())
            .filter(|&i| !applied(i))
            .map(|i| self.wave_of[i])
            .min()
            .unwrap_or(self.waves_total)
            .min(self.waves_total);
        let mut status = self.status.lock().expect("status lock");
        status.steps_done = done as u32;
        status.current_wave = current_wave;
        Ok(())
    }

    /// The recorded forward and undo state of every step (by plan position); also
    /// restores the attempt counters.
    pub(super) fn recorded(&self) -> Result<(Vec<Recorded>, Vec<Recorded>), JournalError> {
        let n = self.plan.steps.len();
        let index: HashMap<u64, usize> = self
            .plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let mut fwd = vec![Recorded::NotStarted; n];
        let mut undo = vec![Recorded::NotStarted; n];
        for (id, is_undo, record) in self.ctx.committer.journal().steps(&self.id)? {
            let Some(&i) = index.get(&id) else { continue };
            let r = match record.state {
                StepState::Pending => Recorded::NotStarted,
                StepState::Started => Recorded::Started,
                StepState::Done => Recorded::Done,
                StepState::Probed => Recorded::Probed,
                StepState::Failed { maybe_applied } => Recorded::Failed { maybe_applied },
            };
            self.attempts[usize::from(is_undo)][i].store(record.attempts, Ordering::Relaxed);
            if is_undo {
                undo[i] = r;
            } else {
                fwd[i] = r;
            }
        }
        Ok((fwd, undo))
    }
}

/// Object-safe JSON rendering of the journaled documents.
mod erased {
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("documents serialize")
        }
    }
}
