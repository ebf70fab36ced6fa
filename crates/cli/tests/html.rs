//! The HTML reports open in a real browser: `plan --format html` of the 300-node plant
//! and `simulate --html` of an unsafe plan are loaded in headless Chromium, which must
//! report no error, produce the page's DOM (its drawings and failures) and a
//! screenshot that is not blank.
//!
//! Chromium comes from Debian's packages (`.ci/setup-chromium.sh`, run by `.ci/run`).
//! Without it the tests say so loudly and pass locally; with `CI=true` they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{rollover, scratch};

/// The Chromium binary, or `None` after saying loudly why the test does not run.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        let message = "chromium not found: the HTML report was not checked in a browser \
                       (install it with .ci/setup-chromium.sh or apt-get install chromium)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}; CI=true requires it");
        }
        eprintln!("\n*** SKIPPED: {message} ***\n");
    }
    found
}

/// Run headless Chromium on `page` with `extra` arguments; returns (stdout, stderr).
/// A browser that does not finish in two minutes is killed and fails the test (a
/// guard against a hang, not a speed check).
fn run_chromium(browser: &Path, page: &Path, profile: &Path, extra: &[String]) -> (String, String) {
    let url = format!("file://{}", page.display());
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("chromium status").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish with {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Page errors Chromium logs: script errors and resources it failed to load.
fn page_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("Uncaught")
                || (l.contains("CONSOLE") && l.to_ascii_lowercase().contains("error"))
                || l.contains("net::ERR_")
                || l.contains("Failed to load resource")
        })
        .collect()
}

/// Share of pixels that are not (near) white, and the number of distinct colours.
fn ink(png_path: &Path) -> (f64, usize) {
    let file = std::fs::File::open(png_path).expect("the screenshot exists");
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut buf).expect("one frame");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "an RGB screenshot, got {:?}",
        info.color_type
    );
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    let pixels = (info.width * info.height) as usize;
    for px in buf[..info.buffer_size()].chunks(channels) {
        let (r, g, b) = (px[0], px[1], px[2]);
        if colours.len() < 10_000 {
            colours.insert((r, g, b));
        }
        if r < 235 || g < 235 || b < 235 {
            inked += 1;
        }
    }
    (inked as f64 / pixels as f64, colours.len())
}

/// Open `page` in Chromium: no page error, the DOM has `expect`, and the screenshot
/// is neither blank nor one colour. Returns the screenshot's path.
fn check_in_browser(test: &str, page: &str, expect: &[&str]) -> Option<PathBuf> {
    let browser = chromium()?;
    let page = PathBuf::from(page);
    let dir = page.parent().expect("a scratch dir").to_path_buf();
    let shot = dir.join(format!("{test}.png"));
    let _ = std::fs::remove_file(&shot);

    let (dom, stderr) = run_chromium(
        &browser,
        &page,
        &dir.join("profile-dom"),
        &["--dump-dom".into()],
    );
    assert!(
        page_errors(&stderr).is_empty(),
        "page errors: {:?}",
        page_errors(&stderr)
    );
    assert!(
        dom.contains("<svg"),
        "the DOM has the drawings: {}",
        &dom[..dom.len().min(500)]
    );
    for text in expect {
        assert!(dom.contains(text), "the DOM shows {text:?}");
    }

    let (_, stderr) = run_chromium(
        &browser,
        &page,
        &dir.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,900".into(),
        ],
    );
    assert!(
        page_errors(&stderr).is_empty(),
        "page errors: {:?}",
        page_errors(&stderr)
    );
    let (share, colours) = ink(&shot);
    eprintln!(
        "{test}: screenshot {} has {:.1}% non-white pixels, {colours} colours",
        shot.display(),
        share * 100.0
    );
    assert!(colours > 8, "the screenshot has {colours} colour(s)");
    assert!(
        share > 0.02,
        "the screenshot is nearly blank ({:.2}% ink)",
        share * 100.0
    );
    Some(shot)
}

#[test]
fn plan_html_of_the_plant_opens_in_chromium() {
    let page = scratch("html_plan", "plant-300.html", "");
    let run = rollover(&[
        "plan",
        "examples/plant-300.yaml",
        "--format",
        "html",
        "-o",
        &page,
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "no script in the page");
    check_in_browser(
        "html_plan",
        &page,
        &["rotation plan of plant-device-ca", "Waves", "Fleet", "safe"],
    );
}

#[test]
fn simulate_html_of_an_unsafe_plan_shows_each_failure_in_chromium() {
    let page = scratch("html_sim", "claim-unsafe.html", "");
    let run = rollover(&[
        "simulate",
        "examples/claim-unsafe.yaml",
        "--strategy",
        "claim",
        "--probe-rate",
        "0",
        "--html",
        &page,
    ]);
    assert_eq!(run.code, 1, "the claim's order breaks two links: {run:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    // Both links the verifier names are drawn failed and listed with their step.
    for link in ["meter-1 → collector", "meter-2 → collector"] {
        assert!(html.contains(&format!("<td>{link}</td>")), "{link} listed");
    }
    assert!(
        html.contains("class=\"link failed\""),
        "failed links drawn red"
    );
    check_in_browser(
        "html_sim",
        &page,
        &[
            "simulated rotation of",
            "Failed handshakes",
            "finalize meter-1",
        ],
    );
}
