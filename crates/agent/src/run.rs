//! `rollover agent`: the library side of the command (the CLI parses the arguments).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rollover_core::state::Mode;
use rollover_pki::{RootCa, Validity};

use crate::{
    Agent, AgentConfig, AgentError, ControlCreds, Export, ServerLimits, bootstrap,
    bootstrap_control, has_control_credentials, is_bootstrapped,
};

/// The arguments of `rollover agent --id ID --mode bundle|atomic --listen ADDR
/// --data-listen ADDR --state DIR [--bootstrap-ca FILE] [--control-ca FILE]`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `--id`: the node id.
    pub id: String,
    /// `--mode`: bundle (default) or atomic.
    pub mode: Mode,
    /// `--listen`: the Agent gRPC (control) server's address.
    pub listen: SocketAddr,
    /// `--data-listen`: the data-plane mTLS server's address.
    pub data_listen: SocketAddr,
    /// `--state`: the state directory.
    pub state: PathBuf,
    /// `--bootstrap-ca`: a root PEM (certificate and key, as `rollover pki init`
    /// writes it) to enrol the node with if the state directory holds none yet.
    /// Demo/dev only. Ignored when the node is already enrolled.
    pub bootstrap_ca: Option<PathBuf>,
    /// `--control-ca`: a separate control CA's PEM (certificate and key) to get the
    /// node's control leaf from, if the state directory holds none yet. Without it,
    /// and without earlier control credentials, the control CA is the rotated CA.
    pub control_ca: Option<PathBuf>,
    /// `--export DIR --reload CMD --reload-timeout T`: export the node's
    /// credentials as files for a workload and reload it after every change.
    pub export: Option<Export>,
    /// `--max-request-bytes`, `--max-concurrent-requests`, `--max-connections`,
    /// `--idle-timeout`: what one caller may cost the control server.
    pub limits: ServerLimits,
    /// Not `--no-chains`: whether the node builds certificate chains (topology
    /// `chains`), so it may send and use cross-signed bridges (MODEL §11).
    pub chains: bool,
}

/// Runs `rollover agent` until `shutdown` completes (or a server fails): enrols the
/// node if asked and needed, starts it, then stops it gracefully.
///
/// The control server uses the control credentials in the state directory when
/// there are some (from `--control-ca`, now or earlier), else the rotated CA's.
pub async fn run<F>(options: RunOptions, shutdown: F) -> Result<(), AgentError>
where
    F: Future<Output = ()>,
{
    let dir = options.state.as_path();
    // Before anything is made: a bad export directory changes nothing.
    if let Some(export) = &options.export {
        export.check()?;
    }
    if let Some(ca_file) = &options.bootstrap_ca {
        if is_bootstrapped(dir) {
            tracing::info!(dir = %dir.display(), "node already enrolled: --bootstrap-ca ignored");
        } else {
            bootstrap(
                dir,
                &options.id,
                options.mode,
                &read_root(ca_file)?,
                Validity::default(),
            )?;
        }
    }
    let has_control = has_control_credentials(dir);
    if let Some(ca_file) = &options.control_ca {
        if has_control {
            tracing::info!(dir = %dir.display(), "control credentials present: --control-ca ignored");
        } else {
            bootstrap_control(dir, &options.id, &read_root(ca_file)?, Validity::default())?;
        }
    }
    let control = if has_control_credentials(dir) {
        ControlCreds::StateDir
    } else {
        ControlCreds::Rotated
    };
    let mut handle = Agent::start_with_export(
        AgentConfig {
            id: options.id,
            mode: options.mode,
            state_dir: options.state,
            state_files: None,
            data_listen: options.data_listen,
            control_listen: options.listen,
            control,
            limits: options.limits,
            chains: options.chains,
        },
        options.export,
    )
    .await?;
    tokio::select! {
        () = shutdown => {
            handle.shutdown().await;
            Ok(())
        }
        e = handle.failed() => Err(e),
    }
}

/// A root (certificate and key) from a PEM file.
pub fn read_root(path: &Path) -> Result<RootCa, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
    RootCa::from_pem(&text).map_err(|e| AgentError::state(path, e))
}
