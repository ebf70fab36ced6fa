//! Which rotations may be active together: a fleet rotates once at a time, whatever
//! its CA is called.
//!
//! Two rotations conflict while both are active (not terminal) when
//!
//! * they share a target node: an agent takes the steps of one rotation at a time,
//!   and two rotations over one agent race; the CA's text is no guide
//!   (`Demo-Root` and `demo-root` over the same agents are the same fleet);
//! * or their CAs are written alike ([`same_ca`]: case and surrounding blanks
//!   ignored, as X.509 name matching does), so their new roots, named
//!   `<ca> gen N`, could not be told apart.
//!
//! The node check is linear: the candidate's ids go into a hash set once, then each
//! active rotation's ids are looked up in it (fleets have 100,000 nodes; the active
//! rotations are few). The binding check runs under the admission lock
//! ([`Executor::admit`](crate::Executor)); the ones before planning and in
//! CheckFleet only fail fast.
//!
//! Preparation adds the roots' fingerprints ([`crate::rotation::RootClaims`]): a
//! rotation whose agents turn out to be on a root another active rotation is
//! replacing fails before its first step.

use std::collections::HashSet;
use std::sync::Arc;

use rollover_core::Fleet;

use crate::Executor;
use crate::error::ApiError;
use crate::journal::{RotationMeta, State};
use crate::rotation::Rotation;
use crate::wire;

/// Shared nodes named in a refusal; the rest are counted.
const SHOWN: usize = 3;

/// Whether two CA names name the same CA: compared without case and without
/// surrounding blanks, as certificate name matching (RFC 5280 §7.1) compares the
/// subjects `<ca> gen N` the executor gives its roots.
pub(crate) fn same_ca(a: &str, b: &str) -> bool {
    fn lower(s: &str) -> impl Iterator<Item = char> + '_ {
        s.trim().chars().flat_map(char::to_lowercase)
    }
    lower(a).eq(lower(b))
}

/// An active rotation a new one would run alongside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The active rotation.
    pub id: String,
    /// Its state.
    pub state: State,
    /// Its CA, as its topology writes it.
    pub ca: String,
    /// Some of the target nodes both share (at most [`SHOWN`]), in the active
    /// rotation's order.
    pub shared: Vec<String>,
    /// How many target nodes both share.
    pub shared_total: usize,
}

