//! One node's state for the rotated CA and the rules of ApplyStep and CreateCsr, with
//! no I/O: every operation returns the next state, which the caller persists and then
//! swaps into the live credentials.
//!
//! A node holds its `current` generation (root, leaf, key) and, during a rotation, the
//! rotation's `new` generation, its bridges (MODEL §11) and the ids of the steps
//! applied so far. Its [`CredentialSet`] is derived from those by [`crate::machine`],
//! so the live set is always exactly the MODEL §3 state of the steps done. The current
//! generation is kept (unused once the rotation is complete) until the next rotation's
//! first step, so every step, `retire` and `finalize` included, can be undone.
//!
//! A bridged rotation begins with `bridge`, which brings the two bridges (checked
//! against the current root) and no new generation; the mode's first step brings that,
//! as in a plain rotation, and the bridges are checked against the new root too.

use std::collections::BTreeMap;

use rollover_core::state::{Action, Mode};
use rollover_pki::{
    Bridges, CertificateDer, CredentialSet, HeldLeaf, LiveCredentials, NodeKey, fingerprint,
    handshake_in_memory,
};
use rollover_proto::v1;
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::fence::LeaderEpochs;
use crate::machine::{self, Generation, StepError};

/// The CA generation a key was made for, as named in CreateCsr.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CsrLabel {
    pub ca_name: String,
    pub generation: u32,
}

/// Who calls, for fencing: the rotation and the caller's leader epoch (0: an executor
/// that leads alone). CreateCsr may name no rotation (an older executor): then it is
/// not fenced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Caller {
    pub rotation_id: String,
    pub leader_epoch: u64,
}

/// A generation with where its key is stored.
#[derive(Clone, Debug)]
pub(crate) struct StoredGen {
    pub material: Generation,
    /// File name of the key under `keys/`.
    pub key_file: String,
    /// The CreateCsr request the key was made for (none for a bootstrap key).
    pub label: Option<CsrLabel>,
}

/// A rotation the node has begun.
#[derive(Clone, Debug)]
pub(crate) struct Rotation {
    pub id: String,
    /// The new generation; `None` only in a bridged rotation before its mode's first
    /// step.
    pub new: Option<StoredGen>,
    /// The bridges of a bridged rotation (one that began with `bridge`).
    pub bridges: Option<Bridges>,
    /// Ids of the steps applied so far, in order.
    pub steps: Vec<u64>,
}

impl Rotation {
    /// Whether the rotation began with `bridge` (MODEL §11).
    pub fn bridged(&self) -> bool {
        self.bridges.is_some()
    }
}

/// A key made by CreateCsr, waiting for its certificate.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub label: CsrLabel,
    pub key: NodeKey,
    pub key_file: String,
}

/// The last effect of a step on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LedgerEntry {
    pub action: Action,
    pub undone: bool,
}

/// Everything the agent persists about its node.
#[derive(Clone, Debug)]
pub(crate) struct NodeData {
    pub id: String,
    pub mode: Mode,
    pub current: StoredGen,
    pub rotation: Option<Rotation>,
    pub pending: Option<Pending>,
    /// By (rotation id, step id): the step's action and whether it was last undone.
    pub ledger: BTreeMap<(String, u64), LedgerEntry>,
    /// Steps applied or undone (repeats not counted).
    pub applied_count: u64,
    /// The highest leader epoch seen per rotation (fencing of deposed executors).
    pub leader_epochs: LeaderEpochs,
    /// Whether the node builds chains (configuration, not persisted): when false it
    /// neither sends its bridges nor verifies a peer through one (MODEL §11).
    pub chains: bool,
}

/// Where the key of a new generation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeySource {
    /// The key CreateCsr made and the node keeps waiting for its certificate.
    Pending,
    /// The key of the same rotation, restarted from its first step.
    Restarted,
    /// The key of another rotation, undone to its start and let go.
    Abandoned,
}

