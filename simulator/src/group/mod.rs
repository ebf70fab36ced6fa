//! An executor group on PostgreSQL in the simulation (`--journal postgres://...
//! --executors N`): N executors, each a [`Member`] of the same group loop that
//! `rollover serve executor --journal` runs, each with its own journal handle and
//! lease on the shared database, each reaching the database through its own
//! [`CutProxy`]. One leads and serves the API on a fresh loopback port; the
//! simulator follows whoever leads. A chaotic run kills the leader (its lease left
//! to expire, a new incarnation started as a follower) or cuts its database
//! connections (for longer than its lease, or in short blips), or slows every query
//! down, and counts the changes of leader.

pub mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rollover_executor::{Executor, ExecutorConfig, ServeOptions};
use rollover_journal_postgres::{Lease, LeaseConfig, Member, PgJournal, TermEnd, TermError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::SimError;
use proxy::{CutProxy, Slowness, through, upstream_of};

/// Longest wait for a (new) leader.
pub const ELECTION_DEADLINE: Duration = Duration::from_secs(60);

/// An executor group to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOptions {
    /// The database (`postgres://user@host:port/db`), shared by the members. It
    /// should be empty: the schema is created, and the simulation's rotation stays.
    pub url: String,
    /// How many executors.
    pub executors: usize,
    /// Lease length (short, so a simulated failover takes seconds).
    pub lease: Duration,
    /// Lease renewal period.
    pub renew: Duration,
    /// Hold everything each executor sends its database back up to this long
    /// (`postgres-slow=D`; zero: no delay).
    pub db_delay: Duration,
    /// The seed of those delays.
    pub seed: u64,
}

impl GroupOptions {
    /// `executors` executors on `url`, with a 1.5 s lease renewed every 0.5 s.
    pub fn new(url: impl Into<String>, executors: usize) -> GroupOptions {
        GroupOptions {
            url: url.into(),
            executors,
            lease: Duration::from_millis(1500),
            renew: Duration::from_millis(500),
            db_delay: Duration::ZERO,
            seed: 0,
        }
    }
}

/// A schema of its own for one simulated run, so that runs on one database never
/// see each other's rotations or executor identity; dropped with [`RunSchema::drop_now`].
pub struct RunSchema {
    /// The group's options, their URL selecting the schema (`search_path`).
    pub options: GroupOptions,
    name: String,
    admin: String,
}