impl Busy {
    /// Why the new rotation must wait, for the caller.
    pub fn message(&self) -> String {
        let state = wire::state_name(self.state);
        if self.shared_total == 0 {
            return format!(
                "CA `{}` already has an active rotation: {} is {state}; one rotation per \
                 CA at a time: wait for it to end, or steer it (Resume, Abort, Rollback)",
                self.ca, self.id
            );
        }
        let more = self.shared_total - self.shared.len();
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!(
            "{} of its target node(s) are targets of active rotation {id}: {id} is \
             {state} (CA `{ca}`), sharing {nodes}{more}; a node rotates once at a time, \
             whatever its CA is called: wait for {id} to end, or steer it (Resume, Abort, \
             Rollback)",
            self.shared_total,
            id = self.id,
            ca = self.ca,
            nodes = self
                .shared
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

impl From<Busy> for ApiError {
    fn from(busy: Busy) -> ApiError {
        ApiError::Refused(busy.message())
    }
}

/// The target nodes of `other` that are in `mine`: how many, and the first few.
fn shared(mine: &HashSet<&str>, other: &Fleet) -> (Vec<String>, usize) {
    let mut shown = Vec::new();
    let mut total = 0;
    for id in other.ids.iter().filter(|id| mine.contains(id.as_str())) {
        if shown.len() < SHOWN {
            shown.push(id.clone());
        }
        total += 1;
    }
    (shown, total)
}

impl Executor {
    /// Every rotation, oldest first (the map's lock is not held afterwards).
    fn rotations_by_age(&self) -> Vec<Arc<Rotation>> {
        let mut all = self.all_rotations();
        all.sort_by_cached_key(|r| {
            let meta = r.snapshot().meta;
            (meta.created_ms, meta.id)
        });
        all
    }

    /// The oldest active rotation, other than `except`, that a rotation of `fleet`
    /// would conflict with (see the module docs), if any.
    pub fn active_conflict(&self, fleet: &Fleet, except: Option<&str>) -> Option<Busy> {
        let active: Vec<(Arc<Rotation>, RotationMeta)> = self
            .rotations_by_age()
            .into_iter()
            .map(|r| {
                let meta = r.snapshot().meta;
                (r, meta)
            })
            .filter(|(_, m)| !m.state.is_terminal() && Some(m.id.as_str()) != except)
            .collect();
        if active.is_empty() {
            return None;
        }
        let mine: HashSet<&str> = fleet.ids.iter().map(String::as_str).collect();
        active.into_iter().find_map(|(other, meta)| {
            let (shown, total) = shared(&mine, &other.fleet);
            (total > 0 || same_ca(&meta.ca, &fleet.ca)).then_some(Busy {
                id: meta.id,
                state: meta.state,
                ca: meta.ca,
                shared: shown,
                shared_total: total,
            })
        })
    }

    /// Refuse if a rotation of `fleet` would conflict with an active one (a quick
    /// check before planning; the binding one is [`Executor::admit`]'s).
    pub(crate) fn check_idle(&self, fleet: &Fleet) -> Result<(), ApiError> {
        match self.active_conflict(fleet, None) {
            Some(busy) => Err(busy.into()),
            None => Ok(()),
        }
    }

    /// A rotation started after `rotation` that shares nodes or its CA with it and
    /// still has applied steps: undoing `rotation` under it would fight it.
    pub(crate) fn newer_applied(&self, rotation: &Rotation) -> Option<String> {
        let meta = rotation.snapshot().meta;
        let key = (meta.created_ms, meta.id.as_str());
        let newer: Vec<Arc<Rotation>> = self
            .rotations_by_age()
            .into_iter()
            .filter(|r| {
                let s = r.snapshot();
                s.meta.id != meta.id
                    && (s.meta.created_ms, s.meta.id.as_str()) > key
                    && s.steps_done > 0
                    && !s.meta.options.dry_run
            })
            .collect();
        if newer.is_empty() {
            return None;
        }
        let mine: HashSet<&str> = rotation.fleet.ids.iter().map(String::as_str).collect();
        newer
            .into_iter()
            .find(|r| same_ca(&r.fleet.ca, &meta.ca) || shared(&mine, &r.fleet).1 > 0)
            .map(|r| r.id.clone())
    }
}

/// Whether `meta`'s CA is `ca` (see [`same_ca`]); for the generation of new roots.
pub(crate) fn of_ca(meta: &RotationMeta, ca: &str) -> bool {
    same_ca(&meta.ca, ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_names_compare_without_case_or_blanks() {
        assert!(same_ca("demo-root", "Demo-Root"));
        assert!(same_ca(" demo-root", "DEMO-ROOT "));
        assert!(same_ca("Zürich", "ZÜRICH"));
        assert!(!same_ca("demo-root", "demo-root2"));
        assert!(!same_ca("demo root", "demo-root"));
    }

    #[test]
    fn a_refusal_names_the_rotation_and_a_few_shared_nodes() {
        let busy = Busy {
            id: "r1".into(),
            state: State::Running,
            ca: "demo-root".into(),
            shared: vec!["a".into(), "b".into(), "c".into()],
            shared_total: 10,
        };
        let m = busy.message();
        assert!(m.contains("r1 is RUNNING"), "{m}");
        assert!(m.contains("`a`, `b`, `c` and 7 more"), "{m}");
        assert!(m.contains("10 of its target node(s)"), "{m}");
        let by_name = Busy {
            shared: vec![],
            shared_total: 0,
            ..busy
        };
        assert!(by_name.message().contains("CA `demo-root` already has"));
    }

    #[test]
    fn shared_nodes_are_counted_once_each() {
        let fleet = |ids: &[&str]| {
            let yaml = format!(
                "ca: x\nnodes:\n{}",
                ids.iter()
                    .map(|i| format!("  - {{id: \"{i}\", mode: bundle}}\n"))
                    .collect::<String>()
            );
            Fleet::new(&rollover_core::Topology::parse("t.yaml", &yaml).expect("topology"))
        };
        let mine = fleet(&["a", "b", "c", "d", "e"]);
        let set: HashSet<&str> = mine.ids.iter().map(String::as_str).collect();
        assert_eq!(shared(&set, &fleet(&["x", "y"])), (vec![], 0));
        assert_eq!(
            shared(&set, &fleet(&["e", "z", "d", "c", "b"])),
            (vec!["e".into(), "d".into(), "c".into()], 4)
        );
    }
}
