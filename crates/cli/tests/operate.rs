//! Operating rotations across separate processes (planner, executor, four agents and
//! the `rollover` commands, each its own process on loopback):
//!
//! * one rotation per CA: two `rotate` of the same fleet started together, exactly one
//!   runs and the other exits 1 within 2 s naming it; a third after the first ends
//!   succeeds;
//! * a rotation paused by a failed probe (an agent killed under it) is resumed from the
//!   CLI once the agent is back, and succeeds;
//! * a rotation rolled back from the CLI puts every agent back on the old root (as
//!   `check` reports it);
//! * `check` on a fleet with three dead agents names all three, and so does `rotate
//!   --no-check` while it waits and when it gives up.

mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use std::process::{Child, Command, Stdio};

use procs::{BIN, Background, Fleet, fleet_with_root, run, strings, text};
use serde_json::Value;

fn rollover(args: &[&str]) -> (i32, String, String) {
    let out = run(&strings(args), Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// `check -f json`: exit code and report.
fn check(fleet: &Fleet) -> (i32, Value) {
    let (code, out, err) = rollover(&[
        "check",
        "--executor",
        &fleet.executor_url,
        fleet.topology.to_str().unwrap(),
        "-f",
        "json",
    ]);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, report)
}

/// The one root every agent is on, per `check`.
fn fleet_root(fleet: &Fleet) -> String {
    let (code, report) = check(fleet);
    assert_eq!(code, 0, "{report:#}");
    let roots: BTreeSet<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["root_fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(roots.len(), 1, "{report:#}");
    assert_eq!(report["nodes"].as_array().unwrap().len(), 4, "{report:#}");
    roots.into_iter().next().unwrap().to_string()
}

/// The id in `rotation ID ...` (the first line of `rotate`).
fn rotation_id(first: &str) -> String {
    assert!(first.starts_with("rotation r"), "{first}");
    first.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn one_rotation_per_ca_and_every_control_from_the_cli() {
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (mut fleet, _root) = fleet_with_root(tmp.path());
    let url = fleet.executor_url.clone();
    let topology = fleet.topology.to_str().unwrap().to_string();
    let rotate = |extra: &[&str]| {
        let mut args = strings(&["rotate", "--executor", &url, &topology]);
        args.extend(strings(extra));
        args
    };

    // A clean fleet passes the pre-flight check.
    let first_root = fleet_root(&fleet);

    // Two `rotate` of the same fleet at once: exactly one runs. Without the pre-flight
    // check, so that the executor's one-rotation-per-CA rule decides (with the check,
    // the loser may instead be stopped by it, seeing an agent mid-rotation).
    let started = Instant::now();
    let mut both: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(BIN)
                .args(rotate(&["--no-check"]))
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ended: Vec<Option<Duration>> = vec![None, None];
    while ended.iter().any(Option::is_none) {
        for (i, child) in both.iter_mut().enumerate() {
            if ended[i].is_none() && child.try_wait().unwrap().is_some() {
                ended[i] = Some(started.elapsed());
            }
        }
        assert!(started.elapsed() < Duration::from_secs(90), "rotate hangs");
        std::thread::sleep(Duration::from_millis(5));
    }
    let outputs: Vec<_> = both
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let codes: Vec<i32> = outputs.iter().map(|o| o.status.code().unwrap()).collect();
    let winner = codes
        .iter()
        .position(|&c| c == 0)
        .unwrap_or_else(|| panic!("none succeeded: {codes:?} {outputs:#?}"));
    let loser = 1 - winner;
    let winner_out = text(&outputs[winner].stdout);
    let loser_err = text(&outputs[loser].stderr);
    assert_eq!(codes[loser], 1, "{loser_err}");
    let first_id = rotation_id(winner_out.lines().next().unwrap());
    assert!(
        loser_err.contains(&first_id),
        "the refusal names {first_id}:\n{loser_err}"
    );
    let loser_took = ended[loser].unwrap();
    assert!(
        loser_took < Duration::from_secs(2),
        "the second rotate took {loser_took:?}"
    );
    eprintln!(
        "two rotates at once: the second exited 1 in {:.2} s naming {first_id}: {}",
        loser_took.as_secs_f64(),
        loser_err.lines().last().unwrap_or_default()
    );
    assert!(winner_out.contains("finished: SUCCEEDED"), "{winner_out}");

    // A third, after the first ended, starts cleanly with a new root.
    let (code, out, err) = rollover(&rotate(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{out}\n{err}");
    let second_root = fleet_root(&fleet);
    assert_ne!(second_root, first_root);

    // From here on `gw`'s steps are slowed by a 3 s reload command, so that a rollback
    // or a kill lands inside a step of a running rotation, not after it (unslowed, a
    // whole rotation takes 0.1 s). A node whose credentials are exported presents the
    // one exported leaf, so the topology declares it `identity: single` from now on.
    let slowed = "gw";
    let yaml = std::fs::read_to_string(&fleet.topology).unwrap();
    let yaml = yaml.replacen(
        &format!("{{id: {slowed}, "),
        &format!("{{id: {slowed}, identity: single, "),
        1,
    );
    std::fs::write(&fleet.topology, yaml).unwrap();
    let (code, plan, err) = rollover(&["plan", &topology, "-f", "json"]);
    assert_eq!(code, 0, "{err}");
    let victim = victim(&plan, &topology_links(&fleet), slowed);
    fleet.kill(&victim.peer);
    let export = tmp.path().join("slow-peer-export");
    fleet.add_agent_args(
        &victim.peer,
        &["--export", export.to_str().unwrap(), "--reload", "sleep 3"],
    );
    fleet.restart(&victim.peer);
    // The peer answers once its first export and reload (3 s) are done.
    let ready = Instant::now() + Duration::from_secs(30);
    while check(&fleet).0 != 0 {
        assert!(Instant::now() < ready, "{:#}", check(&fleet).1);
        std::thread::sleep(Duration::from_millis(200));
    }

    // Rolled back from the CLI: every agent back on the root it was on.
    let mut bg = Background::start(&rotate(&["--max-concurrency", "1"]));
    let id = rotation_id(&bg.until("accepted", |l| l.starts_with("rotation ")));
    let slow_step = format!(" {}) started", victim.peer);
    bg.until("a slowed step started", |l| {
        l.starts_with("step ") && l.contains(&slow_step)
    });
    let (code, out, err) = rollover(&[
        "rollback",
        "--executor",
        &url,
        &id,
        "--reason",
        "test",
        "--watch",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("rotation {id} ROLLED_BACK")), "{out}");
    let (code, out, _) = bg.finish();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("finished: ROLLED_BACK"), "{out}");
    assert_eq!(
        fleet_root(&fleet),
        second_root,
        "every agent back on the old root"
    );
    let (code, out, err) = rollover(&["status", "--executor", &url, &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ROLLED_BACK"), "{out}");

    // Paused by a failed probe: the victim killed once its own steps are done, while
    // the slowed peer's later step runs. Resumed from the CLI once it is back: succeeds.
    let mut bg = Background::start(&rotate(&["--max-concurrency", "1"]));
    let id = rotation_id(&bg.until("accepted", |l| l.starts_with("rotation ")));
    let last = format!("({} {}) done", victim.action, victim.node);
    bg.until(&last, |l| l.starts_with("step ") && l.ends_with(&last));
    let peer_step = format!("({} {}) started", victim.peer_action, victim.peer);
    bg.until(&peer_step, |l| {
        l.starts_with("step ") && l.contains(&peer_step)
    });
    fleet.kill(&victim.node);
    let paused = bg.until("PAUSED", |l| l.starts_with("PAUSED:"));
    assert!(
        paused.contains("failed its probe") && paused.contains(&victim.node),
        "{paused}"
    );
    fleet.restart(&victim.node);
    let (code, out, err) = rollover(&["resume", "--executor", &url, &id, "--watch"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("rotation {id} SUCCEEDED")), "{out}");
    let (code, out, _) = bg.finish();
    assert_eq!(code, 0, "{out}");
    let third_root = fleet_root(&fleet);
    assert_ne!(third_root, second_root);

    // Three dead agents: `check` names all three, and so does `rotate --no-check`.
    let dead = ["gw", "historian", "plc-1"];
    for id in dead {
        fleet.kill(id);
    }
    let t = Instant::now();
    let (code, out, err) = rollover(&["check", "--executor", &url, &topology]);
    let check_took = t.elapsed();
    assert_eq!(code, 1, "{out}\n{err}");
    for id in dead {
        assert!(
            out.lines()
                .any(|l| l.contains("unreachable") && l.contains(&format!("`{id}`"))),
            "check names {id}:\n{out}"
        );
    }
    assert!(!out.contains("`meter-7`: its agent"), "{out}");
    let (code, _, err) = rollover(&rotate(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{err}");
    assert!(
        dead.iter().all(|id| err.contains(&format!("`{id}`"))),
        "{err}"
    );
    let t = Instant::now();
    let (code, out, err) = rollover(
        &rotate(&["--no-check"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let gave_up = t.elapsed();
    assert_eq!(code, 1, "{out}\n{err}");
    let waiting: BTreeMap<&str, usize> = dead
        .iter()
        .map(|id| {
            let prefix = format!("waiting for `{id}`: GetState attempt ");
            (*id, out.lines().filter(|l| l.starts_with(&prefix)).count())
        })
        .collect();
    assert!(waiting.values().all(|&n| n > 0), "{waiting:?}\n{out}");
    let end = out.lines().last().unwrap_or_default();
    assert!(
        end.contains("FAILED") && end.contains("3 node(s) not ready"),
        "{out}"
    );
    assert!(
        dead.iter().all(|id| end.contains(&format!("`{id}`"))),
        "{end}"
    );
    eprintln!(
        "3 dead agents: check named all 3 in {:.2} s; rotate --no-check said what it waited \
         for ({waiting:?} retries) and gave up naming all 3 after {:.1} s",
        check_took.as_secs_f64(),
        gave_up.as_secs_f64()
    );
    eprintln!("operate test took {:.1} s", began.elapsed().as_secs_f64());
}

/// The links of the test fleet's rotated CA, plus `@executor -> every node`.
fn topology_links(_fleet: &Fleet) -> Vec<(String, String)> {
    let mut links: Vec<(String, String)> = [
        ("gw", "plc-1"),
        ("gw", "historian"),
        ("meter-7", "historian"),
        ("plc-1", "meter-7"),
    ]
    .iter()
    .map(|(c, s)| (c.to_string(), s.to_string()))
    .collect();
    for (id, _) in procs::NODES {
        links.push(("@executor".into(), id.to_string()));
    }
    links
}

/// The node the paused scenario kills, and the link peer whose later step fails a
/// probe to it.
struct Victim {
    node: String,
    /// The node's last action.
    action: String,
    /// The slowed link peer, with a step in a later wave than the node's last.
    peer: String,
    /// The peer's last action (in a later wave than the node's last).
    peer_action: String,
}

/// A link peer of `slowed` whose last step comes at least one wave before the last
/// step of `slowed`, so that killing it during that later step fails a probe (not a
/// step).
fn victim(plan: &str, links: &[(String, String)], slowed: &str) -> Victim {
    let plan: Value = serde_json::from_str(plan).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let last = |node: &str| {
        steps
            .iter()
            .filter(|s| s["node"] == node)
            .max_by_key(|s| s["wave"].as_u64().unwrap())
            .map(|s| {
                (
                    s["wave"].as_u64().unwrap(),
                    s["action"].as_str().unwrap().to_string(),
                )
            })
            .unwrap_or_else(|| panic!("no step of {node}: {plan:#}"))
    };
    let (peer_wave, peer_action) = last(slowed);
    links
        .iter()
        .filter_map(|(c, s)| match (c == slowed, s == slowed) {
            (true, _) => Some(s),
            (_, true) => Some(c),
            _ => None,
        })
        .filter(|node| !node.starts_with('@'))
        .map(|node| (node, last(node)))
        .filter(|(_, (wave, _))| *wave < peer_wave)
        .min_by_key(|(_, (wave, _))| *wave)
        .map(|(node, (_, action))| Victim {
            node: node.clone(),
            action,
            peer: slowed.to_string(),
            peer_action: peer_action.clone(),
        })
        .unwrap_or_else(|| panic!("no link peer of {slowed} ends before it: {plan:#}"))
}
