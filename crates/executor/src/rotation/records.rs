//! A rotation's journal records: the event log (sequence numbers assigned and the
//! batch queued under one lock), step and meta records, the rotation's documents, and
//! what a restart reads back (counters, the event sequence, step states).

use super::*;
use crate::journal::Journal;

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
        // The journaled view follows the journal: a meta record in the batch becomes
        // the status only once it is durable (hooks run in commit order).
        let meta = ops.iter().rev().find_map(|op| match op {
            Op::Rotation(m) => Some(m.clone()),
            _ => None,
        });
        let status = self.status.clone();
        let after: Option<crate::journal::AfterCommit> = if out.is_empty() && meta.is_none() {
            None
        } else {
            Some(Box::new(move || {
                if let Some(meta) = meta {
                    status.lock().expect("status lock").meta = meta;
                }
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

    /// Change the working meta record; the op that journals it (submit it with
    /// [`Rotation::record`], which shows it in the status once durable).
    pub(super) fn meta_op(&self, f: impl FnOnce(&mut RotationMeta)) -> Op {
        let mut working = self.working.lock().expect("meta lock");
        f(&mut working);
        working.updated_ms = now_ms();
        Op::Rotation(working.clone())
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
        let meta = self.working_meta();
        let events = match &meta.paused_reason {
            Some(reason) => vec![Event::Paused(v1::Paused {
                reason: reason.clone(),
            })],
            None => vec![],
        };
        ops.push(Op::Rotation(meta));
        self.record(ops, events).wait().await
    }

    /// Forget every unjournaled change and read the rotation back from the journal:
    /// its meta record, counters and event sequence. Returns the journaled meta.
    pub(super) fn reload(&self) -> Result<RotationMeta, JournalError> {
        let journal = self.ctx.committer.journal();
        let meta = journal
            .rotation(&self.id)?
            .ok_or_else(|| JournalError::corrupt(format!("rotation {}", self.id), "missing"))?;
        *self.working.lock().expect("meta lock") = meta.clone();
        self.status.lock().expect("status lock").meta = meta.clone();
        *self.prepared.lock().expect("prepared lock") = None;
        self.load_progress()?;
        Ok(meta)
    }

    /// Restore counters and the event sequence from the journal (after a restart).
    pub fn load_progress(&self) -> Result<(), JournalError> {
        let journal = self.ctx.committer.journal();
        let last = journal.last_sequence(&self.id)?;
        *self.events.seq.lock().expect("event lock") = last;
        let mut probes = ProbeTally::default();
        probes.read_on(journal.as_ref(), &self.id)?;
        let records = self.recorded()?;
        let (done, current_wave) = records.progress(&self.wave_of, self.waves_total);
        let mut status = self.status.lock().expect("status lock");
        status.probes_total = probes.total;
        status.probes_failed = probes.failed;
        status.steps_done = done;
        status.current_wave = current_wave;
        Ok(())
    }

    /// The recorded forward and undo state of every step (by plan position); also
    /// restores the attempt counters.
    pub(super) fn recorded(&self) -> Result<StepRecords, JournalError> {
        let records =
            StepRecords::read(self.ctx.committer.journal().as_ref(), &self.id, &self.plan)?;
        for (undo, attempts) in records.attempts.iter().enumerate() {
            for (i, &a) in attempts.iter().enumerate() {
                self.attempts[undo][i].store(a, Ordering::Relaxed);
            }
        }
        Ok(records)
    }
}

/// What a journal says about a rotation's steps, by plan position. A restarted
/// executor resumes from it, and a follower of an executor group reports from it
/// ([`crate::reader`]).
#[derive(Debug, Clone)]
pub(crate) struct StepRecords {
    /// Each step's forward record.
    pub fwd: Vec<Recorded>,
    /// Each step's undo record.
    pub undo: Vec<Recorded>,
    /// Attempts so far: forward, undo.
    pub attempts: [Vec<u32>; 2],
}

impl StepRecords {
    /// Read rotation `id`'s step records (`plan` is its plan; records of steps not in
    /// it are ignored).
    pub(crate) fn read(journal: &dyn Journal, id: &str, plan: &Plan) -> Result<Self, JournalError> {
        let n = plan.steps.len();
        let index: HashMap<u64, usize> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let mut records = StepRecords {
            fwd: vec![Recorded::NotStarted; n],
            undo: vec![Recorded::NotStarted; n],
            attempts: [vec![0; n], vec![0; n]],
        };
        for (step, is_undo, record) in journal.steps(id)? {
            let Some(&i) = index.get(&step) else { continue };
            let r = match record.state {
                StepState::Pending => Recorded::NotStarted,
                StepState::Started => Recorded::Started,
                StepState::Done => Recorded::Done,
                StepState::Probed => Recorded::Probed,
                StepState::Failed { maybe_applied } => Recorded::Failed { maybe_applied },
            };
            records.attempts[usize::from(is_undo)][i] = record.attempts;
            if is_undo {
                records.undo[i] = r;
            } else {
                records.fwd[i] = r;
            }
        }
        Ok(records)
    }

    /// Steps applied and not undone, and the lowest wave with a step not applied (as
    /// the runner reports it; a finished rotation's runner never runs again to say
    /// so). `wave_of` gives each step's wave.
    pub(crate) fn progress(&self, wave_of: &[u32], waves_total: u32) -> (u32, u32) {
        let applied = |i: usize| {
            matches!(self.fwd[i], Recorded::Done | Recorded::Probed)
                && !matches!(self.undo[i], Recorded::Done | Recorded::Probed)
        };
        let n = self.fwd.len();
        let done = (0..n).filter(|&i| applied(i)).count();
        let current_wave = (0..n)
            .filter(|&i| !applied(i))
            .map(|i| wave_of.get(i).copied().unwrap_or(waves_total))
            .min()
            .unwrap_or(waves_total)
            .min(waves_total);
        (done as u32, current_wave)
    }

    /// Steps (or undos, with `undo`) sent and not answered yet: journaled as started
    /// with no outcome.
    pub(crate) fn started(&self, undo: bool) -> u32 {
        let records = if undo { &self.undo } else { &self.fwd };
        records.iter().filter(|r| **r == Recorded::Started).count() as u32
    }
}

/// Probe results counted from a rotation's ProbeResult events; [`ProbeTally::read_on`]
/// goes on from the event after the last one counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeTally {
    /// The sequence number of the next event to read.
    pub next: u64,
    /// Probes run.
    pub total: u32,
    /// Probes failed.
    pub failed: u32,
}

impl Default for ProbeTally {
    fn default() -> Self {
        ProbeTally {
            next: 1,
            total: 0,
            failed: 0,
        }
    }
}

impl ProbeTally {
    /// Count the events of rotation `id` journaled since the last count.
    pub(crate) fn read_on(&mut self, journal: &dyn Journal, id: &str) -> Result<(), JournalError> {
        loop {
            let batch = journal.events(id, self.next, 4096)?;
            let Some(&(last_seq, _)) = batch.last() else {
                return Ok(());
            };
            for (_, data) in &batch {
                if let Ok(v1::RotationEvent {
                    event: Some(Event::ProbeResult(p)),
                    ..
                }) = <v1::RotationEvent as prost::Message>::decode(data.as_slice())
                {
                    self.total += 1;
                    self.failed += u32::from(!p.ok);
                }
            }
            self.next = last_seq + 1;
        }
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
