//! The state an agent's servers and its handle share ([`Inner`]) and the node's
//! operations on it: its state, a CSR, a step (persisted, published, exported), a
//! probe. The gRPC service and the handle both call these; neither knows the other.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rollover_core::state::Mode;
use rollover_pki::LiveCredentials;
use rollover_proto::v1;
use rollover_transport::HandshakeStats;

use crate::export::{Export, exported_identity};
use crate::files::StateDir;
use crate::node::{Caller, CsrKey, CsrLabel, NodeData, Outcome, StepRequest};
use crate::{AgentError, dataplane, store};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) applies: AtomicU64,
    pub(crate) probes_ok: AtomicU64,
    pub(crate) probes_failed: AtomicU64,
    pub(crate) epoch_refusals: AtomicU64,
}

/// The state shared by the agent's servers and its handle.
pub(crate) struct Inner {
    pub(crate) id: String,
    pub(crate) mode: Mode,
    pub(crate) dir: StateDir,
    /// The data plane's live credentials.
    pub(crate) creds: Arc<LiveCredentials>,
    /// Where the credentials are exported for a workload, if they are.
    pub(crate) export: Option<Export>,
    /// The workload's identity (the exported leaf only), which probes present when
    /// the credentials are exported.
    pub(crate) workload: Option<Arc<LiveCredentials>>,
    pub(crate) node: Mutex<NodeData>,
    /// Serializes the operations that change the node.
    pub(crate) op: tokio::sync::Mutex<()>,
    pub(crate) counters: Counters,
    pub(crate) data_stats: Arc<HandshakeStats>,
    pub(crate) control_stats: Arc<HandshakeStats>,
    pub(crate) data_addr: SocketAddr,
}

impl Inner {
    pub(crate) fn node(&self) -> MutexGuard<'_, NodeData> {
        self.node
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn snapshot(&self) -> Result<v1::AgentState, AgentError> {
        let mut state = self.node().to_proto(Some(self.data_addr.to_string()))?;
        // An exported node's workload has one certificate, and the agent's probes
        // present that one too (MODEL §12): CheckFleet compares this with the
        // topology's `identity`.
        state.identity = if self.export.is_some() {
            v1::NodeIdentity::Single
        } else {
            v1::NodeIdentity::Multi
        }
        .into();
        Ok(state)
    }

    /// CreateCsr: a CSR for the key of `label`, made and persisted if new.
    pub(crate) async fn create_csr(
        &self,
        label: CsrLabel,
        caller: &Caller,
    ) -> Result<Vec<u8>, AgentError> {
        let _op = self.op.lock().await;
        let mut current = self.node().clone();
        let raised = self.admit(&mut current, caller)?;
        let key = match current.csr_key(&label, store::key_file_name)? {
            CsrKey::Existing(key) => {
                if raised {
                    self.keep(current).await?;
                }
                key
            }
            CsrKey::Fresh { key, next } => {
                let (stored, k) = ((*next).clone(), key.clone());
                on_state(&self.dir, move |dir| {
                    let file = stored.pending.as_ref().map(|p| p.key_file.clone());
                    store::write_key(dir, &file.unwrap_or_default(), &k)?;
                    store::save_node(dir, &stored)?;
                    store::remove_other_keys(dir, &stored.key_files())
                })
                .await?;
                *self.node() = *next;
                tracing::info!(ca = %label.ca_name, generation = label.generation, "made a key for a new generation");
                key
            }
        };
        Ok(key.csr_der(&self.id)?.to_vec())
    }

