//! The journal is the truth (issue 25): while the journal's store cannot be written
//! for longer than the committer retries, a rotation is never decided in memory alone.
//! It stalls (nothing shown terminal, controls answered UNAVAILABLE), and once the
//! store is back it resumes from the journal and finishes, every step applied once,
//! its events contiguous.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use rollover_executor::journal::{
    CommitRetry, DocKind, Journal, JournalError, MemJournal, Op, RotationMeta, StepRecord,
};
use rollover_executor::rotation::Control;
use rollover_executor::{ApiError, Executor};
use rollover_proto::v1;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

/// A journal whose store can be taken down: every call then fails as unreachable.
#[derive(Default)]
struct Switchable {
    inner: MemJournal,
    down: AtomicBool,
}

impl Switchable {
    fn up(&self) -> Result<(), JournalError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(JournalError::unavailable(std::io::Error::other(
                "connection refused",
            )));
        }
        Ok(())
    }
}

impl Journal for Switchable {
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
        self.up()?;
        self.inner.commit(ops)
    }
    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
        self.up()?;
        self.inner.rotations()
    }
    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
        self.up()?;
        self.inner.rotation(id)
    }
    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
        self.up()?;
        self.inner.document(id, kind)
    }
    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
        self.up()?;
        self.inner.steps(id)
    }
    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        self.up()?;
        self.inner.leaves(id)
    }
    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        self.up()?;
        self.inner.events(id, from, limit)
    }
    fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
        self.up()?;
        self.inner.last_sequence(id)
    }
    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
        self.up()?;
        self.inner.identity()
    }
}

async fn planner() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(rollover_planner::serve(listener, std::future::pending()));
    addr
}

fn stalls(executor: &Executor) -> u64 {
    let text = executor.metrics().render();
    text.lines()
        .find_map(|l| l.strip_prefix("rollover_executor_journal_stalls_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn terminal(state: i32) -> bool {
    use v1::RotationState as S;
    [S::Succeeded, S::Failed, S::Aborted, S::RolledBack]
        .iter()
        .any(|s| *s as i32 == state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_down_past_the_retries_stalls_the_rotation_and_it_resumes_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let topology = mixed_topology(16, 11);
    let world = World::new(&topology);
    let journal = Arc::new(Switchable::default());
    let mut config = config(dir.path(), &world)
        .planner_url(&planner().await)
        .unwrap();
    config.journal = Some(journal.clone());
    // Give up on a batch quickly, so the outage outlasts the retries.
    config.commit_retry = CommitRetry {
        initial: Duration::from_millis(2),
        max_delay: Duration::from_millis(10),
        give_up_after: Duration::from_millis(50),
    };
    let executor = Executor::open(config).unwrap();
    let started = executor
        .start_rotation(v1::StartRotationRequest {
            topology: Some(v1::TopologySource {
                source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                    &topology,
                ))),
            }),
            plan: None,
            options: Some(v1::RotationOptions {
                max_concurrency: 1,
                probe: true,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let id = started.rotation_id;

    // Some steps in, the store goes down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while executor.get_rotation(&id, false).unwrap().steps_done < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    journal.down.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stalls(&executor) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotation never stalled"
        );
        let status = executor.get_rotation(&id, false).unwrap();
        assert!(
            !terminal(status.state),
            "decided without its journal: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Stalled: nothing terminal, and a control is told to come back.
    let status = executor.get_rotation(&id, false).unwrap();
    assert!(!terminal(status.state), "{status:?}");
    let resumed = executor.control(&id, Control::Resume).await;
    assert!(
        matches!(&resumed, Err(ApiError::Unavailable(m)) if m.contains("waits for its journal")),
        "{resumed:?}"
    );
    // A second rotation of the CA is still refused: the first one is active.
    let journaled = journal.inner.rotation(&id).unwrap().unwrap();
    assert!(!journaled.state.is_terminal(), "{journaled:?}");

    journal.down.store(false, Ordering::SeqCst);
    let status = wait_for(
        &executor,
        &id,
        &[v1::RotationState::Succeeded, v1::RotationState::Failed],
    )
    .await;
    assert_eq!(
        status.state,
        v1::RotationState::Succeeded as i32,
        "{status:?}"
    );
    assert_eq!(status.steps_done, status.steps_total);
    world.assert_all(true);
    world.assert_applied_once();
    assert!(
        journal
            .inner
            .rotation(&id)
            .unwrap()
            .unwrap()
            .state
            .is_terminal()
    );

    // The event log has no gap and ends with Finished.
    let events: Vec<v1::RotationEvent> = tokio::time::timeout(
        Duration::from_secs(30),
        executor
            .watch(&id, 0)
            .unwrap()
            .map(|e| e.unwrap())
            .collect(),
    )
    .await
    .unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1, "event {i}");
    }
    assert!(matches!(
        events.last().and_then(|e| e.event.as_ref()),
        Some(v1::rotation_event::Event::Finished(_))
    ));
}
