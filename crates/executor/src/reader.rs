//! [`JournalReader`]: rotations as a journal holds them, read without running them.
//! A follower of an executor group on PostgreSQL answers GetRotation, ListRotations
//! and WatchRotation with it from the shared journal ([`crate::forward`]), so reads
//! keep working while no executor leads (a leader died and its lease has not expired
//! yet), and cost the leader nothing.
//!
//! It only ever calls the journal's reads: the journal is the leader's to write, and a
//! read needs no epoch. A status is counted as a restarted executor counts it
//! (`StepRecords`, `ProbeTally` in `rotation/records.rs`) and put on the wire by the
//! leader's own code (`wire::status_from`); list pages and their tokens are the
//! leader's (`operations::page_of`). What it cannot know: the leader's steps in flight
//! are counted as the steps journaled as started and not yet answered. Each rotation's
//! plan (written once) and its probe counts (read on from the last event counted) are
//! kept between calls.
//!
//! A watch replays the journal's events from the sequence asked for, then waits for new
//! ones, and ends after the Finished event, as the leader's does. New events are looked
//! for every [`WATCH_POLL`] by one poller per rotation shared by all its watchers
//! ([`crate::tail`]), so the database's load does not grow with the watchers.
//! The journal commits a rotation's events in sequence order, each batch with the
//! records it goes with, so polling for the events after the last one sent misses
//! none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollover_core::Plan;
use rollover_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::journal::{DocKind, Journal, JournalError, RotationMeta};
use crate::operations::{ListPosition, RotationPage, page_of, send_journaled};
use crate::rotation::{ProbeTally, Snapshot, StepRecords};
use crate::tail::Tails;
use crate::wire::status_from;

/// How often a watch served from the journal looks for new events.
pub const WATCH_POLL: Duration = Duration::from_millis(250);

/// Rotations remembered between calls (their plan, their probe counts); past it the
/// memory starts afresh.
const REMEMBERED: usize = 4096;

/// What is kept of a rotation between calls.
struct Known {
    plan: Plan,
    wave_of: Vec<u32>,
    waves_total: u32,
    probes: Mutex<ProbeTally>,
}

/// Reads rotations from a journal another executor writes. Every method blocks on
/// the journal except [`JournalReader::watch`]; call them off the async threads
/// (`spawn_blocking`), as [`crate::forward::Forwarder`] does.
pub struct JournalReader {
    journal: Arc<dyn Journal>,
    known: Mutex<HashMap<String, Arc<Known>>>,
    tails: Arc<Tails>,
}

impl std::fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReader").finish_non_exhaustive()
    }
}

impl JournalReader {
    /// A reader of `journal` (whose writes it never calls).
    pub fn new(journal: Arc<dyn Journal>) -> JournalReader {
        JournalReader {
            journal,
            known: Mutex::new(HashMap::new()),
            tails: Arc::default(),
        }
    }

    /// Rotation `id`'s plan and probe counts, read once.
    fn known(&self, id: &str) -> Result<Arc<Known>, ApiError> {
        if let Some(known) = self.known.lock().expect("reader lock").get(id) {
            return Ok(known.clone());
        }
        let corrupt = |reason: String| {
            ApiError::Journal(JournalError::Corrupt {
                what: format!("rotation {id}'s plan"),
                reason,
            })
        };
        let doc = self
            .journal
            .document(id, DocKind::Plan)?
            .ok_or_else(|| corrupt("missing".into()))?;
        let plan: Plan = serde_json::from_slice(&doc).map_err(|e| corrupt(e.to_string()))?;
        let known = Arc::new(Known {
            wave_of: plan.steps.iter().map(|s| s.wave).collect(),
            waves_total: plan.wave_count(),
            plan,
            probes: Mutex::new(ProbeTally::default()),
        });
        let mut all = self.known.lock().expect("reader lock");
        if all.len() >= REMEMBERED {
            all.clear();
        }
        all.insert(id.to_string(), known.clone());
        Ok(known)
    }

