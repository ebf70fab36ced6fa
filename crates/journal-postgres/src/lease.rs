//! [`Lease`]: one row that names the leading executor, with an increasing epoch.
//!
//! An executor takes the lease when it is free or expired, which bumps the epoch;
//! the leader renews it well before it expires and steps down as soon as a renewal
//! fails or its own clock says the lease may have expired. The epoch is the fencing
//! token: journal writes and agent calls carry it, and whoever sees a higher one
//! refuses the lower. Expiry is judged by the database's clock alone, so executors'
//! clocks need not agree.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::PgError;

/// The lease row's name (one executor group per database).
pub const LEASE_NAME: &str = "executor";

/// How an executor takes part in the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Who this executor is (shown to the others; unique per process).
    pub holder: String,
    /// Where this executor serves its API (shown to the others and to operators).
    pub address: String,
    /// How long a lease lasts without renewal (`--lease`).
    pub ttl: Duration,
    /// How often the leader renews, and a follower tries to take it (`--lease-renew`).
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// Defaults: a 6 s lease renewed every 2 s, so a dead leader is replaced within
    /// about 8 s.
    pub fn new(holder: impl Into<String>, address: impl Into<String>) -> Self {
        LeaseConfig {
            holder: holder.into(),
            address: address.into(),
            ttl: Duration::from_secs(6),
            renew_every: Duration::from_secs(2),
        }
    }
}

/// Who leads, as the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The current epoch.
    pub epoch: i64,
    /// The holder's name.
    pub holder: String,
    /// The holder's API address.
    pub address: String,
    /// Whether the lease has expired (nobody leads until someone takes it).
    pub expired: bool,
}

/// The lease of one executor process, on its own small pool (renewals must not
/// queue behind journal writes). Clones share the pool.
#[derive(Clone)]
pub struct Lease {
    pool: Pool,
    config: LeaseConfig,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Lease {
    /// A lease on the database at `url`. Must be called within a tokio runtime (its
    /// connections run there). The schema must exist (`PgJournal::connect` makes it).
    pub fn new(url: &str, config: LeaseConfig) -> Result<Lease, PgError> {
        Ok(Lease {
            pool: crate::pool::pool(url, 2)?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Take the lease if it is free or expired: `Some(new epoch)`, or `None` when
    /// another executor holds it.
    pub async fn try_acquire(&self) -> Result<Option<i64>, PgError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "INSERT INTO rollover_lease (name, epoch, holder, address, expires_at)
                 VALUES ($1, 1, $2, $3, now() + make_interval(secs => $4))
                 ON CONFLICT (name) DO UPDATE
                 SET epoch = rollover_lease.epoch + 1, holder = excluded.holder,
                     address = excluded.address, expires_at = excluded.expires_at
                 WHERE rollover_lease.expires_at < now()
                 RETURNING epoch",
                &[
                    &LEASE_NAME,
                    &self.config.holder,
                    &self.config.address,
                    &secs(self.config.ttl),
                ],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Extend the lease held with `epoch`; `false` when it is no longer ours.
    pub async fn renew(&self, epoch: i64) -> Result<bool, PgError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE rollover_lease SET expires_at = now() + make_interval(secs => $3)
                 WHERE name = $1 AND epoch = $2 AND holder = $4",
                &[
                    &LEASE_NAME,
                    &epoch,
                    &secs(self.config.ttl),
                    &self.config.holder,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Give the lease up (a graceful shutdown), so a follower takes over at once.
    pub async fn release(&self, epoch: i64) -> Result<(), PgError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE rollover_lease SET expires_at = '-infinity'
                 WHERE name = $1 AND epoch = $2 AND holder = $3",
                &[&LEASE_NAME, &epoch, &self.config.holder],
            )
            .await?;
        Ok(())
    }

    /// Who leads now, if anyone ever did.
    pub async fn current(&self) -> Result<Option<Leadership>, PgError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT epoch, holder, address, expires_at < now() FROM rollover_lease
                 WHERE name = $1",
                &[&LEASE_NAME],
            )
            .await?;
        Ok(row.map(|r| Leadership {
            epoch: r.get(0),
            holder: r.get(1),
            address: r.get(2),
            expired: r.get(3),
        }))
    }

    /// Wait until this executor takes the lease (or `stop` resolves: `None`).
    pub async fn acquire<F: std::future::Future<Output = ()>>(&self, stop: F) -> Option<i64> {
        tokio::pin!(stop);
        let mut last_holder: Option<String> = None;
        loop {
            match self.try_acquire().await {
                Ok(Some(epoch)) => return Some(epoch),
                Ok(None) => {
                    if let Ok(Some(current)) = self.current().await
                        && last_holder.as_deref() != Some(current.holder.as_str())
                    {
                        tracing::info!(
                            leader = %current.holder, address = %current.address,
                            epoch = current.epoch, "following"
                        );
                        last_holder = Some(current.holder);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot reach the lease"),
            }
            tokio::select! {
                () = &mut stop => return None,
                () = tokio::time::sleep(self.config.renew_every) => {}
            }
        }
    }

    /// Renew the lease held with `epoch` until it is lost: returns when a renewal
    /// says another executor took it, or when no renewal succeeded for long enough
    /// that the lease may have expired (the database is unreachable). The caller
    /// must stop acting as leader at once.
    pub async fn hold(&self, epoch: i64) -> PgError {
        let mut renewed = Instant::now();
        // Step down before the lease can expire for the others: a renewal must land
        // within `ttl`, and acting on a stale belief for `renew_every` is the slack.
        let give_up = self.config.ttl.saturating_sub(self.config.renew_every);
        loop {
            tokio::time::sleep(self.config.renew_every).await;
            let attempt = tokio::time::timeout(self.config.renew_every, self.renew(epoch)).await;
            match attempt {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    let current = match self.current().await {
                        Ok(Some(l)) => l.epoch,
                        _ => 0,
                    };
                    return PgError::Deposed {
                        current,
                        mine: epoch,
                    };
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                Err(_) => tracing::warn!("lease renewal timed out"),
            }
            if renewed.elapsed() >= give_up {
                return PgError::Runtime(format!(
                    "lease not renewed for {:.1} s: stepping down",
                    renewed.elapsed().as_secs_f64()
                ));
            }
        }
    }
}
