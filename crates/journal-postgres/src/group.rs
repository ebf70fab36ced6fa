//! [`Member`]: one executor of a group sharing a PostgreSQL journal. It waits for the
//! lease, leads one term (opens the journal's rotations fenced by the term's epoch,
//! resumes the unfinished ones, serves the API), and when the lease is lost it stops
//! every runner and follows again. `rollover serve executor --journal postgres://`
//! and the simulator's executor groups both run this loop, so the failover a
//! simulation exercises is the one operators run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rollover_executor::sealed::{JournalKey, SealedJournal};
use rollover_executor::{Executor, ExecutorConfig, Journal};

use crate::{Lease, PgError, PgJournal};

/// A boxed error from the caller's side of a term (building the config, serving).
pub type TermError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves when the term must end (lease lost, or the member stops).
pub type TermEnd = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One executor of a group.
pub struct Member {
    /// The journal (unfenced; each term fences its own handle).
    pub journal: PgJournal,
    /// Seals private keys at rest, if given.
    pub key: Option<JournalKey>,
    /// This member's lease.
    pub lease: Lease,
}

/// How a term ended.
enum Ended {
    /// The member was told to stop.
    Stopped,
    /// The lease was lost (deposed, or the database unreachable for too long).
    Lost(PgError),
}

impl Member {
    /// Lead whenever elected until `stop` resolves. While it waits for the lease,
    /// `follow()` runs (e.g. serving the API: reads from the journal, the rest
    /// forwarded to the leader); once elected, it goes on while the executor opens,
    /// and is dropped just before `serve` runs. For each term, `make_config` builds the
    /// executor's configuration for the term's epoch (the journal and the epoch are
    /// filled in here), and `serve` serves the opened executor until the [`TermEnd`]
    /// it is given resolves; it must stop the executor's runners before it returns
    /// (`rollover_executor::serve` does). A term whose executor cannot open gives the
    /// lease up and waits one lease length, so another member can try.
    pub async fn run<C, S, F, W, WF, Stop>(
        &self,
        mut make_config: C,
        mut serve: S,
        mut follow: W,
        stop: Stop,
    ) -> Result<(), PgError>
    where
        C: FnMut(i64) -> Result<ExecutorConfig, TermError>,
        S: FnMut(i64, Executor, TermEnd) -> F,
        F: Future<Output = Result<(), TermError>>,
        W: FnMut() -> WF,
        WF: Future<Output = Result<(), TermError>>,
        Stop: Future<Output = ()> + Send + 'static,
    {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = stop_tx.send(true);
        });
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        loop {
            tracing::info!(holder = %self.lease.config().holder, "executor following: waiting for the lease");
            // Boxed so that it can be dropped at the right moment: it keeps serving
            // (reads from the journal) until this member's own API is about to bind.
            let mut following = Some(Box::pin(follow()));
            let elected = alongside(&mut following, self.lease.acquire(stopped())).await;
            let Some(epoch) = elected else {
                return Ok(());
            };
            tracing::info!(epoch, "executor leading");
            let term: Arc<dyn Journal> = Arc::new(SealedJournal::new(
                Arc::new(self.journal.fenced(epoch)),
                self.key.clone(),
            ));
            let mut config = make_config(epoch).map_err(PgError::Term)?;
            config.journal = Some(term);
            // Epochs start at 1 and only grow (the lease row's sequence).
            config.leader_epoch = u64::try_from(epoch).unwrap_or_default();
            // Opening loads every journaled rotation (seconds for a long history): the
            // follower goes on answering meanwhile, so the address never refuses.
            let opened = alongside(
                &mut following,
                tokio::task::spawn_blocking(move || Executor::open(config)),
            )
            .await;
            // The leader's API takes the address over.
            drop(following);
            let opened = match opened {
                Ok(opened) => opened.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let executor = match opened {
                Ok(executor) => executor,
                Err(why) => {
                    // The database may be failing us: let another executor try.
                    tracing::warn!(epoch, error = %why, "executor cannot lead; stepping down");
                    let _ = self.lease.release(epoch).await;
                    tokio::select! {
                        () = tokio::time::sleep(self.lease.config().ttl) => continue,
                        () = stopped() => return Ok(()),
                    }
                }
            };
            let (ended_tx, mut ended_rx) = tokio::sync::oneshot::channel();
            let until: TermEnd = {
                let stopped = stopped();
                let lease = self.lease.clone();
                let leader = executor.clone();
                Box::pin(async move {
                    let ended = tokio::select! {
                        e = lease.hold(epoch) => Ended::Lost(e),
                        () = stopped => Ended::Stopped,
                    };
                    if let Ended::Lost(_) = ended {
                        // Another executor may lead already: stop acting now, not once
                        // the API has drained (a watch stream would hold it open).
                        leader.step_down();
                    }
                    let _ = ended_tx.send(ended);
                })
            };
            serve(epoch, executor, until).await.map_err(PgError::Term)?;
            match ended_rx.try_recv() {
                Ok(Ended::Lost(e)) => {
                    tracing::warn!(epoch, error = %e, "executor lost the lease; following again");
                }
                Ok(Ended::Stopped) | Err(_) => {
                    if let Err(e) = self.lease.release(epoch).await {
                        tracing::warn!(epoch, error = %e, "executor could not release the lease");
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// Await `work` while the follower (`following`, while there is one) keeps serving
/// beside it. A follower that stops first is logged if it failed and dropped, and
/// `work` goes on alone.
async fn alongside<T, F>(following: &mut Option<Pin<Box<F>>>, work: impl Future<Output = T>) -> T
where
    F: Future<Output = Result<(), TermError>>,
{
    tokio::pin!(work);
    loop {
        let Some(serving) = following.as_mut() else {
            return work.await;
        };
        let followed = tokio::select! {
            done = &mut work => return done,
            followed = serving => followed,
        };
        if let Err(e) = followed {
            tracing::warn!(error = %e, "serving as a follower failed");
        }
        *following = None;
    }
}
