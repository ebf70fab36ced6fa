//! Private keys in the journal, encrypted at rest.
//!
//! [`SealedJournal`] wraps any [`Journal`]: the records that hold private keys (a new
//! root's PEM with its key, the executor's own credentials before and after a
//! rotation) are sealed with XChaCha20-Poly1305 under a 32-byte key from
//! `--journal-key-file` before they reach the store, and opened when read. The
//! record's place (rotation and kind) is the associated data, so a sealed record
//! copied to another place does not open. Without a key, records are stored as
//! before (the executor warns), and a sealed record read without its key is an
//! error that says so rather than a garbled PEM.

use std::path::Path;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::journal::{DocKind, Journal, JournalError, Op, RotationMeta, StepRecord, io_error};

/// What every sealed record starts with.
const MAGIC: &[u8; 8] = b"RLVSEAL1";
const NONCE_LEN: usize = 24;

/// The key of the journal's sealed records.
#[derive(Clone)]
pub struct JournalKey(Arc<XChaCha20Poly1305>);

impl std::fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalKey(..)")
    }
}

impl JournalKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        JournalKey(Arc::new(XChaCha20Poly1305::new(bytes.into())))
    }

    /// Read a key file: 64 hex digits (e.g. `openssl rand -hex 32`), or 32 raw bytes.
    pub fn from_file(path: &Path) -> Result<Self, JournalError> {
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("");
        let key: [u8; 32] = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let decoded = hex::decode(text).map_err(|e| key_file(path, e))?;
            decoded
                .try_into()
                .map_err(|_| key_file(path, "not 32 bytes"))?
        } else if bytes.len() == 32 {
            bytes
                .try_into()
                .map_err(|_| key_file(path, "not 32 bytes"))?
        } else {
            return Err(key_file(
                path,
                format!(
                    "a journal key is 64 hex digits (e.g. `openssl rand -hex 32`) or 32 raw \
                     bytes; found {} bytes",
                    bytes.len()
                ),
            ));
        };
        Ok(JournalKey::from_bytes(&key))
    }

    fn seal(&self, place: &str, plain: &[u8]) -> Result<Vec<u8>, JournalError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| JournalError::Sealed(format!("cannot seal {place}")))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, place: &str, data: &[u8]) -> Result<Vec<u8>, JournalError> {
        let body = &data[MAGIC.len()..];
        if body.len() < NONCE_LEN {
            return Err(JournalError::Sealed(format!(
                "{place}: truncated sealed record"
            )));
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| {
                JournalError::Sealed(format!(
                    "{place}: cannot open the sealed record: wrong --journal-key-file?"
                ))
            })
    }
}

