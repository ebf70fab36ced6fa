//! Preparing a rotation, once and journaled: the agents' facts (current root, data
//! address, mode), the new root, the executor's own part, and the bridges of a bridged
//! plan.

use super::*;

/// What an agent said before the first step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Fingerprint of the root the node is on (the one being replaced).
    pub old_root: String,
    /// Where its data-plane server listens, for probes.
    pub data_address: Option<String>,
}

/// What preparation produced.
pub(super) struct Prepared {
    pub(super) new_root: RootCa,
    pub(super) new_root_der: Vec<u8>,
    pub(super) facts: Vec<NodeFacts>,
    pub(super) executor: Option<ExecutorCreds>,
    /// `b_new` and `b_old`, when the plan bridges (MODEL §11).
    pub(super) bridges: Option<Bridges>,
}

impl Rotation {
    /// Once per rotation: the agents' facts, the new root, the executor's own part.
    pub(super) async fn prepare(self: &Arc<Self>) -> Result<(), RotationError> {
        if self.prepared.lock().expect("prepared lock").is_some() {
            return Ok(());
        }
        let journal = self.ctx.committer.journal().clone();
        let doc = |kind| journal.document(&self.id, kind);
        let mut ops = Vec::new();
        let meta = self.snapshot().meta;
        let new_root = match doc(DocKind::NewRoot)? {
            Some(pem) => RootCa::from_pem(&String::from_utf8_lossy(&pem))
                .map_err(|e| RotationError::journaled("root", e))?,
            None => {
                let root = RootCa::generate(
                    &self.fleet.ca,
                    meta.generation,
                    self.ctx.key_alg,
                    Validity::for_duration(self.ctx.root_validity),
                )
                .map_err(RotationError::pki("generate the new root"))?;
                ops.push(Op::Document {
                    rotation: self.id.clone(),
                    kind: DocKind::NewRoot,
                    data: root.to_pem().into_bytes(),
                });
                tracing::info!(generation = meta.generation, fingerprint = %root.fingerprint(), "new root generated");
                root
            }
        };
        let facts: Vec<NodeFacts> = match doc(DocKind::Nodes)? {
            Some(bytes) => {
                let facts: Vec<NodeFacts> = serde_json::from_slice(&bytes)
                    .map_err(|e| RotationError::journaled("facts", e))?;
                self.ctx
                    .root_claims
                    .claim(self, &facts, &new_root.fingerprint(), false)?;
                facts
            }
            None => {
                let facts = self.gather_facts().await?;
                // Before anything of the facts is journaled: a rotation of a root
                // another one is rotating fails here, having changed nothing.
                self.ctx
                    .root_claims
                    .claim(self, &facts, &new_root.fingerprint(), true)?;
                ops.push(Op::Document {
                    rotation: self.id.clone(),
                    kind: DocKind::Nodes,
                    data: serde_json::to_vec(&facts).expect("facts serialize"),
                });
                facts
            }
        };
        let executor = match (self.fleet.executor, &self.ctx.own_creds) {
            (Some(_), Some(creds)) => Some(match doc(DocKind::ExecutorBase)? {
                Some(bytes) => {
                    let stored: StoredExecutorBase = serde_json::from_slice(&bytes)
                        .map_err(|e| RotationError::journaled("executor credentials", e))?;
                    let key = NodeKey::from_pem(&stored.new_key_pem)
                        .map_err(|e| RotationError::journaled("executor key", e))?;
                    let cert = hex::decode(&stored.new_leaf)
                        .map_err(|e| RotationError::journaled("executor leaf", e))?;
                    ExecutorCreds {
                        base: stored.base.to_set()?,
                        new_leaf: HeldLeaf::new(cert.into(), key),
                    }
                }
                None => {
                    let base = (*creds.current()).clone();
                    let key = NodeKey::generate(self.ctx.key_alg)
                        .map_err(RotationError::pki("generate the executor's key"))?;
                    let id = rollover_core::EXECUTOR_ID;
                    let csr = key
                        .csr_der(id)
                        .map_err(RotationError::pki("make the executor's CSR"))?;
                    let cert = new_root
                        .issue_leaf(&csr, id, Validity::for_duration(self.ctx.leaf_validity))
                        .map_err(RotationError::pki("issue the executor's leaf"))?;
                    let stored = StoredExecutorBase {
                        base: StoredCreds::from_set(&base),
                        new_key_pem: key.to_pem(),
                        new_leaf: hex::encode(&cert),
                    };
                    ops.push(Op::Document {
                        rotation: self.id.clone(),
                        kind: DocKind::ExecutorBase,
                        data: serde_json::to_vec(&stored).expect("credentials serialize"),
                    });
                    ExecutorCreds {
                        base,
                        new_leaf: HeldLeaf::new(cert, key),
                    }
                }
            }),
            _ => None,
        };
        let bridges = match self.order.bridged {
            false => None,
            true => Some(match doc(DocKind::Bridges)? {
                Some(bytes) => decode_bridges(&bytes)?,
                None => {
                    let bridges = self.issue_bridges(&new_root, &facts, executor.as_ref())?;
                    ops.push(Op::Document {
                        rotation: self.id.clone(),
                        kind: DocKind::Bridges,
                        data: encode_bridges(&bridges),
                    });
                    bridges
                }
            }),
        };
        // Fresh: a control call may have changed it during the preparation.
        if self.working_meta().state == State::Pending {
            ops.push(self.meta_op(|m| m.state = State::Running));
        }
        if !ops.is_empty() {
            self.record(ops, vec![]).wait().await?;
        }
        let leaves = journal.leaves(&self.id)?;
        self.leaves.lock().expect("leaves lock").extend(leaves);
        let new_root_der = new_root.cert_der().to_vec();
        *self.prepared.lock().expect("prepared lock") = Some(Arc::new(Prepared {
            new_root,
            new_root_der,
            facts,
            executor,
            bridges,
        }));
        Ok(())
    }

