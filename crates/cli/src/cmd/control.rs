//! `rollover pause|resume|abort|rollback ID`: steer a rotation on the executor, as
//! the API's Pause, Resume, Abort and Rollback do; with --watch, follow it afterwards.

use std::time::Duration;

use rollover_proto::v1;

use super::net::{self, ExecutorArgs};
use super::rotate::{View, follow};
use super::status::{detail, status_json};
use crate::output::OutputArgs;
use crate::status::Status;

/// Which control call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Abort.
    Abort,
    /// Rollback.
    Rollback,
}

/// The long help of `pause`.
pub const PAUSE_ABOUT: &str = "\
Pause a rotation: the executor starts no new step (steps already sent finish) until
`rollover resume`. Idempotent. Prints the rotation's status.

Exit status: 0 when the executor paused it, 1 when it could not (e.g. the rotation
has ended) or the executor cannot be reached, 2 for an unknown rotation id.";

/// The long help of `resume`.
pub const RESUME_ABOUT: &str = "\
Resume a paused rotation (paused by `rollover pause`, or by a failed probe once the
cause is fixed): the executor goes on where it stopped. Idempotent on a running one.
With --watch, follow it to its end as `rollover watch` does.

Exit status: 0 when the executor resumed it (with --watch: when it then succeeded), 1
when it could not, the executor cannot be reached, or (with --watch) it did not
succeed; 2 for an unknown rotation id.";

/// The long help of `abort`.
pub const ABORT_ABOUT: &str = "\
Abort a rotation for good, leaving every node where it is (state ABORTED). To put
nodes back on the old root, use `rollover rollback` instead.

Exit status: 0 when the rotation is ABORTED, 1 when it could not be (e.g. it had
already ended) or the executor cannot be reached, 2 for an unknown rotation id.";

/// The long help of `rollback`.
pub const ROLLBACK_ABOUT: &str = "\
Roll a rotation back: the executor undoes every applied step in reverse order,
returning every node to the old root (ROLLING_BACK, then ROLLED_BACK). Works on a
running, paused or finished rotation, unless another rotation of the same CA is
active or has applied steps since. With --watch, follow the rollback to its end.

Exit status: 0 when the rollback was accepted (with --watch: when the rotation ended
ROLLED_BACK), 1 when it was refused, the executor cannot be reached, or (with --watch)
it ended otherwise; 2 for an unknown rotation id.";

/// Examples shown after the help of every control command.
pub const EXAMPLES: &str = "\
Examples:
  rollover pause --executor 127.0.0.1:7001 r0195e1c2a3b4f00d9e8a7 --reason 'change freeze'
  rollover resume --executor 127.0.0.1:7001 r0195e1c2a3b4f00d9e8a7 --watch
  ROLLOVER_EXECUTOR=127.0.0.1:7001 rollover rollback r0195e1c2a3b4f00d9e8a7 -w
  rollover abort --executor 127.0.0.1:7001 r0195e1c2a3b4f00d9e8a7 -f json";

/// Arguments of the control commands.
#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub executor: ExecutorArgs,
    /// The rotation's id (as `rollover rotate` or `rollover status` printed it).
    #[arg(value_name = "ROTATION")]
    pub rotation: String,
    /// Why (recorded in the rotation's events; not used by resume).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Then follow the rotation's events until it ends, as `rollover watch` does.
    #[arg(long, short = 'w')]
    pub watch: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Run `rollover pause|resume|abort|rollback`.
pub fn run(verb: Verb, args: &ControlArgs) -> anyhow::Result<Status> {
    let runtime = net::runtime()?;
    let status = runtime.block_on(control(verb, args))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(status)
}

async fn control(verb: Verb, args: &ControlArgs) -> anyhow::Result<Status> {
    let (mut client, mut url) = args.executor.connect().await?;
    let id = args.rotation.clone();
    let reason = args.reason.clone();
    let answer = match verb {
        Verb::Pause => client
            .pause(v1::PauseRequest {
                rotation_id: id.clone(),
                reason,
            })
            .await
            .map(|r| r.into_inner().rotation),
        Verb::Resume => client
            .resume(v1::ResumeRequest {
                rotation_id: id.clone(),
            })
            .await
            .map(|r| r.into_inner().rotation),
        Verb::Abort => client
            .abort(v1::AbortRequest {
                rotation_id: id.clone(),
                reason,
            })
            .await
            .map(|r| r.into_inner().rotation),
        Verb::Rollback => client
            .rollback(v1::RollbackRequest {
                rotation_id: id.clone(),
                reason,
            })
            .await
            .map(|r| r.into_inner().rotation),
    };
    let status = answer
        .map_err(|s| net::call_error("executor", &url, s))?
        .ok_or_else(|| anyhow::anyhow!("executor {url}: the answer has no rotation"))?;
    if !args.watch {
        let text = if args.out.is_json() {
            format!("{:#}\n", status_json(&status))
        } else {
            detail(&status)
        };
        args.out.write(&text)?;
        return Ok(match verb {
            Verb::Abort if status.state != v1::RotationState::Aborted as i32 => Status::Failure,
            _ => Status::Success,
        });
    }
    let mut view = View::new(&args.out, u64::from(status.steps_total), status.dry_run)?;
    view.watching(&url, &status);
    let from = status.last_sequence + 1;
    if v1::RotationState::is_terminal_value(status.state) {
        return Ok(ended(verb, status.state));
    }
    follow(&args.executor, &mut client, &mut url, &id, &mut view, from).await?;
    Ok(view
        .outcome
        .map_or(Status::Failure, |o| ended(verb, o as i32)))
}

/// The exit status of a control command whose rotation ended in `state`: the end it
/// asked for is success.
fn ended(verb: Verb, state: i32) -> Status {
    use v1::RotationState as S;
    let wanted = match verb {
        Verb::Pause | Verb::Resume => S::Succeeded,
        Verb::Abort => S::Aborted,
        Verb::Rollback => S::RolledBack,
    };
    if state == wanted as i32 {
        Status::Success
    } else {
        Status::Failure
    }
}