/// ApplyStep, parsed.
#[derive(Clone, Debug)]
pub(crate) struct StepRequest {
    pub rotation_id: String,
    pub step_id: u64,
    pub action: Action,
    pub undo: bool,
    pub new_root: Option<CertificateDer<'static>>,
    pub new_leaf: Option<CertificateDer<'static>>,
    pub old_root_fingerprint: Option<String>,
    /// `b_new` and `b_old`, for `bridge`.
    pub bridges: Option<Bridges>,
    /// The calling executor's leader epoch.
    pub leader_epoch: u64,
}

/// What ApplyStep does.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A repeat of the step's last effect: nothing changes.
    Repeat,
    /// The node's next state.
    Changed(Box<NodeData>),
}

/// What CreateCsr does.
#[derive(Debug)]
pub(crate) enum CsrKey {
    /// A key already made for this generation.
    Existing(NodeKey),
    /// A fresh key: the caller stores it under `key_file`, then persists `next`.
    Fresh { key: NodeKey, next: Box<NodeData> },
}

impl NodeData {
    /// A node that has just been bootstrapped with `current`.
    pub fn new(id: String, mode: Mode, current: StoredGen) -> Self {
        Self {
            id,
            mode,
            current,
            rotation: None,
            pending: None,
            ledger: BTreeMap::new(),
            applied_count: 0,
            leader_epochs: LeaderEpochs::default(),
            chains: true,
        }
    }

    /// Steps of the current rotation applied (0 when none is under way).
    pub fn done(&self) -> usize {
        self.rotation.as_ref().map_or(0, |r| r.steps.len())
    }

    /// Whether the current rotation is bridged.
    pub fn bridged(&self) -> bool {
        self.rotation.as_ref().is_some_and(Rotation::bridged)
    }

    /// The node's MODEL §3 (§11) state.
    pub fn state(&self) -> rollover_core::state::NodeState {
        machine::state(self.mode, self.bridged(), self.done())
    }

    /// The live credentials for the node's state (MODEL §3).
    pub fn credential_set(&self) -> Result<CredentialSet, StepError> {
        let rotation = self.rotation.as_ref();
        machine::credential_set(
            self.state(),
            &self.current.material,
            rotation.and_then(|r| r.new.as_ref()).map(|g| &g.material),
            rotation.and_then(|r| r.bridges.as_ref()),
            self.chains,
        )
    }

    /// Key files the state refers to (every other file under `keys/` is garbage).
    pub fn key_files(&self) -> Vec<&str> {
        let mut files = vec![self.current.key_file.as_str()];
        files.extend(
            self.rotation
                .as_ref()
                .and_then(|r| r.new.as_ref())
                .map(|g| g.key_file.as_str()),
        );
        files.extend(self.pending.as_ref().map(|p| p.key_file.as_str()));
        files
    }

    /// Admit a call of `caller` (see [`crate::fence`]): refused when a newer leader
    /// has called for its rotation; `true` when this call's epoch is newer than any
    /// seen, so the state must be persisted even if nothing else changes.
    pub fn admit(&mut self, caller: &Caller) -> Result<bool, AgentError> {
        if caller.rotation_id.is_empty() {
            return Ok(false);
        }
        self.leader_epochs
            .admit(&caller.rotation_id, caller.leader_epoch)
    }

    /// CreateCsr: the key for `label`, reused if one was made for it already.
    pub fn csr_key(
        &self,
        label: &CsrLabel,
        key_file: impl FnOnce(&NodeKey) -> String,
    ) -> Result<CsrKey, AgentError> {
        if let Some(p) = self.pending.as_ref().filter(|p| &p.label == label) {
            return Ok(CsrKey::Existing(p.key.clone()));
        }
        if let Some(new) = self
            .rotation
            .as_ref()
            .and_then(|r| r.new.as_ref())
            .filter(|new| new.label.as_ref() == Some(label))
        {
            return Ok(CsrKey::Existing(new.material.leaf.key.clone()));
        }
        let key = NodeKey::generate(self.current.material.leaf.key.alg())?;
        let mut next = self.clone();
        next.pending = Some(Pending {
            label: label.clone(),
            key: key.clone(),
            key_file: key_file(&key),
        });
        Ok(CsrKey::Fresh {
            key,
            next: Box::new(next),
        })
    }

