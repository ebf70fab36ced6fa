//! The sans-IO heart of the executor: which step may run next.
//!
//! A [`Scheduler`] walks a resolved plan ([`PlanOrder`]). It never talks to anything;
//! the caller asks it for [`Command`]s with [`Scheduler::next_command`], carries them out, and
//! reports back with [`Scheduler::applied`], [`Scheduler::apply_failed`] and
//! [`Scheduler::probed`]. Rules (DESIGN.md, "Executor"):
//!
//! * a step is dispatched once every predecessor (its node's previous step and every
//!   `after` step) is *settled*: applied, and the probes after it passed;
//! * at most `max_concurrency` steps are in flight (applying or probing; 0 = no limit);
//! * while paused nothing new is dispatched; steps in flight finish (their probes too);
//! * a failed step, or a failed probe on an undeclared link, pauses the rotation; on
//!   resume the step is sent again (agents dedupe by step id) or re-probed;
//! * [`Scheduler::rollback`] stops forward work and undoes every applied (or possibly
//!   applied) step, a step only once every applied step that depends on it is undone:
//!   the reverse of the partial order. Undos are probed and gated like steps.

use std::collections::VecDeque;

use rollover_core::PlanOrder;
use rollover_core::order::StepIx;

/// Where one step (or its undo) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started (or to be sent again).
    Pending,
    /// Sent to its agent, no answer yet. In flight.
    Applying,
    /// Applied; the probes after it are running. In flight.
    Probing,
    /// Applied; its probes failed (or must be re-run after a restart): re-probed on
    /// resume.
    ProbeHeld,
    /// Applied and its probes passed (or probes are off). For an undo: undone.
    Settled,
    /// The apply failed; sent again on resume. `maybe_applied` when the failure does
    /// not say whether the agent applied it (e.g. retries exhausted on timeouts).
    Failed {
        /// Whether the agent may have applied it anyway.
        maybe_applied: bool,
    },
}

impl Phase {
    fn in_flight(self) -> bool {
        matches!(self, Phase::Applying | Phase::Probing)
    }

    /// Whether the node may have taken the step (so a rollback must undo it).
    fn maybe_applied(self) -> bool {
        match self {
            Phase::Applying | Phase::Probing | Phase::ProbeHeld | Phase::Settled => true,
            Phase::Failed { maybe_applied } => maybe_applied,
            Phase::Pending => false,
        }
    }

    /// Whether the node has certainly taken it.
    fn applied(self) -> bool {
        matches!(self, Phase::Probing | Phase::ProbeHeld | Phase::Settled)
    }
}

/// What the journal says about a step (or its undo), for [`Scheduler::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Never started.
    NotStarted,
    /// Started, no outcome recorded: it may or may not have been applied.
    Started,
    /// Applied, probes not (yet) passed.
    Done,
    /// Applied and probed (or probes are off).
    Probed,
    /// Failed; `maybe_applied` as in [`Phase::Failed`].
    Failed {
        /// Whether the agent may have applied it anyway.
        maybe_applied: bool,
    },
}

/// One thing for the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Send the step (or its undo) to its node.
    Apply {
        /// The step.
        step: StepIx,
        /// Undo it instead (rollback).
        undo: bool,
    },
    /// Probe every link touching the step's node, then report with
    /// [`Scheduler::probed`].
    Probe {
        /// The step after which to probe.
        step: StepIx,
        /// Whether the step was an undo.
        undo: bool,
    },
}

/// How a rotation ended, as far as the plan is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step settled.
    Succeeded,
    /// Every applied step undone.
    RolledBack,
    /// Rolled back before any step was sent: nothing to undo, no agent to wait for
    /// (also while the rotation is still being prepared).
    NothingStarted,
}

/// Scheduling knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedOptions {
    /// Most steps in flight at once; 0 = no limit.
    pub max_concurrency: usize,
    /// Probe after every step (and undo) before releasing what depends on it.
    pub probe: bool,
    /// Never hold or pause on failed probes (simulations): failures are only
    /// reported, and the rotation goes on.
    pub observe_only: bool,
}

