//! What a rotation's wire state tells a client: whether the rotation has ended. One
//! home for the set of end states, so the CLI and the tests that wait for an end agree.

use crate::v1::RotationState;

impl RotationState {
    /// Whether a rotation in this state has ended: succeeded, failed, aborted or
    /// rolled back.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::RolledBack
        )
    }

    /// [`RotationState::is_terminal`] of a state as it travels (an `i32`); a value
    /// this build does not know is not an end.
    pub fn is_terminal_value(state: i32) -> bool {
        Self::try_from(state).is_ok_and(Self::is_terminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_ends_are_terminal() {
        let ends = [
            RotationState::Succeeded,
            RotationState::Failed,
            RotationState::Aborted,
            RotationState::RolledBack,
        ];
        for value in 0..32 {
            let Ok(state) = RotationState::try_from(value) else {
                assert!(!RotationState::is_terminal_value(value), "{value}");
                continue;
            };
            assert_eq!(state.is_terminal(), ends.contains(&state), "{state:?}");
            assert_eq!(RotationState::is_terminal_value(value), state.is_terminal());
        }
    }
}
