//! Executors in high availability, across processes: two `serve executor` on one
//! PostgreSQL journal (a real server: `ROLLOVER_TEST_POSTGRES`, started by
//! `.ci/postgres.sh`), four agents, and a `rotate` given both executors' addresses.
//! The leader is killed with SIGKILL in the middle of a step; the other executor takes
//! the lease (a higher epoch), resumes the rotation from the journal, and `rotate`
//! follows it there to SUCCEEDED. No agent applied a step twice. Before the kill, the
//! follower answers a status read (from the journal) and takes a pause and a resume,
//! forwarded to the leader. Between the kill and the takeover, while no executor
//! leads (the dead leader's 6 s lease has not expired), the follower still answers a
//! status, a list and a watch from the journal, showing the rotation as it was
//! journaled.

mod procs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procs::{Background, Fleet, fleet_with_root, free_ports, run, strings, text};

/// Steps per node of [`procs::NODES`]: bundle 3, atomic 2.
fn steps_of(mode: &str) -> u64 {
    if mode == "bundle" { 3 } else { 2 }
}

/// The value of `flag` in `args`.
fn flag(args: &[String], flag: &str) -> String {
    let at = args.iter().position(|a| a == flag).expect(flag);
    args[at + 1].clone()
}

/// Applied steps of agent `id`, as its state file counts them (repeats not counted).
fn applied_count(fleet: &Fleet, id: &str) -> u64 {
    let (_, args, _) = fleet.agent_args.iter().find(|(n, ..)| n == id).unwrap();
    let file = PathBuf::from(flag(args, "--state")).join("node.json");
    let node: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    node["applied_count"].as_u64().unwrap()
}

/// Make `gw`'s steps take 2 s (its export's reload command), so that a rotation runs
/// long enough to be steered. An exporting node presents its one exported leaf:
/// `identity: single`.
fn slow_gw(fleet: &mut Fleet, dir: &Path) {
    let yaml = std::fs::read_to_string(&fleet.topology).unwrap();
    let yaml = yaml.replacen("{id: gw, ", "{id: gw, identity: single, ", 1);
    std::fs::write(&fleet.topology, yaml).unwrap();
    fleet.kill("gw");
    let export = dir.join("gw-export");
    fleet.add_agent_args(
        "gw",
        &["--export", export.to_str().unwrap(), "--reload", "sleep 2"],
    );
    fleet.restart("gw");
}

