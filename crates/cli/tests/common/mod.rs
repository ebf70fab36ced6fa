//! Running the built `rollover` binary from the workspace root, so example paths and
//! the file names in error messages read as a user would type them.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The last line of standard output (the summary line of `plan`).
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `rollover ARGS` in the workspace root.
pub fn rollover(args: &[&str]) -> Run {
    rollover_with_stdin(args, "")
}

/// Run `rollover ARGS` in the workspace root, feeding `stdin`.
pub fn rollover_with_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollover"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the rollover binary runs");
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.as_bytes())
        .expect("stdin accepts input");
    drop(input);
    let out = child
        .wait_with_output()
        .expect("the rollover binary finishes");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Write `text` to a fresh file `name` under a per-test scratch directory and return
/// its absolute path.
pub fn scratch(test: &str, name: &str, text: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("rollover-cli")
        .join(test);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("scratch file");
    path.to_string_lossy().into_owned()
}

/// Wave lines of a text plan (`wave N: ...`, continuation lines joined), as the set of
/// `action node` entries of each wave.
pub fn waves(text: &str) -> Vec<Vec<String>> {
    let mut waves: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("wave ") {
            let (_, steps) = rest.split_once(": ").expect("wave N: steps");
            waves.push(steps.to_string());
        } else if line.starts_with("        ") && !waves.is_empty() {
            let last = waves.last_mut().unwrap();
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    waves
        .iter()
        .map(|w| {
            let mut steps: Vec<String> = w.split(", ").map(|s| s.trim().to_string()).collect();
            steps.sort();
            steps
        })
        .collect()
}

/// Sorted copy of a list of step names.
pub fn sorted(steps: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}