fn key_file(path: &Path, reason: impl std::fmt::Display) -> JournalError {
    JournalError::KeyFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Whether a document holds a private key.
fn secret(kind: DocKind) -> bool {
    matches!(kind, DocKind::NewRoot | DocKind::ExecutorBase)
}

fn doc_place(rotation: &str, kind: DocKind) -> String {
    format!("rotation {rotation} document {kind:?}")
}

const IDENTITY_PLACE: &str = "executor identity";

/// A [`Journal`] whose private-key records are sealed with a [`JournalKey`] (or
/// stored as they are, without one).
pub struct SealedJournal {
    inner: Arc<dyn Journal>,
    key: Option<JournalKey>,
}

impl SealedJournal {
    /// Wrap `inner`; `key: None` stores records as they are.
    pub fn new(inner: Arc<dyn Journal>, key: Option<JournalKey>) -> Self {
        SealedJournal { inner, key }
    }

    fn seal(&self, place: &str, data: &[u8]) -> Result<Vec<u8>, JournalError> {
        match &self.key {
            Some(key) => key.seal(place, data),
            None => Ok(data.to_vec()),
        }
    }

    fn open(&self, place: &str, data: Vec<u8>) -> Result<Vec<u8>, JournalError> {
        if !data.starts_with(MAGIC) {
            // Written before a key was configured: readable as it is.
            return Ok(data);
        }
        match &self.key {
            Some(key) => key.open(place, &data),
            None => Err(JournalError::Sealed(format!(
                "{place} is sealed with a journal key: pass --journal-key-file"
            ))),
        }
    }
}

impl Journal for SealedJournal {
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
        if self.key.is_none() {
            return self.inner.commit(ops);
        }
        let mut sealed = Vec::with_capacity(ops.len());
        for op in ops {
            sealed.push(match op {
                Op::Document {
                    rotation,
                    kind,
                    data,
                } if secret(*kind) => Op::Document {
                    rotation: rotation.clone(),
                    kind: *kind,
                    data: self.seal(&doc_place(rotation, *kind), data)?,
                },
                Op::Identity(data) => Op::Identity(self.seal(IDENTITY_PLACE, data)?),
                other => other.clone(),
            });
        }
        self.inner.commit(&sealed)
    }

    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
        self.inner.rotations()
    }

    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
        self.inner.rotation(id)
    }

    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
        match self.inner.document(id, kind)? {
            Some(data) if secret(kind) => self.open(&doc_place(id, kind), data).map(Some),
            other => Ok(other),
        }
    }

    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
        self.inner.steps(id)
    }

    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        self.inner.leaves(id)
    }

    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        self.inner.events(id, from, limit)
    }

    fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
        self.inner.last_sequence(id)
    }

    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
        match self.inner.identity()? {
            Some(data) => self.open(IDENTITY_PLACE, data).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use crate::journal::MemJournal;

    fn key(b: u8) -> JournalKey {
        JournalKey::from_bytes(&[b; 32])
    }

    #[test]
    fn sealed_journal_conforms_and_hides_keys_at_rest() {
        let store = Arc::new(MemJournal::default());
        let journal = SealedJournal::new(store.clone(), Some(key(1)));
        conformance::exercise(&journal);
        conformance::check(&journal);
        conformance::check_replace(&journal);
        // At rest, the root's PEM and the identity are sealed; other records are not.
        let raw = store.document("r1", DocKind::NewRoot).unwrap().unwrap();
        assert!(raw.starts_with(MAGIC) && !raw.windows(3).any(|w| w == b"PEM"));
        assert!(store.identity().unwrap().unwrap().starts_with(MAGIC));
        assert_eq!(store.leaves("r1").unwrap()[0].1, vec![1, 2, 3]);
    }

    #[test]
    fn wrong_or_missing_key_is_a_clear_error() {
        let store: Arc<dyn Journal> = Arc::new(MemJournal::default());
        conformance::exercise(&SealedJournal::new(store.clone(), Some(key(1))));
        let wrong = SealedJournal::new(store.clone(), Some(key(2)));
        let e = wrong.document("r1", DocKind::NewRoot).unwrap_err();
        assert!(e.to_string().contains("wrong --journal-key-file"), "{e}");
        let none = SealedJournal::new(store.clone(), None);
        let e = none.identity().unwrap_err();
        assert!(e.to_string().contains("pass --journal-key-file"), "{e}");
        // A record moved to another place does not open.
        let sealed = store.document("r1", DocKind::NewRoot).unwrap().unwrap();
        store
            .commit(&[Op::Document {
                rotation: "r2".into(),
                kind: DocKind::NewRoot,
                data: sealed,
            }])
            .unwrap();
        let right = SealedJournal::new(store, Some(key(1)));
        assert!(right.document("r2", DocKind::NewRoot).is_err());
        assert!(right.document("r1", DocKind::NewRoot).is_ok());
    }

    #[test]
    fn plain_records_stay_readable_once_a_key_is_given() {
        let store: Arc<dyn Journal> = Arc::new(MemJournal::default());
        conformance::exercise(&SealedJournal::new(store.clone(), None));
        conformance::check(&SealedJournal::new(store, Some(key(3))));
    }

    #[test]
    fn key_files_are_hex_or_raw() {
        let dir = tempfile::tempdir().unwrap();
        let hex_file = dir.path().join("hex");
        std::fs::write(&hex_file, format!("{}\n", "ab".repeat(32))).unwrap();
        assert!(JournalKey::from_file(&hex_file).is_ok());
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; 32]).unwrap();
        assert!(JournalKey::from_file(&raw).is_ok());
        let short = dir.path().join("short");
        std::fs::write(&short, "abc").unwrap();
        let e = JournalKey::from_file(&short).unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }
}