    /// ApplyStep: whether the node changed, and its state after the call.
    pub(crate) async fn apply_step(
        &self,
        req: StepRequest,
    ) -> Result<(bool, v1::AgentState), AgentError> {
        let _op = self.op.lock().await;
        let mut current = self.node().clone();
        let caller = Caller {
            rotation_id: req.rotation_id.clone(),
            leader_epoch: req.leader_epoch,
        };
        let raised = self.admit(&mut current, &caller)?;
        let next = match current.apply(&req)? {
            Outcome::Repeat => {
                tracing::info!("repeat of an applied step: nothing to do");
                if raised {
                    // A new leader re-sent it: remember its epoch, so the old one's
                    // late calls are refused.
                    self.keep(current).await?;
                }
                return Ok((false, self.snapshot()?));
            }
            Outcome::Changed(next) => *next,
        };
        let set = next.credential_set()?;
        // Persist first, then swap: a crash in between restarts into the new state.
        persist(&self.dir, next.clone()).await?;
        if let Err(e) = self.creds.swap(set.clone()) {
            persist(&self.dir, current).await?;
            return Err(e.into());
        }
        if let Err(e) = self.publish(&set).await {
            // The workload did not take the new credentials: the step has failed, so
            // the node goes back to where it was (files rewritten, workload reloaded)
            // and a retry applies it afresh.
            tracing::warn!(error = %e, "export or reload failed: undoing the step on this node");
            self.restore(current).await?;
            return Err(e);
        }
        let keep: Vec<String> = next.key_files().into_iter().map(String::from).collect();
        let state = machine_state(&next);
        *self.node() = next;
        self.counters.applies.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = on_state(&self.dir, move |dir| {
            let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
            store::remove_other_keys(dir, &keep)
        })
        .await
        {
            tracing::warn!(error = %e, "could not remove unused keys");
        }
        tracing::info!(%state, "step applied");
        Ok((true, self.snapshot()?))
    }

    /// Persist `node` (changed in what it remembers only, e.g. a newer leader's epoch)
    /// and make it the node's state.
    async fn keep(&self, node: NodeData) -> Result<(), AgentError> {
        persist(&self.dir, node.clone()).await?;
        *self.node() = node;
        Ok(())
    }

    /// Admit `caller` on `node` (see [`crate::fence`]), counting refusals.
    fn admit(&self, node: &mut NodeData, caller: &Caller) -> Result<bool, AgentError> {
        node.admit(caller).inspect_err(|e| {
            self.counters.epoch_refusals.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "refused a deposed executor's call");
        })
    }

    /// Exports `set` for the workload and runs its reload command (nothing without
    /// an export): the node's state is persisted already.
    async fn publish(&self, set: &rollover_pki::CredentialSet) -> Result<(), AgentError> {
        let (Some(export), Some(workload)) = (&self.export, &self.workload) else {
            return Ok(());
        };
        workload.swap(exported_identity(set)?)?;
        let (writer, set) = (export.clone(), set.clone());
        blocking(move || writer.write(&set)).await?;
        export.run_reload().await
    }

    /// Puts the node back in `previous` after a step failed past persisting: state,
    /// live credentials, exported files, and a best-effort reload.
    async fn restore(&self, previous: NodeData) -> Result<(), AgentError> {
        let set = previous.credential_set()?;
        persist(&self.dir, previous).await?;
        self.creds.swap(set.clone())?;
        if let Err(e) = self.publish(&set).await {
            tracing::error!(error = %e, "could not re-export the previous credentials");
        }
        Ok(())
    }

    /// Probe: a real handshake with a peer's data plane (ping/pong) or, for
    /// `workload`, with its workload's own endpoint (HTTP), presenting the workload's
    /// identity when the credentials are exported.
    pub(crate) async fn probe(
        &self,
        peer_id: &str,
        peer_address: &str,
        workload: bool,
    ) -> v1::ProbeResponse {
        let creds = self.workload.as_ref().unwrap_or(&self.creds);
        let target = if workload {
            dataplane::Target::Workload
        } else {
            dataplane::Target::DataPlane
        };
        let answer = dataplane::probe(creds, peer_id, peer_address, target).await;
        let counter = if answer.ok {
            &self.counters.probes_ok
        } else {
            &self.counters.probes_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }
}

pub(crate) fn machine_state(node: &NodeData) -> String {
    node.state().to_string()
}

async fn persist(dir: &StateDir, node: NodeData) -> Result<(), AgentError> {
    on_state(dir, move |dir| store::save_node(dir, &node)).await
}

/// Runs `f` on the state directory `dir`: on the blocking pool when its files are on
/// a disk, at once when they are in memory (no thread hand-off for a map update).
pub(crate) async fn on_state<T: Send + 'static>(
    dir: &StateDir,
    f: impl FnOnce(&StateDir) -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    if dir.files().blocks() {
        let dir = dir.clone();
        blocking(move || f(&dir)).await
    } else {
        f(dir)
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Server(format!("state directory task: {e}")))?
}