    /// ApplyStep: the next state, or why the step is refused.
    pub fn apply(&self, req: &StepRequest) -> Result<Outcome, AgentError> {
        let key = (req.rotation_id.clone(), req.step_id);
        if let Some(entry) = self.ledger.get(&key) {
            if entry.action != req.action {
                return Err(AgentError::Precondition(format!(
                    "step {} of rotation {:?} is {} on this node, not {}",
                    req.step_id, req.rotation_id, entry.action, req.action
                )));
            }
            if entry.undone == req.undo {
                return Ok(Outcome::Repeat);
            }
        } else if req.undo {
            return Err(AgentError::Precondition(format!(
                "cannot undo step {} of rotation {:?}: it was never applied on this node",
                req.step_id, req.rotation_id
            )));
        }
        if req.action.mode().is_some_and(|m| m != self.mode) {
            return Err(StepError::WrongMode {
                mode: self.mode,
                action: req.action,
            }
            .into());
        }
        if req.action == Action::Bridge && !req.undo && !self.chains {
            // Its bridges would never be sent, and its peers would count on them.
            return Err(AgentError::Precondition(format!(
                "bridge in rotation {:?}: this node does not build chains (chains: false), \
                 so it can neither send nor use bridges; the topology must say so",
                req.rotation_id
            )));
        }
        let mut next = if req.undo {
            self.undo(req)?
        } else {
            self.forward(req)?
        };
        next.ledger.insert(
            key,
            LedgerEntry {
                action: req.action,
                undone: req.undo,
            },
        );
        next.applied_count += 1;
        Ok(Outcome::Changed(Box::new(next)))
    }

