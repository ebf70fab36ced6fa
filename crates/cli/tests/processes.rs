//! The README's "Run a rotation across separate processes", one process per service
//! and per node, through the built `rollover` binary: `pki init`, `serve planner`,
//! `serve executor`, four `agent`s of a small mixed topology (bundle and atomic, the
//! control channel anchored in the rotated CA), `rotate` (progress lines, exit 0) and
//! `status` (succeeded). Then the executor is stopped with SIGTERM and started again:
//! the rotation is still reported, and a second rotation succeeds, which it can only
//! do if the executor kept its rotated `@executor` identity (the agents now trust only
//! the new root).
//!
//! Separate processes announce fixed addresses (the topology lists them), so ports are
//! picked by binding port 0 and releasing it; a clash (a child exits early) starts the
//! fleet again on fresh ports. Every child is killed when the test ends, even on
//! failure, and on failure their logs are printed.

mod procs;

use std::time::{Duration, Instant};

use procs::{Children, STEPS, free_ports, run, start_fleet, strings, text};

#[test]
fn a_rotation_across_separate_processes() {
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("demo-root.pem");
    let init = run(
        &strings(&[
            "pki",
            "init",
            "--ca",
            "demo-root",
            "--out",
            root.to_str().unwrap(),
        ]),
        Duration::from_secs(10),
    );
    assert!(init.status.success(), "{}", text(&init.stderr));

    let mut fleet = None;
    let mut errors = Vec::new();
    for attempt in 0..3 {
        match start_fleet(&tmp.path().join(format!("try{attempt}")), &root) {
            Ok(f) => {
                fleet = Some(f);
                break;
            }
            Err(e) => errors.push(e),
        }
    }
    let Some(mut fleet) = fleet else {
        panic!("the fleet did not start: {errors:#?}");
    };
    let url = fleet.executor_url.clone();
    let topology = fleet.topology.to_str().unwrap().to_string();

    // rotate: one line per event (stdout is not a terminal), exit 0.
    let rotate = run(
        &strings(&["rotate", "--executor", &url, &topology]),
        Duration::from_secs(60),
    );
    let out = text(&rotate.stdout);
    assert_eq!(
        rotate.status.code(),
        Some(0),
        "rotate failed:\nstdout:\n{out}\nstderr:\n{}",
        text(&rotate.stderr)
    );
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("rotation r")
            && first.contains(&format!("accepted by the executor at {url}: {STEPS} steps")),
        "{out}"
    );
    let id = first.split_whitespace().nth(1).unwrap().to_string();
    let done = out
        .lines()
        .filter(|l| l.starts_with("step ") && l.ends_with(" done"))
        .count();
    assert_eq!(done, STEPS, "one `done` line per step:\n{out}");
    assert!(out.contains("step 0 ("), "{out}");
    assert!(out.contains("probe gw -> plc-1 ok"), "{out}");
    assert!(out.contains("probe @executor -> "), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
    assert!(out.contains("finished: SUCCEEDED"), "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("rotation {id} SUCCEEDED: {STEPS} steps done")),
        "{out}"
    );

    // status: the list and the one rotation.
    let list = run(
        &strings(&["status", "--executor", &url]),
        Duration::from_secs(10),
    );
    assert!(list.status.success(), "{}", text(&list.stderr));
    let list = text(&list.stdout);
    let row = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("SUCCEEDED") && row.contains(&format!("{STEPS}/{STEPS}")),
        "{list}"
    );
    let one = run(
        &strings(&["status", "--executor", &url, &id]),
        Duration::from_secs(10),
    );
    assert!(one.status.success(), "{}", text(&one.stderr));
    let one = text(&one.stdout);
    assert!(
        one.starts_with(&format!("rotation {id}: SUCCEEDED")),
        "{one}"
    );
    assert!(one.contains(&format!("{STEPS}/{STEPS} done")), "{one}");

    // Restart the executor gracefully: the journal keeps the rotation and the
    // executor's rotated identity.
    let stopped = fleet.children.terminate("executor");
    assert!(stopped.success(), "graceful stop: {stopped}");
    let executor_args = fleet.executor_args.clone();
    fleet.children.spawn("executor", &executor_args);
    fleet
        .children
        .wait_listening("executor", url.parse().unwrap())
        .unwrap();
    let again = run(
        &strings(&["status", "--executor", &url, &id, "--json"]),
        Duration::from_secs(10),
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let status: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["steps_done"], STEPS as u64, "{status}");

    // A second rotation, watched as JSON: only possible with the restored identity.
    let second = run(
        &strings(&["rotate", "--executor", &url, &topology, "--json"]),
        Duration::from_secs(60),
    );
    let out = text(&second.stdout);
    assert_eq!(
        second.status.code(),
        Some(0),
        "second rotate failed:\nstdout:\n{out}\nstderr:\n{}",
        text(&second.stderr)
    );
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events[0]["event"], "accepted", "{out}");
    assert_ne!(events[0]["rotation_id"], id.as_str());
    let steps_done = events.iter().filter(|e| e["event"] == "step_done").count();
    assert_eq!(steps_done, STEPS, "{out}");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "finished", "{out}");
    assert_eq!(end["outcome"], "succeeded", "{out}");

    let list = run(
        &strings(&["status", "--executor", &url]),
        Duration::from_secs(10),
    );
    let list = text(&list.stdout);
    assert_eq!(
        list.lines().filter(|l| l.contains("SUCCEEDED")).count(),
        2,
        "{list}"
    );
    eprintln!("processes test took {:.1} s", began.elapsed().as_secs_f64());
}

