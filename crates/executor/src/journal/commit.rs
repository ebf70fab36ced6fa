//! [`Committer`]: group commit in front of a [`Journal`]. A writer thread takes every
//! batch queued while the previous commit was in progress, commits them in one durable
//! transaction, then runs their after-commit hooks in order and wakes the submitters.

use std::sync::{Arc, mpsc};

use super::*;

/// Run after a batch is durable, on the writer thread, in submission order.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

struct Submission {
    ops: Vec<Op>,
    after: Option<AfterCommit>,
    ack: Option<tokio::sync::oneshot::Sender<Result<(), JournalError>>>,
}

/// Group commit in front of a [`Journal`]: one writer thread, one durable
/// transaction for every batch queued while the previous one was being written.
#[derive(Clone)]
pub struct Committer {
    journal: Arc<dyn Journal>,
    tx: mpsc::Sender<Submission>,
}

impl Committer {
    /// Start the writer thread. It ends when every clone of the committer is dropped.
    pub fn start(journal: Arc<dyn Journal>) -> Self {
        let (tx, rx) = mpsc::channel::<Submission>();
        let writer = journal.clone();
        std::thread::Builder::new()
            .name("executor-journal".into())
            .spawn(move || write_loop(&*writer, &rx))
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

fn write_loop(journal: &dyn Journal, rx: &mpsc::Receiver<Submission>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let ops: Vec<Op> = batch.iter_mut().flat_map(|s| s.ops.drain(..)).collect();
        let result = journal.commit(&ops);
        if let Err(e) = &result {
            tracing::error!(error = %e, ops = ops.len(), "journal commit failed");
        }
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