    fn forward(&self, req: &StepRequest) -> Result<NodeData, AgentError> {
        let mut next = self.clone();
        let mode_first = self.mode.steps()[0];
        let begins = req.action == Action::Bridge || req.action == mode_first;
        let same = self.rotation.as_ref().filter(|r| r.id == req.rotation_id);
        if begins && same.is_none_or(|r| r.steps.is_empty()) {
            // A rotation undone to its start is let go, but the key made for it stays
            // usable: CreateCsr for the same generation hands that key out again.
            let mut abandoned = None;
            if same.is_none()
                && let Some(old) = next.rotation.take()
            {
                let (done, all) = (
                    old.steps.len(),
                    machine::steps(self.mode, old.bridged()).len(),
                );
                match old.new {
                    // The previous rotation is complete: its new generation is now the
                    // node's current one, and the generation it replaced is let go.
                    Some(new) if done == all => next.current = new,
                    _ if done > 0 => {
                        return Err(AgentError::Precondition(format!(
                            "rotation {:?} is in progress on this node ({done} of {all} steps \
                             done): finish or undo it before starting rotation {:?}",
                            old.id, req.rotation_id
                        )));
                    }
                    new => abandoned = new,
                }
            }
            next.rotation = Some(if req.action == Action::Bridge {
                // The new generation comes with the mode's first step: until then the
                // abandoned key waits as the pending one.
                if let Some(g) = abandoned.filter(|_| next.pending.is_none())
                    && let Some(label) = g.label.clone()
                {
                    next.pending = Some(Pending {
                        label,
                        key: g.material.leaf.key.clone(),
                        key_file: g.key_file.clone(),
                    });
                }
                Rotation {
                    id: req.rotation_id.clone(),
                    // Redone after an undo: the generation it already brought stays.
                    new: same.and_then(|r| r.new.clone()),
                    bridges: Some(next.checked_bridges(req)?),
                    steps: Vec::new(),
                }
            } else {
                let (new, source) = next.new_generation(req, abandoned.as_ref())?;
                if source == KeySource::Pending {
                    next.pending = None;
                }
                Rotation {
                    id: req.rotation_id.clone(),
                    new: Some(new),
                    bridges: None,
                    steps: Vec::new(),
                }
            });
        } else if req.action == mode_first && same.is_some_and(|r| r.bridged() && r.new.is_none()) {
            // A bridged rotation's mode step brings the new generation.
            let (new, source) = next.new_generation(req, None)?;
            if let Some(bridges) = same.and_then(|r| r.bridges.as_ref()) {
                bridges
                    .check(&self.current.material.root, Some(&new.material.root))
                    .map_err(|e| {
                        AgentError::InvalidRequest(format!(
                            "the rotation's bridges do not match new_root_der: {e}"
                        ))
                    })?;
            }
            if source == KeySource::Pending {
                next.pending = None;
            }
            if let Some(r) = next.rotation.as_mut() {
                r.new = Some(new);
            }
        }
        let current_root = fingerprint(&next.current.material.root);
        let rotation = match next.rotation.as_mut() {
            Some(r) if r.id == req.rotation_id => r,
            Some(r) => {
                return Err(AgentError::Precondition(format!(
                    "{} belongs to rotation {:?}, but this node is in rotation {:?}",
                    req.action, req.rotation_id, r.id
                )));
            }
            None => {
                return Err(StepError::OutOfOrder {
                    action: req.action,
                    next: Some(mode_first),
                }
                .into());
            }
        };
        if let (Some(root), Some(new)) = (&req.new_root, &rotation.new)
            && *root != new.material.root
        {
            return Err(AgentError::InvalidRequest(format!(
                "new_root_der is not the new root of rotation {:?}",
                req.rotation_id
            )));
        }
        if let (Some(given), Some(bridges)) = (&req.bridges, &rotation.bridges)
            && given != bridges
        {
            return Err(AgentError::InvalidRequest(format!(
                "the bridges are not those of rotation {:?}",
                req.rotation_id
            )));
        }
        if let Some(old) = &req.old_root_fingerprint
            && !old.eq_ignore_ascii_case(&current_root)
        {
            return Err(AgentError::Precondition(format!(
                "old_root_fingerprint {old} is not this node's current root {current_root}"
            )));
        }
        machine::check_apply(
            self.mode,
            rotation.bridged(),
            rotation.steps.len(),
            req.action,
        )?;
        rotation.steps.push(req.step_id);
        Ok(next)
    }

    /// The bridges a `bridge` step brings, checked against the node's current root:
    /// `b_new` must be issued by it and `b_old` must carry it.
    fn checked_bridges(&self, req: &StepRequest) -> Result<Bridges, AgentError> {
        let bridges = req.bridges.clone().ok_or_else(|| {
            AgentError::InvalidRequest("bridge needs bridge_new_der and bridge_old_der".into())
        })?;
        bridges
            .check(&self.current.material.root, None)
            .map_err(|e| {
                AgentError::InvalidRequest(format!(
                    "the bridges do not match this node's current root: {e}"
                ))
            })?;
        Ok(bridges)
    }

    fn undo(&self, req: &StepRequest) -> Result<NodeData, AgentError> {
        let mut next = self.clone();
        let rotation = match next.rotation.as_mut() {
            Some(r) if r.id == req.rotation_id => r,
            other => {
                return Err(AgentError::Precondition(format!(
                    "cannot undo a step of rotation {:?}: this node's rotation is {}",
                    req.rotation_id,
                    other.map_or("none".into(), |r| format!("{:?}", r.id))
                )));
            }
        };
        if let Some(&last) = rotation.steps.last()
            && last != req.step_id
        {
            return Err(AgentError::Precondition(format!(
                "cannot undo step {}: the node's last applied step is {last}",
                req.step_id
            )));
        }
        machine::check_undo(
            self.mode,
            rotation.bridged(),
            rotation.steps.len(),
            req.action,
        )?;
        rotation.steps.pop();
        Ok(next)
    }