/// The same across mTLS services: the planner and the executor's API serve mTLS with
/// leaves from an operations CA (`pki issue`), the executor reaches the planner at an
/// `https://` URL, and `rotate`/`status` present an operator's leaf. A bridge rotation
/// is refused while the executor lacks the fleet's root key, and runs once the
/// executor made the root the fleet is on.
#[test]
fn a_rotation_through_mtls_services() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let quick = Duration::from_secs(10);
    for (ca, file) in [("demo-root", "demo-root.pem"), ("ops-ca", "ops-ca.pem")] {
        let init = run(
            &strings(&["pki", "init", "--ca", ca, "--out", &path(file)]),
            quick,
        );
        assert!(init.status.success(), "{}", text(&init.stderr));
    }
    for id in ["planner", "executor", "operator", "auditor"] {
        let issue = run(
            &strings(&[
                "pki",
                "issue",
                "--ca",
                &path("ops-ca.pem"),
                "--id",
                id,
                "--cert-out",
                &path(&format!("{id}.pem")),
                "--key-out",
                &path(&format!("{id}-key.pem")),
            ]),
            quick,
        );
        assert!(issue.status.success(), "{}", text(&issue.stderr));
    }
    let tls = |id: &str, ca_flag: &str| {
        strings(&[
            "--tls-cert",
            &path(&format!("{id}.pem")),
            "--tls-key",
            &path(&format!("{id}-key.pem")),
            ca_flag,
            &path("ops-ca.pem"),
        ])
    };

    let mut last_error = String::new();
    for attempt in 0..3 {
        let dir = tmp.path().join(format!("try{attempt}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = free_ports(6);
        let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
        let mut children = Children::new(&dir);
        let mut planner = strings(&["serve", "planner", "--listen", &addr(0)]);
        planner.extend(tls("planner", "--client-ca"));
        children.spawn("planner", &planner);
        let mut executor = strings(&[
            "serve",
            "executor",
            "--listen",
            &addr(1),
            "--planner",
            &format!("https://{}", addr(0)),
            "--state",
            dir.join("executor").to_str().unwrap(),
            "--bootstrap-ca",
            &path("demo-root.pem"),
            // A root key, but not the fleet's: not enough for a bridge rotation.
            "--ca-key",
            &path("ops-ca.pem"),
        ]);
        executor.extend(tls("executor", "--client-ca"));
        executor.extend(strings(&[
            "--operators",
            "operator",
            "--readers",
            "auditor",
        ]));
        children.spawn("executor", &executor);
        for (i, (id, mode)) in [("a", "bundle"), ("m", "atomic")].iter().enumerate() {
            children.spawn(
                id,
                &strings(&[
                    "agent",
                    "--id",
                    id,
                    "--mode",
                    mode,
                    "--listen",
                    &addr(2 + 2 * i),
                    "--data-listen",
                    &addr(3 + 2 * i),
                    "--state",
                    dir.join(id).to_str().unwrap(),
                    "--bootstrap-ca",
                    &path("demo-root.pem"),
                ]),
            );
        }
        let started = [("planner", 0), ("executor", 1), ("a", 2), ("m", 4)]
            .iter()
            .try_for_each(|(name, i)| children.wait_listening(name, addr(*i).parse().unwrap()));
        if let Err(e) = started {
            last_error = e;
            continue;
        }
        let topology = dir.join("fleet.yaml");
        std::fs::write(
            &topology,
            format!(
                "ca: demo-root\ncontrol: {{ca: demo-root}}\nnodes:\n  - {{id: a, address: \"{}\"}}\n  - {{id: m, mode: atomic, address: \"{}\"}}\nlinks:\n  - {{client: a, server: m}}\n",
                addr(2),
                addr(4)
            ),
        )
        .unwrap();
        let url = format!("https://{}", addr(1));

        // Plaintext to an mTLS executor: a clear error, not a hang.
        let plain = run(&strings(&["status", "--executor", &addr(1)]), quick);
        assert_eq!(plain.status.code(), Some(1), "{}", text(&plain.stderr));
        assert!(
            text(&plain.stderr).contains("--tls-cert"),
            "{}",
            text(&plain.stderr)
        );

        let mut rotate = strings(&["rotate", "--executor", &url, topology.to_str().unwrap()]);
        rotate.extend(tls("operator", "--ca"));
        let bridged = || {
            let mut r = rotate.clone();
            r.extend(strings(&["--strategy", "bridge"]));
            r
        };

        // The bridge strategy needs the key of the root the fleet is on (demo-root):
        // refused before anything starts, naming what to give.
        let refused = run(&bridged(), quick);
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
        assert!(
            text(&refused.stderr).contains("--ca-key"),
            "{}",
            text(&refused.stderr)
        );

        let out = run(&rotate, Duration::from_secs(60));
        assert_eq!(
            out.status.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("finished: SUCCEEDED"),
            "{}",
            text(&out.stdout)
        );
        // The executor made the root the fleet is on now: it can bridge from it.
        let out = run(&bridged(), Duration::from_secs(60));
        assert_eq!(
            out.status.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("finished: SUCCEEDED"),
            "{}",
            text(&out.stdout)
        );
        let mut status = strings(&["status", "--executor", &url]);
        status.extend(tls("operator", "--ca"));
        let list = run(&status, quick);
        assert!(list.status.success(), "{}", text(&list.stderr));
        assert!(
            text(&list.stdout).contains("SUCCEEDED"),
            "{}",
            text(&list.stdout)
        );
        // A reader reads, and may not steer.
        let mut status = strings(&["status", "--executor", &url]);
        status.extend(tls("auditor", "--ca"));
        let read = run(&status, quick);
        assert!(read.status.success(), "{}", text(&read.stderr));
        let mut rotate = strings(&["rotate", "--executor", &url, topology.to_str().unwrap()]);
        rotate.extend(tls("auditor", "--ca"));
        let refused = run(&rotate, quick);
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
        assert!(
            text(&refused.stderr).contains("`auditor` is a reader"),
            "{}",
            text(&refused.stderr)
        );
        return;
    }
    panic!("the services did not start: {last_error}");
}
