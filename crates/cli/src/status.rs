//! Exit statuses, and how an error maps to one.

use std::fmt;
use std::process::ExitCode;

use rollover_core::CoreError;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done; for `verify`, the plan is safe.
    Success,
    /// The plan is unsafe, or the operation failed.
    Failure,
    /// The input could not be read or is malformed.
    BadInput,
}

impl Status {
    /// Bad input when the error comes from the input (a core parse/check error or an
    /// unreadable file), a plain failure otherwise.
    pub fn of_error(err: &anyhow::Error) -> Status {
        let from_input = err
            .chain()
            .any(|e| e.is::<CoreError>() || e.is::<BadInput>());
        if from_input {
            Status::BadInput
        } else {
            Status::Failure
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(match status {
            Status::Success => 0,
            Status::Failure => 1,
            Status::BadInput => 2,
        })
    }
}

/// An error caused by the command's input (exit code 2).
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_exit_codes() {
        let bad = anyhow::Error::new(BadInput("nope".into()));
        assert_eq!(Status::of_error(&bad), Status::BadInput);
        let core = anyhow::Error::new(CoreError::Planning("x".into())).context("while planning");
        assert_eq!(Status::of_error(&core), Status::BadInput);
        let other = anyhow::anyhow!("disk full");
        assert_eq!(Status::of_error(&other), Status::Failure);
    }
}
