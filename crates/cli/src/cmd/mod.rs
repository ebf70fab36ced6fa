//! One module per subcommand: its arguments (clap derive) and its `run` function, which
//! returns the exit status or an error for `main` to report.

pub mod agent;
pub mod bench;
pub mod check;
pub mod completion;
pub mod control;
pub mod journal;
pub mod net;
pub mod pki;
pub mod plan;
pub mod rotate;
pub mod serve;
pub mod simulate;
pub mod status;
pub mod verify;
pub mod watch;
