//! Reading input documents from files or standard input (`-`).

use std::io::Read;

use crate::status::BadInput;

/// The name input errors give to standard input.
pub const STDIN_ORIGIN: &str = "<stdin>";

/// A document read into memory, with the name its errors will carry.
#[derive(Debug)]
pub struct Source {
    /// The path as given, or [`STDIN_ORIGIN`].
    pub origin: String,
    /// The whole text.
    pub text: String,
}

/// Read `path`, or standard input when `path` is `-`. Errors name the file and count as
/// bad input.
pub fn read(path: &str) -> anyhow::Result<Source> {
    let (origin, result) = if path == "-" {
        let mut text = String::new();
        let result = std::io::stdin().read_to_string(&mut text).map(|_| text);
        (STDIN_ORIGIN.to_string(), result)
    } else {
        (path.to_string(), std::fs::read_to_string(path))
    };
    let text = result.map_err(|e| BadInput(format!("{origin}: cannot read: {e}")))?;
    tracing::debug!(origin, bytes = text.len(), "read input");
    Ok(Source { origin, text })
}

/// Refuse to read standard input twice.
pub fn at_most_one_stdin(paths: &[&str]) -> anyhow::Result<()> {
    if paths.iter().filter(|p| **p == "-").count() > 1 {
        return Err(BadInput("only one input can be read from standard input (`-`)".into()).into());
    }
    Ok(())
}
