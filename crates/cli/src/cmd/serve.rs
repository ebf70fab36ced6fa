//! `rollover serve planner|executor`: the services of a rotation as long-running
//! processes, shut down gracefully on Ctrl-C or SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use rollover_executor::{Access, Executor, ExecutorConfig, ServeOptions};
use rollover_pki::{CredentialSet, HeldLeaf, LiveCredentials, NodeKey, Validity};
use rollover_proto::v1::planner_service_client::PlannerServiceClient;

use super::net::{self, LimitArgs, ServerTls};
use crate::status::{BadInput, Status};

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Run the planner or the executor as a server, until Ctrl-C or SIGTERM.

A rotation across separate processes needs a planner, an executor and one
`rollover agent` per node. Both servers speak gRPC (with health and reflection):
plaintext only on a loopback address and only without TLS flags; mTLS with
--tls-cert, --tls-key and --client-ca (e.g. from `rollover pki issue`).

Exit status: 0 after a graceful shutdown, 1 when it cannot serve, 2 on bad input.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover serve planner --listen 127.0.0.1:7000
  rollover serve executor --listen 127.0.0.1:7001 --planner 127.0.0.1:7000 \\
      --state ./executor-state --bootstrap-ca demo-root.pem";

const PLANNER_LONG_ABOUT: &str = "\
Serve the Planner gRPC service (plan and verify rotations) until Ctrl-C or SIGTERM.

Without TLS flags it serves plaintext, and only on a loopback address (anything else
is refused). With --tls-cert, --tls-key and --client-ca it serves mTLS: it presents
the certificate and accepts clients (the executor) whose certificates chain to the
client CA.

Limits: requests up to --max-request-bytes (default 32 MiB; a larger one fails at
once, from its frame header, so six concurrent 200 MB requests cost the planner next
to nothing), --max-concurrent-requests per connection, --max-connections open at once,
and connections idle for --idle-timeout seconds are closed.

Exit status: 0 after a graceful shutdown, 1 when it cannot serve (e.g. the address is
taken), 2 on bad input.";

const PLANNER_EXAMPLES: &str = "\
Examples:
  rollover serve planner --listen 127.0.0.1:7000
  rollover serve planner --listen 0.0.0.0:7000 \\
      --tls-cert planner.pem --tls-key planner-key.pem --client-ca ops-ca.pem";

const EXECUTOR_LONG_ABOUT: &str = "\
Serve the Executor gRPC service (run, watch and control rotations) until Ctrl-C or
SIGTERM.