    /// The new generation a first step brings: its root and leaf from the request,
    /// with the key made for the leaf (pending, the restarted rotation's, or the one of
    /// a rotation undone to its start, `abandoned`). Checks that the leaf is for that
    /// key and verifies, with a real handshake, under the new root as this node, as
    /// both server and client. Says where the key came from.
    fn new_generation(
        &self,
        req: &StepRequest,
        abandoned: Option<&StoredGen>,
    ) -> Result<(StoredGen, KeySource), AgentError> {
        let missing =
            |field: &str| AgentError::InvalidRequest(format!("{} needs {field}", req.action));
        let root = req
            .new_root
            .clone()
            .ok_or_else(|| missing("new_root_der"))?;
        let leaf = req
            .new_leaf
            .clone()
            .ok_or_else(|| missing("issued_leaf_der"))?;
        if root == self.current.material.root {
            return Err(AgentError::InvalidRequest(
                "new_root_der is the node's current root".into(),
            ));
        }
        let spki = leaf_spki(&leaf)?;
        let of_gen = |g: &StoredGen, source: KeySource| {
            (
                g.material.leaf.key.clone(),
                g.key_file.clone(),
                g.label.clone(),
                source,
            )
        };
        let restarted = self
            .rotation
            .as_ref()
            .filter(|r| r.id == req.rotation_id)
            .and_then(|r| r.new.as_ref())
            .map(|g| of_gen(g, KeySource::Restarted));
        let pending = self.pending.as_ref().map(|p| {
            (
                p.key.clone(),
                p.key_file.clone(),
                Some(p.label.clone()),
                KeySource::Pending,
            )
        });
        let abandoned = abandoned.map(|g| of_gen(g, KeySource::Abandoned));
        let (key, key_file, label, source) = pending
            .into_iter()
            .chain(restarted)
            .chain(abandoned)
            .find(|(key, ..)| key.public_key_der() == spki)
            .ok_or_else(|| {
                AgentError::Precondition(
                    "issued_leaf_der is not for a key this node made: call CreateCsr first".into(),
                )
            })?;
        let held = HeldLeaf::new(leaf, key.clone());
        let check = LiveCredentials::new(CredentialSet {
            server_roots: vec![root.clone()],
            client_roots: vec![root.clone()],
            held: vec![held.clone()],
            presents: Some(0),
            ..CredentialSet::default()
        })
        .map_err(|e| AgentError::InvalidRequest(format!("new root or leaf: {e}")))?;
        handshake_in_memory(check.client_config(), check.server_config(), &self.id).map_err(
            |e| {
                AgentError::InvalidRequest(format!(
                    "issued_leaf_der does not verify under new_root_der as {:?}: {e}",
                    self.id
                ))
            },
        )?;
        Ok((
            StoredGen {
                material: Generation { root, leaf: held },
                key_file,
                label,
            },
            source,
        ))
    }

