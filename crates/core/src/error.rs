//! The one error type of the core crate.

use std::fmt;

/// Where in an input document something went wrong, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file (or other origin) the document came from.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// The field at fault, as a path such as `nodes[1].mode`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": field `{}`: {}", self.field, self.message)
        }
    }
}

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// A topology or plan document is malformed or inconsistent.
    #[error("{0}")]
    Input(Box<InputError>),
    /// A planning request that cannot be honoured (e.g. an unknown start node).
    #[error("cannot plan: {0}")]
    Planning(String),
    /// An address (a node's `probe`) that is not `host:port`.
    #[error("`{text}` is not host:port: {reason}")]
    HostPort {
        /// The address as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl CoreError {
    /// The input error, if this is one.
    pub fn as_input(&self) -> Option<&InputError> {
        match self {
            CoreError::Input(e) => Some(e),
            CoreError::Planning(_) | CoreError::HostPort { .. } => None,
        }
    }
}

impl From<InputError> for CoreError {
    fn from(e: InputError) -> Self {
        CoreError::Input(Box::new(e))
    }
}
