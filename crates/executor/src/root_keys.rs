//! The root keys the executor can cross-sign with (MODEL §11): a bridge rotation
//! issues `b_new` with the old root's key, so the executor must hold the key of the
//! root the agents are on. It has it when it made that root in an earlier rotation
//! (the journal keeps every new root with its key) or when the operator gives it
//! (`rollover serve executor --ca-key FILE`, [`crate::ExecutorConfig::root_keys`]).

use std::sync::Arc;

use rollover_pki::RootCa;

use crate::error::RotationError;
use crate::journal::{DocKind, Journal};

/// The generation of a root of `ca`, from its subject `CN=<ca> gen <generation>`
/// (the CA's name compared as [`crate::admission::same_ca`] does).
pub(crate) fn generation_of(root: &[u8], ca: &str) -> Option<u32> {
    let cn = rollover_pki::node_id_from_cert(root)?;
    let (name, generation) = cn.rsplit_once(" gen ")?;
    if !crate::admission::same_ca(name, ca) {
        return None;
    }
    generation.parse().ok()
}

/// Every root whose key the executor may use for `ca`: the configured ones (whatever
/// their subject: the fingerprint of the nodes' root picks one, see [`find`]), then
/// the new roots of earlier rotations of `ca` in the journal.
pub(crate) fn known(
    configured: &[Arc<RootCa>],
    journal: &dyn Journal,
    ca: &str,
) -> Vec<Arc<RootCa>> {
    let mut out: Vec<Arc<RootCa>> = configured.to_vec();
    let metas = journal.rotations().unwrap_or_default();
    for meta in metas.iter().filter(|m| m.ca == ca) {
        let Ok(Some(pem)) = journal.document(&meta.id, DocKind::NewRoot) else {
            continue;
        };
        match RootCa::from_pem(&String::from_utf8_lossy(&pem)) {
            Ok(root) => out.push(Arc::new(root)),
            Err(e) => tracing::warn!(rotation = %meta.id, error = %e, "unreadable journaled root"),
        }
    }
    out
}

/// The root with this fingerprint among `known`, or why the bridge strategy cannot
/// run.
pub(crate) fn find(
    known: &[Arc<RootCa>],
    ca: &str,
    fingerprint: &str,
) -> Result<Arc<RootCa>, RotationError> {
    known
        .iter()
        .find(|r| r.fingerprint().eq_ignore_ascii_case(fingerprint))
        .cloned()
        .ok_or_else(|| {
            RotationError::Bridge(format!(
                "the bridge strategy needs the key of the root the agents are on ({ca}, \
                 fingerprint {fingerprint}) to issue b_new, and the executor does not hold it \
                 ({} other root key(s) known); give it with `rollover serve executor \
                 --ca-key FILE`, or plan with `--strategy waves`",
                known.len()
            ))
        })
}

/// Why a bridge rotation of `ca` cannot start: no root key is known at all.
pub(crate) fn missing_message(ca: &str) -> String {
    format!(
        "the bridge strategy needs the current root's key of CA {ca:?} (to issue b_new, \
         signed by the old root), and the executor holds no root key at all: give \
         the root (certificate and key PEM, e.g. from `rollover pki init`) with \
         `rollover serve executor --ca-key FILE`, or plan with `--strategy waves`"
    )
}
