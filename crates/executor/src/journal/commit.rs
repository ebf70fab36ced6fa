//! [`Committer`]: group commit in front of a [`Journal`]. A writer thread takes every
//! batch queued while the previous commit was in progress, commits them in one durable
//! transaction, then runs their after-commit hooks in order and wakes the submitters.
//!
//! A batch the store cannot take *now* ([`JournalError::is_transient`]: a database
//! blip) is committed again with backoff, in place, so later batches stay behind it
//! and the journal's order is the submission order; the submitters simply wait
//! longer. Only a permanent failure, or one outlasting [`CommitRetry::give_up_after`],
//! reaches them: a rotation never acts on a transition its journal does not hold.

use std::collections::VecDeque;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::*;

/// Run after a batch is durable, on the writer thread, in submission order.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

struct Submission {
    ops: Vec<Op>,
    after: Option<AfterCommit>,
    ack: Option<tokio::sync::oneshot::Sender<Result<(), JournalError>>>,
}

/// How the writer retries a batch the store cannot take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRetry {
    /// Delay before the first retry (doubling, with jitter).
    pub initial: Duration,
    /// Longest delay between retries.
    pub max_delay: Duration,
    /// Stop retrying a batch after this long; its submitters get the error.
    pub give_up_after: Duration,
}

impl Default for CommitRetry {
    /// 20 ms doubling to 1 s, for up to 2 minutes. An executor group's leader steps
    /// down long before that when its database is gone (its lease is not renewed),
    /// and its writer stops with it.
    fn default() -> Self {
        CommitRetry {
            initial: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
            give_up_after: Duration::from_secs(120),
        }
    }
}

impl CommitRetry {
    fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.initial / 2)
            .with_max_delay(self.max_delay / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Group commit in front of a [`Journal`]: one writer thread, one durable
/// transaction for every batch queued while the previous one was being written.
#[derive(Clone)]
pub struct Committer {
    journal: Arc<dyn Journal>,
    tx: mpsc::Sender<Submission>,
}

impl Committer {
    /// Start the writer thread with the default [`CommitRetry`]. It ends when every
    /// clone of the committer is dropped.
    pub fn start(journal: Arc<dyn Journal>) -> Self {
        Self::start_with(journal, CommitRetry::default())
    }

    /// Start the writer thread, retrying transient failures as `retry` says.
    pub fn start_with(journal: Arc<dyn Journal>, retry: CommitRetry) -> Self {
        let (tx, rx) = mpsc::channel::<Submission>();
        let writer = journal.clone();
        std::thread::Builder::new()
            .name("executor-journal".into())
            .spawn(move || write_loop(&*writer, &rx, retry))
            .expect("spawn the journal writer thread");
        Committer { journal, tx }
    }

    /// The journal, for reads.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Queue a batch without waiting. `after` runs once it is durable (not at all if
    /// the commit fails). Batches are committed, and their hooks run, in the order
    /// they were queued.
    pub fn submit(&self, ops: Vec<Op>, after: Option<AfterCommit>) -> CommitTicket {
        let (ack, rx) = tokio::sync::oneshot::channel();
        let sent = self.tx.send(Submission {
            ops,
            after,
            ack: Some(ack),
        });
        CommitTicket(sent.ok().map(|()| rx))
    }

    /// Commit a batch and wait until it is durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), JournalError> {
        self.submit(ops, None).wait().await
    }
}

/// A queued batch; [`CommitTicket::wait`] resolves once it is durable.
pub struct CommitTicket(Option<tokio::sync::oneshot::Receiver<Result<(), JournalError>>>);

impl CommitTicket {
    /// Wait for the batch to be durable.
    pub async fn wait(self) -> Result<(), JournalError> {
        match self.0 {
            Some(rx) => rx.await.unwrap_or(Err(JournalError::WriterStopped)),
            None => Err(JournalError::WriterStopped),
        }
    }
}

