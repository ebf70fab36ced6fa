//! Writing a command's result to standard output or to a file (`-o FILE`), the
//! `-f/--format`, `-o/--output` flags every reporting command shares, and [`escape`],
//! which every human-readable printer passes text from input or from a server through.

use std::borrow::Cow;
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

/// Text that came from input or from a server (node ids, CA names, reasons, error
/// messages), made safe to print to a terminal: every character a terminal or viewer
/// would act on (C0 and C1 controls, DEL, line separators, bidi overrides: see
/// [`rollover_core::ids::unprintable`]) is written as its Rust escape (`\n`, `\u{1b}`),
/// so a reason cannot move the cursor, retitle the window or forge a line. Printable
/// Unicode is left alone. JSON output needs none of this: serde escapes it.
pub fn escape(text: &str) -> Cow<'_, str> {
    use rollover_core::ids::unprintable;
    if !text.chars().any(unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unprintable(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_what_a_terminal_acts_on_and_nothing_else() {
        assert!(matches!(escape("gw -> méter-7 节点"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\u{1b}]0;title\u{7}b\r\nc\td"),
            "a\\u{1b}]0;title\\u{7}b\\r\\nc\\td"
        );
        assert_eq!(escape("x\u{9b}2J\u{7f}"), "x\\u{9b}2J\\u{7f}");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        // Quotes and backslashes are printable: left as they are.
        assert_eq!(escape(r#"say "hi" \o/"#), r#"say "hi" \o/"#);
    }
}