    /// The node's state as GetState reports it.
    pub fn to_proto(&self, data_address: Option<String>) -> Result<v1::AgentState, StepError> {
        let set = self.credential_set()?;
        let roots: Vec<&CertificateDer<'static>> = std::iter::once(&self.current.material.root)
            .chain(
                self.rotation
                    .as_ref()
                    .and_then(|r| r.new.as_ref())
                    .map(|g| &g.material.root),
            )
            .collect();
        let fps =
            |certs: &[CertificateDer<'static>]| certs.iter().map(|c| fingerprint(c)).collect();
        Ok(v1::AgentState {
            node_id: self.id.clone(),
            mode: v1::NodeMode::from(self.mode).into(),
            server_roots: fps(&set.server_roots),
            client_roots: fps(&set.client_roots),
            held_leaves: set
                .held
                .iter()
                .map(|leaf| v1::HeldLeaf {
                    fingerprint: fingerprint(&leaf.cert),
                    issuer_root_fingerprint: roots
                        .iter()
                        .find(|r| leaf.is_issued_by(r))
                        .map(|r| fingerprint(r))
                        .unwrap_or_default(),
                })
                .collect(),
            presented_leaf_fingerprint: set
                .presents
                .map(|i| fingerprint(&set.held[i].cert))
                .unwrap_or_default(),
            applied_step_count: self.applied_count,
            data_address,
            sent_bridges: fps(&set.sends),
            chains: Some(self.chains),
            // Whether the credentials are exported is the agent's, not the node's:
            // [`crate::shared::Inner::snapshot`] says.
            identity: v1::NodeIdentity::Unspecified.into(),
        })
    }
}

/// The SubjectPublicKeyInfo of a leaf certificate.
fn leaf_spki(leaf: &[u8]) -> Result<Vec<u8>, AgentError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| AgentError::InvalidRequest(format!("issued_leaf_der: {e}")))?;
    Ok(cert.public_key().raw.to_vec())
}

#[cfg(test)]
mod tests {
    use rollover_pki::{KeyAlg, RootCa, Validity};

    use super::*;

    const CA: &str = "demo-root";

    fn root(generation: u32) -> RootCa {
        RootCa::generate(CA, generation, KeyAlg::EcdsaP256, Validity::default()).unwrap()
    }

    /// A bundle node bootstrapped on `old`.
    fn node(old: &RootCa) -> NodeData {
        let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
        let cert = old
            .issue_leaf(&key.csr_der("n").unwrap(), "n", Validity::default())
            .unwrap();
        let current = StoredGen {
            material: Generation {
                root: old.cert_der().clone(),
                leaf: HeldLeaf::new(cert, key),
            },
            key_file: "boot.pem".into(),
            label: None,
        };
        NodeData::new("n".into(), Mode::Bundle, current)
    }

