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
/// guard against a hang, not a speed check). Its output goes to files, not pipes: a
/// `--dump-dom` larger than a pipe's buffer (64 KiB) would block Chromium on a pipe
/// nobody reads until it exits, which looked like a page too heavy to open.
fn run_chromium(browser: &Path, page: &Path, profile: &Path, extra: &[String]) -> (String, String) {
    let url = format!("file://{}", page.display());
    std::fs::create_dir_all(profile).expect("the profile dir");
    let (stdout, stderr) = (profile.join("stdout.txt"), profile.join("stderr.txt"));
    let file = |path: &Path| std::fs::File::create(path).expect("an output file");
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
        .stdout(file(&stdout))
        .stderr(file(&stderr))
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
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).expect("chromium's output")).into_owned()
    };
    (read(&stdout), read(&stderr))
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
    // Light enough to open at once: links as one band per pair of waves, not 1,279
    // paths (a bound on elements, not a timing).
    let paths = html.matches("<path").count();
    eprintln!("plant page: {} bytes, {paths} paths", html.len());
    assert!(paths < 100, "{paths} paths");
    assert!(html.contains("class=\"band\""), "bands between waves");
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

/// The naive plan on the plant fails about a thousand links: the page draws the links
/// as bands between waves and at most 300 failed ones one by one (a bound on elements,
/// not a timing), lists every failure, and opens in Chromium.
#[test]
fn simulate_html_of_the_naive_plant_opens_in_chromium() {
    let plan = rollover(&[
        "plan",
        "examples/plant-300.yaml",
        "--strategy",
        "naive",
        "-f",
        "json",
    ]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let page = scratch("html_naive", "plant-naive.html", "");
    let run = common::rollover_with_stdin(
        &[
            "simulate",
            "examples/plant-300.yaml",
            "--plan",
            "-",
            "--html",
            &page,
        ],
        &plan.stdout,
    );
    assert_eq!(run.code, 1, "the naive plan breaks links: {}", run.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    let paths = html.matches("<path").count();
    let failed = html.matches("class=\"link failed\"").count();
    eprintln!(
        "naive plant page: {} bytes, {paths} paths, {failed} failed links drawn",
        html.len()
    );
    // At most 300 links one by one, and a band per pair of at most 10 (+1) columns.
    assert!(paths < 300 + 11 * 11 + 10, "{paths} paths");
    // (One more in the legend.)
    assert!(failed > 1 && failed <= 301, "{failed} failed links drawn");
    assert!(
        html.contains("Failed handshakes ("),
        "the failures are listed"
    );
    check_in_browser(
        "html_naive",
        &page,
        &["simulated rotation of plant-device-ca", "Failed handshakes"],
    );
}
