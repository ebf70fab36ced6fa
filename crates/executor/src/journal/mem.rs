//! [`MemJournal`]: the journal in memory (tests, simulations without a disk).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;

/// A journal in memory, for tests and dry experiments. Not durable.
#[derive(Default)]
pub struct MemJournal {
    inner: Mutex<MemTables>,
}

#[derive(Default)]
struct MemTables {
    rotations: BTreeMap<String, RotationMeta>,
    documents: BTreeMap<(String, DocKind), Vec<u8>>,
    steps: BTreeMap<(String, u64, bool), StepRecord>,
    leaves: BTreeMap<(String, String), Vec<u8>>,
    events: BTreeMap<(String, u64), Vec<u8>>,
    identity: Option<Vec<u8>>,
}

impl Journal for MemJournal {
    fn commit(&self, ops: &[Op]) -> Result<(), JournalError> {
        let mut t = self.inner.lock().expect("journal lock");
        for op in ops.iter().cloned() {
            match op {
                Op::Rotation(meta) => {
                    t.rotations.insert(meta.id.clone(), meta);
                }
                Op::Document {
                    rotation,
                    kind,
                    data,
                } => {
                    t.documents.insert((rotation, kind), data);
                }
                Op::Step {
                    rotation,
                    step,
                    undo,
                    record,
                } => {
                    t.steps.insert((rotation, step, undo), record);
                }
                Op::Leaf {
                    rotation,
                    node,
                    der,
                } => {
                    t.leaves.insert((rotation, node), der);
                }
                Op::Event {
                    rotation,
                    seq,
                    data,
                } => {
                    t.events.insert((rotation, seq), data);
                }
                Op::Identity(data) => t.identity = Some(data),
            }
        }
        Ok(())
    }

    fn rotations(&self) -> Result<Vec<RotationMeta>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.rotations.values().cloned().collect())
    }

    fn rotation(&self, id: &str) -> Result<Option<RotationMeta>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.rotations.get(id).cloned())
    }

    fn document(&self, id: &str, kind: DocKind) -> Result<Option<Vec<u8>>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.documents.get(&(id.to_string(), kind)).cloned())
    }

    fn steps(&self, id: &str) -> Result<Vec<(u64, bool, StepRecord)>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.steps
            .range((id.to_string(), 0, false)..=(id.to_string(), u64::MAX, true))
            .map(|((_, s, u), r)| (*s, *u, *r))
            .collect())
    }

    fn leaves(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.leaves
            .iter()
            .filter(|((r, _), _)| r == id)
            .map(|((_, n), d)| (n.clone(), d.clone()))
            .collect())
    }

    fn events(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.events
            .range((id.to_string(), from)..=(id.to_string(), u64::MAX))
            .take(limit)
            .map(|((_, s), d)| (*s, d.clone()))
            .collect())
    }

    fn last_sequence(&self, id: &str) -> Result<u64, JournalError> {
        let t = self.inner.lock().expect("journal lock");
        Ok(t.events
            .range((id.to_string(), 0)..=(id.to_string(), u64::MAX))
            .next_back()
            .map_or(0, |((_, s), _)| *s))
    }

    fn identity(&self) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.inner.lock().expect("journal lock").identity.clone())
    }
}