The executor journals every rotation in --state DIR (`executor.redb`) and resumes the
unfinished ones when it starts again. It reaches the agents over mTLS as `@executor`:
on the first start, --bootstrap-ca (a root with its key, e.g. from `rollover pki
init`: the rotated CA when the topology says `control: {ca: <it>}`, or the separate
control CA the agents got with --control-ca) makes a key in DIR
(`executor-key.pem`, mode 0600) and issues the executor's leaf from its CSR
(`executor-cert.pem`, with the CA's certificate in `executor-ca.pem`). Later starts
load them; when a rotation has rotated the executor's own identity, the journal's
newer identity is used instead, so a restart never loses it.

A rotation with `--strategy bridge` (cross-signed roots) needs the key of the root
the agents are on, to sign the bridge to the new root: the executor has it when one
of its earlier rotations made that root; otherwise give it with --ca-key FILE.

--planner is `host:port` (plaintext, loopback only) or `https://host:port`: mTLS with
--tls-cert/--tls-key as the client identity, verifying the planner's certificate
against --client-ca as the id --planner-id.

API: plaintext only on a loopback --listen without TLS flags; mTLS with --tls-cert,
--tls-key and --client-ca. --metrics ADDR serves Prometheus metrics (OpenMetrics
text) over plain HTTP, without authentication: on a loopback address only, unless
--metrics-public.

One rotation per CA: while a rotation of a CA is PENDING, RUNNING, PAUSED or
ROLLING_BACK, StartRotation of the same CA is refused (FAILED_PRECONDITION naming it).
An unsafe given plan is refused (INVALID_ARGUMENT listing the links it would break).

Who may call it: on plaintext (loopback only) every local caller may do everything.
On mTLS the caller is its client certificate's CN, and only named ones are admitted:
--operators may start, pause, resume, abort and roll back rotations and read them;
--readers may only read them (status, list, watch). Anyone else gets
PERMISSION_DENIED naming the caller. An mTLS executor without either list refuses to
start (exit 2).

Limits: requests up to --max-request-bytes (default 32 MiB), --max-concurrent-requests
per connection, --max-connections open at once; connections idle for --idle-timeout
seconds are closed.

Exit status: 0 after a graceful shutdown, 1 when it cannot serve (e.g. the address is
taken), 2 on bad input (bad flags, unreadable files, plaintext or --metrics off
loopback).";

const EXECUTOR_EXAMPLES: &str = "\
Examples:
  rollover serve executor --listen 127.0.0.1:7001 --planner 127.0.0.1:7000 \\
      --state ./executor-state --bootstrap-ca demo-root.pem
  rollover serve executor --listen 127.0.0.1:7001 --planner 127.0.0.1:7000 \\
      --state ./executor-state --metrics 127.0.0.1:9464
  rollover serve executor --listen 0.0.0.0:7001 --planner 127.0.0.1:7000 \\
      --state ./executor-state --tls-cert executor-api.pem --tls-key executor-api-key.pem \\
      --client-ca ops-ca.pem --operators alice,deploy-bot --readers dashboard";

/// Which server.
#[derive(Debug, Subcommand)]
pub enum ServeArgs {
    /// Serve the Planner (plan and verify rotations).
    #[command(long_about = PLANNER_LONG_ABOUT, after_help = PLANNER_EXAMPLES)]
    Planner(PlannerArgs),
    /// Serve the Executor (run and watch rotations across agents).
    #[command(long_about = EXECUTOR_LONG_ABOUT, after_help = EXECUTOR_EXAMPLES)]
    Executor(Box<ExecutorArgs>),
}

/// Arguments of `rollover serve planner`.
#[derive(Debug, clap::Args)]
pub struct PlannerArgs {
    /// Where to listen (`host:port`).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    #[command(flatten)]
    pub tls: ServerTls,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Arguments of `rollover serve executor`.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// Where to listen for the Executor API (`host:port`).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The planner: `host:port` (plaintext, loopback) or `https://host:port` (mTLS).
    #[arg(long, value_name = "URL", env = "ROLLOVER_PLANNER")]
    pub planner: String,
    /// The id (certificate CN) of the planner's certificate, for an https planner.
    #[arg(long, value_name = "ID", default_value = "planner")]
    pub planner_id: String,
    /// The state directory: journal and the executor's own key (made owner-only).
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// On the first start: the CA (certificate and key PEM) to enrol `@executor` with.
    #[arg(long, value_name = "FILE")]
    pub bootstrap_ca: Option<PathBuf>,
    /// A root with its key (PEM, e.g. from `rollover pki init`) the executor may
    /// cross-sign with: the current root of a CA rotated with `--strategy bridge`
    /// (MODEL §11), when an earlier rotation by this executor did not make it.
    /// Repeatable.
    #[arg(long = "ca-key", value_name = "FILE")]
    pub ca_keys: Vec<PathBuf>,
    #[command(flatten)]
    pub tls: ServerTls,
    /// Serve Prometheus metrics over plain HTTP here (`host:port`); loopback only
    /// unless --metrics-public.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Allow --metrics on a non-loopback address (plain HTTP, no authentication:
    /// anyone who can reach it reads the counters).
    #[arg(long, requires = "metrics")]
    pub metrics_public: bool,
    #[command(flatten)]
    pub journal: super::journal::JournalArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// With mTLS: the identities (client certificate CNs) that may start and steer
    /// rotations (StartRotation, Pause, Resume, Abort, Rollback) and read them.
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub operators: Vec<String>,
    /// With mTLS: the identities that may only read rotations (GetRotation,
    /// ListRotations, WatchRotation).
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub readers: Vec<String>,
}

/// The entries of an `--operators`/`--readers` list, trimmed; an empty one, or one
/// with blanks or control characters inside, is refused naming `flag` and the entry.
fn identities(flag: &str, entries: &[String]) -> Result<Vec<String>, BadInput> {
    entries
        .iter()
        .map(|entry| {
            rollover_executor::access::identity(entry)
                .map(str::to_string)
                .map_err(|why| {
                    BadInput(format!(
                        "{flag}: {why} in entry {entry:?}: give certificate CNs separated \
                         by commas, e.g. {flag} alice,deploy-bot"
                    ))
                })
        })
        .collect()
}

/// The warning to give when the executor's client CA (`--client-ca`) holds the root
/// `@executor` is enrolled under, the fleet's: every node's leaf then chains to a CA
/// the executor API trusts, and its CN (the node id) is compared with the operators
/// and readers, so a node named like one of them could act as them.
fn client_ca_is_fleet_root(
    api: Option<&LiveCredentials>,
    enrolled: &CredentialSet,
    named: &[String],
) -> Option<String> {
    let api = api?.current();
    let shared = api
        .client_roots
        .iter()
        .find(|root| enrolled.client_roots.contains(root))?;
    Some(format!(
        "warning: --client-ca holds root {}, the root `@executor` is enrolled under \
         (--bootstrap-ca, the fleet's): every node's leaf from it is a client certificate \
         this executor accepts, so a node whose id equals an operator's or reader's name \
         ({}) could act as that one; give the executor API a client CA of its own",
        rollover_pki::fingerprint(shared),
        named.join(", ")
    ))
}

/// Who may call the executor: everyone on plaintext loopback (there is no caller
/// identity to check); on mTLS only the named operators and readers, and at least one
/// must be named.
fn executor_access(args: &ExecutorArgs, mtls: bool) -> Result<Access, BadInput> {
    let operators = identities("--operators", &args.operators)?;
    let readers = identities("--readers", &args.readers)?;
    let named = !operators.is_empty() || !readers.is_empty();
    match (mtls, named) {
        (true, true) => Ok(Access::roles(operators, readers)),
        (true, false) => Err(BadInput(
            "an mTLS executor needs --operators ID,... and/or --readers ID,... (the \
             client certificate CNs allowed to steer or to read rotations): without them \
             any holder of a certificate from --client-ca could start rotations"
                .into(),
        )),
        (false, true) => Err(BadInput(
            "--operators/--readers need mTLS (--tls-cert, --tls-key, --client-ca): a \
             plaintext caller has no identity to check"
                .into(),
        )),
        (false, false) => Ok(Access::Open),
    }
}

/// Run `rollover serve`.
pub fn run(args: &ServeArgs) -> anyhow::Result<Status> {
    match args {
        ServeArgs::Planner(args) => planner(args),
        ServeArgs::Executor(args) => executor(args),
    }
}

/// Check the address and the TLS flags: credentials for mTLS, or `None` for
/// plaintext on loopback; plaintext elsewhere is refused.
fn listen_plan(
    what: &str,
    addr: &str,
    tls: &ServerTls,
) -> anyhow::Result<(SocketAddr, Option<Arc<LiveCredentials>>)> {
    let addr = net::listen_addr("--listen", addr)?;
    let creds = tls.credentials()?;
    if creds.is_none() && !addr.ip().is_loopback() {
        return Err(net::plaintext_refused(what, addr));
    }
    Ok((addr, creds))
}

/// Run `serve` until a shutdown signal, then give open calls [`net::SHUTDOWN_GRACE`]
/// to finish.
async fn until_signal<S, Fut>(what: &str, serve: S) -> anyhow::Result<()>
where
    S: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (tx, rx) = tokio::sync::watch::channel(false);
    let what = what.to_string();
    let signal_what = what.clone();
    let shutdown = Box::pin(async move {
        let signal = net::shutdown_signal().await;
        eprintln!("{signal_what}: {signal} received, shutting down");
        let _ = tx.send(true);
    });
    let mut stopping = rx.clone();
    let server = serve(shutdown);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::select! {
                () = tokio::time::sleep(net::SHUTDOWN_GRACE) => {}
                _ = net::shutdown_signal() => {}
            }
        } => {
            eprintln!("{what}: open calls did not finish in time; exiting anyway");
            Ok(())
        }
    }
}