/// The scheduling state machine of one rotation. See the module docs.
#[derive(Debug, Clone)]
pub struct Scheduler {
    preds: Vec<Vec<StepIx>>,
    succs: Vec<Vec<StepIx>>,
    options: SchedOptions,
    fwd: Vec<Phase>,
    undo: Vec<Phase>,
    /// Forward steps an earlier attempt may have applied (started, or failed without
    /// an answer), whatever their phase now: a rollback must undo them.
    uncertain: Vec<bool>,
    /// Forward: predecessors not yet settled.
    waiting: Vec<u32>,
    ready: VecDeque<StepIx>,
    /// Rollback: direct successors that are (maybe) applied and not yet undone.
    undo_waiting: Vec<u32>,
    undo_ready: VecDeque<StepIx>,
    reprobe: VecDeque<(StepIx, bool)>,
    in_flight: usize,
    settled: usize,
    /// Steps applied and not undone.
    standing: usize,
    /// Steps (maybe) applied whose undo has not settled.
    to_undo: usize,
    paused: Option<String>,
    rolling_back: bool,
    /// Whether a forward step was ever sent (or journaled as sent).
    started: bool,
    /// The rotation is not prepared yet: nothing is dispatched, and only a rollback
    /// with nothing started ends it.
    preparing: bool,
}

impl Scheduler {
    /// A fresh scheduler: nothing started.
    pub fn new(order: &PlanOrder, options: SchedOptions) -> Self {
        Self::from_preds(order.preds.clone(), options)
    }

    /// A fresh scheduler over raw predecessor lists (must be acyclic).
    pub fn from_preds(preds: Vec<Vec<StepIx>>, options: SchedOptions) -> Self {
        let n = preds.len();
        let mut succs = vec![Vec::new(); n];
        for (s, p) in preds.iter().enumerate() {
            for &q in p {
                succs[q as usize].push(s as StepIx);
            }
        }
        let waiting: Vec<u32> = preds.iter().map(|p| p.len() as u32).collect();
        let ready = (0..n as StepIx)
            .filter(|&s| waiting[s as usize] == 0)
            .collect();
        Scheduler {
            preds,
            succs,
            options,
            fwd: vec![Phase::Pending; n],
            undo: vec![Phase::Pending; n],
            uncertain: vec![false; n],
            waiting,
            ready,
            undo_waiting: vec![0; n],
            undo_ready: VecDeque::new(),
            reprobe: VecDeque::new(),
            in_flight: 0,
            settled: 0,
            standing: 0,
            to_undo: 0,
            paused: None,
            rolling_back: false,
            started: false,
            preparing: false,
        }
    }

    /// Rebuild from the journal after a restart. `fwd[i]` and `undo[i]` are what was
    /// recorded for step `i` and its undo; `rolling_back` and `paused` are the
    /// rotation's recorded mode. Steps started but not done are sent again; steps
    /// done but not probed are probed again before anything depends on them.
    pub fn restore(
        order: &PlanOrder,
        options: SchedOptions,
        fwd: &[Recorded],
        undo: &[Recorded],
        rolling_back: bool,
        paused: Option<String>,
    ) -> Self {
        let mut s = Self::new(order, options);
        let n = s.fwd.len();
        assert_eq!(fwd.len(), n, "one forward record per step");
        assert_eq!(undo.len(), n, "one undo record per step");
        let running = paused.is_none();
        let phase_of = |r: Recorded| match r {
            Recorded::NotStarted | Recorded::Started => Phase::Pending,
            Recorded::Done if options.probe => Phase::ProbeHeld,
            Recorded::Done | Recorded::Probed => Phase::Settled,
            // Not paused any more (e.g. the pause was not recorded): send it again.
            Recorded::Failed { .. } if running => Phase::Pending,
            Recorded::Failed { maybe_applied } => Phase::Failed { maybe_applied },
        };
        for i in 0..n {
            s.fwd[i] = match fwd[i] {
                // Cannot be sent forward any more; undone if it was applied.
                Recorded::Started | Recorded::Failed { .. } if rolling_back => Phase::Failed {
                    maybe_applied: true,
                },
                Recorded::Done if rolling_back => Phase::Settled,
                r => phase_of(r),
            };
            s.uncertain[i] = matches!(
                fwd[i],
                Recorded::Started
                    | Recorded::Failed {
                        maybe_applied: true
                    }
            );
            if rolling_back {
                s.undo[i] = phase_of(undo[i]);
            }
        }
        s.recount();
        s.ready.clear();
        for i in 0..n {
            s.waiting[i] = s.preds[i]
                .iter()
                .filter(|&&p| s.fwd[p as usize] != Phase::Settled)
                .count() as u32;
        }
        s.paused = paused;
        s.started = fwd.iter().any(|r| *r != Recorded::NotStarted);
        if rolling_back {
            s.rolling_back = true;
            s.init_undo();
        } else {
            for i in 0..n {
                if s.fwd[i] == Phase::Pending && s.waiting[i] == 0 {
                    s.ready.push_back(i as StepIx);
                }
            }
        }
        for i in 0..n {
            if s.phase(i as StepIx, rolling_back) == Phase::ProbeHeld {
                s.reprobe.push_back((i as StepIx, rolling_back));
            }
        }
        s
    }

