//! `rollover status`: one rotation's status on an executor, or every rotation it knows.

use std::time::Duration;

use rollover_proto::v1;
use serde_json::{Value, json};

use super::net::{self, ExecutorArgs};
use super::rotate::state_name;
use crate::output::{OutputArgs, escape};
use crate::status::Status;

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Show a rotation's status on a running executor, or list every rotation it knows
(newest first).

The status says where the rotation is (PENDING, RUNNING, PAUSED, ROLLING_BACK, or the
end: SUCCEEDED, FAILED, ABORTED, ROLLED_BACK), how many steps are done and running,
the current wave, the probes run and failed, and why it paused or failed. It is read
from the executor's journal, so it survives executor restarts.

With --watch (-w) the status is asked again every --interval and printed each time it
changes, kubectl-style, until the rotation ends (one rotation) or Ctrl-C (the list).
A dry run is marked DRY RUN.

Exit status: 0 when the executor answered, 1 when it could not be reached, 2 for an
unknown rotation id.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover status --executor 127.0.0.1:7001
  rollover status --executor 127.0.0.1:7001 r0195e1c2a3b4f00d9e8a7
  rollover status --executor 127.0.0.1:7001 --active -f json
  ROLLOVER_EXECUTOR=127.0.0.1:7001 rollover status r0195e1c2a3b4f00d9e8a7 --watch";

/// Arguments of `rollover status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub executor: ExecutorArgs,
    /// The rotation's id (as `rollover rotate` printed it); without it, list all.
    #[arg(value_name = "ROTATION")]
    pub rotation: Option<String>,
    /// When listing: only rotations not yet finished.
    #[arg(long, conflicts_with = "rotation")]
    pub active: bool,
    /// Ask again every --interval and print the status whenever it changes.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// With --watch: how often to ask, e.g. `2s`, `500ms`.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub out: OutputArgs,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}`: expected a duration such as 2s or 500ms");
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    };
    if d < Duration::from_millis(100) {
        return Err(format!("`{text}`: at least 100ms"));
    }
    Ok(d)
}

