//! `rollover agent`: one node of the fleet, as a process (`rollover_agent::run`).

use std::path::PathBuf;

use clap::ValueEnum;
use rollover_core::state::Mode;

use super::net::{self, LimitArgs};
use crate::status::{BadInput, Status};

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Run one node's agent until Ctrl-C or SIGTERM.

The agent keeps the node's keys and certificates in --state DIR (owner-only), serves
its data plane (mTLS, `ping`/`pong`) on --data-listen, and serves the Agent gRPC API on
--listen, through which the executor rotates it: CSRs out, certificates in, steps
applied exactly as MODEL section 3 says, probes of its links. Private keys never leave
DIR.

The control API accepts only the executor (`@executor`) over mTLS anchored in the
control CA: the rotated CA itself (the topology says `control: {ca: <it>}`) unless the
node was given a separate control CA with --control-ca.

On the first start, --bootstrap-ca (a root with its key, e.g. from `rollover pki
init`) enrols the node: a key made in DIR and a leaf issued from its CSR. Later starts
resume from DIR and ignore it. Demo/dev only: a real fleet enrols with its own PKI.

The topology's `address` of this node is the --listen address as the executor can
reach it; peers probe the --data-listen address the agent reports, or the node's
`probe:` address (its workload's own TLS endpoint) when the topology gives one.

For real TLS software (nginx, HAProxy, curl, ...), --export DIR writes the node's
live credentials as files after every step, and once at start so the workload can
start on them: cert.pem (the presented leaf, then any bridges it sends), key.pem
(mode 0600), trust-clients.pem (roots that verify clients) and trust-servers.pem
(roots that verify servers). Each file is replaced atomically, after the node's state
is saved; then --reload CMD runs with `sh -c` (env ROLLOVER_EXPORT_DIR=DIR). A reload
that exits non-zero or runs past --reload-timeout fails the step, with its stderr in
the error, and the node goes back to its previous credentials. The workload should
be declared `identity: single` in the topology: it presents one certificate, as
server and as client, and the agent's probes from this node present exactly that one
(the agent reports it, and `rollover check` counts a node declared `multi` as a
problem). Likewise a node whose agent runs with --no-chains must say `chains: false`.

Limits of the control API: requests up to --max-request-bytes (default 4 MiB),
--max-concurrent-requests per connection, --max-connections open at once; connections
idle for --idle-timeout seconds are closed.

One rotation at a time: a step of another rotation while one is under way on the node
is refused (FAILED_PRECONDITION) until it is finished or undone to its start.

Exit status: 0 after a graceful shutdown, 1 when it cannot run (e.g. the address is
taken, the state directory is unusable), 2 on bad input.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover agent --id gw --mode bundle --listen 127.0.0.1:7101 \\
      --data-listen 127.0.0.1:7201 --state ./gw --bootstrap-ca demo-root.pem
  rollover agent --id meter-7 --mode atomic --listen 10.0.3.7:7443 \\
      --data-listen 10.0.3.7:8443 --state /var/lib/rollover/meter-7
  rollover agent --id web-1 --listen 127.0.0.1:7102 --data-listen 127.0.0.1:7202 \\
      --state ./web-1 --export /etc/nginx/tls --reload 'nginx -s reload'";

/// Arguments of `rollover agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The node id, as in the topology.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// What the node can hold (MODEL section 3).
    #[arg(long, value_enum, default_value_t = ModeArg::Bundle)]
    pub mode: ModeArg,
    /// Where the Agent gRPC (control) API listens: the node's `address` in the topology.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Where the data-plane mTLS server listens (peers' probes connect here).
    #[arg(long, value_name = "ADDR")]
    pub data_listen: String,
    /// The node's state directory (keys, certificates, applied steps).
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// On the first start: the rotated CA's root (certificate and key) to enrol with.
    #[arg(long, value_name = "FILE")]
    pub bootstrap_ca: Option<PathBuf>,
    /// On the first start: a separate, never rotated control CA (certificate and key).
    #[arg(long, value_name = "FILE")]
    pub control_ca: Option<PathBuf>,
    /// Write the live credentials as PEM files in DIR for a workload (created if
    /// missing; must be writable).
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Run CMD with `sh -c` after the exported files changed (needs --export).
    #[arg(long, value_name = "CMD", requires = "export")]
    pub reload: Option<String>,
    /// How long --reload may run before it is killed and the step fails (e.g. 10s,
    /// 500ms, 2m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub reload_timeout: std::time::Duration,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The node cannot build certificate chains (topology `chains: false`): it never
    /// sends a cross-signed bridge nor verifies a peer through one, and refuses
    /// `bridge` steps.
    #[arg(long)]
    pub no_chains: bool,
}

/// `10s`, `500ms`, `2m`: a positive number with a unit.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. 10s, 500ms or 2m"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let d = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("`{unit}` is not a unit: use ms, s or m")),
    };
    if d.is_zero() {
        return Err("the time-out must be more than zero".into());
    }
    Ok(d)
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Holds two roots and two leaves: steps stage, present, retire.
    Bundle,
    /// One server identity and one client-verification root: steps switch, finalize.
    Atomic,
}

/// Run `rollover agent`.
pub fn run(args: &AgentArgs) -> anyhow::Result<Status> {
    if args.id.is_empty() || args.id.starts_with('@') {
        return Err(BadInput(format!(
            "--id {:?}: a node id must be non-empty and must not start with `@`",
            args.id
        ))
        .into());
    }
    let listen = net::listen_addr("--listen", &args.listen)?;
    let data_listen = net::listen_addr("--data-listen", &args.data_listen)?;
    if args.bootstrap_ca.is_none() && !rollover_agent::is_bootstrapped(&args.state) {
        return Err(BadInput(format!(
            "{}: holds no node yet; on the first start pass --bootstrap-ca FILE (a root \
             with its key, e.g. from `rollover pki init`) to enrol `{}`",
            args.state.display(),
            args.id
        ))
        .into());
    }
    let export = match &args.export {
        Some(dir) => {
            let export = rollover_agent::Export {
                dir: dir.clone(),
                reload: args.reload.clone(),
                reload_timeout: args.reload_timeout,
            };
            // Checked before anything is enrolled, so a bad directory changes nothing.
            export
                .check()
                .map_err(|e| BadInput(format!("--export {}: {e}", dir.display())))?;
            Some(export)
        }
        None => None,
    };
    let mode = match args.mode {
        ModeArg::Bundle => Mode::Bundle,
        ModeArg::Atomic => Mode::Atomic,
    };
    let options = rollover_agent::RunOptions {
        id: args.id.clone(),
        mode,
        listen,
        data_listen,
        state: args.state.clone(),
        bootstrap_ca: args.bootstrap_ca.clone(),
        control_ca: args.control_ca.clone(),
        export,
        limits: args.limits.limits(rollover_agent::DEFAULT_LIMITS)?,
        chains: !args.no_chains,
    };
    let runtime = net::runtime()?;
    let id = args.id.clone();
    eprintln!(
        "agent `{id}` ({mode}): control API on {listen}, data plane on {data_listen}, state {}",
        args.state.display()
    );
    runtime
        .block_on(rollover_agent::run(options, async {
            let signal = net::shutdown_signal().await;
            eprintln!("agent `{id}`: {signal} received, shutting down");
        }))
        .map_err(|e| anyhow::anyhow!("agent `{}`: {e}", args.id))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    eprintln!("agent `{}` stopped", args.id);
    Ok(Status::Success)
}
