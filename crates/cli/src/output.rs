//! Writing a command's result to standard output or to a file (`-o FILE`).

use std::io::{ErrorKind, Write};
use std::path::Path;

use anyhow::Context;

/// Write `text` to `path`, or to standard output when there is none (or it is `-`).
/// A closed pipe on standard output (e.g. `| head`) is not an error.
pub fn write(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(path) if path != Path::new("-") => {
            std::fs::write(path, text)
                .with_context(|| format!("{}: cannot write", path.display()))?;
            tracing::debug!(path = %path.display(), bytes = text.len(), "wrote output");
            Ok(())
        }
        _ => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
                other => other.context("cannot write to standard output"),
            }
        }
    }
}
