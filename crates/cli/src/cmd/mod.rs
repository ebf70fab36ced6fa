//! One module per subcommand: its arguments (clap derive) and its `run` function, which
//! returns the exit status or an error for `main` to report.

pub mod bench;
pub mod plan;
pub mod simulate;
pub mod verify;
