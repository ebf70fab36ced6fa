//! `rollover serve executor`'s journal flags: which backend (redb in `--state DIR`,
//! or PostgreSQL with `--journal postgres://...`), the key that seals private keys
//! at rest, and with PostgreSQL the lease that elects one leading executor among
//! several ([`serve_ha`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rollover_executor::forward::{Forwarder, LeaderFuture, LeaderLookup};
use rollover_executor::sealed::{JournalKey, SealedJournal};
use rollover_executor::{Executor, ExecutorConfig, Journal, RedbJournal, ServeOptions};
use rollover_journal_postgres::{Lease, LeaseConfig, Member, PgJournal, TermEnd, TermError};
use rollover_pki::LiveCredentials;

use super::net;
use crate::status::BadInput;

/// The journal flags of `rollover serve executor`.
#[derive(Debug, Clone, clap::Args)]
pub struct JournalArgs {
    /// Journal in PostgreSQL (`postgres://user[:password]@host[:port]/db`) instead of
    /// `--state DIR/executor.redb`. Several executors may share one database: they
    /// elect one leader through a lease; the others answer reads (status, list, watch)
    /// from the journal, forward every other call to the leader, and take over when it
    /// dies.
    #[arg(long, value_name = "URL")]
    pub journal: Option<String>,
    /// Seal the private keys kept in the journal (new roots, the executor's own) with
    /// this key: 64 hex digits, e.g. from `openssl rand -hex 32`. Without it they are
    /// stored as they are (with a warning).
    #[arg(long, value_name = "FILE")]
    pub journal_key_file: Option<PathBuf>,
    /// With --journal postgres://: how long the leader's lease lasts unrenewed, in
    /// seconds (a dead leader is replaced after about this long).
    #[arg(long, value_name = "SECS", default_value_t = 6.0)]
    pub lease: f64,
    /// With --journal postgres://: how often the leader renews its lease and a
    /// follower tries to take it, in seconds (less than half of --lease).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub lease_renew: f64,
    /// With --journal postgres://: the address (`host:port`) the other executors of the
    /// group reach this one's API at; while it leads they forward calls there. Default:
    /// --listen, which must then name an address, not a wildcard (0.0.0.0, [::]).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
}

/// The journal an executor runs on.
pub enum OpenedJournal {
    /// One executor, redb in the state directory.
    Redb(Arc<dyn Journal>),
    /// PostgreSQL, shared by several executors, with a lease.
    Postgres {
        /// The journal (unfenced; each term of leadership fences its own handle).
        journal: PgJournal,
        /// The sealing key, if any.
        key: Option<JournalKey>,
        /// The database URL.
        url: String,
        /// The lease timings.
        ttl: Duration,
        /// How often to renew.
        renew_every: Duration,
    },
}

fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 3600.0) {
        return Err(BadInput(format!(
            "{flag} {v}: seconds, more than 0 and less than 3600"
        ))
        .into());
    }
    Ok(Duration::from_secs_f64(v))
}

/// Open the journal the flags name (schema created or migrated on PostgreSQL).
pub fn open(args: &JournalArgs, state: &Path) -> anyhow::Result<OpenedJournal> {
    let key = match &args.journal_key_file {
        Some(path) => Some(
            JournalKey::from_file(path)
                .map_err(|e| BadInput(format!("--journal-key-file: {e}")))?,
        ),
        None => {
            eprintln!(
                "warning: no --journal-key-file: the new roots' private keys are stored \
                 unencrypted in the journal"
            );
            None
        }
    };
    let Some(url) = &args.journal else {
        if let Some(advertise) = &args.advertise {
            return Err(BadInput(format!(
                "--advertise {advertise}: only with --journal postgres://, where executors \
                 forward calls to their leader"
            ))
            .into());
        }
        let redb = RedbJournal::open(state)
            .map_err(|e| anyhow::anyhow!("{}: cannot open the journal: {e}", state.display()))?;
        return Ok(OpenedJournal::Redb(Arc::new(SealedJournal::new(
            Arc::new(redb),
            key,
        ))));
    };
    if !rollover_journal_postgres::is_postgres_url(url) {
        return Err(BadInput(format!(
            "--journal {url}: expected postgres://user@host/db (or leave it out for the redb \
             journal in --state DIR)"
        ))
        .into());
    }
    let ttl = seconds("--lease", args.lease)?;
    let renew_every = seconds("--lease-renew", args.lease_renew)?;
    if renew_every * 2 > ttl {
        return Err(BadInput(format!(
            "--lease-renew {} must be at most half of --lease {}",
            args.lease_renew, args.lease
        ))
        .into());
    }
    let journal =
        PgJournal::connect(url).map_err(|e| anyhow::anyhow!("--journal {}: {e}", redact(url)))?;
    Ok(OpenedJournal::Postgres {
        journal,
        key,
        url: url.clone(),
        ttl,
        renew_every,
    })
}