    /// Recompute the counters from the phases.
    fn recount(&mut self) {
        self.in_flight = 0;
        self.settled = 0;
        self.standing = 0;
        self.to_undo = 0;
        for i in 0..self.fwd.len() {
            let (f, u) = (self.fwd[i], self.undo[i]);
            self.in_flight += usize::from(f.in_flight()) + usize::from(u.in_flight());
            self.settled += usize::from(f == Phase::Settled);
            self.standing += usize::from(self.is_standing(i));
            self.to_undo += usize::from(self.needs_undo(i as StepIx));
        }
    }

    fn is_standing(&self, i: usize) -> bool {
        self.fwd[i].applied() && self.undo[i] != Phase::Settled
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.fwd.len()
    }

    /// Whether the plan has no steps.
    pub fn is_empty(&self) -> bool {
        self.fwd.is_empty()
    }

    /// The phase of a step (`undo = false`) or of its undo.
    pub fn phase(&self, step: StepIx, undo: bool) -> Phase {
        if undo {
            self.undo[step as usize]
        } else {
            self.fwd[step as usize]
        }
    }

    /// Steps (or undos) in flight: applying or probing.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Steps applied and not undone (what `RotationStatus.steps_done` reports).
    pub fn steps_done(&self) -> usize {
        self.standing
    }

    /// Forward steps settled.
    pub fn settled(&self) -> usize {
        self.settled
    }

    /// Why the rotation is paused, if it is.
    pub fn paused(&self) -> Option<&str> {
        self.paused.as_deref()
    }

    /// Hold every dispatch until [`Scheduler::prepared`]: the rotation's preparation
    /// (agents' facts, new root) is still running. Control calls are taken meanwhile.
    pub fn await_preparation(&mut self) {
        self.preparing = true;
    }

    /// The preparation is done: dispatch from now on.
    pub fn prepared(&mut self) {
        self.preparing = false;
    }

    /// Whether an undo of `step` that its agent refuses as FAILED_PRECONDITION counts
    /// as done: only when the forward step may never have reached the agent (not
    /// known applied: it was not confirmed), so there is nothing to undo. A step known
    /// applied must really be undone.
    pub fn undo_refusal_is_done(&self, step: StepIx) -> bool {
        !matches!(
            self.phase(step, false),
            Phase::Probing | Phase::ProbeHeld | Phase::Settled
        )
    }

    /// Whether a rollback is under way.
    pub fn rolling_back(&self) -> bool {
        self.rolling_back
    }

    /// The options it runs with.
    pub fn options(&self) -> SchedOptions {
        self.options
    }

    /// Stop dispatching. Returns false if already paused (the first reason is kept).
    pub fn pause(&mut self, reason: impl Into<String>) -> bool {
        if self.paused.is_some() {
            return false;
        }
        self.paused = Some(reason.into());
        true
    }

    /// Dispatch again: failed steps are re-sent, held probes re-run. Returns false if
    /// it was not paused.
    pub fn resume(&mut self) -> bool {
        if self.paused.take().is_none() {
            return false;
        }
        let undo = self.rolling_back;
        for i in 0..self.fwd.len() {
            let phase = self.phase(i as StepIx, undo);
            if let Phase::Failed { .. } = phase {
                self.set(i as StepIx, undo, Phase::Pending);
                if undo {
                    if self.undo_waiting[i] == 0 {
                        self.undo_ready.push_back(i as StepIx);
                    }
                } else {
                    if self.waiting[i] == 0 {
                        self.ready.push_back(i as StepIx);
                    }
                }
            }
        }
        true
    }

    /// Switch to rolling back: no more forward steps; every step that is (or may be)
    /// applied is undone in reverse dependency order. Steps in flight finish first.
    /// Clears a pause. Returns false if already rolling back.
    pub fn rollback(&mut self) -> bool {
        if self.rolling_back {
            return false;
        }
        self.rolling_back = true;
        self.paused = None;
        self.ready.clear();
        self.reprobe.clear();
        self.init_undo();
        true
    }

    /// Compute undo readiness from the forward phases.
    fn init_undo(&mut self) {
        self.undo_ready.clear();
        for i in 0..self.fwd.len() {
            self.undo_waiting[i] = self.succs[i]
                .iter()
                .filter(|&&t| self.needs_undo(t))
                .count() as u32;
        }
        for i in 0..self.fwd.len() {
            if self.undo_waiting[i] == 0 && self.undo_candidate(i as StepIx) {
                self.undo_ready.push_back(i as StepIx);
            }
        }
    }