    /// The status of the rotation `meta` is the record of.
    fn status(
        &self,
        meta: RotationMeta,
        include_plan: bool,
    ) -> Result<v1::RotationStatus, ApiError> {
        let id = meta.id.clone();
        let known = self.known(&id)?;
        let records = StepRecords::read(self.journal.as_ref(), &id, &known.plan)?;
        let (steps_done, current_wave) = records.progress(&known.wave_of, known.waves_total);
        let steps_running = if meta.state.is_terminal() {
            0
        } else {
            records.started(meta.rolling_back)
        };
        // Counted after the records above, so the status's last sequence covers them.
        let probes = {
            let mut tally = known.probes.lock().expect("probe tally lock");
            tally.read_on(self.journal.as_ref(), &id)?;
            *tally
        };
        let snapshot = Snapshot {
            meta,
            steps_done,
            steps_running,
            current_wave,
            probes_total: probes.total,
            probes_failed: probes.failed,
        };
        Ok(status_from(
            snapshot,
            &known.plan,
            known.waves_total,
            probes.next - 1,
            include_plan,
        ))
    }

    /// The status of one rotation (GetRotation).
    pub fn get_rotation(
        &self,
        id: &str,
        include_plan: bool,
    ) -> Result<v1::RotationStatus, ApiError> {
        ApiError::require_rotation_id(id)?;
        let meta = self
            .journal
            .rotation(id)?
            .ok_or_else(|| ApiError::no_rotation(id))?;
        self.status(meta, include_plan)
    }

    /// One page of rotations, newest first, as [`crate::Executor::list_page`] pages
    /// them.
    pub fn list_page(
        &self,
        active_only: bool,
        size: usize,
        after: Option<ListPosition>,
    ) -> Result<RotationPage, ApiError> {
        let keyed = self
            .journal
            .rotations()?
            .into_iter()
            .filter(|m| !active_only || !m.state.is_terminal())
            .map(|m| ((m.created_ms, m.id.clone()), m))
            .collect();
        let (page, next) = page_of(keyed, size, after.as_ref());
        let statuses = page
            .into_iter()
            .map(|meta| self.status(meta, false))
            .collect::<Result<_, _>>()?;
        Ok((statuses, next))
    }

