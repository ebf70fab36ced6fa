//! The executor's own credentials around a rotation, as the journal stores them
//! (its identity record, the base set and new leaf of a rotation, the bridges), and
//! the set it holds at each of its own steps (MODEL §3/§11).

use super::*;

/// The executor's own credentials around a rotation (journaled; node-local).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredCreds {
    pub(super) server_roots: Vec<String>,
    pub(super) client_roots: Vec<String>,
    pub(super) held: Vec<(String, String)>,
    pub(super) presents: Option<usize>,
    /// The bridges it sends (MODEL §11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) sends: Vec<String>,
}

impl StoredCreds {
    pub(super) fn from_set(set: &CredentialSet) -> Self {
        StoredCreds {
            server_roots: set.server_roots.iter().map(hex::encode).collect(),
            client_roots: set.client_roots.iter().map(hex::encode).collect(),
            held: set
                .held
                .iter()
                .map(|h| (hex::encode(&h.cert), h.key.to_pem()))
                .collect(),
            presents: set.presents,
            sends: set.sends.iter().map(hex::encode).collect(),
        }
    }

    pub(super) fn to_set(&self) -> Result<CredentialSet, RotationError> {
        let der = |h: &String| {
            hex::decode(h)
                .map(rollover_pki::CertificateDer::from)
                .map_err(|e| RotationError::journaled("executor credentials", e))
        };
        Ok(CredentialSet {
            server_roots: self
                .server_roots
                .iter()
                .map(der)
                .collect::<Result<_, _>>()?,
            client_roots: self
                .client_roots
                .iter()
                .map(der)
                .collect::<Result<_, _>>()?,
            held: self
                .held
                .iter()
                .map(|(c, k)| {
                    Ok(HeldLeaf::new(
                        der(c)?,
                        NodeKey::from_pem(k)
                            .map_err(|e| RotationError::journaled("executor key", e))?,
                    ))
                })
                .collect::<Result<_, RotationError>>()?,
            presents: self.presents,
            sends: self.sends.iter().map(der).collect::<Result<_, _>>()?,
            chains: true,
        })
    }
}

/// The journaled form of a rotation's bridges: both certificates, PEM.
pub(super) fn encode_bridges(bridges: &Bridges) -> Vec<u8> {
    pem::encode_many(&[
        pem::Pem::new("CERTIFICATE", bridges.b_new.to_vec()),
        pem::Pem::new("CERTIFICATE", bridges.b_old.to_vec()),
    ])
    .into_bytes()
}

pub(super) fn decode_bridges(bytes: &[u8]) -> Result<Bridges, RotationError> {
    let blocks = pem::parse_many(bytes).map_err(|e| RotationError::journaled("bridges", e))?;
    match blocks.as_slice() {
        [b_new, b_old] => Ok(Bridges {
            b_new: b_new.contents().to_vec().into(),
            b_old: b_old.contents().to_vec().into(),
        }),
        other => Err(RotationError::journaled(
            "bridges",
            format!("{} certificates, expected 2", other.len()),
        )),
    }
}

/// Encode the executor's credentials for the journal's identity record.
pub fn encode_identity(set: &CredentialSet) -> Vec<u8> {
    serde_json::to_vec(&StoredCreds::from_set(set)).expect("credentials serialize")
}

/// Decode the journal's identity record.
pub fn decode_identity(bytes: &[u8]) -> Result<CredentialSet, RotationError> {
    let stored: StoredCreds = serde_json::from_slice(bytes)
        .map_err(|e| RotationError::journaled("executor credentials", e))?;
    stored.to_set()
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredExecutorBase {
    pub(super) base: StoredCreds,
    pub(super) new_key_pem: String,
    pub(super) new_leaf: String,
}

/// The executor's own part of a rotation.
pub(super) struct ExecutorCreds {
    pub(super) base: CredentialSet,
    pub(super) new_leaf: HeldLeaf,
}

/// The executor's credential set in MODEL §3/§11 `state` (it is a bundle node): the
/// base set's roots and leaf stand for `old`, the new root and the executor's new
/// leaf for `new`, and `sends` picks from the rotation's bridges. The rotated CA is the
/// control CA here, so every root of the base set is the old one.
pub(super) fn executor_set(
    ex: &ExecutorCreds,
    new_root: &rollover_pki::CertificateDer<'static>,
    bridges: Option<&Bridges>,
    state: NodeState,
) -> CredentialSet {
    let base = &ex.base;
    let roots = |old: &Vec<rollover_pki::CertificateDer<'static>>, set: RootSet| {
        let mut r = if set.contains(Root::Old) {
            old.clone()
        } else {
            Vec::new()
        };
        if set.contains(Root::New) {
            r.push(new_root.clone());
        }
        r
    };
    let mut held = if state.held.contains(Root::Old) {
        base.held.clone()
    } else {
        Vec::new()
    };
    let presents = match state.presents {
        Root::Old => base.presents.filter(|_| state.held.contains(Root::Old)),
        Root::New => Some(held.len()),
    };
    if state.held.contains(Root::New) {
        held.push(ex.new_leaf.clone());
    }
    let sends = bridges.map_or_else(Vec::new, |b| {
        [(Root::New, &b.b_new), (Root::Old, &b.b_old)]
            .into_iter()
            .filter(|(r, _)| state.sends.contains(*r))
            .map(|(_, cert)| cert.clone())
            .collect()
    });
    CredentialSet {
        server_roots: roots(&base.server_roots, state.t_srv),
        client_roots: roots(&base.client_roots, state.t_cli),
        held,
        presents,
        sends,
        chains: true,
    }
}
