//! [`Tails`]: one poller per rotation for every watch a follower serves from the
//! journal. A follower's watchers would otherwise each poll the shared database
//! (1,000 watchers of one rotation made thousands of transactions a second on the
//! database the leader needs for its lease). Here one task per watched rotation
//! reads the journal's last event sequence (and whether the rotation ended) every
//! poll period and publishes it; a watcher reads events only once there are new ones
//! for it. The poller stops when its last watcher leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::ApiError;
use crate::journal::Journal;

/// What the journal says of a rotation's end of log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tailed {
    /// Its last event's sequence number.
    pub last_sequence: u64,
    /// Whether its record is terminal (read before the sequence: a terminal record
    /// means the Finished event is at or before `last_sequence`).
    pub terminal: bool,
}

/// The pollers of one reader, by rotation id.
#[derive(Default)]
pub(crate) struct Tails {
    polling: Mutex<HashMap<String, watch::Receiver<Tailed>>>,
}

impl Tails {
    /// A view of rotation `id`'s end of log, polled every `every` by one task shared
    /// with every other watcher of it. Must be called within a tokio runtime.
    pub(crate) fn follow(
        self: &Arc<Self>,
        journal: &Arc<dyn Journal>,
        id: &str,
        every: Duration,
    ) -> watch::Receiver<Tailed> {
        let mut polling = self.polling.lock().expect("tails lock");
        if let Some(rx) = polling.get(id)
            && rx.has_changed().is_ok()
        {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Tailed::default());
        polling.insert(id.to_string(), rx.clone());
        let (tails, journal, id) = (self.clone(), journal.clone(), id.to_string());
        tokio::spawn(async move { tails.poll(journal, id, tx, every).await });
        rx
    }

    async fn poll(
        self: Arc<Self>,
        journal: Arc<dyn Journal>,
        id: String,
        tx: watch::Sender<Tailed>,
        every: Duration,
    ) {
        tracing::debug!(rotation_id = %id, "polling the journal for a follower's watchers");
        loop {
            let read = {
                let (journal, id) = (journal.clone(), id.clone());
                tokio::task::spawn_blocking(move || -> Result<Tailed, ApiError> {
                    let terminal = journal
                        .rotation(&id)?
                        .is_some_and(|m| m.state.is_terminal());
                    let last_sequence = journal.last_sequence(&id)?;
                    Ok(Tailed {
                        last_sequence,
                        terminal,
                    })
                })
                .await
            };
            match read {
                Ok(Ok(tailed)) => {
                    tx.send_if_modified(|t| std::mem::replace(t, tailed) != tailed);
                }
                // A store that is down now: the watchers wait, the poller tries again.
                Ok(Err(e)) => {
                    tracing::warn!(rotation_id = %id, error = %e, "cannot poll the journal")
                }
                Err(e) => tracing::warn!(rotation_id = %id, error = %e, "journal poll task failed"),
            }
            tokio::time::sleep(every).await;
            // The map holds one receiver: with no other, nobody watches any more.
            let mut polling = self.polling.lock().expect("tails lock");
            if tx.receiver_count() <= 1 {
                polling.remove(&id);
                return;
            }
        }
    }
}