    /// A stream of rotation `id`'s events from `from_sequence`: the journal's, then
    /// new ones as they are journaled (looked for every [`WATCH_POLL`]); it ends after
    /// the Finished event, or when the rotation has ended and no event is left at or
    /// after `from_sequence`. Must be called within a tokio runtime; the journal is
    /// read on its blocking threads.
    pub async fn watch(
        self: &Arc<Self>,
        id: &str,
        from_sequence: u64,
    ) -> Result<ReceiverStream<Result<v1::RotationEvent, ApiError>>, ApiError> {
        ApiError::require_rotation_id(id)?;
        let id = id.to_string();
        let first = self.blocking({
            let id = id.clone();
            move |r| r.journal.rotation(&id).map_err(ApiError::from)
        });
        if first.await?.is_none() {
            return Err(ApiError::no_rotation(&id));
        }
        let (tx, rx) = mpsc::channel(256);
        let this = self.clone();
        let mut tail = self.tails.follow(&self.journal, &id, WATCH_POLL);
        tokio::spawn(async move {
            let mut next = from_sequence.max(1);
            loop {
                let read = this.blocking({
                    let id = id.clone();
                    move |r| Ok(r.journal.events(&id, next, 1024)?)
                });
                let batch = match read.await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if !batch.is_empty() {
                    if !send_journaled(&tx, batch, &mut next).await {
                        return;
                    }
                    continue;
                }
                // Caught up: wait for the shared poller to see an event for us, or
                // the end (a Rollback that restarts it makes the record active
                // again first).
                let seen = tokio::select! {
                    () = tx.closed() => return,
                    seen = tail.wait_for(|t| t.last_sequence >= next || t.terminal) => seen,
                };
                match seen.map(|t| *t) {
                    Ok(t) if t.last_sequence >= next => {}
                    // Ended, and no event left to send: none will come.
                    Ok(_) | Err(_) => return,
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Run `f` on this reader on a blocking thread.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&JournalReader) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| ApiError::Journal(JournalError::backend(e)))?
    }

    /// [`JournalReader::get_rotation`] on a blocking thread.
    pub async fn get_rotation_async(
        self: &Arc<Self>,
        id: String,
        include_plan: bool,
    ) -> Result<v1::RotationStatus, ApiError> {
        self.blocking(move |r| r.get_rotation(&id, include_plan))
            .await
    }

    /// [`JournalReader::list_page`] on a blocking thread.
    pub async fn list_page_async(
        self: &Arc<Self>,
        active_only: bool,
        size: usize,
        after: Option<ListPosition>,
    ) -> Result<RotationPage, ApiError> {
        self.blocking(move |r| r.list_page(active_only, size, after))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{MemJournal, Op, StepRecord};
    use crate::rotation::Control;
    use crate::{Executor, ExecutorConfig, instant_fleet};
    use futures::StreamExt;
    use rollover_proto::v1::rotation_event::Event;

    /// A journal the reader may read and must never write; it counts the reads.
    struct ReadOnly(Arc<MemJournal>, std::sync::atomic::AtomicU64);

    impl ReadOnly {
        fn new(journal: Arc<MemJournal>) -> ReadOnly {
            ReadOnly(journal, std::sync::atomic::AtomicU64::new(0))
        }

        fn reads(&self) -> u64 {
            self.1.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn count(&self) {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Journal for ReadOnly {
        fn commit(&self, _: &[Op]) -> Result<(), JournalError> {
            panic!("the reader wrote to the journal");
        }
        fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
            self.count();
            self.0.rotations()
        }
        fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
            self.count();
            self.0.rotation(id)
        }
        fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
            self.0.document(id, kind)
        }
        fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
            self.0.steps(id)
        }
        fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
            self.0.leaves(id)
        }
        fn events(
            &self,
            id: &str,
            from: u64,
            limit: usize,
        ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
            self.count();
            self.0.events(id, from, limit)
        }
        fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
            self.count();
            self.0.last_sequence(id)
        }
        fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
            self.0.identity()
        }
    }

    fn start_request(topology: &rollover_core::Topology) -> v1::StartRotationRequest {
        let plan = rollover_core::plan_waves(&rollover_core::Fleet::new(topology));
        v1::StartRotationRequest {
            topology: Some(v1::TopologySource {
                source: Some(v1::topology_source::Source::Topology(v1::Topology::from(
                    topology,
                ))),
            }),
            plan: Some(v1::PlanSource {
                source: Some(v1::plan_source::Source::Plan(v1::Plan::from(&plan))),
            }),
            options: Some(v1::RotationOptions {
                max_concurrency: 2,
                ..Default::default()
            }),
            request_id: String::new(),
        }
    }

    /// Another executor runs a rotation on a journal; the reader, on the same journal,
    /// follows its events to the end across a pause (by polling), then answers
    /// GetRotation and ListRotations exactly as the executor does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_answers_as_the_executor_that_writes_the_journal() {
        // A bound, so that a reader that never ends its watch fails the test instead
        // of hanging the suite.
        tokio::time::timeout(
            std::time::Duration::from_secs(120),
            reader_answers_as_the_executor(),
        )
        .await
        .expect("the reader's test did not finish within 120 s");
    }

    async fn reader_answers_as_the_executor() {
        let topology = instant_fleet::start(24).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(MemJournal::default());
        let mut config = ExecutorConfig::new(dir.path());
        config.journal = Some(journal.clone());
        let executor = Executor::open(config).unwrap();
        let reader = Arc::new(JournalReader::new(Arc::new(ReadOnly::new(journal))));

        let id = executor
            .start_rotation(start_request(&topology))
            .await
            .unwrap()
            .rotation_id;
        executor
            .control(&id, Control::Pause("hold on".into()))
            .await
            .unwrap();
        let paused = reader.get_rotation_async(id.clone(), false).await.unwrap();
        assert_eq!(paused.state, v1::RotationState::Paused as i32, "{paused:?}");
        assert_eq!(paused.paused_reason.as_deref(), Some("hold on"));

        let mut events = reader.watch(&id, 0).await.unwrap();
        let mut seen = Vec::new();
        // Every event journaled so far, up to the pause.
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            seen.push(event.sequence);
            if matches!(event.event, Some(Event::Paused(_))) {
                break;
            }
        }
        executor.control(&id, Control::Resume).await.unwrap();
        // Then the rest, found by polling, to the Finished event that ends the stream.
        let mut last = None;
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            seen.push(event.sequence);
            last = event.event;
        }
        assert!(matches!(last, Some(Event::Finished(_))), "{last:?}");
        let journaled = executor.get_rotation(&id, false).unwrap().last_sequence;
        assert_eq!(seen, (1..=journaled).collect::<Vec<_>>());

        let theirs = executor.get_rotation(&id, true).unwrap();
        assert_eq!(theirs.state, v1::RotationState::Succeeded as i32);
        assert_eq!(
            reader.get_rotation_async(id.clone(), true).await.unwrap(),
            theirs
        );
        assert_eq!(
            reader.list_page_async(false, 10, None).await.unwrap(),
            executor.list_page(false, 10, None)
        );
        assert!(reader.list_page(true, 10, None).unwrap().0.is_empty());

        // A watch of an ended rotation replays from where it is asked and ends; past
        // the end it ends at once.
        let tail: Vec<_> = reader.watch(&id, journaled).await.unwrap().collect().await;
        assert_eq!(tail.len(), 1);
        let past: Vec<_> = reader
            .watch(&id, journaled + 1)
            .await
            .unwrap()
            .collect()
            .await;
        assert!(past.is_empty());

        assert!(matches!(
            reader.get_rotation("nope", false),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            reader.get_rotation("", false),
            Err(ApiError::Invalid(_))
        ));
        assert!(matches!(
            reader.watch("nope", 0).await,
            Err(ApiError::NotFound(_))
        ));
        executor.shutdown();
    }

    /// 1,000 watchers of a paused rotation on one follower: once they have caught up,
    /// the journal is read by one poller (two reads per poll period), not by each of
    /// them; on Resume every watcher still sees the rotation to its end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchers_of_one_rotation_share_one_poller() {
        const WATCHERS: usize = 1000;
        let topology = instant_fleet::start(8).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(MemJournal::default());
        let mut config = ExecutorConfig::new(dir.path());
        config.journal = Some(journal.clone());
        let executor = Executor::open(config).unwrap();
        let counted = Arc::new(ReadOnly::new(journal));
        let reader = Arc::new(JournalReader::new(counted.clone()));
        let id = executor
            .start_rotation(start_request(&topology))
            .await
            .unwrap()
            .rotation_id;
        executor
            .control(&id, Control::Pause("hold on".into()))
            .await
            .unwrap();
        let mut streams = Vec::new();
        for _ in 0..WATCHERS {
            let mut events = reader.watch(&id, 0).await.unwrap();
            while let Some(event) = events.next().await {
                if matches!(event.unwrap().event, Some(Event::Paused(_))) {
                    break;
                }
            }
            streams.push(events);
        }
        // Caught up: count the reads over a number of poll periods.
        let periods = 6u32;
        let before = counted.reads();
        tokio::time::sleep(WATCH_POLL * periods).await;
        let reads = counted.reads() - before;
        eprintln!(
            "{WATCHERS} watchers of a paused rotation: {reads} journal reads in {periods} poll \
             periods ({:.1}/s)",
            reads as f64 / (WATCH_POLL * periods).as_secs_f64()
        );
        assert!(
            reads <= 2 * u64::from(periods + 2),
            "{reads} reads in {periods} periods: the watchers poll on their own"
        );
        executor.control(&id, Control::Resume).await.unwrap();
        let ends = futures::future::join_all(streams.into_iter().map(|s| async move {
            let all: Vec<_> = s.collect().await;
            all.last()
                .and_then(|e| e.as_ref().ok())
                .is_some_and(|e| matches!(e.event, Some(Event::Finished(_))))
        }));
        let ends = tokio::time::timeout(std::time::Duration::from_secs(60), ends)
            .await
            .expect("every watcher reaches the end");
        assert!(ends.iter().all(|&finished| finished));
        executor.shutdown();
    }
}
