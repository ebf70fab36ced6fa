//! Fencing of deposed executors: the highest leader epoch the node has seen, per
//! rotation.
//!
//! Several executors may share one journal; a lease elects one leader at a time and
//! each new lease has a higher epoch. A leader that lost its lease may still have
//! calls in flight (a slow network, a paused process). Every ApplyStep and CreateCsr
//! carries the caller's epoch, and the node refuses one lower than the highest it has
//! seen for that rotation, so a late call of a deposed leader cannot undo or repeat
//! what its successor did. Epoch 0 is an executor that leads alone (no lease): it is
//! admitted as long as no leader with a lease has called for that rotation.
//!
//! The record is part of the node's persisted state (a restart must not forget it)
//! and keeps the most recent [`KEPT`] rotations: older rotations are over, and their
//! steps are refused by the node's own rules anyway.

use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Rotations whose highest epoch is kept.
pub const KEPT: usize = 32;

/// One rotation's highest epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeenEpoch {
    pub rotation_id: String,
    pub epoch: u64,
}

/// The highest epoch seen per rotation, oldest rotation first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochs {
    seen: Vec<SeenEpoch>,
}

impl LeaderEpochs {
    /// From the persisted list (oldest first).
    pub fn from_seen(seen: Vec<SeenEpoch>) -> Self {
        let mut epochs = Self { seen };
        epochs.trim();
        epochs
    }

    /// The persisted list (oldest first).
    pub fn seen(&self) -> &[SeenEpoch] {
        &self.seen
    }

    /// The highest epoch seen for `rotation_id` (0 when none was).
    pub fn highest(&self, rotation_id: &str) -> u64 {
        self.seen
            .iter()
            .find(|s| s.rotation_id == rotation_id)
            .map_or(0, |s| s.epoch)
    }

    /// Admit a call of `rotation_id` at `epoch`: refused when a higher epoch has been
    /// seen; otherwise `true` when it raises the record (the caller persists it).
    pub fn admit(&mut self, rotation_id: &str, epoch: u64) -> Result<bool, AgentError> {
        let highest = self.highest(rotation_id);
        if epoch < highest {
            return Err(AgentError::StaleLeader {
                rotation_id: rotation_id.to_string(),
                epoch,
                highest,
            });
        }
        if epoch == highest {
            return Ok(false);
        }
        self.seen.retain(|s| s.rotation_id != rotation_id);
        self.seen.push(SeenEpoch {
            rotation_id: rotation_id.to_string(),
            epoch,
        });
        self.trim();
        Ok(true)
    }

    fn trim(&mut self) {
        let excess = self.seen.len().saturating_sub(KEPT);
        self.seen.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_epoch_is_refused_after_a_higher_one() {
        let mut epochs = LeaderEpochs::default();
        assert!(epochs.admit("r1", 3).unwrap());
        assert!(!epochs.admit("r1", 3).unwrap(), "same leader again");
        let err = epochs.admit("r1", 2).unwrap_err();
        assert!(
            matches!(
                err,
                AgentError::StaleLeader {
                    epoch: 2,
                    highest: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            epochs.admit("r1", 0).is_err(),
            "a lone executor after a leader"
        );
        assert!(epochs.admit("r1", 4).unwrap(), "the next leader");
        assert_eq!(epochs.highest("r1"), 4);
    }

    #[test]
    fn epochs_are_per_rotation() {
        let mut epochs = LeaderEpochs::default();
        epochs.admit("r1", 7).unwrap();
        assert!(epochs.admit("r2", 1).unwrap());
        assert!(!epochs.admit("r3", 0).unwrap(), "nothing to record");
        assert_eq!(epochs.highest("r1"), 7);
        assert_eq!(epochs.highest("r2"), 1);
    }

    #[test]
    fn only_the_most_recent_rotations_are_kept() {
        let mut epochs = LeaderEpochs::default();
        for i in 0..KEPT + 5 {
            epochs.admit(&format!("r{i}"), 1).unwrap();
        }
        assert_eq!(epochs.seen().len(), KEPT);
        assert_eq!(epochs.highest("r0"), 0, "the oldest was let go");
        assert_eq!(epochs.highest(&format!("r{}", KEPT + 4)), 1);
        let reloaded = LeaderEpochs::from_seen(epochs.seen().to_vec());
        assert_eq!(reloaded, epochs);
    }
}
