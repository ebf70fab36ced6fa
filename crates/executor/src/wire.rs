//! The executor's state as the wire says it: a rotation's [`v1::RotationStatus`], its
//! state's wire name, its options.

use rollover_core::Plan;
use rollover_proto::v1;

use crate::journal::{State, StoredOptions};
use crate::rotation::{Rotation, Snapshot};

/// A journaled rotation state as the wire names it.
pub fn state_to_wire(state: State) -> v1::RotationState {
    match state {
        State::Pending => v1::RotationState::Pending,
        State::Running => v1::RotationState::Running,
        State::Paused => v1::RotationState::Paused,
        State::RollingBack => v1::RotationState::RollingBack,
        State::Succeeded => v1::RotationState::Succeeded,
        State::Failed => v1::RotationState::Failed,
        State::Aborted => v1::RotationState::Aborted,
        State::RolledBack => v1::RotationState::RolledBack,
    }
}

fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn options_to_wire(o: &StoredOptions) -> v1::RotationOptions {
    let strategy = match o.strategy.as_deref() {
        Some("claim") => v1::Strategy::Claim,
        Some("waves") => v1::Strategy::Waves,
        Some("bridge") => v1::Strategy::Bridge,
        _ => v1::Strategy::Unspecified,
    };
    v1::RotationOptions {
        max_concurrency: o.max_concurrency,
        probe: o.probe,
        dry_run: o.dry_run,
        strategy: strategy as i32,
        start_node: o.start_node.clone(),
        observe_only: o.observe_only,
        skip_agent_checks: o.skip_agent_checks,
    }
}

/// The wire status of a rotation.
pub fn status_of(rotation: &Rotation, include_plan: bool) -> v1::RotationStatus {
    let snapshot = rotation.snapshot();
    status_from(
        snapshot,
        &rotation.plan,
        rotation.waves_total(),
        rotation.last_sequence(),
        include_plan,
    )
}

/// The wire status of a rotation from its parts: its counters, its plan (and the
/// plan's wave count) and the sequence number of its latest event. The leader builds
/// it from a running [`Rotation`], a follower from the journal ([`crate::reader`]).
pub(crate) fn status_from(
    snapshot: Snapshot,
    plan: &Plan,
    waves_total: u32,
    last_sequence: u64,
    include_plan: bool,
) -> v1::RotationStatus {
    let Snapshot {
        meta,
        steps_done,
        steps_running,
        current_wave,
        probes_total,
        probes_failed,
    } = snapshot;
    v1::RotationStatus {
        id: meta.id.clone(),
        state: state_to_wire(meta.state) as i32,
        ca: meta.ca.clone(),
        steps_total: plan.steps.len() as u32,
        steps_done,
        steps_running,
        current_wave,
        waves_total,
        paused_reason: if meta.state == State::Paused {
            meta.paused_reason.clone()
        } else {
            None
        },
        error: meta.error.clone(),
        probes_total,
        probes_failed,
        dry_run: meta.options.dry_run,
        created_at: Some(timestamp(meta.created_ms)),
        updated_at: Some(timestamp(meta.updated_ms)),
        last_sequence,
        options: Some(options_to_wire(&meta.options)),
        plan: include_plan.then(|| v1::Plan::from(plan)),
    }
}

/// `RUNNING`, `PAUSED`, ...: a state as the wire names it, without its prefix.
pub fn state_name(state: State) -> &'static str {
    rollover_proto::labels::WireLabel::label(state_to_wire(state))
}
