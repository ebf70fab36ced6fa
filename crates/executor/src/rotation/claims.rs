//! Which active rotation is replacing which root: a CA is its current root, whatever
//! its topology calls it.
//!
//! Admission ([`crate::admission`]) refuses a rotation over nodes another active one
//! targets, or of a CA written alike, but it cannot see the roots: they are known once
//! preparation has asked every agent. Two rotations whose agents are on one root are
//! rotating one CA (under two names, or in two parts of its fleet), and would give it
//! two new roots that do not trust each other. So the first preparation of a rotation
//! claims the roots its agents are on (and its new root); a rotation whose agents are
//! on a root an active rotation has claimed fails there, before its first step.
//! Claims are weak: a rotation that ended, or is gone, holds none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::{NodeFacts, Rotation};
use crate::error::RotationError;

/// What a claimed root is to the rotation holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Its agents were on it.
    Old,
    /// It rotates to it.
    New,
}

/// Root fingerprint (lower-case hex) -> the rotation that claimed it.
#[derive(Default)]
pub struct RootClaims {
    by_root: Mutex<HashMap<String, (Weak<Rotation>, Role)>>,
}

impl RootClaims {
    /// Claim the roots `facts` name and `new_root` for `rotation`. With `check`
    /// (its first preparation), refuse when an active other rotation holds one of
    /// them; without (resumed from the journal: it was admitted before), only claim.
    pub(super) fn claim(
        &self,
        rotation: &Arc<Rotation>,
        facts: &[NodeFacts],
        new_root: &str,
        check: bool,
    ) -> Result<(), RotationError> {
        let mut olds: Vec<String> = facts
            .iter()
            .filter(|f| !f.old_root.is_empty())
            .map(|f| f.old_root.to_ascii_lowercase())
            .collect();
        olds.sort_unstable();
        olds.dedup();
        let mut by_root = self.by_root.lock().expect("root claims lock");
        if check {
            for root in &olds {
                let Some((holder, role)) = by_root.get(root) else {
                    continue;
                };
                let Some(holder) = holder.upgrade() else {
                    continue;
                };
                let meta = holder.snapshot().meta;
                if holder.id == rotation.id || meta.state.is_terminal() {
                    continue;
                }
                let what = match role {
                    Role::Old => "is replacing",
                    Role::New => "is rotating to",
                };
                return Err(RotationError::SameRoot(format!(
                    "its agents are on root {}, which active rotation {} (CA `{}`) {what}: \
                     the same CA, under another name or in another part of its fleet; one \
                     rotation per CA at a time: wait for {} to end, then start this one \
                     again",
                    root.get(..16).unwrap_or(root),
                    holder.id,
                    meta.ca,
                    holder.id
                )));
            }
        }
        let weak = Arc::downgrade(rotation);
        for root in olds {
            by_root.insert(root, (weak.clone(), Role::Old));
        }
        by_root.insert(new_root.to_ascii_lowercase(), (weak, Role::New));
        // Forget the claims of rotations that are gone, so the map stays as small as
        // the roots of the rotations alive.
        by_root.retain(|_, (w, _)| w.strong_count() > 0);
        Ok(())
    }
}
