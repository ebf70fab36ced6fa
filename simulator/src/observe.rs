//! What the simulation saw: every handshake's outcome, which step was running when
//! one failed, and which links were probed after which step (coverage).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rollover_core::report::SimFailure;
use rollover_proto::labels::lower_label_of;
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;
use rollover_transport::ProbeError;

use crate::options::{Progress, ProgressFn};

/// Where a handshake came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The executor's probe right after a step.
    AfterStep,
    /// The background prober, while steps ran.
    Background,
    /// The final check after the rotation.
    Final,
}

#[derive(Default)]
struct State {
    running: BTreeMap<u64, String>,
    last_done: Option<String>,
    steps: HashMap<u64, String>,
    failures: Vec<SimFailure>,
    done_steps: Vec<(u64, String)>,
    probed_after: HashMap<u64, HashSet<(String, String)>>,
}

/// Decides whether a failed handshake (source, client, server, error) is excused: in
/// chaos runs, a connection refused because an end was crashed on purpose is not a
/// handshake failure (a TLS refusal never is excused).
pub type ExcuseFn = Arc<dyn Fn(Source, &str, &str, &ProbeError) -> bool + Send + Sync>;

impl State {
    /// The steps in flight, or the last one done.
    fn current_step(&self) -> String {
        if !self.running.is_empty() {
            let names: Vec<&str> = self.running.values().map(String::as_str).collect();
            names.join(", ")
        } else if let Some(last) = &self.last_done {
            format!("after {last}")
        } else {
            "before the first step".to_string()
        }
    }
}

/// Shared by the event watcher, the background prober and the final checks.
pub struct Observer {
    state: Mutex<State>,
    max_listed: usize,
    /// All handshakes.
    pub total: AtomicU64,
    /// Failed handshakes.
    pub failed: AtomicU64,
    /// Failed handshakes on undeclared links.
    pub failed_undeclared: AtomicU64,
    /// Handshakes after steps.
    pub after_steps: AtomicU64,
    /// Background handshakes.
    pub background: AtomicU64,
    /// Final handshakes.
    pub final_total: AtomicU64,
    /// Final handshakes that failed.
    pub final_failed: AtomicU64,
    /// Failed handshakes excused (an end was down on purpose; chaos runs only).
    pub excused: AtomicU64,
    excuse: Option<ExcuseFn>,
    steps_total: u64,
    progress: Option<ProgressFn>,
}

impl Observer {
    /// An observer of a plan of `steps_total` steps.
    pub fn new(steps_total: u64, max_listed: usize, progress: Option<ProgressFn>) -> Self {
        Observer {
            state: Mutex::default(),
            max_listed,
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failed_undeclared: AtomicU64::new(0),
            after_steps: AtomicU64::new(0),
            background: AtomicU64::new(0),
            final_total: AtomicU64::new(0),
            final_failed: AtomicU64::new(0),
            excused: AtomicU64::new(0),
            excuse: None,
            steps_total,
            progress,
        }
    }