/// Where the other executors of a group forward calls to this one while it leads:
/// `--advertise`, or `--listen` when it names an address. A wildcard `--listen`
/// (0.0.0.0) in the lease would send another machine's follower to itself.
pub fn advertise(args: &JournalArgs, listen: SocketAddr) -> anyhow::Result<String> {
    match &args.advertise {
        Some(given) => {
            let valid = given
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(BadInput(format!(
                    "--advertise {given}: expected HOST:PORT, e.g. 10.0.0.5:7001"
                ))
                .into());
            }
            Ok(given.clone())
        }
        None if listen.ip().is_unspecified() => Err(BadInput(format!(
            "--listen {listen}: the executors of a group forward calls to the address their \
             leader gives in the lease, and a wildcard address does not reach this one from \
             elsewhere: give --advertise HOST:PORT (the address the others reach it at), or \
             --listen a specific address"
        ))
        .into()),
        None => Ok(listen.to_string()),
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// What [`serve_ha`] needs besides the journal.
pub struct HaServe {
    /// Where to serve the API while leading.
    pub addr: SocketAddr,
    /// Where the other members reach the API ([`advertise`]), named in the lease.
    pub advertise: String,
    /// The API's TLS.
    pub tls: Option<Arc<LiveCredentials>>,
    /// Where to serve metrics while leading.
    pub metrics: Option<SocketAddr>,
    /// Who may call the API.
    pub access: rollover_executor::Access,
    /// What one caller may cost the API.
    pub limits: rollover_transport::ServerLimits,
    /// With TLS: the node id of the executors' API certificates (this one's CN), which
    /// a follower expects of the leader it forwards to.
    pub tls_id: Option<String>,
}

/// Run one executor of a group on PostgreSQL until `stop` resolves: wait for the
/// lease, lead (open the journal's rotations, resume the unfinished ones, serve the
/// API) until the lease is lost, then follow again ([`Member::run`]). A follower
/// serves the same API on the same address, once its access rules admit a call:
/// reads (status, list, watch) from the journal, every other call forwarded to the
/// leader the lease names; so clients may be given any member's address.
pub async fn serve_ha<C, S>(
    opened: OpenedJournal,
    serve: HaServe,
    mut make_config: C,
    stop: S,
) -> anyhow::Result<()>
where
    C: FnMut(i64) -> anyhow::Result<ExecutorConfig>,
    S: std::future::Future<Output = ()> + Send + 'static,
{
    let OpenedJournal::Postgres {
        journal,
        key,
        url,
        ttl,
        renew_every,
    } = opened
    else {
        return Err(anyhow::anyhow!("serve_ha needs a PostgreSQL journal"));
    };
    let holder = format!(
        "{}:{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "executor".into()),
        std::process::id(),
        rollover_executor_random()
    );
    let lease = Lease::new(
        &url,
        LeaseConfig {
            ttl,
            renew_every,
            ..LeaseConfig::new(holder, serve.advertise.clone())
        },
    )?;
    let leader = {
        let lease = lease.clone();
        let me = lease.config().holder.clone();
        let lookup = move || {
            let (lease, me) = (lease.clone(), me.clone());
            Box::pin(async move {
                match lease.current().await {
                    Ok(Some(l)) if !l.expired && l.holder != me => Some(l.address),
                    _ => None,
                }
            }) as LeaderFuture
        };
        Arc::new(lookup) as LeaderLookup
    };
    let tls = match (&serve.tls, &serve.tls_id) {
        (Some(creds), Some(id)) => Some((creds.clone(), id.clone())),
        _ => None,
    };
    // Reads come from the journal itself (they need no leader); nothing is written
    // through this handle.
    let forwarder =
        Forwarder::new(serve.access.clone(), leader, tls).reading(Arc::new(journal.clone()));
    let member = Member {
        journal,
        key,
        lease,
    };
    let serve = &serve;
    let term = |epoch: i64, executor: Executor, until: TermEnd| async move {
        eprintln!("executor leading with epoch {epoch}");
        let listener = bind_after_follower(serve.addr).await?;
        let options = ServeOptions {
            tls: serve.tls.clone(),
            metrics: serve.metrics,
            access: serve.access.clone(),
            limits: Some(serve.limits),
        };
        rollover_executor::serve(listener, executor, options, until).await?;
        eprintln!("executor no longer leads (epoch {epoch}); following");
        Ok::<(), TermError>(())
    };
    let follow = || {
        let forwarder = forwarder.clone();
        async move {
            let listener = net::bind("--listen", serve.addr).await?;
            eprintln!(
                "executor following on {}: reads are served from the journal, other calls \
                 forwarded to the leader",
                serve.addr
            );
            let forever = std::future::pending::<()>();
            rollover_executor::serve_forwarder(
                listener,
                forwarder,
                serve.tls.clone(),
                Some(serve.limits),
                forever,
            )
            .await?;
            Ok::<(), TermError>(())
        }
    };
    member
        .run(
            |epoch| make_config(epoch).map_err(Into::into),
            term,
            follow,
            stop,
        )
        .await?;
    Ok(())
}

/// Bind the leader's API on the address the follower's API served until just now:
/// the follower's listener closes when its accept task, aborted, next runs, so the
/// address may still be taken for a moment.
async fn bind_after_follower(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            bound => {
                return bound.map_err(|e| anyhow::anyhow!("--listen {addr}: cannot listen: {e}"));
            }
        }
    }
}

/// A few random bits to tell apart processes with the same host and pid.
fn rollover_executor_random() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
