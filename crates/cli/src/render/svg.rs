//! The two drawings of the HTML report, as inline SVG text: the waves as a timeline
//! (steps per wave by action, failed handshakes per wave) and the fleet graph (one
//! column per wave, a node where it starts presenting the new key, every rotated link
//! as a line, failed ones red). Laid out here, with no Graphviz and no script, so the
//! page is one self-contained file that renders the same everywhere.

use std::collections::BTreeMap;
use std::fmt::Write;

use rollover_core::{Action, Mode};

use super::view::{LinkView, View};

/// A failed (or, for a plan, possibly failing) handshake to mark on the drawings.
#[derive(Debug, Clone)]
pub struct Mark {
    /// Index of the client in the view.
    pub client: Option<usize>,
    /// Index of the server in the view.
    pub server: Option<usize>,
    /// The wave of the step it is attributed to, when known.
    pub wave: Option<u32>,
    /// A one-line description (shown on hover).
    pub text: String,
    /// Whether the plan declared the link a disruption.
    pub declared: bool,
}

/// Colour of each action, shared by the legend and the timeline (by name, so an action
/// added to the model gets a neutral colour until it is given one here).
pub fn colour(action: Action) -> &'static str {
    match action.as_str() {
        "stage" => "#4e79a7",
        "present" => "#59a14f",
        "retire" => "#9c755f",
        "switch" => "#f28e2b",
        "finalize" => "#b07aa1",
        _ => "#8c8c8c",
    }
}

/// The actions in the order their bars are stacked.
const ACTIONS: [Action; 5] = [
    Action::Stage,
    Action::Present,
    Action::Retire,
    Action::Switch,
    Action::Finalize,
];

/// Stacking rank of an action: the known ones in [`ACTIONS`] order, others after.
fn rank(action: Action) -> usize {
    ACTIONS
        .iter()
        .position(|a| *a == action)
        .unwrap_or(ACTIONS.len())
}

const FAIL: &str = "#d62728";

/// Escape text for SVG/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Per wave: the count of each action, in drawing order (rank, name).
type WaveCounts = Vec<BTreeMap<(usize, &'static str), (Action, usize)>>;

/// The waves as columns: a stacked bar of the steps of each action in the wave, its
/// count, and below it the failed handshakes attributed to the wave.
pub fn timeline(view: &View<'_>, marks: &[Mark]) -> String {
    // One column per wave, or per range of waves on a long plan (see `View::span`).
    let span = view.span();
    let waves = view.waves.max(1).div_ceil(span) as usize;
    let mut counts: WaveCounts = vec![BTreeMap::new(); waves];
    for node in &view.nodes {
        for &(action, wave) in &node.steps {
            if let Some(c) = counts.get_mut((wave / span) as usize) {
                c.entry((rank(action), action.as_str()))
                    .or_insert((action, 0))
                    .1 += 1;
            }
        }
    }
    let mut failed = vec![0usize; waves];
    let mut unplaced = 0usize;
    for m in marks {
        match m.wave.and_then(|w| failed.get_mut((w / span) as usize)) {
            Some(f) => *f += 1,
            None => unplaced += 1,
        }
    }
    let most = counts
        .iter()
        .map(|c| c.values().map(|v| v.1).sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (left, top, bar_h) = (60.0, 30.0, 160.0);
    let col = ((1080.0 - left) / waves as f64).clamp(40.0, 140.0);
    let width = left + col * waves as f64 + 20.0;
    let height = top + bar_h + 80.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="steps and failed handshakes per wave">"#
    );
    let _ = write!(
        out,
        r##"<text x="4" y="{:.0}" class="axis">steps</text><text x="4" y="{:.0}" class="axis">failed</text>"##,
        top + bar_h / 2.0,
        top + bar_h + 58.0
    );
    for (w, c) in counts.iter().enumerate() {
        let name = view.column_name(Some(w as u32));
        let x = left + col * w as f64;
        let total: usize = c.values().map(|v| v.1).sum();
        let bar_w = col * 0.6;
        let mut y = top + bar_h;
        for &(action, n) in c.values() {
            let h = bar_h * n as f64 / most as f64;
            y -= h;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{}"><title>{name}: {n} {}</title></rect>"#,
                colour(action),
                action.as_str()
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" class="count">{total}</text><text x="{:.1}" y="{:.1}" class="wave">{name}</text>"#,
            x + bar_w / 2.0,
            y - 4.0,
            x + bar_w / 2.0,
            top + bar_h + 18.0
        );
        if failed[w] > 0 {
            let r = (4.0 + (failed[w] as f64).sqrt()).min(col * 0.3);
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="{r:.1}" fill="{FAIL}"><title>{} failed handshake(s) during {name}</title></circle><text x="{:.1}" y="{:.1}" class="fail">{}</text>"#,
                x + bar_w / 2.0,
                top + bar_h + 40.0,
                failed[w],
                x + bar_w / 2.0,
                top + bar_h + 72.0,
                failed[w]
            );
        }
    }
    if unplaced > 0 {
        let _ = write!(
            out,
            r#"<text x="{:.0}" y="{:.0}" class="fail" style="text-anchor: end">{unplaced} not tied to one wave</text>"#,
            width - 4.0,
            top - 12.0
        );
    }
    out.push_str("</svg>");
    out
}