/// Wait until `name`'s log says `what`.
fn wait_log(children: &procs::Children, name: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !children.log(name).contains(what) {
        assert!(
            Instant::now() < deadline,
            "{name} never said `{what}`: {}",
            children.log(name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_leader_is_replaced_and_the_rotation_finishes_with_nothing_applied_twice() {
    let Some(journal) = rollover_journal_postgres::testing::fresh_database("ha_failover") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut fleet, root) = fleet_with_root(tmp.path());
    // The fleet's own executor (redb) steps aside: the group below runs the rotation.
    fleet.children.terminate("executor");
    let planner = flag(&fleet.executor_args, "--planner");

    // The kill lands inside one of `gw`'s 2 s steps.
    slow_gw(&mut fleet, tmp.path());

    let ports = free_ports(2);
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let executor = |name: &str, addr: &str| {
        strings(&[
            "serve",
            "executor",
            "--listen",
            addr,
            "--planner",
            &planner,
            "--state",
            tmp.path().join(name).to_str().unwrap(),
            "--bootstrap-ca",
            root.to_str().unwrap(),
            "--journal",
            &journal,
            // Long enough that the reads below surely land before the takeover.
            "--lease",
            "6",
            "--lease-renew",
            "1",
        ])
    };
    // `a` leads first, then `b` follows (and serves the API by forwarding to `a`).
    fleet
        .children
        .spawn("exec-a", &executor("exec-a", &addrs[0]));
    // A member listens as a follower first: wait until it leads, and listens as such.
    wait_log(&fleet.children, "exec-a", "leading with epoch 1");
    fleet
        .children
        .wait_listening("exec-a", addrs[0].parse().unwrap())
        .unwrap();
    fleet
        .children
        .spawn("exec-b", &executor("exec-b", &addrs[1]));
    let group = addrs.join(",");

    let mut rotate = Background::start(&strings(&[
        "rotate",
        "--executor",
        &group,
        fleet.topology.to_str().unwrap(),
        "--max-concurrency",
        "1",
    ]));
    let first = rotate.until("accepted", |l| l.starts_with("rotation "));
    assert!(first.contains(&addrs[0]), "accepted by the leader: {first}");
    let id = first.split_whitespace().nth(1).unwrap().to_string();
    rotate.until("a step of gw started", |l| {
        l.starts_with("step ") && l.contains(" gw) started")
    });
    // The follower answers reads and takes controls by forwarding them to the leader.
    fleet
        .children
        .wait_listening("exec-b", addrs[1].parse().unwrap())
        .unwrap();
    let via_follower = |args: &[&str]| {
        let mut full = strings(args);
        full.extend(strings(&["--executor", &addrs[1]]));
        let out = run(&full, Duration::from_secs(30));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let json = |text: String| -> serde_json::Value { serde_json::from_str(&text).unwrap() };
    let status = json(via_follower(&["status", &id, "-f", "json"]));
    assert_eq!(status["state"], "running", "{status:#}");
    let paused = via_follower(&["pause", &id, "--reason", "via the follower"]);
    assert!(paused.contains("PAUSED"), "{paused}");
    let resumed = via_follower(&["resume", &id]);
    assert!(resumed.contains("RUNNING"), "{resumed}");
    assert!(
        fleet
            .children
            .log("exec-b")
            .contains("reads are served from the journal"),
        "{}",
        fleet.children.log("exec-b")
    );
    let before = json(via_follower(&["status", &id, "-f", "json"]));
    let killed = Instant::now();
    let leader = fleet.children.get("exec-a");
    leader.kill().unwrap();
    leader.wait().unwrap();
    fleet.children.running.retain(|(n, _)| n != "exec-a");

    // No executor leads now (the dead leader's lease has seconds to run), and the
    // follower still answers reads, from the journal: the rotation as journaled.
    let status = json(via_follower(&["status", &id, "-f", "json"]));
    let status_at = killed.elapsed();
    let list = json(via_follower(&["status", "-f", "json"]));
    let list_at = killed.elapsed();
    let mut watch = Background::start(&strings(&["watch", "--all", &id, "--executor", &addrs[1]]));
    let replayed = watch.until("an event replayed", |l| l.starts_with("step "));
    let watch_at = killed.elapsed();
    let follower_log = fleet.children.log("exec-b");
    assert!(
        !follower_log.contains("leading with epoch"),
        "the reads must land while no executor leads: {follower_log}"
    );
    eprintln!(
        "leader killed; the follower answered while no executor led: status after {:.2} s, \
         list after {:.2} s, a watch's first event after {:.2} s ({replayed})",
        status_at.as_secs_f64(),
        list_at.as_secs_f64(),
        watch_at.as_secs_f64()
    );
    assert_eq!(status["state"], "running", "{status:#}");
    assert_eq!(status["steps_total"], before["steps_total"], "{status:#}");
    let done = status["steps_done"].as_u64().unwrap();
    assert!(
        done >= before["steps_done"].as_u64().unwrap()
            && done < status["steps_total"].as_u64().unwrap(),
        "{before:#}\n{status:#}"
    );
    assert!(
        status["last_sequence"].as_u64().unwrap() >= before["last_sequence"].as_u64().unwrap(),
        "{before:#}\n{status:#}"
    );
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{list:#}"));
    // Nothing is journaled while no executor leads: the list shows the same rotation.
    assert_eq!(listed, &status, "{list:#}");

    // Through the takeover (the follower's API handing its address to the leader's),
    // a status asked of it every 200 ms: most must be answered (counts printed).
    let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let prober = {
        let asking = asking.clone();
        let args = strings(&["status", &id, "--executor", &addrs[1]]);
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, Vec::new());
            while asking.load(std::sync::atomic::Ordering::SeqCst) {
                let out = run(&args, Duration::from_secs(30));
                if out.status.success() {
                    answered += 1;
                } else {
                    failed.push(text(&out.stderr));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (answered, failed)
        })
    };

    let (code, out, err) = rotate.finish();
    asking.store(false, std::sync::atomic::Ordering::SeqCst);
    let (answered, failed) = prober.join().unwrap();
    eprintln!(
        "status asked of the follower every 200 ms through the takeover: {answered} \
         answered, {} failed {failed:?}",
        failed.len()
    );
    // Every call may not be answered on a loaded machine (a call can time out while
    // the new leader binds), but the follower must have answered through the takeover.
    assert!(answered > 0, "the follower answered no status: {failed:?}");
    assert!(
        failed.len() * 4 <= answered,
        "{} of {answered} status calls failed: {failed:?}",
        failed.len()
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("finished: SUCCEEDED"), "{out}\n{err}");
    assert!(
        format!("{out}\n{err}").contains(&format!("the executor at {} answers now", addrs[1])),
        "rotate followed the new leader:\n{out}\n{err}"
    );
    eprintln!(
        "leader killed; rotation finished on the new leader {:.1} s later",
        killed.elapsed().as_secs_f64()
    );
    let log = fleet.children.log("exec-b");
    assert!(log.contains("leading with epoch 2"), "{log}");
    // The watch begun on the follower while no executor led saw the rotation through.
    let (code, out, err) = watch.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("finished: SUCCEEDED"), "{out}\n{err}");
    assert!(
        fleet
            .children
            .log("exec-a")
            .contains("leading with epoch 1")
    );

    // The group answers for the rotation: the new leader's journal has all of it.
    let out = run(
        &strings(&["status", "--executor", &group, &id, "-f", "json"]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "succeeded", "{status:#}");
    assert_eq!(status["steps_done"], status["steps_total"], "{status:#}");

    // Nothing doubled or skipped: every agent applied each of its steps exactly once.
    for (id, mode) in procs::NODES {
        assert_eq!(applied_count(&fleet, id), steps_of(mode), "{id}");
    }
}

/// Two executors of a group serving mTLS (API leaves from an operations CA, `pki
/// issue`), each naming the executors' API identity (`executor`) among its
/// `--operators` as the README's HA section says. A `rotate`, a status, a pause and a
/// resume, all sent to the follower as an operator, reach the leader (forwarded with
/// the follower's own identity) or are answered from the journal; a reader of the
/// follower reads through it and may not steer.
#[test]
fn followers_forward_over_mtls() {
    let Some(journal) = rollover_journal_postgres::testing::fresh_database("ha_mtls") else {
        return;
    };
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let quick = Duration::from_secs(30);
    let (mut fleet, root) = fleet_with_root(tmp.path());
    fleet.children.terminate("executor");
    let planner = flag(&fleet.executor_args, "--planner");
    slow_gw(&mut fleet, tmp.path());

    let init = run(
        &strings(&[
            "pki",
            "init",
            "--ca",
            "ops-ca",
            "--out",
            &path("ops-ca.pem"),
        ]),
        quick,
    );
    assert!(init.status.success(), "{}", text(&init.stderr));
    // Each executor its own key, all with the executors' identity.
    for (file, id) in [
        ("exec-a", "executor"),
        ("exec-b", "executor"),
        ("operator", "operator"),
        ("auditor", "auditor"),
    ] {
        let issue = run(
            &strings(&[
                "pki",
                "issue",
                "--ca",
                &path("ops-ca.pem"),
                "--id",
                id,
                "--cert-out",
                &path(&format!("{file}.pem")),
                "--key-out",
                &path(&format!("{file}-key.pem")),
            ]),
            quick,
        );
        assert!(issue.status.success(), "{}", text(&issue.stderr));
    }
    let tls = |file: &str, ca_flag: &str| {
        strings(&[
            "--tls-cert",
            &path(&format!("{file}.pem")),
            "--tls-key",
            &path(&format!("{file}-key.pem")),
            ca_flag,
            &path("ops-ca.pem"),
        ])
    };

    let ports = free_ports(2);
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let executor = |name: &str, addr: &str| {
        let mut args = strings(&[
            "serve",
            "executor",
            "--listen",
            addr,
            "--planner",
            &planner,
            "--state",
            &path(name),
            "--bootstrap-ca",
            root.to_str().unwrap(),
            "--journal",
            &journal,
            // Long: this test never takes over, and a renewal stalled by a loaded
            // machine must not hand the lease to the other member mid-test.
            "--lease",
            "10",
            "--lease-renew",
            "2",
            "--operators",
            "operator,executor",
            "--readers",
            "auditor",
        ]);
        args.extend(tls(name, "--client-ca"));
        args
    };
    // A wildcard --listen cannot be the address the others forward to: refused (exit
    // 2) before anything starts, naming --advertise.
    let wildcard = executor("exec-a", &format!("0.0.0.0:{}", ports[0]));
    let refused = run(&wildcard, quick);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("--advertise"),
        "{}",
        text(&refused.stderr)
    );
    let mut leader = executor("exec-a", &addrs[0]);
    leader.extend(strings(&["--advertise", &addrs[0]]));
    fleet.children.spawn("exec-a", &leader);
    wait_log(&fleet.children, "exec-a", "leading with epoch 1");
    fleet
        .children
        .wait_listening("exec-a", addrs[0].parse().unwrap())
        .unwrap();
    fleet
        .children
        .spawn("exec-b", &executor("exec-b", &addrs[1]));
    wait_log(
        &fleet.children,
        "exec-b",
        "reads are served from the journal",
    );
    // The follower found the leader at the address it advertised.
    wait_log(&fleet.children, "exec-b", &format!("address={}", addrs[0]));
    fleet
        .children
        .wait_listening("exec-b", addrs[1].parse().unwrap())
        .unwrap();
    let follower = format!("https://{}", addrs[1]);

    // StartRotation through the follower; the events come from its journal.
    let mut rotate = strings(&[
        "rotate",
        "--executor",
        &follower,
        fleet.topology.to_str().unwrap(),
        "--max-concurrency",
        "1",
    ]);
    rotate.extend(tls("operator", "--ca"));
    let mut rotate = Background::start(&rotate);
    let first = rotate.until("accepted", |l| l.starts_with("rotation "));
    let id = first.split_whitespace().nth(1).unwrap().to_string();
    rotate.until("a step of gw started", |l| {
        l.starts_with("step ") && l.contains(" gw) started")
    });
    let via_follower = |who: &str, args: &[&str]| {
        let mut full = strings(args);
        full.extend(strings(&["--executor", &follower]));
        full.extend(tls(who, "--ca"));
        let started = Instant::now();
        let out = run(&full, quick);
        (out, started.elapsed())
    };
    let (out, status_took) = via_follower("operator", &["status", &id, "-f", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "running", "{status:#}");
    // A reader of the follower reads through it, and may not steer.
    let (out, _) = via_follower("auditor", &["status", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (out, _) = via_follower("auditor", &["pause", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`auditor` is a reader"),
        "{}",
        text(&out.stderr)
    );
    // Controls reach the leader over mTLS, sent with the follower's identity.
    let (out, pause_took) = via_follower("operator", &["pause", &id, "--reason", "over mTLS"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("PAUSED"),
        "{}",
        text(&out.stdout)
    );
    let (out, resume_took) = via_follower("operator", &["resume", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("RUNNING"),
        "{}",
        text(&out.stdout)
    );

    let (code, out, err) = rotate.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("finished: SUCCEEDED"), "{out}\n{err}");
    assert!(out.contains("over mTLS"), "the pause's event: {out}");
    // The leader ran it; the follower never led.
    let leader = fleet.children.log("exec-a");
    assert!(
        leader.contains("rotation accepted") && leader.contains(&id),
        "{leader}"
    );
    assert!(!fleet.children.log("exec-b").contains("leading with epoch"));
    for (node, mode) in procs::NODES {
        assert_eq!(applied_count(&fleet, node), steps_of(mode), "{node}");
    }
    eprintln!(
        "mTLS group: through the follower, status {:.2} s, pause {:.2} s, resume {:.2} s \
         (each a whole `rollover` process); test {:.1} s",
        status_took.as_secs_f64(),
        pause_took.as_secs_f64(),
        resume_took.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}

/// A PostgreSQL cluster of this test's own (`.ci/postgres.sh start`), so that
/// stopping it disturbs no other test; stopped and removed when dropped.
struct OwnCluster {
    script: PathBuf,
    dir: String,
    url: String,
}

impl OwnCluster {
    /// A fresh cluster, or `None` (said loudly) where PostgreSQL cannot be started
    /// locally; under CI=true that is a failure, not a skip.
    fn start() -> Option<OwnCluster> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/postgres.sh");
        let out = std::process::Command::new(&script).arg("start").output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            other => {
                let why = format!("{other:?}");
                assert!(
                    std::env::var("CI").is_err(),
                    "CI=true: .ci/postgres.sh start failed: {why}"
                );
                eprintln!("SKIPPED: no PostgreSQL cluster of its own could be started: {why}");
                return None;
            }
        };
        let exports = text(&out.stdout);
        let value = |name: &str| {
            exports
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} in {exports}"))
                .to_string()
        };
        Some(OwnCluster {
            script,
            dir: value("ROLLOVER_CI_PGDIR"),
            url: value("ROLLOVER_TEST_POSTGRES"),
        })
    }

    /// Stop the server (its clients disconnected), wait `seconds`, start it again.
    fn blip(&self, seconds: u32) -> std::process::Output {
        std::process::Command::new(&self.script)
            .args(["blip", &self.dir, &seconds.to_string()])
            .output()
            .unwrap()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script)
            .args(["stop", &self.dir])
            .output();
    }
}

/// Issue 25: the database of an executor group stopped for 1 s in the middle of a
/// rotation (every connection dropped, new ones refused) strands nothing. The leader
/// retries its journal writes until the server is back; no executor decides the
/// rotation without its journal; `rotate` sees it through to SUCCEEDED, both
/// executors and the journal agree, and every agent applied each step once.
#[test]
fn a_one_second_database_outage_does_not_strand_the_rotation() {
    let Some(cluster) = OwnCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut fleet, root) = fleet_with_root(tmp.path());
    fleet.children.terminate("executor");
    let planner = flag(&fleet.executor_args, "--planner");
    slow_gw(&mut fleet, tmp.path());

    let ports = free_ports(2);
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let executor = |name: &str, addr: &str| {
        strings(&[
            "serve",
            "executor",
            "--listen",
            addr,
            "--planner",
            &planner,
            "--state",
            tmp.path().join(name).to_str().unwrap(),
            "--bootstrap-ca",
            root.to_str().unwrap(),
            "--journal",
            &cluster.url,
            "--lease",
            "6",
            "--lease-renew",
            "1",
        ])
    };
    fleet
        .children
        .spawn("exec-a", &executor("exec-a", &addrs[0]));
    wait_log(&fleet.children, "exec-a", "leading with epoch 1");
    fleet
        .children
        .wait_listening("exec-a", addrs[0].parse().unwrap())
        .unwrap();
    fleet
        .children
        .spawn("exec-b", &executor("exec-b", &addrs[1]));
    let group = addrs.join(",");

    let mut rotate = Background::start(&strings(&[
        "rotate",
        "--executor",
        &group,
        fleet.topology.to_str().unwrap(),
        "--max-concurrency",
        "1",
    ]));
    let first = rotate.until("accepted", |l| l.starts_with("rotation "));
    let id = first.split_whitespace().nth(1).unwrap().to_string();
    rotate.until("a step started", |l| {
        l.starts_with("step ") && l.contains(" started")
    });
    let blip = cluster.blip(1);
    assert!(blip.status.success(), "{}", text(&blip.stderr));
    eprintln!("database stopped for 1 s: {}", text(&blip.stderr).trim());

    let (code, out, err) = rotate.finish();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("finished: SUCCEEDED"), "{out}\n{err}");
    let leader_log = fleet.children.log("exec-a");
    eprintln!(
        "the leader retried {} journal commits and stalled {} times; {}",
        leader_log.matches("retrying the commit").count(),
        leader_log
            .matches("resuming from the journal once it answers")
            .count(),
        if leader_log.contains("leading with epoch 2")
            || fleet
                .children
                .log("exec-b")
                .contains("leading with epoch 2")
        {
            "the lead changed"
        } else {
            "exec-a kept the lead"
        }
    );
    assert!(
        !leader_log.contains("cannot journal the end of the rotation")
            || leader_log.contains("resuming the rotation from the journal"),
        "{leader_log}"
    );

    // Every executor and the journal say the same.
    for addr in &addrs {
        let out = run(
            &strings(&["status", "--executor", addr, &id, "-f", "json"]),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{addr}: {}", text(&out.stderr));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(status["state"], "succeeded", "{addr}: {status:#}");
        assert_eq!(status["steps_done"], status["steps_total"], "{status:#}");
    }
    for (id, mode) in procs::NODES {
        assert_eq!(applied_count(&fleet, id), steps_of(mode), "{id}");
    }
}
