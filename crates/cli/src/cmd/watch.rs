//! `rollover watch ID`: follow a rotation's events on the executor until it ends.

use std::time::Duration;

use rollover_proto::v1;

use super::net::{self, ExecutorArgs};
use super::rotate::{View, follow, state_name};
use crate::output::OutputArgs;
use crate::status::Status;

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Follow a rotation's events on a running executor until it ends, as `rollover rotate`
shows them: a progress bar on a terminal, one line per event otherwise, one JSON
object per line with -f json. By default only what happens from now on is shown;
--all replays the rotation's events from its first. A rotation that has already
ended is reported at once.

Ctrl-C stops watching only; the rotation goes on.

Exit status: 0 when the rotation succeeded, 1 when it ended otherwise (failed,
aborted, rolled back), watching stopped, or the executor cannot be reached; 2 for an
unknown rotation id.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover watch --executor 127.0.0.1:7001 r0195e1c2a3b4f00d9e8a7
  ROLLOVER_EXECUTOR=127.0.0.1:7001 rollover watch r0195e1c2a3b4f00d9e8a7 --all -f json";

/// Arguments of `rollover watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub executor: ExecutorArgs,
    /// The rotation's id.
    #[arg(value_name = "ROTATION")]
    pub rotation: String,
    /// Replay the rotation's events from the first, not only new ones.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Run `rollover watch`.
pub fn run(args: &WatchArgs) -> anyhow::Result<Status> {
    let runtime = net::runtime()?;
    let status = runtime.block_on(watch(args))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(status)
}

async fn watch(args: &WatchArgs) -> anyhow::Result<Status> {
    let (mut client, mut url) = args.executor.connect().await?;
    let status = net::get_rotation(&mut client, &url, &args.rotation).await?;
    let mut view = View::new(&args.out, u64::from(status.steps_total), status.dry_run)?;
    if args.all {
        view.watching(
            &url,
            &v1::RotationStatus {
                steps_done: 0,
                ..status.clone()
            },
        );
        follow(
            &args.executor,
            &mut client,
            &mut url,
            &args.rotation,
            &mut view,
            1,
        )
        .await?;
    } else {
        view.watching(&url, &status);
        if v1::RotationState::is_terminal_value(status.state) {
            eprintln!(
                "rotation {} has already ended: {}",
                crate::output::escape(&status.id),
                state_name(status.state)
            );
            return Ok(outcome(status.state));
        }
        follow(
            &args.executor,
            &mut client,
            &mut url,
            &args.rotation,
            &mut view,
            status.last_sequence + 1,
        )
        .await?;
    }
    Ok(view.outcome.map_or(Status::Failure, |o| outcome(o as i32)))
}

fn outcome(state: i32) -> Status {
    if state == v1::RotationState::Succeeded as i32 {
        Status::Success
    } else {
        Status::Failure
    }
}
