//! Where log lines go, so they never tear a progress bar or flood a terminal.
//!
//! Every `tracing` line is written through [`LogSink`]: straight to standard error by
//! default; through the progress bar while one is drawn (indicatif's `suspend`, which
//! clears the bar, prints and redraws it); or, while a long command *holds* them (a
//! simulation without `--verbose`, where a bad plan can log a warning per failed
//! probe), counted and the first few kept, for the command to summarise at the end.
//!
//! `-q`/`--quiet` keeps only errors, `-v` adds rollover's info lines, `-vv` debug,
//! `-vvv` everything; `RUST_LOG`, when set, overrides these levels.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How many held lines are kept to show at the end.
pub const KEEP: usize = 3;

/// How talkative the command line asked the program to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `--quiet`: the result and errors only.
    Quiet,
    /// The default: warnings and errors (held and summarised during a simulation).
    Normal,
    /// `-v` (1), `-vv` (2), `-vvv` (3 and more): every line as it happens.
    Verbose(u8),
}

impl Verbosity {
    /// From the `--quiet` flag and the number of `-v`.
    pub fn from_flags(quiet: bool, verbose: u8) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, n) => Verbosity::Verbose(n),
        }
    }

    /// The default log filter for this verbosity (third-party crates one level less
    /// talkative than rollover's own).
    pub fn filter(self) -> &'static str {
        match self {
            Verbosity::Quiet => "error",
            Verbosity::Normal => "warn",
            Verbosity::Verbose(1) => "warn,rollover=info",
            Verbosity::Verbose(2) => "info,rollover=debug",
            Verbosity::Verbose(_) => "debug,rollover=trace",
        }
    }
}

/// Lines held back while a command asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// How many lines were held.
    pub count: u64,
    /// The first [`KEEP`] of them.
    pub first: Vec<String>,
}

impl Held {
    /// A few lines saying how many were held, with the first ones, for standard error;
    /// empty when none was.
    pub fn summary(&self) -> String {
        if self.count == 0 {
            return String::new();
        }
        let mut out = format!(
            "{} warning(s) logged during the run; the first {}:\n",
            self.count,
            self.first.len()
        );
        for line in &self.first {
            out.push_str("  ");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str("  (-v prints every log line as it happens)\n");
        out
    }
}

#[derive(Default)]
struct State {
    bar: Option<indicatif::ProgressBar>,
    holding: bool,
    held: Held,
}

/// The destination of every log line (cheap to clone).
#[derive(Clone, Default)]
pub struct LogSink {
    state: Arc<Mutex<State>>,
}

impl LogSink {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Print log lines through `bar` until [`LogSink::detach_bar`].
    pub fn attach_bar(&self, bar: &indicatif::ProgressBar) {
        self.state().bar = Some(bar.clone());
    }

    /// Stop printing through the bar.
    pub fn detach_bar(&self) {
        self.state().bar = None;
    }

    /// Hold lines back (count them, keep the first few) until [`LogSink::release`].
    pub fn hold(&self) {
        let mut state = self.state();
        state.holding = true;
        state.held = Held::default();
    }

    /// Stop holding; returns what was held.
    pub fn release(&self) -> Held {
        let mut state = self.state();
        state.holding = false;
        std::mem::take(&mut state.held)
    }

    fn deliver(&self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let mut state = self.state();
        if state.holding {
            state.held.count += 1;
            if state.held.first.len() < KEEP {
                state
                    .held
                    .first
                    .push(String::from_utf8_lossy(line).into_owned());
            }
            return;
        }
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(line);
            let _ = err.flush();
        };
        match &state.bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(write),
            _ => write(),
        }
    }
}

/// One event's text, delivered whole when the formatter drops the writer.
pub struct LineWriter {
    sink: LogSink,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.sink.deliver(&self.buf);
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            sink: self.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

static SINK: OnceLock<LogSink> = OnceLock::new();
static VERBOSITY: OnceLock<Verbosity> = OnceLock::new();

/// The verbosity the command line asked for ([`Verbosity::Normal`] before [`init`]).
pub fn verbosity() -> Verbosity {
    VERBOSITY.get().copied().unwrap_or(Verbosity::Normal)
}

/// The process's sink (the one [`init`] installed, or a fresh one in tests).
pub fn sink() -> &'static LogSink {
    SINK.get_or_init(LogSink::default)
}

/// Install the global subscriber writing through [`sink`].
pub fn init(verbosity: Verbosity) {
    let _ = VERBOSITY.set(verbosity);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(verbosity.filter()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink().clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_are_counted_and_the_first_few_kept() {
        let sink = LogSink::default();
        sink.hold();
        for i in 0..10 {
            let mut w = sink.make_writer();
            writeln!(w, "WARN line {i}").unwrap();
        }
        let held = sink.release();
        assert_eq!(held.count, 10);
        assert_eq!(
            held.first,
            ["WARN line 0\n", "WARN line 1\n", "WARN line 2\n"]
        );
        let summary = held.summary();
        assert_eq!(summary.lines().count(), 2 + KEEP, "{summary}");
        assert!(summary.starts_with("10 warning(s)"), "{summary}");
        assert_eq!(sink.release(), Held::default());
        assert_eq!(Held::default().summary(), "");
    }

    #[test]
    fn verbosity_flags_choose_the_filter() {
        assert_eq!(Verbosity::from_flags(true, 2), Verbosity::Quiet);
        assert_eq!(Verbosity::from_flags(false, 0).filter(), "warn");
        assert_eq!(
            Verbosity::from_flags(false, 1).filter(),
            "warn,rollover=info"
        );
        assert_eq!(
            Verbosity::from_flags(false, 7).filter(),
            "debug,rollover=trace"
        );
    }
}