    /// Whether a step still stands between its predecessors and their undo: it is
    /// (maybe) applied, or in flight, and its undo has not settled.
    fn needs_undo(&self, step: StepIx) -> bool {
        let i = step as usize;
        (self.fwd[i].maybe_applied() || self.uncertain[i]) && self.undo[i] != Phase::Settled
    }

    /// Whether a step may be put in the undo queue (once nothing depends on it).
    fn undo_candidate(&self, step: StepIx) -> bool {
        let i = step as usize;
        self.undo[i] == Phase::Pending
            && (self.fwd[i].maybe_applied() || self.uncertain[i])
            && !self.fwd[i].in_flight()
    }

    /// The next thing to do, if any may start now.
    pub fn next_command(&mut self) -> Option<Command> {
        if self.preparing || self.paused.is_some() || self.outcome().is_some() {
            return None;
        }
        let max = self.options.max_concurrency;
        if max > 0 && self.in_flight >= max {
            return None;
        }
        while let Some((step, undo)) = self.reprobe.pop_front() {
            if undo == self.rolling_back && self.phase(step, undo) == Phase::ProbeHeld {
                self.set(step, undo, Phase::Probing);
                return Some(Command::Probe { step, undo });
            }
        }
        if self.rolling_back {
            while let Some(step) = self.undo_ready.pop_front() {
                if self.undo_candidate(step) && self.undo_waiting[step as usize] == 0 {
                    self.set(step, true, Phase::Applying);
                    return Some(Command::Apply { step, undo: true });
                }
            }
        } else {
            while let Some(step) = self.ready.pop_front() {
                if self.fwd[step as usize] == Phase::Pending && self.waiting[step as usize] == 0 {
                    self.set(step, false, Phase::Applying);
                    self.started = true;
                    return Some(Command::Apply { step, undo: false });
                }
            }
        }
        None
    }