    /// CreateCsr for `generation`, persisted; the key's leaf from `root`.
    fn csr(node: &mut NodeData, generation: u32, root: &RootCa) -> CertificateDer<'static> {
        let label = CsrLabel {
            ca_name: CA.into(),
            generation,
        };
        let key = match node
            .csr_key(&label, |_| format!("g{generation}.pem"))
            .unwrap()
        {
            CsrKey::Existing(key) => key,
            CsrKey::Fresh { key, next } => {
                *node = *next;
                key
            }
        };
        root.issue_leaf(&key.csr_der("n").unwrap(), "n", Validity::default())
            .unwrap()
    }

    fn step(rotation: &str, id: u64, action: Action, undo: bool) -> StepRequest {
        StepRequest {
            rotation_id: rotation.into(),
            step_id: id,
            action,
            undo,
            new_root: None,
            new_leaf: None,
            old_root_fingerprint: None,
            bridges: None,
            leader_epoch: 0,
        }
    }

    fn stage(rotation: &str, root: &RootCa, leaf: CertificateDer<'static>) -> StepRequest {
        StepRequest {
            new_root: Some(root.cert_der().clone()),
            new_leaf: Some(leaf),
            ..step(rotation, 0, Action::Stage, false)
        }
    }

    fn apply(node: &mut NodeData, req: &StepRequest) -> Result<(), AgentError> {
        match node.apply(req)? {
            Outcome::Changed(next) => *node = *next,
            Outcome::Repeat => {}
        }
        Ok(())
    }

    #[test]
    fn a_second_rotation_is_refused_while_one_is_under_way() {
        let (old, x_root, y_root) = (root(1), root(2), root(3));
        let mut n = node(&old);
        let leaf = csr(&mut n, 2, &x_root);
        apply(&mut n, &stage("X", &x_root, leaf)).unwrap();
        apply(&mut n, &step("X", 1, Action::Present, false)).unwrap();

        // Y's first step, and any later one, is refused naming X.
        let y_leaf = csr(&mut n, 3, &y_root);
        let e = apply(&mut n, &stage("Y", &y_root, y_leaf.clone())).unwrap_err();
        assert!(matches!(e, AgentError::Precondition(_)), "{e}");
        assert!(
            e.to_string().contains("rotation \"X\" is in progress"),
            "{e}"
        );
        let e = apply(&mut n, &step("Y", 1, Action::Present, false)).unwrap_err();
        assert!(e.to_string().contains("\"X\""), "{e}");
        assert_eq!(n.rotation.as_ref().unwrap().id, "X");

        // Once X is finished, Y starts.
        apply(&mut n, &step("X", 2, Action::Retire, false)).unwrap();
        apply(&mut n, &stage("Y", &y_root, y_leaf)).unwrap();
        assert_eq!(n.rotation.as_ref().unwrap().id, "Y");
        assert_eq!(n.current.material.root, *x_root.cert_der());
    }

    #[test]
    fn a_rotation_undone_to_its_start_lets_the_next_one_start() {
        let (old, x_root, y_root) = (root(1), root(2), root(3));
        let mut n = node(&old);
        let leaf = csr(&mut n, 2, &x_root);
        apply(&mut n, &stage("X", &x_root, leaf)).unwrap();
        apply(&mut n, &step("X", 1, Action::Present, false)).unwrap();
        apply(&mut n, &step("X", 1, Action::Present, true)).unwrap();
        apply(&mut n, &step("X", 0, Action::Stage, true)).unwrap();
        let y_leaf = csr(&mut n, 3, &y_root);
        apply(&mut n, &stage("Y", &y_root, y_leaf)).unwrap();
        assert_eq!(n.rotation.as_ref().unwrap().id, "Y");
        // Still on the old root as current: X never completed.
        assert_eq!(n.current.material.root, *old.cert_der());
    }

    /// Stage for X at generation 30, undo it, CreateCsr for generation 30 (the same
    /// key comes back), stage for Y with a leaf for that key: accepted.
    #[test]
    fn the_key_of_an_undone_rotation_serves_the_next_one() {
        let (old, x_root, y_root) = (root(1), root(30), root(30));
        let mut n = node(&old);
        let x_leaf = csr(&mut n, 30, &x_root);
        apply(&mut n, &stage("X", &x_root, x_leaf.clone())).unwrap();
        assert!(n.pending.is_none());
        apply(&mut n, &step("X", 0, Action::Stage, true)).unwrap();

        let y_leaf = csr(&mut n, 30, &y_root);
        assert_eq!(leaf_spki(&y_leaf).unwrap(), leaf_spki(&x_leaf).unwrap());
        apply(&mut n, &stage("Y", &y_root, y_leaf)).unwrap();
        let r = n.rotation.as_ref().unwrap();
        assert_eq!((r.id.as_str(), r.steps.len()), ("Y", 1));
        assert!(n.key_files().contains(&"g30.pem"), "{:?}", n.key_files());
        n.credential_set().unwrap();

        // A leaf for a key the node never made is still refused.
        let mut other = node(&old);
        let stray = csr(&mut other, 31, &y_root);
        apply(&mut n, &step("Y", 0, Action::Stage, true)).unwrap();
        let e = apply(&mut n, &stage("Z", &y_root, stray)).unwrap_err();
        assert!(e.to_string().contains("call CreateCsr first"), "{e}");
    }

    fn bridge(rotation: &str, id: u64, bridges: &Bridges) -> StepRequest {
        StepRequest {
            bridges: Some(bridges.clone()),
            ..step(rotation, id, Action::Bridge, false)
        }
    }

    /// A bridged rotation on a bundle node: `bridge` brings the bridges and no new
    /// generation, `stage` brings that, `unbridge` stops sending; every step undoes
    /// back to the start, and the rotation can be taken again to its end.
    #[test]
    fn a_bridged_rotation_sends_its_bridges_between_bridge_and_unbridge() {
        let (old, new) = (root(1), root(2));
        let bridges = Bridges::issue(&old, &new).unwrap();
        let mut n = node(&old);
        let sends = |n: &NodeData| n.credential_set().unwrap().sends.len();

        apply(&mut n, &bridge("X", 0, &bridges)).unwrap();
        assert!(n.bridged());
        assert!(n.rotation.as_ref().unwrap().new.is_none());
        assert_eq!(sends(&n), 2, "b_new and b_old after bridge");
        let leaf = csr(&mut n, 2, &new);
        apply(
            &mut n,
            &StepRequest {
                step_id: 1,
                ..stage("X", &new, leaf.clone())
            },
        )
        .unwrap();
        for (id, action) in [(2, Action::Present), (3, Action::Retire)] {
            apply(&mut n, &step("X", id, action, false)).unwrap();
        }
        assert!(sends(&n) > 0, "still bridged before unbridge");
        apply(&mut n, &step("X", 4, Action::Unbridge, false)).unwrap();
        let set = n.credential_set().unwrap();
        assert!(set.sends.is_empty());
        assert_eq!(set.server_roots, vec![new.cert_der().clone()]);

        // Rolled back to the start: the old root only, sending nothing.
        for (id, action) in [
            (4, Action::Unbridge),
            (3, Action::Retire),
            (2, Action::Present),
            (1, Action::Stage),
            (0, Action::Bridge),
        ] {
            apply(&mut n, &step("X", id, action, true)).unwrap();
        }
        let set = n.credential_set().unwrap();
        assert!(set.sends.is_empty());
        assert_eq!(set.server_roots, vec![old.cert_der().clone()]);
        assert_eq!(set.held.len(), 1);

        // Redone: the generation `stage` brought stays with the rotation.
        apply(&mut n, &bridge("X", 5, &bridges)).unwrap();
        assert_eq!(sends(&n), 2);
        apply(
            &mut n,
            &StepRequest {
                step_id: 6,
                ..stage("X", &new, leaf)
            },
        )
        .unwrap();
        assert_eq!(n.done(), 2);
    }

    #[test]
    fn bridges_that_do_not_match_the_roots_are_refused() {
        let (old, new, stranger) = (root(1), root(2), root(9));
        let mut n = node(&old);
        // Issued by another root than the node's: refused, nothing changes.
        let wrong = Bridges::issue(&stranger, &new).unwrap();
        let e = apply(&mut n, &bridge("X", 0, &wrong)).unwrap_err();
        assert!(matches!(e, AgentError::InvalidRequest(_)), "{e}");
        assert!(n.rotation.is_none());
        // Without bridges: refused.
        let e = apply(&mut n, &step("X", 0, Action::Bridge, false)).unwrap_err();
        assert!(e.to_string().contains("bridge_new_der"), "{e}");

        // Bridges to `new`, then a stage with another new root: refused.
        apply(
            &mut n,
            &bridge("X", 0, &Bridges::issue(&old, &new).unwrap()),
        )
        .unwrap();
        let leaf = csr(&mut n, 9, &stranger);
        let e = apply(
            &mut n,
            &StepRequest {
                step_id: 1,
                ..stage("X", &stranger, leaf)
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("bridges do not match"), "{e}");
        assert_eq!(n.done(), 1);
    }

    #[test]
    fn a_node_that_does_not_build_chains_refuses_bridge() {
        let (old, new) = (root(1), root(2));
        let mut n = node(&old);
        n.chains = false;
        let e = apply(
            &mut n,
            &bridge("X", 0, &Bridges::issue(&old, &new).unwrap()),
        )
        .unwrap_err();
        assert!(matches!(e, AgentError::Precondition(_)), "{e}");
        assert!(e.to_string().contains("chains: false"), "{e}");
        assert!(n.rotation.is_none());
        // ... and says so in its state, which CheckFleet compares with the topology.
        assert_eq!(n.to_proto(None).unwrap().chains, Some(false));
        n.chains = true;
        assert_eq!(n.to_proto(None).unwrap().chains, Some(true));
    }
}