    /// Both bridges between the root every target node is on and the new one: the
    /// executor must hold the old root's key (MODEL §11).
    pub(super) fn issue_bridges(
        &self,
        new_root: &RootCa,
        facts: &[NodeFacts],
        executor: Option<&ExecutorCreds>,
    ) -> Result<Bridges, RotationError> {
        let mut olds: Vec<String> = facts
            .iter()
            .map(|f| f.old_root.to_ascii_lowercase())
            .filter(|f| !f.is_empty())
            .chain(executor.into_iter().flat_map(|ex| {
                ex.base
                    .server_roots
                    .iter()
                    .map(|r| rollover_pki::fingerprint(r))
            }))
            .collect();
        olds.sort();
        olds.dedup();
        let old = match olds.as_slice() {
            [one] => one,
            [] => {
                return Err(RotationError::Bridge(
                    "the bridge strategy: no node reported its current root".into(),
                ));
            }
            many => {
                return Err(RotationError::Bridge(format!(
                    "the bridge strategy needs every node on one root, but they are on {} \
                     different roots ({})",
                    many.len(),
                    many.join(", ")
                )));
            }
        };
        let known = root_keys::known(
            &self.ctx.root_keys,
            self.ctx.committer.journal().as_ref(),
            &self.fleet.ca,
        );
        let old_root = root_keys::find(&known, &self.fleet.ca, old)?;
        let bridges =
            Bridges::issue(&old_root, new_root).map_err(RotationError::pki("issue the bridges"))?;
        tracing::info!(old = %old_root.fingerprint(), new = %new_root.fingerprint(), "bridges issued");
        Ok(bridges)
    }

    /// Ask every agent for its state (bounded concurrency, with retries). Every
    /// retried failure is reported as it happens ([`Rotation::waiting`]); when agents
    /// stay unreachable, the error names every one of them, not only the first.
    pub(super) async fn gather_facts(self: &Arc<Self>) -> Result<Vec<NodeFacts>, RotationError> {
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.ctx.prepare_concurrency.max(1),
        ));
        let mut asks = JoinSet::new();
        for (node, agent) in self.agents.iter().enumerate() {
            let Some(agent) = agent.clone() else { continue };
            let (limit, retry, this) = (limit.clone(), self.ctx.retry, self.clone());
            let id = self.fleet.id(node as u32).to_string();
            let mode = self.fleet.mode(node as u32);
            asks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let state = retry
                    .run(
                        || agent.get_state(),
                        |attempt, e| this.waiting(&id, "GetState", attempt, e),
                    )
                    .await
                    .map_err(|source| NodeProblem::Unreachable {
                        id: id.clone(),
                        source,
                    });
                (node, state.and_then(|s| facts_of(&id, mode, &s)))
            });
        }
        let mut facts = vec![NodeFacts::default(); self.agents.len()];
        let mut problems = Vec::new();
        for (node, r) in asks.join_all().await {
            match r {
                Ok(f) => facts[node] = f,
                Err(e) => problems.push((node, e)),
            }
        }
        if problems.is_empty() {
            return Ok(facts);
        }
        problems.sort_by_key(|p| p.0);
        Err(RotationError::NotReady(
            problems.into_iter().map(|p| p.1).collect(),
        ))
    }

    /// A call to `node`'s agent failed and will be retried: say so in the events and
    /// the status, so a watcher knows what the rotation waits for.
    pub(super) fn waiting(&self, node: &str, call: &str, attempt: u32, error: &AgentError) {
        tracing::warn!(node, call, attempt, %error, "agent call failed; retrying");
        // A retry still under way when the rotation ended (e.g. one of several nodes
        // found unready) must not put events after the Finished event.
        if self.snapshot().meta.state.is_terminal() {
            return;
        }
        let _ = self.record(
            vec![],
            vec![Event::Waiting(v1::Waiting {
                node: node.to_string(),
                call: call.to_string(),
                attempt,
                error: error.to_string(),
            })],
        );
    }
}

/// What an agent's state says: its current root and data address; its mode must be
/// the topology's.
pub(super) fn facts_of(
    id: &str,
    want: Mode,
    state: &v1::AgentState,
) -> Result<NodeFacts, NodeProblem> {
    check_mode(id, want, state)?;
    Ok(NodeFacts {
        old_root: current_root(state),
        data_address: state.data_address.clone(),
    })
}

/// Refuse an agent that runs in another mode than the topology's (an agent that
/// reports no mode is not refused).
pub(crate) fn check_mode(id: &str, want: Mode, state: &v1::AgentState) -> Result<(), NodeProblem> {
    let reported = match v1::NodeMode::try_from(state.mode) {
        Ok(v1::NodeMode::Bundle) => Some(Mode::Bundle),
        Ok(v1::NodeMode::Atomic) => Some(Mode::Atomic),
        _ => None,
    };
    match reported {
        Some(mode) if mode != want => Err(NodeProblem::WrongMode {
            id: id.to_string(),
            reported: mode,
            want,
        }),
        _ => Ok(()),
    }
}

/// The fingerprint of the root an agent is on: the issuer of the leaf it presents,
/// else its first client root (empty if it has none).
pub(crate) fn current_root(state: &v1::AgentState) -> String {
    state
        .held_leaves
        .iter()
        .find(|h| h.fingerprint == state.presented_leaf_fingerprint)
        .map(|h| h.issuer_root_fingerprint.clone())
        .or_else(|| state.client_roots.first().cloned())
        .unwrap_or_default()
}
