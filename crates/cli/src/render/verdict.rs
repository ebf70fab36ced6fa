//! The readable form of a verifier's verdict: one line with the decision and counts,
//! then one line per broken link (`client -> server`, the two steps whose order the
//! plan does not enforce, the TLS failure), then the declared disruptions.

use std::fmt::Write;

use rollover_core::{Plan, Verdict};

/// Render `verdict` on `plan` as text.
pub fn text(plan: &Plan, verdict: &Verdict) -> String {
    let mut out = String::new();
    let counts = format!(
        "{} links checked, {} waves, {} declared disruptions",
        verdict.links_checked, verdict.waves, verdict.declared_count
    );
    if verdict.safe {
        let _ = writeln!(out, "safe: no undeclared link can break ({counts})");
    } else {
        let _ = writeln!(
            out,
            "UNSAFE: {} undeclared link(s) can break ({counts})",
            verdict.undeclared_count
        );
        for b in &verdict.broken {
            let [first, second] = &b.steps;
            let _ = writeln!(
                out,
                "  {} -> {}: step {} ({} {}) may run before step {} ({} {}): {}",
                b.client,
                b.server,
                first.id,
                first.action,
                first.node,
                second.id,
                second.action,
                second.node,
                b.reason
            );
        }
    }
    for d in &plan.disruptions {
        let _ = writeln!(out, "declared disruption: {} -> {}", d.client, d.server);
    }
    out
}
