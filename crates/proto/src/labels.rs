//! Wire enum values as people read them: the proto name without its type prefix
//! (`ROTATION_STATE_ROLLED_BACK` -> `ROLLED_BACK`, or `rolled_back` in lower case).
//!
//! One home for these labels, so the CLI, the executor and the simulator print (and
//! match) the same words; the names come from the generated `as_str_name`, so a value
//! added to a `.proto` file is labelled without a change here.

use crate::v1;

/// A generated wire enum whose values print without their type prefix.
pub trait WireLabel: Copy + TryFrom<i32> {
    /// The prefix protobuf style puts on every value of the enum (`ROTATION_STATE_`).
    const PREFIX: &'static str;

    /// The full proto name of the value (prost's `as_str_name`).
    fn proto_name(self) -> &'static str;

    /// The value's name without the prefix: `ROLLED_BACK`.
    fn label(self) -> &'static str {
        let name = self.proto_name();
        name.strip_prefix(Self::PREFIX).unwrap_or(name)
    }

    /// The label in lower case: `rolled_back`.
    fn lower_label(self) -> String {
        self.label().to_ascii_lowercase()
    }
}

macro_rules! wire_label {
    ($($enum:ident => $prefix:literal),* $(,)?) => {$(
        impl WireLabel for v1::$enum {
            const PREFIX: &'static str = $prefix;
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
        }
    )*};
}

wire_label! {
    NodeMode => "NODE_MODE_",
    StepAction => "STEP_ACTION_",
    Strategy => "STRATEGY_",
    NodeIdentity => "NODE_IDENTITY_",
    DocumentFormat => "DOCUMENT_FORMAT_",
    RotationState => "ROTATION_STATE_",
    FleetProblemKind => "FLEET_PROBLEM_KIND_",
}

/// The label of a raw wire value, `None` when the value is not one of `E`'s (a newer
/// peer's enum value, say).
pub fn label_of<E: WireLabel>(value: i32) -> Option<&'static str> {
    E::try_from(value).ok().map(WireLabel::label)
}

/// The lower-case label of a raw wire value, `None` when it is not one of `E`'s.
pub fn lower_label_of<E: WireLabel>(value: i32) -> Option<String> {
    E::try_from(value).ok().map(WireLabel::lower_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_the_type_prefix() {
        assert_eq!(v1::RotationState::RolledBack.label(), "ROLLED_BACK");
        assert_eq!(v1::RotationState::Succeeded.lower_label(), "succeeded");
        assert_eq!(v1::StepAction::Finalize.lower_label(), "finalize");
        assert_eq!(v1::NodeMode::Atomic.lower_label(), "atomic");
        assert_eq!(
            v1::FleetProblemKind::MidRotation.lower_label(),
            "mid_rotation"
        );
        assert_eq!(
            label_of::<v1::RotationState>(v1::RotationState::Paused as i32),
            Some("PAUSED")
        );
        assert_eq!(label_of::<v1::RotationState>(999), None);
        assert_eq!(
            lower_label_of::<v1::StepAction>(v1::StepAction::Bridge as i32).as_deref(),
            Some("bridge")
        );
    }

    /// Every value of every labelled enum carries its prefix, so no label is the full
    /// proto name by accident.
    #[test]
    fn every_value_has_its_prefix() {
        fn check<E: WireLabel>(values: impl Iterator<Item = i32>) {
            for v in values {
                if let Ok(e) = E::try_from(v) {
                    assert!(e.proto_name().starts_with(E::PREFIX), "{}", e.proto_name());
                    assert!(!e.label().is_empty());
                }
            }
        }
        check::<v1::NodeMode>(0..8);
        check::<v1::StepAction>(0..16);
        check::<v1::Strategy>(0..8);
        check::<v1::NodeIdentity>(0..8);
        check::<v1::DocumentFormat>(0..8);
        check::<v1::RotationState>(0..16);
        check::<v1::FleetProblemKind>(0..16);
    }
}
