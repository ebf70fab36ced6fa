//! One self-contained HTML page showing what a rotation does (`plan --format html`)
//! or did (`simulate --html FILE`): a summary, the waves as a timeline, the fleet graph
//! and every failed handshake on its link and step. The drawings are inline SVG from
//! [`super::svg`]; the style is inline; there is no script and nothing is fetched, so
//! the page opens the same from a CI artefact, an e-mail or a file on a laptop.

use std::collections::HashMap;
use std::fmt::Write;

use rollover_core::report::SimReport;
use rollover_core::{Plan, Verdict};

use super::svg::{self, Mark, escape};
use super::view::View;

/// What the page is about.
pub struct Page<'a> {
    /// The picture's data.
    pub view: &'a View<'a>,
    /// The plan drawn.
    pub plan: &'a Plan,
    /// The verifier's verdict on it.
    pub verdict: &'a Verdict,
    /// What a simulation observed, when the page reports one.
    pub report: Option<&'a SimReport>,
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.verdict { font-weight: 600; padding: 2px 8px; border-radius: 4px; }
.ok { background: #e3f4e1; color: #1d6b1d; }
.bad { background: #fde2e1; color: #a11d1d; }
table { border-collapse: collapse; margin: 6px 0; }
td, th { border-bottom: 1px solid #eee; padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
th { color: #555; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow: auto; max-width: 100%; border: 1px solid #eee; }
.note { color: #666; }
svg text { font-family: system-ui, Helvetica, Arial, sans-serif; }
svg .axis { font-size: 11px; fill: #666; }
svg .count { font-size: 12px; text-anchor: middle; fill: #222; }
svg .wave { font-size: 12px; text-anchor: middle; fill: #444; }
svg .fail { font-size: 12px; text-anchor: middle; fill: #d62728; font-weight: 600; }
svg .colhead { font-size: 12px; fill: #444; font-weight: 600; }
svg .label { font-size: 10px; fill: #333; }
svg .link { fill: none; stroke: #9aa7b5; stroke-opacity: 0.35; stroke-width: 1; }
svg .link.disrupted { stroke: #f28e2b; stroke-opacity: 0.9; stroke-dasharray: 4 3; }
svg .link.failed { stroke: #d62728; stroke-opacity: 0.9; stroke-width: 2; }
svg .node circle, svg .node rect { fill: #4e79a7; stroke: #fff; stroke-width: 1; }
svg .node.hit circle, svg .node.hit rect { fill: #d62728; }
code { background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
"#;

/// Render the page.
pub fn page(p: &Page<'_>) -> String {
    let marks = marks(p);
    let view = p.view;
    let title = match p.report {
        Some(_) => format!("rollover: simulated rotation of {}", view.ca),
        None => format!("rollover: rotation plan of {}", view.ca),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(&title));
    summary(&mut out, p, &marks);

    out.push_str("<h2>Waves</h2>\n");
    out.push_str("<p class=\"note\">Steps per wave, by action; below, the handshakes that failed during the wave's steps.</p>\n");
    let _ = writeln!(out, "<div>{}</div>", svg::legend());
    let _ = writeln!(
        out,
        "<div class=\"scroll\">{}</div>",
        svg::timeline(view, &marks)
    );

    out.push_str("<h2>Fleet</h2>\n");
    out.push_str("<p class=\"note\">One column per wave (or range of waves, on a long plan) in which nodes start presenting the new key (in a safe plan, every link a node serves runs on the new key from that wave). Arrows go from client to server; failed links are red. Hover a node or a link for its steps and failures.</p>\n");
    let _ = writeln!(
        out,
        "<div class=\"scroll\">{}</div>",
        svg::graph(view, &marks)
    );

    failures(&mut out, p, &marks);
    out.push_str("</body>\n</html>\n");
    out
}

fn summary(out: &mut String, p: &Page<'_>, marks: &[Mark]) {
    let view = p.view;
    let v = p.verdict;
    let (class, verdict) = if v.safe {
        ("ok", "safe".to_string())
    } else {
        (
            "bad",
            format!(
                "UNSAFE: {} undeclared link(s) can break",
                v.undeclared_count
            ),
        )
    };
    out.push_str("<table>\n");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "<tr><th>{}</th><td>{v}</td></tr>", escape(k));
    };
    row(
        out,
        "fleet",
        format!(
            "{} nodes, {} rotated links, {} under other CAs",
            view.nodes.len(),
            view.links.len(),
            view.foreign.len()
        ),
    );
    row(
        out,
        "plan",
        format!(
            "{} steps in {} waves, strategy <code>{}</code>, {} declared disruption(s)",
            p.plan.steps.len(),
            view.waves,
            escape(p.plan.strategy.as_deref().unwrap_or("given")),
            p.plan.disruptions.len()
        ),
    );
    row(
        out,
        "verifier",
        format!(
            "<span class=\"verdict {class}\">{}</span>",
            escape(&verdict)
        ),
    );
    if let Some(r) = p.report {
        let passed = r.failed_undeclared == 0 && r.all_new;
        row(
            out,
            "simulation",
            format!(
                "<span class=\"verdict {}\">{}</span> {} handshakes, {} failed ({} on undeclared links); outcome {}; {:.2} s, seed {}",
                if passed { "ok" } else { "bad" },
                if passed { "PASS" } else { "FAIL" },
                r.handshakes_total,
                r.handshakes_failed,
                r.failed_undeclared,
                escape(&r.outcome),
                r.rotation_seconds,
                r.seed
            ),
        );
        row(
            out,
            "end state",
            format!(
                "{} of {} nodes on the new root only; old-root client refused by {}/{} nodes",
                r.nodes_on_new_only, r.nodes, r.old_key_refused, r.old_key_checks
            ),
        );
    } else {
        row(
            out,
            "failures shown",
            format!(
                "{} link(s) the verifier finds can break, each with the two steps whose order breaks it",
                marks.len()
            ),
        );
    }
    out.push_str("</table>\n");
}

fn failures(out: &mut String, p: &Page<'_>, marks: &[Mark]) {
    let heading = match p.report {
        Some(_) => "Failed handshakes",
        None => "Links the verifier finds can break",
    };
    let _ = writeln!(out, "<h2>{heading} ({})</h2>", marks.len());
    if let Some(r) = p.report
        && (r.handshakes_failed as usize) > marks.len()
    {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} failed handshakes in all; the first {} are listed.</p>",
            r.handshakes_failed,
            marks.len()
        );
    }
    if marks.is_empty() {
        out.push_str("<p>None.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"failures\">\n<tr><th>link</th><th>wave</th><th>step</th><th>declared</th><th>error</th></tr>\n",
    );
    for (m, (link, step, error)) in marks.iter().zip(rows(p)) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&link),
            m.wave.map_or("–".to_string(), |w| w.to_string()),
            escape(&step),
            if m.declared { "yes" } else { "no" },
            escape(&error)
        );
    }
    out.push_str("</table>\n");
}

/// `(link, step, error)` for each mark, in the same order as [`marks`].
fn rows(p: &Page<'_>) -> Vec<(String, String, String)> {
    match p.report {
        Some(r) => r
            .failures
            .iter()
            .map(|f| {
                (
                    format!("{} → {}", f.client, f.server),
                    f.step.clone(),
                    f.error.clone(),
                )
            })
            .collect(),
        None => p
            .verdict
            .broken
            .iter()
            .map(|b| {
                let [a, z] = &b.steps;
                (
                    format!("{} → {}", b.client, b.server),
                    format!(
                        "step {} ({} {}) may run before step {} ({} {})",
                        a.id, a.action, a.node, z.id, z.action, z.node
                    ),
                    b.reason.clone(),
                )
            })
            .collect(),
    }
}

/// The plan step a simulated failure is tied to, when it names exactly one: the
/// simulator describes a step as `<action> <node> (step <id>)`, and a failure by the
/// step it followed or the steps running; several running steps, `after ...` or the
/// final check tie it to none. The id is checked against the plan's action and node.
fn step_of<'p>(described: &str, plan: &'p Plan) -> Option<&'p rollover_core::Step> {
    let (what, id) = described.strip_suffix(')')?.rsplit_once(" (step ")?;
    let id: u64 = id.parse().ok()?;
    let step = plan.steps.iter().find(|s| s.id == id)?;
    (what == format!("{} {}", step.action.as_str(), step.node)).then_some(step)
}

/// The failures to mark: a simulation's failed handshakes, or for a plan alone the
/// links the verifier finds can break (at the wave of the step that may run too early).
fn marks(p: &Page<'_>) -> Vec<Mark> {
    let waves: HashMap<u64, u32> = p.plan.steps.iter().map(|s| (s.id, s.wave)).collect();
    let view = p.view;
    match p.report {
        Some(r) => r
            .failures
            .iter()
            .map(|f| Mark {
                client: view.node(&f.client),
                server: view.node(&f.server),
                wave: step_of(&f.step, p.plan).map(|s| s.wave),
                text: format!("during {}: {}", f.step, f.error),
                declared: f.declared,
            })
            .collect(),
        None => p
            .verdict
            .broken
            .iter()
            .map(|b| Mark {
                client: view.node(&b.client),
                server: view.node(&b.server),
                wave: waves.get(&b.steps[0].id).copied(),
                text: format!(
                    "when step {} ({} {}) runs before step {} ({} {}): {}",
                    b.steps[0].id,
                    b.steps[0].action,
                    b.steps[0].node,
                    b.steps[1].id,
                    b.steps[1].action,
                    b.steps[1].node,
                    b.reason
                ),
                declared: false,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use rollover_core::{Action, Fleet, Topology, plan_naive, verify_plan};

    use super::*;

    /// Render the page of the naive plan of a small fleet with odd ids, with the report
    /// `report` makes from the plan.
    fn with_page(report: impl FnOnce(&Plan) -> Option<SimReport>, check: impl FnOnce(&str)) {
        let t = Topology::parse(
            "t.yaml",
            "ca: r<&>\nnodes:\n  - {id: m, mode: atomic}\nlinks:\n  - {client: a, server: m}\n  - {client: \"<b>\", server: a}\n",
        )
        .unwrap();
        let fleet = Fleet::new(&t);
        let plan = plan_naive(&fleet);
        let verdict = verify_plan(&t, &plan).unwrap();
        let view = View::new(&t, &fleet, &plan);
        let report = report(&plan);
        check(&page(&Page {
            view: &view,
            plan: &plan,
            verdict: &verdict,
            report: report.as_ref(),
        }));
    }

    #[test]
    fn a_plan_page_is_self_contained_and_marks_every_broken_link() {
        with_page(
            |_| None,
            |html| {
                assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
                assert!(html.trim_end().ends_with("</html>"));
                for forbidden in ["<script", "https://", "<link", "@import", "<img"] {
                    assert!(!html.contains(forbidden), "{forbidden} in the page");
                }
                assert_eq!(
                    html.matches("http://").count(),
                    html.matches("http://www.w3.org/2000/svg").count(),
                    "the only URL is the SVG namespace"
                );
                assert!(html.contains("r&lt;&amp;&gt;"), "ids are escaped");
                assert!(html.contains("&lt;b&gt; → a"), "{html}");
                assert!(html.contains("class=\"timeline\""));
                assert!(html.contains("class=\"graph\""));
                assert!(html.contains("UNSAFE"));
                assert!(
                    html.contains("class=\"link failed\""),
                    "broken links drawn red"
                );
            },
        );
    }

    #[test]
    fn a_simulation_page_lists_each_failure_with_its_wave() {
        let described = std::cell::RefCell::new(String::new());
        with_page(
            |plan| {
                let switch = plan
                    .steps
                    .iter()
                    .find(|s| s.action == Action::Switch)
                    .unwrap();
                *described.borrow_mut() = format!("switch m (step {})", switch.id);
                let report = serde_json::json!({
                    "format": "rollover-sim/1", "nodes": 3, "links": 2, "handshakes_total": 9,
                    "handshakes_failed": 2, "failed_undeclared": 2,
                    "failures": [
                        {"client": "a", "server": "m", "step": described.borrow().clone(),
                         "error": "UnknownIssuer", "declared": false},
                        {"client": "<b>", "server": "a", "step": "stage a (step 1), present a (step 2)",
                         "error": "alert", "declared": false}
                    ],
                    "links_probed_every_step": 1.0, "rotation_seconds": 0.1,
                    "handshakes_per_second": 90.0, "all_new": true
                });
                Some(serde_json::from_value(report).unwrap())
            },
            |html| {
                assert!(html.contains("Failed handshakes (2)"), "{html}");
                let row = format!(
                    "<td>a → m</td><td class=\"num\">0</td><td>{}</td>",
                    described.borrow()
                );
                assert!(html.contains(&row), "{html}");
                let row = "<td>&lt;b&gt; → a</td><td class=\"num\">–</td>";
                assert!(
                    html.contains(row),
                    "several steps running: no one wave: {html}"
                );
                assert!(html.contains("FAIL"), "{html}");
            },
        );
    }

    #[test]
    fn a_failure_names_its_step_only_when_plan_and_text_agree() {
        let t = Topology::parse("t.yaml", "ca: r\nlinks:\n  - {client: a, server: b}\n").unwrap();
        let plan = plan_naive(&Fleet::new(&t));
        let first = &plan.steps[0];
        let text = format!(
            "{} {} (step {})",
            first.action.as_str(),
            first.node,
            first.id
        );
        assert_eq!(step_of(&text, &plan).map(|s| s.id), Some(first.id));
        let wrong = format!("retire {} (step {})", first.node, first.id);
        assert!(step_of(&wrong, &plan).is_none());
        assert!(step_of("final check (old root withdrawn)", &plan).is_none());
        assert!(step_of("after stage a (step 0)", &plan).is_none());
    }
}