/// Run `rollover status`.
pub fn run(args: &StatusArgs) -> anyhow::Result<Status> {
    let runtime = net::runtime()?;
    let result = runtime.block_on(async {
        if args.watch {
            watch(args).await
        } else {
            let (text, _) = query(args).await?;
            args.out.write(&text)
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(Status::Success)
}

/// Print the status each time it changes until the rotation ends or Ctrl-C.
async fn watch(args: &StatusArgs) -> anyhow::Result<()> {
    let mut sink = args.out.sink()?;
    let mut last = String::new();
    let stop = net::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (text, ended) = query(args).await?;
        if text != last {
            if !args.out.is_json() && !last.is_empty() {
                sink.line("");
            }
            sink.line(text.trim_end());
            last = text;
        }
        if ended {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}

/// The status as text or JSON, and whether the one rotation asked about has ended.
async fn query(args: &StatusArgs) -> anyhow::Result<(String, bool)> {
    let (mut client, url) = args.executor.connect().await?;
    let url = url.as_str();
    let json = args.out.is_json();
    match &args.rotation {
        Some(id) => {
            let status = net::get_rotation(&mut client, url, id).await?;
            let text = if json {
                // One object per line when watching: a stream of states.
                if args.watch {
                    format!("{}\n", status_json(&status))
                } else {
                    format!("{:#}\n", status_json(&status))
                }
            } else {
                detail(&status)
            };
            Ok((text, v1::RotationState::is_terminal_value(status.state)))
        }
        None => {
            let list = client
                .list_rotations(v1::ListRotationsRequest {
                    active_only: args.active,
                    page_size: 0,
                    page_token: String::new(),
                })
                .await
                .map_err(|s| net::call_error("executor", url, s))?
                .into_inner();
            let text = if json {
                let all: Vec<Value> = list.rotations.iter().map(status_json).collect();
                if args.watch {
                    format!("{}\n", Value::from(all))
                } else {
                    format!("{:#}\n", Value::from(all))
                }
            } else {
                table(url, args.active, &list.rotations)
            };
            Ok((text, false))
        }
    }
}

fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), ToString::to_string)
}

fn options_text(options: Option<&v1::RotationOptions>) -> String {
    let Some(o) = options else {
        return "-".into();
    };
    let mut parts = vec![if o.max_concurrency == 0 {
        "no concurrency limit".to_string()
    } else {
        format!("max concurrency {}", o.max_concurrency)
    }];
    parts.push(if o.probe { "probes on" } else { "probes off" }.to_string());
    if o.dry_run {
        parts.push("dry run".into());
    }
    if o.skip_agent_checks {
        parts.push("agent checks skipped".into());
    }
    parts.join(", ")
}

/// One rotation, a few lines; what the executor reports is [`escape`]d.
pub fn detail(s: &v1::RotationStatus) -> String {
    let mut out = format!(
        "rotation {}: {}{}\n",
        escape(&s.id),
        state_name(s.state),
        if s.dry_run {
            " (DRY RUN: no agent is changed)"
        } else {
            ""
        }
    );
    out.push_str(&format!("  ca:       {}\n", escape(&s.ca)));
    out.push_str(&format!(
        "  steps:    {}/{} done, {} running; wave {} of {}\n",
        s.steps_done,
        s.steps_total,
        s.steps_running,
        s.current_wave.min(s.waves_total),
        s.waves_total
    ));
    out.push_str(&format!(
        "  probes:   {} run, {} failed\n",
        s.probes_total, s.probes_failed
    ));
    out.push_str(&format!(
        "  options:  {}\n",
        options_text(s.options.as_ref())
    ));
    out.push_str(&format!(
        "  created:  {}\n  updated:  {}\n",
        time(s.created_at.as_ref()),
        time(s.updated_at.as_ref())
    ));
    if let Some(reason) = &s.paused_reason {
        out.push_str(&format!("  paused:   {}\n", escape(reason)));
    }
    if let Some(error) = &s.error {
        out.push_str(&format!("  error:    {}\n", escape(error)));
    }
    out
}

/// Every rotation, one line each; ids and CA names [`escape`]d (and measured so).
fn table(url: &str, active: bool, all: &[v1::RotationStatus]) -> String {
    if all.is_empty() {
        let which = if active {
            "active rotations"
        } else {
            "rotations"
        };
        return format!("no {which} on the executor at {}\n", escape(url));
    }
    let ids: Vec<_> = all.iter().map(|s| escape(&s.id)).collect();
    let cas: Vec<_> = all.iter().map(|s| escape(&s.ca)).collect();
    let id_width = ids.iter().map(|s| s.len()).max().unwrap_or(2).max(2);
    let ca_width = cas.iter().map(|s| s.len()).max().unwrap_or(2).max(2);
    let mut out = format!(
        "{:id_width$}  {:20}  {:ca_width$}  {:>9}  {:>6}  {:>6}  {:>6}  UPDATED\n",
        "ID", "STATE", "CA", "STEPS", "WAVE", "PROBES", "FAILED"
    );
    for ((s, id), ca) in all.iter().zip(&ids).zip(&cas) {
        out.push_str(&format!(
            "{:id_width$}  {:20}  {:ca_width$}  {:>9}  {:>6}  {:>6}  {:>6}  {}\n",
            id,
            if s.dry_run {
                format!("{} DRY RUN", state_name(s.state))
            } else {
                state_name(s.state)
            },
            ca,
            format!("{}/{}", s.steps_done, s.steps_total),
            format!("{}/{}", s.current_wave.min(s.waves_total), s.waves_total),
            s.probes_total,
            s.probes_failed,
            time(s.updated_at.as_ref())
        ));
    }
    out
}

/// A rotation's status as JSON.
pub fn status_json(s: &v1::RotationStatus) -> Value {
    json!({
        "id": s.id,
        "state": state_name(s.state).to_lowercase(),
        "ca": s.ca,
        "steps_total": s.steps_total,
        "steps_done": s.steps_done,
        "steps_running": s.steps_running,
        "current_wave": s.current_wave,
        "waves_total": s.waves_total,
        "paused_reason": s.paused_reason,
        "error": s.error,
        "probes_total": s.probes_total,
        "probes_failed": s.probes_failed,
        "dry_run": s.dry_run,
        "created_at": s.created_at.as_ref().map(ToString::to_string),
        "updated_at": s.updated_at.as_ref().map(ToString::to_string),
        "last_sequence": s.last_sequence,
        "options": s.options.as_ref().map(|o| json!({
            "max_concurrency": o.max_concurrency,
            "probe": o.probe,
            "dry_run": o.dry_run,
            "skip_agent_checks": o.skip_agent_checks,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rollover status` prints what the executor reports escaped, one field a line.
    #[test]
    fn status_text_escapes_what_the_executor_reports() {
        let s = v1::RotationStatus {
            id: "r\u{1b}[1A".into(),
            ca: "corp\u{7}".into(),
            paused_reason: Some("freeze\r\n  error:    none".into()),
            error: Some("agent said \u{1b}]0;x\u{7}".into()),
            ..Default::default()
        };
        let text = detail(&s);
        assert!(text.starts_with("rotation r\\u{1b}[1A: "), "{text}");
        assert!(text.contains("  ca:       corp\\u{7}\n"), "{text}");
        assert!(
            text.contains("  paused:   freeze\\r\\n  error:    none\n"),
            "{text}"
        );
        assert!(
            text.contains("  error:    agent said \\u{1b}]0;x\\u{7}\n"),
            "{text}"
        );
        assert!(!text.contains(['\u{1b}', '\u{7}', '\r']), "{text}");
        let table = table("127.0.0.1:7001", false, &[s]);
        assert!(table.contains("r\\u{1b}[1A  "), "{table}");
        assert!(!table.contains('\u{1b}'), "{table}");
        assert_eq!(table.lines().count(), 2, "{table}");
    }
}