impl GroupOptions {
    /// Create a fresh schema named after `seed` and this process; options whose URL
    /// selects it.
    pub async fn fresh_schema(&self, seed: u64) -> Result<RunSchema, SimError> {
        if self.url.contains("options=") {
            return Err(SimError::Setup(format!(
                "--journal {}: the simulator sets `options` (search_path) itself",
                self.url
            )));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("rollover_sim_{seed}_{}_{nanos}", std::process::id());
        admin(&self.url, &format!("CREATE SCHEMA {name}")).await?;
        let sep = if self.url.contains('?') { '&' } else { '?' };
        Ok(RunSchema {
            options: GroupOptions {
                url: format!("{}{sep}options=-csearch_path%3D{name}", self.url),
                ..self.clone()
            },
            name,
            admin: self.url.clone(),
        })
    }
}

impl RunSchema {
    /// Drop the schema and everything the run stored in it.
    pub async fn drop_now(self) -> Result<(), SimError> {
        admin(&self.admin, &format!("DROP SCHEMA {} CASCADE", self.name)).await
    }
}

/// Run one statement on `url`.
async fn admin(url: &str, statement: &str) -> Result<(), SimError> {
    let failed = |e: tokio_postgres::Error| SimError::Setup(format!("--journal: {statement}: {e}"));
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(failed)?;
    let connection = tokio::spawn(connection);
    client.batch_execute(statement).await.map_err(failed)?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// The member leading now.
#[derive(Clone)]
pub struct Leading {
    /// Which member.
    pub member: usize,
    /// Its term's epoch.
    pub epoch: i64,
    /// Where it serves the API.
    pub addr: SocketAddr,
    executor: Executor,
}

/// Builds an executor's configuration for member `i` (the journal and epoch are
/// filled in by the group loop).
pub type MakeConfig = Arc<dyn Fn(usize) -> Result<ExecutorConfig, SimError> + Send + Sync>;

struct Slot {
    task: JoinHandle<()>,
    proxy: CutProxy,
    incarnation: u32,
}

/// A running executor group.
pub struct ExecutorGroup {
    options: GroupOptions,
    /// The relays' own runtime (see [`proxy`]).
    relays: Option<tokio::runtime::Runtime>,
    make_config: MakeConfig,
    slots: Vec<Slot>,
    leading: watch::Sender<Option<Leading>>,
    terms: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl ExecutorGroup {
    /// Start `options.executors` members (each connects and creates the schema if
    /// needed); returns once one leads.
    pub async fn start(
        options: GroupOptions,
        make_config: MakeConfig,
    ) -> Result<ExecutorGroup, SimError> {
        if options.executors == 0 {
            return Err(SimError::Setup("--executors must be at least 1".into()));
        }
        let upstream = upstream_of(&options.url)?;
        let (leading, _) = watch::channel(None);
        let (stop, _) = watch::channel(false);
        let relays = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sim-db-relay")
            .enable_all()
            .build()?;
        let mut group = ExecutorGroup {
            options,
            relays: None,
            make_config,
            slots: Vec::new(),
            leading,
            terms: Arc::new(AtomicU64::new(0)),
            stop,
        };
        for i in 0..group.options.executors {
            let slow = (!group.options.db_delay.is_zero()).then_some(Slowness {
                max: group.options.db_delay,
                seed: group.options.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            });
            let proxy = CutProxy::start_slow(relays.handle(), upstream, slow)?;
            let task = group.spawn_member(i, 0, proxy.addr()).await?;
            group.slots.push(Slot {
                task,
                proxy,
                incarnation: 0,
            });
        }
        group.relays = Some(relays);
        group.wait_leader(None).await?;
        Ok(group)
    }

    async fn spawn_member(
        &self,
        i: usize,
        incarnation: u32,
        relay: SocketAddr,
    ) -> Result<JoinHandle<()>, SimError> {
        let url = through(&self.options.url, relay)?;
        let connect_url = url.clone();
        let journal = tokio::task::spawn_blocking(move || PgJournal::connect(&connect_url))
            .await
            .map_err(|e| SimError::Setup(e.to_string()))?
            .map_err(|e| SimError::Setup(format!("executor {i}: {e}")))?;
        let lease = Lease::new(
            &url,
            LeaseConfig {
                ttl: self.options.lease,
                renew_every: self.options.renew,
                ..LeaseConfig::new(
                    format!("sim-executor-{i}.{incarnation}"),
                    format!("member {i}"),
                )
            },
        )
        .map_err(|e| SimError::Setup(format!("executor {i}: {e}")))?;
        let member = Member {
            journal,
            key: None,
            lease,
        };
        let (make_config, leading, terms) = (
            self.make_config.clone(),
            self.leading.clone(),
            self.terms.clone(),
        );
        let mut stop = self.stop.subscribe();
        Ok(tokio::spawn(async move {
            let serve = |epoch: i64, executor: Executor, until: TermEnd| {
                let (leading, terms) = (leading.clone(), terms.clone());
                async move { serve_term(i, epoch, executor, until, &leading, &terms).await }
            };
            let config = |_epoch| make_config(i).map_err(TermError::from);
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            // Simulated followers do not serve: the simulator follows the leader.
            let follow = std::future::pending::<Result<(), TermError>>;
            if let Err(e) = member.run(config, serve, follow, stopped).await {
                tracing::error!(member = i, error = %e, "simulated executor stopped");
            }
        }))
    }

    /// The leader with an epoch above `after` (any leader if `None`), once there is
    /// one.
    pub async fn wait_leader(&self, after: Option<i64>) -> Result<Leading, SimError> {
        let mut rx = self.leading.subscribe();
        let newer = |l: &Option<Leading>| {
            l.as_ref()
                .is_some_and(|l| after.is_none_or(|after| l.epoch > after))
        };
        match tokio::time::timeout(ELECTION_DEADLINE, rx.wait_for(newer)).await {
            Ok(Ok(l)) if l.is_some() => Ok(l.clone().ok_or(SimError::Stuck(String::new()))?),
            _ => Err(SimError::Stuck(format!(
                "no executor took the lease within {} s",
                ELECTION_DEADLINE.as_secs()
            ))),
        }
    }

    /// Kill the leader as kill -9 would (its runners stopped, its lease left to
    /// expire) and start that member again as a follower. Returns the dead term's
    /// epoch.
    pub async fn crash_leader(&mut self) -> Result<i64, SimError> {
        let leading = self.wait_leader(None).await?;
        let member = leading.member;
        let slot = &mut self.slots[member];
        slot.task.abort();
        let _ = (&mut slot.task).await;
        leading.executor.shutdown();
        self.leading
            .send_if_modified(|l| clear_if(l, leading.epoch));
        slot.incarnation += 1;
        let (incarnation, relay) = (slot.incarnation, slot.proxy.addr());
        let task = self.spawn_member(member, incarnation, relay).await?;
        self.slots[member].task = task;
        Ok(leading.epoch)
    }

    /// Cut the leader off its database for longer than its lease, so that it steps
    /// down and another member takes over. Returns the cut leader's epoch.
    pub async fn cut_leader(&self) -> Result<i64, SimError> {
        let leading = self.wait_leader(None).await?;
        self.slots[leading.member]
            .proxy
            .cut(self.options.lease + 2 * self.options.renew);
        Ok(leading.epoch)
    }

    /// Drop the leader's database connections and refuse new ones for `length`
    /// (shorter than its lease: it may keep leading). Returns its epoch.
    pub async fn blip_leader(&self, length: Duration) -> Result<i64, SimError> {
        let leading = self.wait_leader(None).await?;
        self.slots[leading.member].proxy.cut(length);
        Ok(leading.epoch)
    }

    /// The leader's view of rotation `id`, if a leader is known now: its state as
    /// that executor's memory holds it.
    pub fn leader_view(&self, id: &str) -> Option<(i64, rollover_proto::v1::RotationState)> {
        let leading = self.leading.borrow().clone()?;
        let status = leading.executor.get_rotation(id, false).ok()?;
        Some((leading.epoch, status.state()))
    }

    /// The epoch of the member leading now, if one does.
    pub fn leader_epoch(&self) -> Option<i64> {
        self.leading.borrow().as_ref().map(|l| l.epoch)
    }

    /// The database the group's journal is in (this run's schema).
    pub fn url(&self) -> &str {
        &self.options.url
    }

    /// How many executors.
    pub fn executors(&self) -> usize {
        self.slots.len()
    }

    /// How many times the lead passed to another term since the first.
    pub fn leader_changes(&self) -> u64 {
        self.terms.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Stop every member (leases released) and wait for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for slot in std::mem::take(&mut self.slots) {
            let _ = tokio::time::timeout(Duration::from_secs(10), slot.task).await;
        }
    }
}

impl Drop for ExecutorGroup {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the group may be dropped inside async code.
        if let Some(relays) = self.relays.take() {
            relays.shutdown_background();
        }
    }
}

fn clear_if(leading: &mut Option<Leading>, epoch: i64) -> bool {
    if leading.as_ref().is_some_and(|l| l.epoch == epoch) {
        *leading = None;
        true
    } else {
        false
    }
}

/// One term of member `i`: serve the API on a fresh loopback port, published as
/// the leader's, until the term ends.
async fn serve_term(
    i: usize,
    epoch: i64,
    executor: Executor,
    until: TermEnd,
    leading: &watch::Sender<Option<Leading>>,
    terms: &AtomicU64,
) -> Result<(), TermError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    terms.fetch_add(1, Ordering::Relaxed);
    tracing::info!(member = i, epoch, %addr, "simulated executor leads");
    leading.send_replace(Some(Leading {
        member: i,
        epoch,
        addr,
        executor: executor.clone(),
    }));
    let served = rollover_executor::serve(listener, executor, ServeOptions::default(), until).await;
    leading.send_if_modified(|l| clear_if(l, epoch));
    tracing::info!(member = i, epoch, "simulated executor no longer leads");
    Ok(served?)
}