/// Layout of the fleet graph: per node its centre.
struct Layout {
    pos: Vec<(f64, f64)>,
    width: f64,
    height: f64,
    col: f64,
    labels: bool,
}

fn layout(view: &View<'_>) -> Layout {
    let waves = view.waves.max(1).div_ceil(view.span()) as usize;
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); waves + 1];
    for (ix, node) in view.nodes.iter().enumerate() {
        if node.executor {
            continue;
        }
        let w = view.column(ix).map_or(waves, |w| (w as usize).min(waves));
        columns[w].push(ix);
    }
    // Within a column, atomic devices first, then by id, so a reader can find a node.
    for c in &mut columns {
        c.sort_by(|a, b| {
            let (na, nb) = (&view.nodes[*a], &view.nodes[*b]);
            (na.mode == Mode::Bundle, na.id).cmp(&(nb.mode == Mode::Bundle, nb.id))
        });
    }
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let row = if tallest > 120 { 10.0 } else { 16.0 };
    let labels = tallest <= 120;
    let used: Vec<usize> = (0..columns.len())
        .filter(|&c| !columns[c].is_empty())
        .collect();
    let col = (1100.0 / used.len().max(1) as f64).clamp(90.0, 220.0);
    let (left, top) = (20.0, 70.0);
    let mut pos = vec![(0.0, 0.0); view.nodes.len()];
    for (slot, &c) in used.iter().enumerate() {
        for (r, &ix) in columns[c].iter().enumerate() {
            pos[ix] = (left + col * slot as f64 + 8.0, top + row * r as f64);
        }
    }
    if let Some(e) = view.executor() {
        pos[e] = (left + 8.0, 28.0);
    }
    Layout {
        pos,
        width: left + col * used.len() as f64 + 40.0,
        height: top + row * tallest as f64 + 20.0,
        col,
        labels,
    }
}

