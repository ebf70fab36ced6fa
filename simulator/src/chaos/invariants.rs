//! What must hold after every chaotic run, whatever was injected:
//!
//! * no undeclared handshake failure (failures while an end was down on purpose are
//!   excused, TLS refusals never);
//! * every step applied exactly once per node: each agent's persisted applied-step
//!   counter (it survives restarts) equals its number of steps in the plan, however
//!   often a step was re-sent, duplicated or answered into the void;
//! * no journal entry lost: the events watched across executor restarts are numbered
//!   1, 2, 3, ... without gap or repeat and end with `Finished`; every step has exactly
//!   one done event, and no step started before its prerequisites were done; the
//!   journal on disk has every step done and the same events;
//! * every node ends on the new key only (`all_new`) and the rotation succeeded;
//! * no private key in any control call (checked by the connector).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rollover_core::Plan;
use rollover_core::report::SimReport;
use rollover_executor::RedbJournal;
use rollover_executor::journal::{Journal, JournalError, StepState};
use rollover_journal_postgres::PgJournal;
use rollover_proto::v1;
use rollover_proto::v1::rotation_event::Event;

use super::Chaos;
use crate::setup::SimFleet;

/// A watched event, as the invariants need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Noted {
    /// Its sequence number.
    pub seq: u64,
    /// What it was.
    pub what: What,
}

/// The kinds of event the invariants look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A forward step was sent (an attempt).
    Started(u64),
    /// A forward step is done.
    Done(u64),
    /// The rotation finished.
    Finished,
    /// Anything else.
    Other,
}

impl Noted {
    /// The note of an event.
    pub fn of(event: &v1::RotationEvent) -> Noted {
        let what = match &event.event {
            Some(Event::StepStarted(e)) if !e.undo => {
                e.step.as_ref().map_or(What::Other, |s| What::Started(s.id))
            }
            Some(Event::StepDone(e)) if !e.undo => {
                e.step.as_ref().map_or(What::Other, |s| What::Done(s.id))
            }
            Some(Event::Finished(_)) => What::Finished,
            _ => What::Other,
        };
        Noted {
            seq: event.sequence,
            what,
        }
    }
}

/// Every step's prerequisites: the node's previous step and its `after` steps.
fn prerequisites(plan: &Plan) -> HashMap<u64, Vec<u64>> {
    let mut last_of: HashMap<&str, u64> = HashMap::new();
    let mut out = HashMap::new();
    for step in &plan.steps {
        let mut pre = step.after.clone();
        if let Some(prev) = last_of.insert(step.node.as_str(), step.id) {
            pre.push(prev);
        }
        out.insert(step.id, pre);
    }
    out
}

/// The event invariants over what the watcher saw.
pub fn check_events(plan: &Plan, noted: &[Noted]) -> Vec<String> {
    let mut v = Vec::new();
    for (i, n) in noted.iter().enumerate() {
        let want = i as u64 + 1;
        if n.seq != want {
            v.push(format!(
                "event sequence broken: event #{want} watched has sequence {} (a lost or repeated journal entry)",
                n.seq
            ));
            break;
        }
    }
    if noted.last().map(|n| n.what) != Some(What::Finished) {
        v.push("the watched events do not end with Finished".to_string());
    }
    let pre = prerequisites(plan);
    let mut done: HashMap<u64, usize> = HashMap::new();
    for n in noted {
        match n.what {
            What::Started(id) => {
                for p in pre.get(&id).into_iter().flatten() {
                    if !done.contains_key(p) {
                        v.push(format!(
                            "step {id} was started (event {}) before its prerequisite step {p} was done",
                            n.seq
                        ));
                    }
                }
            }
            What::Done(id) => {
                let count = done.entry(id).or_default();
                *count += 1;
                if *count == 2 {
                    v.push(format!("step {id} has more than one done event"));
                }
            }
            _ => {}
        }
    }
    for step in &plan.steps {
        if !done.contains_key(&step.id) {
            v.push(format!(
                "step {} ({} {}) has no done event",
                step.id, step.node, step.action
            ));
        }
    }
    v
}

/// Every agent applied each of its steps exactly once (persisted counters).
pub fn check_agents(sim: &SimFleet, plan: &Plan) -> Vec<String> {
    let mut steps: HashMap<&str, u64> = HashMap::new();
    for s in &plan.steps {
        *steps.entry(s.node.as_str()).or_default() += 1;
    }
    let mut v = Vec::new();
    for slot in sim.agents.iter().flatten() {
        let want = steps.get(slot.id()).copied().unwrap_or(0);
        match slot.applied_count() {
            Some(got) if got == want => {}
            Some(got) => v.push(format!(
                "`{}` applied {got} steps over {} incarnations; its plan has {want}",
                slot.id(),
                slot.incarnations()
            )),
            None => v.push(format!("`{}`'s agent is down at the end", slot.id())),
        }
    }
    v
}

/// Where a run's journal is kept.
#[derive(Debug, Clone)]
pub enum JournalAt {
    /// The single executor's redb journal in this directory.
    Dir(std::path::PathBuf),
    /// An executor group's PostgreSQL database.
    Postgres(String),
}

