//! Writing a command's result to standard output or to a file (`-o FILE`), and the
//! `-f/--format`, `-o/--output` flags every reporting command shares.

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

/// `-f/--format` of every command that reports something (`plan` has more formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// JSON for programs (one object per line for streams of events).
    Json,
}

/// The output convention every reporting command shares: `-f/--format text|json` and
/// `-o/--output FILE` (default: standard output).
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the output to FILE instead of standard output (`-`: standard output).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Same as `--format json` (kept for scripts written before --format).
    #[arg(long, hide = true)]
    pub json: bool,
}

impl OutputArgs {
    /// Whether JSON was asked for.
    pub fn is_json(&self) -> bool {
        self.json || self.format == Format::Json
    }

    /// Write a whole result.
    pub fn write(&self, text: &str) -> anyhow::Result<()> {
        write(self.output.as_deref(), text)
    }

    /// Where a stream of lines goes (events as they happen).
    pub fn sink(&self) -> anyhow::Result<Sink> {
        match self.output.as_deref() {
            Some(path) if path != Path::new("-") => {
                let file = std::fs::File::create(path)
                    .with_context(|| format!("{}: cannot write", path.display()))?;
                Ok(Sink::File(std::io::LineWriter::new(file)))
            }
            _ => Ok(Sink::Stdout),
        }
    }
}

/// A line-by-line output: standard output or a file (`-o`).
pub enum Sink {
    /// Standard output.
    Stdout,
    /// A file, flushed at every line.
    File(std::io::LineWriter<std::fs::File>),
}

impl Sink {
    /// Whether the lines go to standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout)
    }

    /// Write one line (a closed pipe is not an error: the command goes on).
    pub fn line(&mut self, line: &str) {
        let result = match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|()| out.flush())
            }
            Sink::File(file) => writeln!(file, "{line}"),
        };
        if let Err(e) = result
            && e.kind() != ErrorKind::BrokenPipe
        {
            tracing::warn!(error = %e, "cannot write the output");
        }
    }
}