fn write_loop(journal: &dyn Journal, rx: &mpsc::Receiver<Submission>, retry: CommitRetry) {
    // Submissions that arrived while a batch was being retried, oldest first.
    let mut queued: VecDeque<Submission> = VecDeque::new();
    let mut open = true;
    loop {
        let first = match queued.pop_front() {
            Some(s) => s,
            None if !open => return,
            None => match rx.recv() {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        batch.extend(queued.drain(..));
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let ops: Vec<Op> = batch.iter_mut().flat_map(|s| s.ops.drain(..)).collect();
        let result = commit_retrying(journal, &ops, retry, || {
            // Keep what arrives meanwhile (it goes after this batch); stop retrying
            // once nobody can submit any more (the executor is gone).
            loop {
                match rx.try_recv() {
                    Ok(s) => queued.push_back(s),
                    Err(mpsc::TryRecvError::Empty) => return true,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        return false;
                    }
                }
            }
        });
        for mut s in batch {
            if result.is_ok()
                && let Some(after) = s.after.take()
            {
                after();
            }
            if let Some(ack) = s.ack.take() {
                let _ = ack.send(result.clone());
            }
        }
    }
}

/// Commit `ops`, again and again while the store is unavailable, the retry window
/// lasts and `go_on()` says someone still waits.
fn commit_retrying(
    journal: &dyn Journal,
    ops: &[Op],
    retry: CommitRetry,
    mut go_on: impl FnMut() -> bool,
) -> Result<(), JournalError> {
    let started = Instant::now();
    let mut delays = retry.delays();
    let mut attempt = 1u32;
    loop {
        let result = journal.commit(ops);
        let e = match result {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!(
                        attempt,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "journal commit succeeded after the store came back"
                    );
                }
                return Ok(());
            }
            Err(e) => e,
        };
        let delay = delays.next().unwrap_or(retry.max_delay);
        if !e.is_transient() || started.elapsed() + delay > retry.give_up_after || !go_on() {
            tracing::error!(error = %e, ops = ops.len(), attempt, "journal commit failed");
            return Err(e);
        }
        if attempt == 1 || attempt.is_power_of_two() {
            tracing::warn!(error = %e, ops = ops.len(), attempt, "journal store unavailable; retrying the commit");
        }
        std::thread::sleep(delay);
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A journal whose first `failures` commits fail as `error` makes them.
    struct Flaky {
        inner: MemJournal,
        failures: AtomicU32,
        transient: bool,
    }

    impl Journal for Flaky {
        fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                let e = std::io::Error::other("connection refused");
                return Err(if self.transient {
                    JournalError::unavailable(e)
                } else {
                    JournalError::backend(e)
                });
            }
            self.inner.commit(ops)
        }
        fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
            self.inner.rotations()
        }
        fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
            self.inner.rotation(id)
        }
        fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
            self.inner.document(id, kind)
        }
        fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
            self.inner.steps(id)
        }
        fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
            self.inner.leaves(id)
        }
        fn events(
            &self,
            id: &str,
            from: u64,
            limit: usize,
        ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
            self.inner.events(id, from, limit)
        }
        fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
            self.inner.last_sequence(id)
        }
        fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
            self.inner.identity()
        }
    }

    fn flaky(failures: u32, transient: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: MemJournal::default(),
            failures: AtomicU32::new(failures),
            transient,
        })
    }

    fn event(seq: u64) -> Op {
        Op::Event {
            rotation: "r".into(),
            seq,
            data: vec![seq as u8],
        }
    }

    const QUICK: CommitRetry = CommitRetry {
        initial: Duration::from_millis(2),
        max_delay: Duration::from_millis(10),
        give_up_after: Duration::from_secs(30),
    };

    #[tokio::test]
    async fn a_store_that_comes_back_takes_the_batch_and_later_ones_in_order() {
        let journal = flaky(5, true);
        let committer = Committer::start_with(journal.clone(), QUICK);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tickets: Vec<_> = (1..=3)
            .map(|seq| {
                let order = order.clone();
                committer.submit(
                    vec![event(seq)],
                    Some(Box::new(move || order.lock().unwrap().push(seq))),
                )
            })
            .collect();
        for t in tickets {
            t.wait().await.expect("committed once the store is back");
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3]);
        assert_eq!(journal.last_sequence("r").unwrap(), 3);
        assert_eq!(journal.failures.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried_and_runs_no_hook() {
        let journal = flaky(1, false);
        let committer = Committer::start_with(journal.clone(), QUICK);
        let ran = Arc::new(AtomicU32::new(0));
        let hook = {
            let ran = ran.clone();
            Box::new(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
        };
        let result = committer.submit(vec![event(1)], Some(hook)).wait().await;
        assert!(
            matches!(result, Err(JournalError::Backend(_))),
            "{result:?}"
        );
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert_eq!(journal.last_sequence("r").unwrap(), 0);
        // The next batch goes through.
        committer.commit(vec![event(1)]).await.unwrap();
    }

    #[tokio::test]
    async fn a_store_down_past_the_window_fails_the_batch() {
        let journal = flaky(u32::MAX, true);
        let retry = CommitRetry {
            give_up_after: Duration::from_millis(50),
            ..QUICK
        };
        let committer = Committer::start_with(journal.clone(), retry);
        let result = committer.commit(vec![event(1)]).await;
        assert!(
            result.as_ref().is_err_and(JournalError::is_transient),
            "{result:?}"
        );
    }
}