/// The journal (the executors stopped): every step done, events 1..=last without
/// gaps, as many as watched.
pub async fn check_journal(
    stored: &JournalAt,
    rotation_id: &str,
    plan: &Plan,
    watched: u64,
) -> Vec<String> {
    let journal: Box<dyn Journal> = match stored {
        JournalAt::Dir(dir) => match open_redb(dir).await {
            Ok(j) => Box::new(j),
            Err(e) => return vec![format!("the journal cannot be opened: {e}")],
        },
        JournalAt::Postgres(url) => {
            let url = url.clone();
            match tokio::task::spawn_blocking(move || PgJournal::connect(&url)).await {
                Ok(Ok(j)) => Box::new(j),
                Ok(Err(e)) => return vec![format!("the journal cannot be opened: {e}")],
                Err(e) => return vec![format!("the journal cannot be opened: {e}")],
            }
        }
    };
    // The checks read synchronously; a PostgreSQL journal blocks on its own runtime.
    let (rotation_id, plan) = (rotation_id.to_string(), plan.clone());
    tokio::task::spawn_blocking(move || check_records(&*journal, &rotation_id, &plan, watched))
        .await
        .unwrap_or_else(|e| vec![format!("journal check: {e}")])
}

/// The redb journal in `state_dir`, once the stopped executor lets go of it.
async fn open_redb(state_dir: &Path) -> Result<RedbJournal, JournalError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dir = state_dir.to_path_buf();
        match tokio::task::spawn_blocking(move || RedbJournal::open(&dir))
            .await
            .map_err(JournalError::backend)?
        {
            Err(e) if e.is_already_open() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            opened => return opened,
        }
    }
}

fn check_records(
    journal: &dyn Journal,
    rotation_id: &str,
    plan: &Plan,
    watched: u64,
) -> Vec<String> {
    let mut v = Vec::new();
    match journal.steps(rotation_id) {
        Ok(records) => {
            let forward: HashMap<u64, StepState> = records
                .into_iter()
                .filter(|(_, undo, _)| !undo)
                .map(|(id, _, r)| (id, r.state))
                .collect();
            for step in &plan.steps {
                match forward.get(&step.id) {
                    Some(StepState::Done | StepState::Probed) => {}
                    other => v.push(format!(
                        "journal: step {} ({} {}) is recorded as {other:?}",
                        step.id, step.node, step.action
                    )),
                }
            }
        }
        Err(e) => v.push(format!("journal: cannot read step records: {e}")),
    }
    let mut next = 1;
    loop {
        match journal.events(rotation_id, next, 4096) {
            Ok(batch) if batch.is_empty() => break,
            Ok(batch) => {
                for (seq, _) in batch {
                    if seq != next {
                        v.push(format!("journal: event {next} is missing (next is {seq})"));
                    }
                    next = seq + 1;
                }
            }
            Err(e) => {
                v.push(format!("journal: cannot read events: {e}"));
                break;
            }
        }
    }
    if next - 1 != watched {
        v.push(format!(
            "journal: {} events on disk, {watched} watched",
            next - 1
        ));
    }
    v
}

/// The simulation report's verdict: no undeclared failure, all new, succeeded.
pub fn check_report(report: &SimReport) -> Vec<String> {
    let mut v = Vec::new();
    if report.failed_undeclared > 0 {
        let first = report
            .failures
            .iter()
            .find(|f| !f.declared)
            .map(|f| {
                format!(
                    " (first: {} -> {} during {}: {})",
                    f.client, f.server, f.step, f.error
                )
            })
            .unwrap_or_default();
        v.push(format!(
            "{} undeclared handshake failures{first}",
            report.failed_undeclared
        ));
    }
    if !report.outcome.starts_with("succeeded") {
        v.push(format!("the rotation did not succeed: {}", report.outcome));
    }
    if !report.all_new {
        v.push(format!(
            "not every node ends on the new key only ({} of {} nodes; final handshakes failed: {}; old-root client refused by {}/{})",
            report.nodes_on_new_only,
            report.nodes,
            report.final_failed,
            report.old_key_refused,
            report.old_key_checks
        ));
    }
    v
}

impl Chaos {
    /// Record the violations of a list of checks.
    pub fn record(&self, violations: Vec<String>) {
        for v in violations {
            self.violation(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::parse(
            "<t>",
            r#"{"format": "rollover-plan/1", "ca": "c",
             "steps": [
               {"id": 0, "node": "a", "action": "stage", "wave": 0, "after": []},
               {"id": 1, "node": "b", "action": "switch", "wave": 1, "after": [0]},
               {"id": 2, "node": "b", "action": "finalize", "wave": 2, "after": []}
             ], "disruptions": []}"#,
        )
        .unwrap()
    }

    fn n(seq: u64, what: What) -> Noted {
        Noted { seq, what }
    }

    #[test]
    fn a_clean_log_passes() {
        let log = [
            n(1, What::Started(0)),
            n(2, What::Done(0)),
            n(3, What::Started(1)),
            n(4, What::Other),
            n(5, What::Done(1)),
            n(6, What::Started(2)),
            n(7, What::Done(2)),
            n(8, What::Finished),
        ];
        assert_eq!(check_events(&plan(), &log), Vec::<String>::new());
    }

    #[test]
    fn gaps_early_starts_and_missing_steps_are_found() {
        let log = [
            n(1, What::Started(1)),
            n(3, What::Done(0)),
            n(4, What::Done(0)),
            n(5, What::Finished),
        ];
        let v = check_events(&plan(), &log).join("\n");
        assert!(v.contains("sequence broken"), "{v}");
        assert!(v.contains("step 1 was started"), "{v}");
        assert!(v.contains("more than one done"), "{v}");
        assert!(v.contains("step 2 (b finalize) has no done event"), "{v}");
    }
}