fn planner(args: &PlannerArgs) -> anyhow::Result<Status> {
    let (addr, creds) = listen_plan("planner", &args.listen, &args.tls)?;
    let limits = args.limits.limits(rollover_planner::DEFAULT_LIMITS)?;
    let runtime = net::runtime()?;
    runtime.block_on(async {
        let listener = net::bind("--listen", addr).await?;
        let bound = listener.local_addr()?;
        until_signal("planner", |shutdown| async move {
            match creds {
                None => {
                    eprintln!("planner listening on {bound} (plaintext, loopback only)");
                    rollover_planner::serve_with(listener, &limits, shutdown).await?;
                }
                Some(creds) => {
                    let (routes, _reporter) = rollover_planner::routes_with(&limits).await?;
                    let mut server = limits.server();
                    let router = server.add_routes(routes);
                    eprintln!("planner listening on {bound} (mTLS)");
                    rollover_transport::serve_tls(router, listener, creds, &limits, shutdown)
                        .await?;
                }
            }
            Ok(())
        })
        .await
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    eprintln!("planner stopped");
    Ok(Status::Success)
}

/// The executor's own identity files in its state directory.
pub const EXECUTOR_KEY_FILE: &str = "executor-key.pem";
/// The executor's leaf (`CN=@executor`).
pub const EXECUTOR_CERT_FILE: &str = "executor-cert.pem";
/// The certificate of the CA the executor was enrolled with.
pub const EXECUTOR_CA_FILE: &str = "executor-ca.pem";

/// The executor's enrolment credentials: loaded from `dir`, or made from
/// `bootstrap_ca` on the first start.
fn executor_identity(dir: &Path, bootstrap_ca: Option<&Path>) -> anyhow::Result<CredentialSet> {
    let (key_path, cert_path, ca_path) = (
        dir.join(EXECUTOR_KEY_FILE),
        dir.join(EXECUTOR_CERT_FILE),
        dir.join(EXECUTOR_CA_FILE),
    );
    let enrolled = key_path.is_file() && cert_path.is_file() && ca_path.is_file();
    if enrolled {
        if bootstrap_ca.is_some() {
            eprintln!(
                "executor already enrolled in {}: --bootstrap-ca ignored",
                dir.display()
            );
        }
        let key = NodeKey::from_pem(&net::read_text(&key_path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
        let leaf = net::certificates(&cert_path)?.swap_remove(0);
        let roots = net::certificates(&ca_path)?;
        return Ok(CredentialSet {
            server_roots: roots.clone(),
            client_roots: roots,
            held: vec![HeldLeaf::new(leaf, key)],
            presents: Some(0),
            ..CredentialSet::default()
        });
    }
    let Some(ca_file) = bootstrap_ca else {
        return Err(BadInput(format!(
            "{}: no executor credentials yet; on the first start pass --bootstrap-ca FILE \
             (a root with its key, e.g. from `rollover pki init`) to enrol `@executor`",
            dir.display()
        ))
        .into());
    };
    let ca =
        rollover_agent::read_root(ca_file).map_err(|e| BadInput(format!("--bootstrap-ca: {e}")))?;
    let id = rollover_agent::EXECUTOR_ID;
    let key = NodeKey::generate(rollover_pki::KeyAlg::default())?;
    let csr = key.csr_der(id)?;
    let leaf = ca
        .issue_leaf(&csr, id, Validity::default())
        .map_err(|e| anyhow::anyhow!("cannot issue the executor's leaf: {e}"))?;
    let cert_pem = |der: &[u8]| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
    // The key last: a directory holding all three files is a complete enrolment.
    net::write_public(&ca_path, &cert_pem(ca.cert_der()), true)?;
    net::write_public(&cert_path, &cert_pem(&leaf), true)?;
    net::write_private(&key_path, &key.to_pem(), true)?;
    tracing::info!(root = %ca.fingerprint(), dir = %dir.display(), "executor enrolled");
    eprintln!(
        "executor enrolled as `{id}` by root {} (key in {})",
        ca.fingerprint(),
        key_path.display()
    );
    Ok(CredentialSet {
        server_roots: vec![ca.cert_der().clone()],
        client_roots: vec![ca.cert_der().clone()],
        held: vec![HeldLeaf::new(leaf, key)],
        presents: Some(0),
        ..CredentialSet::default()
    })
}

fn executor(args: &ExecutorArgs) -> anyhow::Result<Status> {
    let (addr, api_creds) = listen_plan("executor", &args.listen, &args.tls)?;
    let access = executor_access(args, api_creds.is_some())?;
    // Checked before anything is enrolled or connected.
    let advertise = args
        .journal
        .journal
        .is_some()
        .then(|| super::journal::advertise(&args.journal, addr))
        .transpose()?;
    let limits = args.limits.limits(rollover_executor::DEFAULT_LIMITS)?;
    let metrics = args
        .metrics
        .as_deref()
        .map(|m| net::listen_addr("--metrics", m))
        .transpose()?;
    if let Some(addr) = metrics
        && !addr.ip().is_loopback()
        && !args.metrics_public
    {
        // The metrics are plain HTTP with no authentication: reachable from anywhere
        // only when asked for by name.
        return Err(BadInput(format!(
            "--metrics {addr}: refusing to serve metrics (plain HTTP, no authentication) \
             on a non-loopback address; give --metrics-public to do it anyway, or use \
             127.0.0.1 / ::1"
        ))
        .into());
    }
    // Read before anything is enrolled, so a bad --ca-key changes nothing.
    let root_keys = args
        .ca_keys
        .iter()
        .map(|path| {
            rollover_agent::read_root(path)
                .map(Arc::new)
                .map_err(|e| BadInput(format!("--ca-key: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    net::private_dir(&args.state)?;
    let identity = executor_identity(&args.state, args.bootstrap_ca.as_deref())?;
    let named: Vec<String> = match &access {
        Access::Roles { operators, readers } => operators.iter().chain(readers).cloned().collect(),
        Access::Open => Vec::new(),
    };
    if let Some(warning) = client_ca_is_fleet_root(api_creds.as_deref(), &identity, &named) {
        eprintln!("{warning}");
    }
    let own_creds = LiveCredentials::new(identity).map_err(|e| {
        anyhow::anyhow!(
            "{}: the executor's credentials are unusable: {e}",
            args.state.display()
        )
    })?;
    let runtime = net::runtime()?;
    // Channels (the planner's) are made lazily but need the runtime to exist.
    let entered = runtime.enter();
    let mut config = ExecutorConfig::new(&args.state);
    if args.planner.starts_with("https://") {
        let Some(creds) = &api_creds else {
            return Err(BadInput(format!(
                "--planner {}: an https planner needs --tls-cert, --tls-key and --client-ca \
                 (the executor's client identity and the CA of the planner's certificate)",
                args.planner
            ))
            .into());
        };
        let channel =
            rollover_transport::tls_channel(&args.planner, creds.clone(), &args.planner_id)
                .map_err(|e| BadInput(format!("--planner {}: {e}", args.planner)))?;
        config.planner = Some(
            PlannerServiceClient::new(channel)
                .max_decoding_message_size(rollover_executor::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(rollover_executor::MAX_MESSAGE_BYTES),
        );
    } else {
        config = config.planner_url(&args.planner).map_err(|e| {
            BadInput(format!(
                "--planner {}: {e} (use https://host:port with --tls-cert, --tls-key and \
                 --client-ca for a planner elsewhere)",
                args.planner
            ))
        })?;
    }
    config.own_creds = Some(own_creds);
    config.root_keys = root_keys;
    let opened = super::journal::open(&args.journal, &args.state)?;
    if let super::journal::OpenedJournal::Redb(journal) = &opened {
        config.journal = Some(journal.clone());
    } else {
        drop(entered);
        let serve = super::journal::HaServe {
            advertise: advertise.unwrap_or_else(|| addr.to_string()),
            addr,
            tls: api_creds,
            metrics,
            access,
            limits,
            tls_id: api_tls_id(&args.tls)?,
        };
        return serve_executor_ha(args, opened, config, serve, runtime);
    }
    runtime.block_on(async {
        let executor = Executor::open(config).map_err(|e| {
            anyhow::anyhow!("{}: cannot open the executor: {e}", args.state.display())
        })?;
        let listener = net::bind("--listen", addr).await?;
        let bound = listener.local_addr()?;
        let mode = if api_creds.is_some() {
            "mTLS"
        } else {
            "plaintext, loopback only"
        };
        eprintln!(
            "executor listening on {bound} ({mode}); planner {}; state {}",
            args.planner,
            args.state.display()
        );
        let options = ServeOptions {
            tls: api_creds,
            metrics,
            access,
            limits: Some(limits),
        };
        until_signal("executor", |shutdown| async move {
            rollover_executor::serve(listener, executor, options, shutdown).await?;
            Ok(())
        })
        .await
    })?;
    drop(entered);
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    eprintln!("executor stopped; unfinished rotations resume on the next start");
    Ok(Status::Success)
}

/// `serve executor --journal postgres://...`: one of a group of executors on one
/// database; it serves while it holds the lease.
fn serve_executor_ha(
    args: &ExecutorArgs,
    opened: super::journal::OpenedJournal,
    config: ExecutorConfig,
    serve: super::journal::HaServe,
    runtime: tokio::runtime::Runtime,
) -> anyhow::Result<Status> {
    // Every term starts from the same configuration as a single executor's (root
    // keys, retries, lifetimes...); the group loop fills in the journal and epoch.
    let make_config = move |_epoch: i64| Ok(config.clone());
    eprintln!(
        "executor on {} (journal {}); planner {}",
        serve.addr,
        super::journal::redact(args.journal.journal.as_deref().unwrap_or("")),
        args.planner
    );
    runtime.block_on(async {
        until_signal("executor", |shutdown| {
            super::journal::serve_ha(opened, serve, make_config, shutdown)
        })
        .await
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    eprintln!("executor stopped; another executor of the group takes over");
    Ok(Status::Success)
}

/// The node id (CN) of the executor's API certificate (`--tls-cert`), if any: the
/// identity a follower of an executor group expects of the leader.
fn api_tls_id(tls: &net::ServerTls) -> anyhow::Result<Option<String>> {
    let Some(path) = &tls.tls_cert else {
        return Ok(None);
    };
    let text =
        std::fs::read(path).map_err(|e| BadInput(format!("--tls-cert {}: {e}", path.display())))?;
    let der =
        pem::parse(&text).map_err(|e| BadInput(format!("--tls-cert {}: {e}", path.display())))?;
    Ok(rollover_pki::node_id_from_cert(der.contents()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollover_pki::{KeyAlg, RootCa};

    #[test]
    fn role_lists_are_trimmed_and_bad_entries_named() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            identities("--operators", &list(&["alice", " bob "])).unwrap(),
            ["alice", "bob"]
        );
        for bad in ["", " ", "al ice", "bob\u{1b}[31m"] {
            let e = identities("--readers", &list(&["alice", bad]))
                .unwrap_err()
                .0;
            assert!(e.starts_with("--readers: "), "{e}");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    /// Credentials presenting a leaf of `root`, trusting `trusts`.
    fn creds(root: &RootCa, trusts: &RootCa) -> CredentialSet {
        let key = NodeKey::generate(KeyAlg::default()).unwrap();
        let leaf = root
            .issue_leaf(&key.csr_der("x").unwrap(), "x", Validity::default())
            .unwrap();
        CredentialSet {
            server_roots: vec![trusts.cert_der().clone()],
            client_roots: vec![trusts.cert_der().clone()],
            held: vec![HeldLeaf::new(leaf, key)],
            presents: Some(0),
            ..CredentialSet::default()
        }
    }

    #[test]
    fn a_client_ca_that_is_the_fleet_root_is_warned_about() {
        let validity = Validity::default();
        let fleet = RootCa::generate("fleet", 1, KeyAlg::default(), validity).unwrap();
        let ops = RootCa::generate("ops", 1, KeyAlg::default(), validity).unwrap();
        let enrolled = creds(&fleet, &fleet);
        let named = vec!["alice".to_string()];
        let same = LiveCredentials::new(creds(&fleet, &fleet)).unwrap();
        let warning = client_ca_is_fleet_root(Some(&same), &enrolled, &named).unwrap();
        assert!(
            warning.contains(&fleet.fingerprint()) && warning.contains("alice"),
            "{warning}"
        );
        let own = LiveCredentials::new(creds(&ops, &ops)).unwrap();
        assert_eq!(client_ca_is_fleet_root(Some(&own), &enrolled, &named), None);
        assert_eq!(client_ca_is_fleet_root(None, &enrolled, &named), None);
    }
}