    /// Every command that may start now.
    pub fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.next_command()).collect()
    }

    fn set(&mut self, step: StepIx, undo: bool, phase: Phase) {
        let i = step as usize;
        let (standing, to_undo) = (self.is_standing(i), self.needs_undo(step));
        let slot = if undo {
            &mut self.undo[i]
        } else {
            &mut self.fwd[i]
        };
        let old = std::mem::replace(slot, phase);
        if old.in_flight() {
            self.in_flight -= 1;
        }
        if phase.in_flight() {
            self.in_flight += 1;
        }
        if !undo {
            self.settled -= usize::from(old == Phase::Settled);
            self.settled += usize::from(phase == Phase::Settled);
        }
        self.standing = self.standing - usize::from(standing) + usize::from(self.is_standing(i));
        self.to_undo = self.to_undo - usize::from(to_undo) + usize::from(self.needs_undo(step));
    }

    /// The agent confirmed the step (or its undo). Unknown or stale reports (e.g. a
    /// step that is not applying) are ignored.
    pub fn applied(&mut self, step: StepIx, undo: bool) {
        if self.phase(step, undo) != Phase::Applying {
            return;
        }
        if self.options.probe && (undo || !self.rolling_back) {
            self.set(step, undo, Phase::Probing);
        } else {
            self.settle(step, undo);
        }
    }

    /// The step (or its undo) failed. Pauses the rotation with `reason`.
    pub fn apply_failed(
        &mut self,
        step: StepIx,
        undo: bool,
        maybe_applied: bool,
        reason: impl Into<String>,
    ) {
        if self.phase(step, undo) != Phase::Applying {
            return;
        }
        self.set(step, undo, Phase::Failed { maybe_applied });
        if !undo {
            // Agents dedupe by step id, so a definite refusal also proves that no
            // earlier attempt applied it.
            let before = self.needs_undo(step);
            self.uncertain[step as usize] = maybe_applied;
            self.to_undo = self.to_undo - usize::from(before) + usize::from(self.needs_undo(step));
        }
        if !undo && self.rolling_back {
            // A forward step that was in flight when the rollback began.
            if self.needs_undo(step) {
                self.undo_ready.push_back(step);
            } else {
                self.release_undo_preds(step);
            }
            return;
        }
        self.pause(reason);
    }

    /// The probes after the step (or its undo) finished: `held` is `None` if every
    /// undeclared link is up, else the reason (naming the link and the TLS error),
    /// which pauses the rotation and holds the step until resume.
    pub fn probed(&mut self, step: StepIx, undo: bool, held: Option<String>) {
        if self.phase(step, undo) != Phase::Probing {
            return;
        }
        // Observe-only: the failure is reported (by the caller's events) and ignored.
        let held = held.filter(|_| !self.options.observe_only);
        if self.rolling_back && !undo {
            // Forward probes finishing after a rollback began: the step is applied
            // either way, and will be undone.
            self.set(step, false, Phase::Settled);
            self.undo_ready.push_back(step);
            return;
        }
        match held {
            None => self.settle(step, undo),
            Some(reason) => {
                self.set(step, undo, Phase::ProbeHeld);
                self.reprobe.push_back((step, undo));
                self.pause(reason);
            }
        }
    }

    fn settle(&mut self, step: StepIx, undo: bool) {
        self.set(step, undo, Phase::Settled);
        if undo {
            self.release_undo_preds(step);
        } else if self.rolling_back {
            // A forward step that was in flight when the rollback began: undo it.
            self.undo_ready.push_back(step);
        } else {
            for k in 0..self.succs[step as usize].len() {
                let t = self.succs[step as usize][k] as usize;
                self.waiting[t] -= 1;
                if self.waiting[t] == 0 && self.fwd[t] == Phase::Pending {
                    self.ready.push_back(t as StepIx);
                }
            }
        }
    }

    /// `step` no longer stands in the way of undoing its predecessors.
    fn release_undo_preds(&mut self, step: StepIx) {
        for k in 0..self.preds[step as usize].len() {
            let p = self.preds[step as usize][k];
            let w = &mut self.undo_waiting[p as usize];
            *w = w.saturating_sub(1);
            if *w == 0 && self.undo_candidate(p) {
                self.undo_ready.push_back(p);
            }
        }
    }

    /// Whether the plan is finished: every step settled, or (rolling back) every
    /// applied step undone with nothing in flight.
    pub fn outcome(&self) -> Option<Outcome> {
        if self.in_flight > 0 {
            return None;
        }
        if self.rolling_back && !self.started {
            return Some(Outcome::NothingStarted);
        }
        if self.preparing {
            return None;
        }
        if self.rolling_back {
            (self.to_undo == 0).then_some(Outcome::RolledBack)
        } else {
            (self.settled == self.fwd.len()).then_some(Outcome::Succeeded)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rollover_core::state::Mode;
    use rollover_core::synth::{FleetShape, SeededRng, layered_fleet};
    use rollover_core::{Document, Fleet, PlanOptions, Strategy, handshake, plan};

    use super::*;

    fn chain(n: usize) -> Vec<Vec<StepIx>> {
        (0..n)
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    vec![i as StepIx - 1]
                }
            })
            .collect()
    }

    fn opts(max: usize, probe: bool) -> SchedOptions {
        SchedOptions {
            max_concurrency: max,
            probe,
            observe_only: false,
        }
    }

    #[test]
    fn chain_runs_one_at_a_time_and_succeeds() {
        let mut s = Scheduler::from_preds(chain(3), opts(0, false));
        for i in 0..3 {
            assert_eq!(
                s.drain(),
                [Command::Apply {
                    step: i,
                    undo: false
                }]
            );
            assert_eq!(s.next_command(), None);
            s.applied(i, false);
        }
        assert_eq!(s.outcome(), Some(Outcome::Succeeded));
        assert_eq!(s.steps_done(), 3);
    }

    #[test]
    fn observe_only_reports_failed_probes_without_holding() {
        let mut options = opts(0, true);
        options.observe_only = true;
        let mut s = Scheduler::from_preds(chain(2), options);
        assert_eq!(s.drain().len(), 1);
        s.applied(0, false);
        s.probed(0, false, Some("a -> b: bad certificate".into()));
        assert_eq!(s.paused(), None);
        assert_eq!(s.phase(0, false), Phase::Settled);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 1,
                undo: false
            }]
        );
    }

    #[test]
    fn nothing_dispatches_while_preparing_and_a_rollback_then_ends_at_once() {
        let mut s = Scheduler::from_preds(chain(2), opts(0, false));
        s.await_preparation();
        assert_eq!(s.drain(), []);
        assert_eq!(s.outcome(), None);
        assert!(s.rollback());
        assert_eq!(s.outcome(), Some(Outcome::NothingStarted));

        // Once a step was sent, a rollback has something to undo.
        let mut s = Scheduler::from_preds(chain(2), opts(0, false));
        s.await_preparation();
        s.prepared();
        assert_eq!(s.drain().len(), 1);
        s.applied(0, false);
        assert!(s.rollback());
        assert_eq!(s.outcome(), None);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 0,
                undo: true
            }]
        );
        s.applied(0, true);
        assert_eq!(s.outcome(), Some(Outcome::RolledBack));
    }

    #[test]
    fn a_refused_undo_counts_as_done_only_if_the_step_was_not_confirmed() {
        let mut s = Scheduler::from_preds(chain(2), opts(0, true));
        assert_eq!(s.drain().len(), 1);
        assert!(s.undo_refusal_is_done(0), "sent, no answer yet");
        s.applied(0, false);
        assert!(!s.undo_refusal_is_done(0), "confirmed, probing");
        s.probed(0, false, None);
        assert!(!s.undo_refusal_is_done(0), "confirmed, settled");
        assert!(s.undo_refusal_is_done(1), "never sent");
    }

    #[test]
    fn probes_gate_dependents_and_failures_pause_until_resume() {
        let mut s = Scheduler::from_preds(chain(2), opts(0, true));
        assert_eq!(
            s.next_command(),
            Some(Command::Apply {
                step: 0,
                undo: false
            })
        );
        s.applied(0, false);
        assert_eq!(s.phase(0, false), Phase::Probing);
        assert_eq!(s.next_command(), None, "dependents wait for the probes");
        s.probed(0, false, Some("a -> b: bad certificate".into()));
        assert_eq!(s.paused(), Some("a -> b: bad certificate"));
        assert_eq!(s.next_command(), None);
        assert!(s.resume());
        assert_eq!(
            s.next_command(),
            Some(Command::Probe {
                step: 0,
                undo: false
            })
        );
        s.probed(0, false, None);
        assert_eq!(
            s.next_command(),
            Some(Command::Apply {
                step: 1,
                undo: false
            })
        );
    }

    #[test]
    fn failed_step_pauses_and_is_resent_on_resume() {
        let mut s = Scheduler::from_preds(vec![vec![], vec![]], opts(0, false));
        assert_eq!(s.drain().len(), 2);
        s.apply_failed(0, false, false, "step 0 refused");
        s.applied(1, false);
        assert_eq!(s.paused(), Some("step 0 refused"));
        assert_eq!(s.outcome(), None);
        assert!(s.resume());
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 0,
                undo: false
            }]
        );
        s.applied(0, false);
        assert_eq!(s.outcome(), Some(Outcome::Succeeded));
    }

    #[test]
    fn concurrency_is_bounded_and_pause_stops_dispatch() {
        let mut s = Scheduler::from_preds(vec![vec![]; 5], opts(2, false));
        assert_eq!(s.drain().len(), 2);
        assert!(s.pause("operator"));
        assert!(!s.pause("again"));
        s.applied(0, false);
        assert_eq!(s.next_command(), None);
        assert!(s.resume());
        assert!(!s.resume());
        assert_eq!(s.drain().len(), 1);
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn rollback_undoes_in_reverse_and_waits_for_in_flight_steps() {
        // 0 -> 1 -> 2, and 3 independent.
        let preds = vec![vec![], vec![0], vec![1], vec![]];
        let mut s = Scheduler::from_preds(preds, opts(0, false));
        assert_eq!(s.drain().len(), 2); // 0 and 3
        s.applied(0, false);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 1,
                undo: false
            }]
        );
        assert!(s.rollback());
        // 3 and 1 are in flight; 0 waits for 1.
        assert_eq!(s.drain(), []);
        s.applied(1, false);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 1,
                undo: true
            }]
        );
        s.apply_failed(3, false, false, "refused");
        assert_eq!(
            s.paused(),
            None,
            "in-flight failures during rollback do not pause"
        );
        s.applied(1, true);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 0,
                undo: true
            }]
        );
        s.applied(0, true);
        assert_eq!(s.outcome(), Some(Outcome::RolledBack));
        assert_eq!(s.steps_done(), 0);
    }

    #[test]
    fn restore_resends_started_and_reprobes_done() {
        let preds = vec![vec![], vec![0], vec![]];
        let order_fwd = [Recorded::Done, Recorded::NotStarted, Recorded::Started];
        let undo = [Recorded::NotStarted; 3];
        let order = PlanOrderStub::new(preds);
        let mut s = Scheduler::restore(&order.0, opts(0, true), &order_fwd, &undo, false, None);
        let cmds = s.drain();
        assert_eq!(
            cmds,
            [
                Command::Probe {
                    step: 0,
                    undo: false
                },
                Command::Apply {
                    step: 2,
                    undo: false
                }
            ]
        );
        s.probed(0, false, None);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 1,
                undo: false
            }]
        );

        // Rolling back: a started forward step may have been applied: undo it.
        let fwd = [Recorded::Probed, Recorded::Started, Recorded::NotStarted];
        let mut s = Scheduler::restore(&order.0, opts(0, false), &fwd, &undo, true, None);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 1,
                undo: true
            }]
        );
        s.applied(1, true);
        assert_eq!(
            s.drain(),
            [Command::Apply {
                step: 0,
                undo: true
            }]
        );
        s.applied(0, true);
        assert_eq!(s.outcome(), Some(Outcome::RolledBack));
    }

    /// A `PlanOrder` with only `preds` filled, for restore tests.
    struct PlanOrderStub(PlanOrder);

    impl PlanOrderStub {
        fn new(preds: Vec<Vec<StepIx>>) -> Self {
            let n = preds.len();
            PlanOrderStub(PlanOrder {
                step_node: (0..n as u32).collect(),
                step_rank: vec![0; n],
                node_steps: (0..n as u32).map(|s| vec![s]).collect(),
                preds,
                topological: (0..n as u32).collect(),
                disrupted: Default::default(),
                bridged: false,
            })
        }
    }

    /// A simulated fleet: steps applied per node, checked against the handshake rule
    /// on every undeclared link after every change.
    struct World<'a> {
        fleet: &'a Fleet,
        order: &'a PlanOrder,
        done: Vec<usize>,
        keys: std::collections::HashSet<(StepIx, bool)>,
    }

    impl World<'_> {
        /// Apply like an agent: a repeat is a no-op, and so is the undo of a step
        /// never applied.
        fn apply(&mut self, step: StepIx, undo: bool) {
            if !self.keys.insert((step, undo)) || (undo && !self.keys.contains(&(step, false))) {
                return;
            }
            let node = self.order.step_node[step as usize] as usize;
            let rank = self.order.step_rank[step as usize] as usize;
            if undo {
                assert_eq!(self.done[node], rank + 1, "undo of a node's last step only");
                self.done[node] = rank;
            } else {
                assert_eq!(self.done[node], rank, "a node's steps in order");
                self.done[node] = rank + 1;
            }
            self.check();
        }

        fn check(&self) {
            for link in &self.fleet.links {
                if link.is_self() || self.order.disrupted.contains(link) {
                    continue;
                }
                let state = |n: u32| {
                    let mode: Mode = self.fleet.mode(n);
                    mode.state_after(self.done[n as usize])
                };
                let result = handshake(state(link.client), state(link.server));
                assert!(
                    result.is_ok(),
                    "{} -> {} broke: {}",
                    self.fleet.id(link.client),
                    self.fleet.id(link.server),
                    result.unwrap_err()
                );
            }
        }
    }

    /// Drive a scheduler over a planned synthetic fleet with random completion
    /// order, failures, probe failures, pauses and maybe a rollback; check the
    /// partial order (and its reverse) on every dispatch, the handshake rule on
    /// every undeclared link after every change, and the concurrency bound.
    fn simulate(
        shape: FleetShape,
        claim: bool,
        sim_seed: u64,
        max: usize,
        probe: bool,
        rollback_at: Option<u32>,
    ) {
        let topology = layered_fleet(&shape);
        let fleet = Fleet::new(&topology);
        let options = PlanOptions {
            strategy: if claim {
                Strategy::Claim
            } else {
                Strategy::Waves
            },
            start: None,
        };
        let plan = plan(&fleet, &options).unwrap();
        let order = PlanOrder::resolve(&plan, &fleet, &Document::new("<plan>", "")).unwrap();
        if claim && !rollover_core::verify(&fleet, &plan, &order).safe {
            return; // the claim's order may be unsafe: nothing to check
        }
        let mut rng = SeededRng::new(sim_seed);
        let mut s = Scheduler::new(&order, opts(max, probe));
        let mut world = World {
            fleet: &fleet,
            order: &order,
            done: vec![0; fleet.len()],
            keys: Default::default(),
        };
        world.check();
        let mut in_flight: Vec<Command> = Vec::new();
        let mut events = 0u32;
        let mut rolled_back = false;
        loop {
            for cmd in s.drain() {
                if let Command::Apply { step, undo } = cmd {
                    if undo {
                        for &t in &s.succs[step as usize] {
                            assert!(
                                !s.fwd[t as usize].maybe_applied()
                                    || s.undo[t as usize] == Phase::Settled,
                                "undo of {step} before its dependent {t}"
                            );
                        }
                    } else {
                        for &p in &order.preds[step as usize] {
                            assert_eq!(s.fwd[p as usize], Phase::Settled, "{step} before {p}");
                        }
                    }
                }
                in_flight.push(cmd);
            }
            if max > 0 {
                assert!(s.in_flight() <= max);
            }
            let mut fresh = s.clone();
            fresh.recount();
            assert_eq!(
                (
                    fresh.in_flight,
                    fresh.settled,
                    fresh.standing,
                    fresh.to_undo
                ),
                (s.in_flight, s.settled, s.standing, s.to_undo),
                "counters drifted"
            );
            assert_eq!(s.in_flight(), in_flight.len());
            if in_flight.is_empty() {
                if let Some(outcome) = s.outcome() {
                    if rolled_back {
                        assert!(
                            matches!(outcome, Outcome::RolledBack | Outcome::NothingStarted),
                            "{outcome:?}"
                        );
                    } else {
                        assert_eq!(outcome, Outcome::Succeeded);
                    }
                    let target = |n: usize| {
                        if rolled_back {
                            0
                        } else {
                            fleet.modes[n].steps().len()
                        }
                    };
                    for n in 0..fleet.len() {
                        assert_eq!(world.done[n], target(n), "node {n}");
                    }
                    return;
                }
                assert!(s.paused().is_some(), "stuck without being paused");
                assert!(s.resume());
                continue;
            }
            events += 1;
            if Some(events) == rollback_at && !rolled_back {
                rolled_back = s.rollback();
            }
            if rng.chance(0.03) {
                // Crash: in-flight commands reached their agent or not; rebuild
                // from what a journal would hold.
                for cmd in in_flight.drain(..) {
                    if let Command::Apply { step, undo } = cmd
                        && rng.chance(0.5)
                    {
                        world.apply(step, undo);
                    }
                }
                let fwd: Vec<Recorded> = (0..s.len()).map(|i| recorded(&s, i, false)).collect();
                let und: Vec<Recorded> = (0..s.len()).map(|i| recorded(&s, i, true)).collect();
                let paused = s.paused().map(str::to_string);
                s = Scheduler::restore(
                    &order,
                    opts(max, probe),
                    &fwd,
                    &und,
                    s.rolling_back(),
                    paused,
                );
                continue;
            }
            if rng.chance(0.05) {
                s.pause("operator");
            } else if rng.chance(0.1) {
                s.resume();
            }
            let cmd = in_flight.swap_remove(rng.below(in_flight.len() as u32) as usize);
            match cmd {
                Command::Apply { step, undo: true }
                    if !world.keys.contains(&(step, false)) && rng.chance(0.5) =>
                {
                    // The forward step never reached its agent, which refuses the undo
                    // as FAILED_PRECONDITION: done if the scheduler says so, else a
                    // permanent failure. Undoing what was applied is checked at the end.
                    if s.undo_refusal_is_done(step) {
                        s.applied(step, true);
                        if s.phase(step, true) == Phase::Probing {
                            in_flight.push(Command::Probe { step, undo: true });
                        }
                    } else {
                        s.apply_failed(step, true, false, "nothing to undo");
                    }
                }
                Command::Apply { step, undo } => {
                    if rng.chance(0.1) && !world.keys.contains(&(step, undo)) {
                        // Agents dedupe first: only a step not applied yet is refused.
                        s.apply_failed(step, undo, false, "refused");
                    } else if rng.chance(0.05) {
                        // Applied, but the answer was lost.
                        world.apply(step, undo);
                        s.apply_failed(step, undo, true, "deadline exceeded");
                    } else {
                        world.apply(step, undo);
                        s.applied(step, undo);
                        if s.phase(step, undo) == Phase::Probing {
                            in_flight.push(Command::Probe { step, undo });
                        }
                    }
                }
                Command::Probe { step, undo } => {
                    let held = rng.chance(0.1).then(|| "probe failed".to_string());
                    s.probed(step, undo, held);
                }
            }
        }
    }

    /// What a journal written by the caller would hold for a step.
    fn recorded(s: &Scheduler, i: usize, undo: bool) -> Recorded {
        match s.phase(i as StepIx, undo) {
            Phase::Pending if !undo && s.uncertain[i] => Recorded::Started,
            Phase::Pending => Recorded::NotStarted,
            Phase::Applying => Recorded::Started,
            Phase::Probing | Phase::ProbeHeld => Recorded::Done,
            Phase::Settled => Recorded::Probed,
            Phase::Failed { maybe_applied } => Recorded::Failed { maybe_applied },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn dispatch_respects_the_partial_order_and_links_stay_up(
            nodes in 1usize..25,
            fan_out in 1usize..4,
            atomic_share in 0.0f64..0.6,
            control in any::<bool>(),
            seed in any::<u64>(),
            claim in any::<bool>(),
            sim_seed in any::<u64>(),
            max in 0usize..4,
            probe in any::<bool>(),
            rollback_at in proptest::option::of(1u32..60),
        ) {
            let shape = FleetShape { nodes, fan_out, atomic_share, control, seed };
            simulate(shape, claim, sim_seed, max, probe, rollback_at);
        }
    }
}
