//! The readable form of a plan: one line per wave (`wave 0: stage gw, switch meter-7`),
//! then the declared disruptions with their reasons, the cycle-breaking method, the
//! verifier's verdict, the comparison with another strategy when the plan carries one,
//! and a summary line `N nodes, L links, W waves, D disruptions`.
//!
//! Counts: N is the number of target nodes (with `@executor` when the control channel
//! is anchored in the rotated CA), L the distinct links anchored in the rotated CA
//! (self-links and the executor's control links included), W the waves of the plan's
//! schedule, D the declared disruptions. Links under other CAs are reported on their own
//! line; they are not rotated.

use std::fmt::Write;

use rollover_core::{Figures, Fleet, Plan, Topology, Verdict};

use super::view::foreign_links;

/// Wave lines are wrapped before this width (steps are never split).
const WIDTH: usize = 100;

/// Render `plan` for `fleet` as text.
pub fn plan(topology: &Topology, fleet: &Fleet, plan: &Plan, verdict: &Verdict) -> String {
    let mut out = String::new();
    let strategy = plan.strategy.as_deref().unwrap_or("unrecorded");
    let _ = writeln!(
        out,
        "rotation of CA `{}`: {} target nodes, strategy `{strategy}`",
        plan.ca,
        fleet.len()
    );
    let mut waves: Vec<Vec<String>> = vec![Vec::new(); plan.wave_count() as usize];
    for step in &plan.steps {
        waves[step.wave as usize].push(format!("{} {}", step.action, step.node));
    }
    for (wave, steps) in waves.iter().enumerate() {
        wrap_line(&mut out, &format!("wave {wave}: "), steps);
    }
    if plan.disruptions.is_empty() {
        out.push_str("disruptions: none\n");
    } else {
        let _ = writeln!(out, "disruptions ({}):", plan.disruptions.len());
        for d in &plan.disruptions {
            let _ = writeln!(out, "  {} -> {}: {}", d.client, d.server, d.reason);
        }
    }
    let _ = writeln!(
        out,
        "cycle breaking: {}",
        cycle_breaking(plan.strategy.as_deref(), plan.cycle_breaking.as_deref())
    );
    let foreign = foreign_links(topology).len();
    if foreign > 0 {
        let _ = writeln!(
            out,
            "links under other CAs (not rotated, left untouched): {foreign}"
        );
    }
    if verdict.safe {
        out.push_str(
            "verdict: safe (independently verified: every undeclared link stays up in every order the plan allows)\n",
        );
    } else {
        let _ = writeln!(
            out,
            "verdict: UNSAFE: {} undeclared link(s) can break; `rollover verify` lists them",
            verdict.undeclared_count
        );
    }
    if let [here, other, ..] = plan.comparison.as_slice() {
        let _ = writeln!(out, "{}", comparison(here, other));
    }
    let _ = writeln!(out, "{}", summary(fleet, plan));
    out
}

/// The line comparing this plan with another strategy's, e.g. `bridge strategy would
/// take 4 waves and 0 disruptions (here: 61 waves, 0 disruptions)`.
pub fn comparison(here: &Figures, other: &Figures) -> String {
    format!(
        "{} strategy would take {} waves and {} disruptions (here: {} waves, {} disruptions)",
        other.strategy, other.waves, other.disruptions, here.waves, here.disruptions
    )
}

/// The summary line `N nodes, L links, W waves, D disruptions`.
pub fn summary(fleet: &Fleet, plan: &Plan) -> String {
    format!(
        "{} nodes, {} links, {} waves, {} disruptions",
        fleet.len(),
        fleet.links.len(),
        plan.wave_count(),
        plan.disruptions.len()
    )
}

fn cycle_breaking(strategy: Option<&str>, method: Option<&str>) -> &'static str {
    match method {
        Some("none") if strategy == Some("claim") => {
            "none (the claim's literal order breaks no cycle and declares no disruption)"
        }
        Some("none") if strategy == Some("bridge") => {
            "none (links whose ends support chains never constrain the order; the rest form no cycle)"
        }
        Some("none") => "none (no atomic nodes form a prerequisite cycle)",
        Some("exact") => {
            "exact (each prerequisite cycle cut at the fewest links, by exhaustive search)"
        }
        Some("heuristic") => {
            "heuristic (a large cycle of atomic nodes cut by the Eades-Lin-Smyth greedy order; \
             may declare more links than the minimum)"
        }
        Some(_) => "unknown method",
        None => "not recorded in the plan",
    }
}

/// Write `prefix` and the items separated by commas, wrapping before [`WIDTH`] with
/// continuation lines indented under the first item.
fn wrap_line(out: &mut String, prefix: &str, items: &[String]) {
    let indent = " ".repeat(prefix.len());
    let mut line = prefix.to_string();
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.clone()
        };
        let at_start = line.len() == prefix.len();
        if !at_start && line.len() + 1 + piece.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.clone();
            line.push_str(&piece);
        } else {
            if !at_start {
                line.push(' ');
            }
            line.push_str(&piece);
        }
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wave_lines_wrap_between_steps() {
        let items: Vec<String> = (0..30).map(|i| format!("stage node-{i}")).collect();
        let mut out = String::new();
        wrap_line(&mut out, "wave 0: ", &items);
        assert!(out.lines().count() > 1);
        for line in out.lines() {
            assert!(line.len() <= WIDTH, "{line}");
        }
        let rejoined: Vec<&str> = out
            .split([',', '\n'])
            .map(|s| s.trim().trim_start_matches("wave 0: "))
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(rejoined, items);
    }

    #[test]
    fn short_waves_stay_on_one_line() {
        let mut out = String::new();
        wrap_line(
            &mut out,
            "wave 2: ",
            &["retire a".into(), "finalize b".into()],
        );
        assert_eq!(out, "wave 2: retire a, finalize b\n");
    }
}
