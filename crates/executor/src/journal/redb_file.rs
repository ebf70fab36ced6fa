//! [`RedbJournal`]: the journal in a redb file, `executor.redb` in the state directory,
//! one table per kind of record.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::*;

const ROTATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("rotations");
const DOCUMENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("documents");
const STEPS: TableDefinition<(&str, u64, bool), &[u8]> = TableDefinition::new("steps");
const LEAVES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("leaves");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("identity");

/// The journal in a redb file, `executor.redb` in the state directory.
pub struct RedbJournal {
    db: Database,
}

impl RedbJournal {
    /// Open (or create) the journal in `state_dir` (created if missing, owner-only).
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(state_dir).map_err(|e| io_error(state_dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = state_dir.join("executor.redb");
        // The journal holds the new roots' private keys: owner-only, made so before
        // redb writes anything to it (redb creates files with the umask's mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .and_then(|_| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                })
                .map_err(|e| io_error(&path, e))?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => JournalError::AlreadyOpen { path },
            e => je(e),
        })?;
        let txn = db.begin_write().map_err(je)?;
        {
            txn.open_table(ROTATIONS).map_err(je)?;
            txn.open_table(DOCUMENTS).map_err(je)?;
            txn.open_table(STEPS).map_err(je)?;
            txn.open_table(LEAVES).map_err(je)?;
            txn.open_table(EVENTS).map_err(je)?;
            txn.open_table(IDENTITY).map_err(je)?;
        }
        txn.commit().map_err(je)?;
        Ok(RedbJournal { db })
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("journal records serialize")
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::corrupt("rotation record", e))
}

impl Journal for RedbJournal {
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
        let mut txn = self.db.begin_write().map_err(je)?;
        txn.set_durability(Durability::Immediate).map_err(je)?;
        {
            let mut rotations = txn.open_table(ROTATIONS).map_err(je)?;
            let mut documents = txn.open_table(DOCUMENTS).map_err(je)?;
            let mut steps = txn.open_table(STEPS).map_err(je)?;
            let mut leaves = txn.open_table(LEAVES).map_err(je)?;
            let mut events = txn.open_table(EVENTS).map_err(je)?;
            let mut identity = txn.open_table(IDENTITY).map_err(je)?;
            for op in ops {
                match op {
                    Op::Rotation(meta) => {
                        rotations
                            .insert(meta.id.as_str(), json(meta).as_slice())
                            .map_err(je)?;
                    }
                    Op::Document {
                        rotation,
                        kind,
                        data,
                    } => {
                        documents
                            .insert((rotation.as_str(), kind.key()), data.as_slice())
                            .map_err(je)?;
                    }
                    Op::Step {
                        rotation,
                        step,
                        undo,
                        record,
                    } => {
                        steps
                            .insert(
                                (rotation.as_str(), *step, *undo),
                                record.encode().as_slice(),
                            )
                            .map_err(je)?;
                    }
                    Op::Leaf {
                        rotation,
                        node,
                        der,
                    } => {
                        leaves
                            .insert((rotation.as_str(), node.as_str()), der.as_slice())
                            .map_err(je)?;
                    }
                    Op::Event {
                        rotation,
                        seq,
                        data,
                    } => {
                        events
                            .insert((rotation.as_str(), *seq), data.as_slice())
                            .map_err(je)?;
                    }
                    Op::Identity(data) => {
                        identity.insert("executor", data.as_slice()).map_err(je)?;
                    }
                }
            }
        }
        txn.commit().map_err(je)
    }

    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(ROTATIONS).map_err(je)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(je)? {
            let (_, v) = row.map_err(je)?;
            out.push(from_json(v.value())?);
        }
        Ok(out)
    }

    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(ROTATIONS).map_err(je)?;
        match table.get(id).map_err(je)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(DOCUMENTS).map_err(je)?;
        Ok(table
            .get((id, kind.key()))
            .map_err(je)?
            .map(|v| v.value().to_vec()))
    }

    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(STEPS).map_err(je)?;
        let mut out = Vec::new();
        for row in table
            .range((id, 0u64, false)..=(id, u64::MAX, true))
            .map_err(je)?
        {
            let (k, v) = row.map_err(je)?;
            let (_, step, undo) = k.value();
            out.push((step, undo, StepRecord::decode(v.value())?));
        }
        Ok(out)
    }

    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(LEAVES).map_err(je)?;
        let mut out = Vec::new();
        for row in table.range((id, "")..).map_err(je)? {
            let (k, v) = row.map_err(je)?;
            let (rotation, node) = k.value();
            if rotation != id {
                break;
            }
            out.push((node.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(EVENTS).map_err(je)?;
        let mut out = Vec::new();
        for row in table.range((id, from)..=(id, u64::MAX)).map_err(je)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row.map_err(je)?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(out)
    }

    fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(EVENTS).map_err(je)?;
        let last = table
            .range((id, 0u64)..=(id, u64::MAX))
            .map_err(je)?
            .next_back();
        match last {
            Some(row) => Ok(row.map_err(je)?.0.value().1),
            None => Ok(0),
        }
    }

    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
        let txn = self.db.begin_read().map_err(je)?;
        let table = txn.open_table(IDENTITY).map_err(je)?;
        Ok(table
            .get("executor")
            .map_err(je)?
            .map(|v| v.value().to_vec()))
    }
}