    /// Excuse the failures `excuse` accepts (counted in [`Observer::excused`] only).
    pub fn with_excuse(mut self, excuse: ExcuseFn) -> Self {
        self.excuse = Some(excuse);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A step started.
    pub fn step_started(&self, id: u64, description: String) {
        let mut state = self.state();
        state.steps.insert(id, description.clone());
        state.running.insert(id, description);
    }

    /// A step is done (forward, not an undo).
    pub fn step_done(&self, id: u64, node: &str) {
        let done = {
            let mut state = self.state();
            let description = state
                .running
                .remove(&id)
                .or_else(|| state.steps.get(&id).cloned())
                .unwrap_or_else(|| format!("step {id}"));
            state.last_done = Some(description);
            state.done_steps.push((id, node.to_string()));
            state.done_steps.len() as u64
        };
        self.report_progress("rotating", done);
    }

    /// What was running: the steps in flight, or the last one done.
    pub fn current_step(&self) -> String {
        self.state().current_step()
    }

    /// Record one handshake.
    #[allow(clippy::too_many_arguments)]
    pub fn handshake(
        &self,
        source: Source,
        client: &str,
        server: &str,
        result: Result<(), ProbeError>,
        declared: bool,
        after_step: Option<u64>,
    ) {
        self.total.fetch_add(1, Ordering::Relaxed);
        match source {
            Source::AfterStep => self.after_steps.fetch_add(1, Ordering::Relaxed),
            Source::Background => self.background.fetch_add(1, Ordering::Relaxed),
            Source::Final => self.final_total.fetch_add(1, Ordering::Relaxed),
        };
        let mut state = self.state();
        if let Some(step) = after_step {
            state
                .probed_after
                .entry(step)
                .or_default()
                .insert((client.to_string(), server.to_string()));
        }
        let Err(error) = result else {
            return;
        };
        if let Some(excuse) = &self.excuse
            && excuse(source, client, server, &error)
        {
            self.excused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        if source == Source::Final {
            self.final_failed.fetch_add(1, Ordering::Relaxed);
        }
        if !declared {
            self.failed_undeclared.fetch_add(1, Ordering::Relaxed);
        }
        let step = match after_step {
            Some(id) => state
                .steps
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("step {id}")),
            None if source == Source::Final => "final check (old root withdrawn)".to_string(),
            None => state.current_step(),
        };
        if state.failures.len() < self.max_listed {
            state.failures.push(SimFailure {
                client: client.to_string(),
                server: server.to_string(),
                step,
                error: error.message,
                declared,
            });
        }
    }

    /// Failures listed so far.
    pub fn failures(&self) -> Vec<SimFailure> {
        self.state().failures.clone()
    }

    /// Steps done, with their node.
    pub fn done_steps(&self) -> Vec<(u64, String)> {
        self.state().done_steps.clone()
    }

    /// Links probed right after `step`.
    pub fn probed_after(&self, step: u64) -> HashSet<(String, String)> {
        self.state()
            .probed_after
            .get(&step)
            .cloned()
            .unwrap_or_default()
    }

    /// Send a progress update.
    pub fn report_progress(&self, phase: &str, steps_done: u64) {
        if let Some(progress) = &self.progress {
            progress(&Progress {
                steps_done,
                steps_total: self.steps_total,
                handshakes: self.total.load(Ordering::Relaxed),
                failed: self.failed.load(Ordering::Relaxed),
                phase: phase.to_string(),
            });
        }
    }
}

impl Observer {
    /// Tell the observer about a step starting or done, or a probe's result.
    pub(crate) fn event(&self, event: &Event) {
        match event {
            Event::StepStarted(e) if !e.undo => {
                if let Some(step) = &e.step {
                    self.step_started(
                        step.id,
                        format!(
                            "{} {} (step {})",
                            action_name(step.action),
                            step.node,
                            step.id
                        ),
                    );
                }
            }
            Event::StepDone(e) if !e.undo => {
                if let Some(step) = &e.step {
                    self.step_done(step.id, &step.node);
                }
            }
            Event::ProbeResult(p) => {
                let result = if p.ok {
                    Ok(())
                } else {
                    Err(ProbeError::from_wire(p.failure, p.error.clone()))
                };
                self.handshake(
                    Source::AfterStep,
                    &p.client,
                    &p.server,
                    result,
                    p.declared_disruption,
                    p.after_step_id,
                );
            }
            _ => {}
        }
    }
}

/// The outcome text of a Finished event (`succeeded`, `failed: why`, ...).
pub(crate) fn finished_outcome(f: &v1::Finished) -> String {
    let state = lower_label_of::<v1::RotationState>(f.outcome).unwrap_or_else(|| "unknown".into());
    if f.message.is_empty() {
        state
    } else {
        format!("{state}: {}", f.message)
    }
}

fn action_name(action: i32) -> String {
    lower_label_of::<v1::StepAction>(action).unwrap_or_else(|| "?".into())
}