/// The fleet graph: one column per wave where nodes start presenting the new key,
/// links as lines (client to server), failed links red and on top, each with a
/// tooltip naming the link and the step. `@executor` is a box at the top whose links
/// are drawn only when they failed.
pub fn graph(view: &View<'_>, marks: &[Mark]) -> String {
    let l = layout(view);
    let executor = view.executor();
    let mut failed: BTreeMap<(usize, usize), Vec<&Mark>> = BTreeMap::new();
    for m in marks {
        if let (Some(c), Some(s)) = (m.client, m.server) {
            failed.entry((c, s)).or_default().push(m);
        }
    }
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{:.0}" height="{:.0}" viewBox="0 0 {:.0} {:.0}" role="img" aria-label="fleet graph">"#,
        l.width, l.height, l.width, l.height
    );
    out.push_str(r##"<defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="5" markerHeight="5" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#8a8a8a"/></marker><marker id="arrow-fail" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="5" markerHeight="5" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#d62728"/></marker><marker id="arrow-band" viewBox="0 0 6 6" refX="6" refY="3" markerUnits="userSpaceOnUse" markerWidth="10" markerHeight="10" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#8a8a8a"/></marker></defs>"##);
    // Column headers.
    let mut headers: BTreeMap<u64, Option<u32>> = BTreeMap::new();
    for (ix, node) in view.nodes.iter().enumerate() {
        if !node.executor {
            headers.insert(l.pos[ix].0.round() as u64, view.column(ix));
        }
    }
    for (x, column) in headers {
        let label = view.column_name(column);
        let _ = write!(
            out,
            r#"<text x="{x}" y="58" class="colhead">{}</text>"#,
            escape(&label)
        );
    }
    // Links that held, then disrupted ones, then failed ones on top.
    let drawn: Vec<(&LinkView, Option<&Vec<&Mark>>)> = view
        .links
        .iter()
        .filter(|link| link.client != link.server)
        .map(|link| (link, failed.get(&(link.client, link.server))))
        .filter(|(link, marks)| Some(link.client) != executor || marks.is_some())
        .collect();
    let mut layers = [String::new(), String::new(), String::new()];
    if drawn.len() > MAX_PATHS {
        // Too many to draw one by one (and for a browser to lay out quickly): one band
        // per pair of columns, then the failed and disrupted links, failed first.
        let links = drawn.len();
        bands(&mut layers[0], view, &l);
        let mut marked: Vec<_> = drawn
            .into_iter()
            .filter(|(link, marks)| marks.is_some() || link.disrupted)
            .collect();
        let all_marked = marked.len();
        marked.sort_by_key(|(_, marks)| marks.is_none());
        marked.truncate(MAX_PATHS);
        let mut note = format!(
            "{links} links: one band per pair of columns, as thick as the log of its count, the count near its start"
        );
        if all_marked > 0 {
            let _ = write!(
                note,
                "; {} of the {all_marked} failed or disrupted links drawn one by one",
                marked.len()
            );
        }
        let _ = write!(
            out,
            r#"<text x="20" y="46" class="label">{}</text>"#,
            escape(&note)
        );
        for (link, marks) in marked {
            draw_link(&mut layers, view, &l, link, marks);
        }
    } else {
        for (link, marks) in drawn {
            draw_link(&mut layers, view, &l, link, marks);
        }
    }
    for layer in layers {
        out.push_str(&layer);
    }
    for (ix, node) in view.nodes.iter().enumerate() {
        let (x, y) = l.pos[ix];
        let steps: Vec<String> = node
            .steps
            .iter()
            .map(|(a, w)| format!("{} (wave {w})", a.as_str()))
            .collect();
        let title = escape(&format!(
            "{} ({}): {}",
            node.id,
            if node.executor {
                "the executor, client of every target"
            } else {
                node.mode.as_str()
            },
            steps.join(", ")
        ));
        let hit = failed.keys().any(|(c, s)| *c == ix || *s == ix);
        let class = if hit { "node hit" } else { "node" };
        if node.executor {
            let n = view.links.iter().filter(|k| k.client == ix).count();
            let _ = write!(
                out,
                r#"<g class="{class}"><title>{title}</title><rect x="{:.1}" y="{:.1}" width="12" height="12" rx="2"/><text x="{:.1}" y="{:.1}" class="label">{} — client of every target ({n} links, drawn only when one fails)</text></g>"#,
                x - 6.0,
                y - 6.0,
                x + 10.0,
                y + 4.0,
                escape(node.id)
            );
            continue;
        }
        let shape = match node.mode {
            Mode::Atomic => format!(
                r#"<rect x="{:.1}" y="{:.1}" width="8" height="8"/>"#,
                x - 4.0,
                y - 4.0
            ),
            Mode::Bundle => format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="4"/>"#),
        };
        let label = if l.labels || hit {
            format!(
                r#"<text x="{:.1}" y="{:.1}" class="label">{}</text>"#,
                x + 7.0,
                y + 3.0,
                escape(&truncate(node.id, (l.col / 6.5) as usize))
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<g class="{class}"><title>{title}</title>{shape}{label}</g>"#
        );
    }
    out.push_str("</svg>");
    out
}

/// Beyond this many links drawn one by one, the graph draws one band per pair of
/// columns instead (and the failed or disrupted links, up to this many): a browser
/// lays out a few hundred paths in no time, and a thousand crossing lines read as grey.
pub const MAX_PATHS: usize = 300;

/// One link as a path from client to server, on the layer of its kind, with a tooltip
/// naming it and its failures.
fn draw_link(
    layers: &mut [String; 3],
    view: &View<'_>,
    l: &Layout,
    link: &LinkView,
    marks: Option<&Vec<&Mark>>,
) {
    let (x1, y1) = l.pos[link.client];
    let (x2, y2) = l.pos[link.server];
    let title = {
        let (c, s) = (view.nodes[link.client].id, view.nodes[link.server].id);
        let wave = link.wave.map_or("?".to_string(), |w| w.to_string());
        let mut t = format!("{c} → {s}: on the new key from wave {wave}");
        if link.disrupted {
            t.push_str(" (declared disruption)");
        }
        for m in marks.into_iter().flatten() {
            t.push_str("\nFAILED ");
            t.push_str(&m.text);
        }
        escape(&t)
    };
    let (layer, class, marker) = if marks.is_some() {
        (2, "link failed", "arrow-fail")
    } else if link.disrupted {
        (1, "link disrupted", "arrow")
    } else {
        (0, "link", "arrow")
    };
    let _ = write!(
        layers[layer],
        r#"<path class="{class}" d="{}" marker-end="url(#{marker})"><title>{title}</title></path>"#,
        curve((x1, y1), (x2, y2))
    );
}

/// A gentle curve from `a` to `b`, bent out to the right when both are in one column
/// so that links between nodes of one column stay visible.
fn curve((x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> String {
    let mid = control(x1, x2);
    format!("M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}")
}

/// The x of both control points of [`curve`].
fn control(x1: f64, x2: f64) -> f64 {
    let bend = if (x1 - x2).abs() < 1.0 { 40.0 } else { 0.0 };
    x1 + (x2 - x1) / 2.0 + bend
}

/// The point at `t` (0 to 1) along [`curve`] from `a` to `b`.
fn along((x1, y1): (f64, f64), (x2, y2): (f64, f64), t: f64) -> (f64, f64) {
    let mid = control(x1, x2);
    let u = 1.0 - t;
    let (w0, w1, w2, w3) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
    (
        w0 * x1 + (w1 + w2) * mid + w3 * x2,
        (w0 + w1) * y1 + (w2 + w3) * y2,
    )
}

/// The rotated links (but `@executor`'s) as one band per pair of columns, from the
/// middle of one to the middle of the other, as thick as the log of its count, with
/// the count on it and a tooltip saying what it stands for.
fn bands(out: &mut String, view: &View<'_>, l: &Layout) {
    // Per group: the column's x and the extent of its nodes.
    let mut spans: BTreeMap<Option<u32>, (f64, f64, f64)> = BTreeMap::new();
    for (ix, node) in view.nodes.iter().enumerate() {
        if node.executor {
            continue;
        }
        let (x, y) = l.pos[ix];
        let span = spans.entry(view.column(ix)).or_insert((x, y, y));
        span.1 = span.1.min(y);
        span.2 = span.2.max(y);
    }
    let middle = |g: Option<u32>| {
        spans
            .get(&g)
            .map(|&(x, top, bottom)| (x, (top + bottom) / 2.0))
    };
    for b in view.bundles(|_| true) {
        let (Some(from), Some(to)) = (middle(b.client), middle(b.server)) else {
            continue;
        };
        // Within one column: from its top third to its bottom third, bent out.
        let (from, to) = if b.client == b.server {
            let (x, top, bottom) = spans[&b.client];
            let third = (bottom - top) / 3.0;
            ((x, top + third), (x, bottom - third))
        } else {
            (from, to)
        };
        let width = 1.0 + 1.5 * (b.links as f64).log2();
        let mut title = format!(
            "{} link(s) from nodes of {} to nodes of {}, on the new key from {}",
            b.links,
            view.column_name(b.client),
            view.column_name(b.server),
            b.wave_range()
        );
        if b.disrupted > 0 {
            let _ = write!(title, "; {} declared disruption(s)", b.disrupted);
        }
        // The count near the start, so that the bands both ways between two columns
        // keep theirs apart.
        let (tx, ty) = along(from, to, 0.25);
        let _ = write!(
            out,
            r#"<g class="band"><title>{}</title><path class="link" style="stroke-width:{width:.1}" d="{}" marker-end="url(#arrow-band)"/><text x="{tx:.1}" y="{:.1}" class="count">{}</text></g>"#,
            escape(&title),
            curve(from, to),
            ty - 3.0,
            b.links
        );
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max.max(4) {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.max(4) - 1).collect();
        format!("{cut}…")
    }
}

/// The legend: one swatch per action, the node shapes and the link styles.
pub fn legend() -> String {
    let mut out = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="legend" width="900" height="24" viewBox="0 0 900 24">"#,
    );
    let mut x = 4.0;
    for action in ACTIONS {
        let _ = write!(
            out,
            r#"<rect x="{x}" y="6" width="12" height="12" fill="{}"/><text x="{}" y="16" class="label">{}</text>"#,
            colour(action),
            x + 16.0,
            action.as_str()
        );
        x += 90.0;
    }
    let _ = write!(
        out,
        r#"<g class="node"><circle cx="{}" cy="12" r="4"/></g><text x="{}" y="16" class="label">bundle</text><g class="node"><rect x="{}" y="8" width="8" height="8"/></g><text x="{}" y="16" class="label">atomic</text><path class="link failed" d="M{},12 L{},12"/><text x="{}" y="16" class="label">failed handshake</text>"#,
        x + 4.0,
        x + 12.0,
        x + 70.0,
        x + 82.0,
        x + 140.0,
        x + 170.0,
        x + 176.0
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_point_along_a_curve_starts_and_ends_at_its_ends() {
        let (a, b) = ((10.0, 20.0), (110.0, 220.0));
        assert_eq!(along(a, b, 0.0), a);
        assert_eq!(along(a, b, 1.0), b);
        assert_eq!(along(a, b, 0.5), (60.0, 120.0));
    }

    #[test]
    fn long_ids_are_shortened_with_an_ellipsis() {
        assert_eq!(truncate("historian", 20), "historian");
        assert_eq!(truncate("a-very-long-node-name", 8), "a-very-…");
    }
}
