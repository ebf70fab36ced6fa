//! The commands that run or reach services, without a fleet: every new command's help,
//! `pki init`/`pki issue` output, and the clear refusals (plaintext off loopback, an
//! unreachable executor, bad topologies, a missing enrolment).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{rollover, scratch};

/// `rollover ARGS --help`: exit 0 with the explanation, the flags and an example.
fn help(args: &[&str], must_mention: &[&str]) {
    let mut all = args.to_vec();
    all.push("--help");
    let run = rollover(&all);
    assert_eq!(run.code, 0, "{all:?}: {}", run.stderr);
    assert!(
        run.stdout.contains("Examples:\n  rollover "),
        "{all:?} shows an example:\n{}",
        run.stdout
    );
    for word in must_mention {
        assert!(
            run.stdout.contains(word),
            "{all:?} mentions {word}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn every_new_command_explains_itself_with_an_example() {
    help(&["pki"], &["init", "issue", "bootstrap"]);
    help(
        &["pki", "init"],
        &[
            "--ca <NAME>",
            "--generation",
            "--key-type",
            "ecdsa-p256",
            "ed25519",
            "--out <FILE>",
            "0600",
        ],
    );
    help(
        &["pki", "issue"],
        &["--ca <FILE>", "--id <ID>", "--cert-out", "--key-out"],
    );
    help(&["serve"], &["planner", "executor", "loopback"]);
    help(
        &["serve", "planner"],
        &[
            "--listen <ADDR>",
            "--tls-cert",
            "--tls-key",
            "--client-ca",
            "loopback",
        ],
    );
    help(
        &["serve", "executor"],
        &[
            "--listen <ADDR>",
            "--planner <URL>",
            "--state <DIR>",
            "--bootstrap-ca",
            "--tls-cert",
            "--client-ca",
            "--metrics",
            "@executor",
            "restart",
        ],
    );
    help(
        &["agent"],
        &[
            "--id <ID>",
            "--mode",
            "bundle",
            "atomic",
            "--listen <ADDR>",
            "--data-listen <ADDR>",
            "--state <DIR>",
            "--bootstrap-ca",
            "--control-ca",
            "address",
        ],
    );
    help(
        &["rotate"],
        &[
            "--executor <URL>",
            "<TOPOLOGY>",
            "--plan",
            "--strategy",
            "--max-concurrency",
            "--no-probe",
            "--no-check",
            "--format",
            "--output",
            "ROLLOVER_EXECUTOR",
            "Ctrl-C",
            "Exit status",
        ],
    );
    help(
        &["status"],
        &["--executor <URL>", "[ROTATION]", "--format", "--watch"],
    );
    for command in ["pause", "resume", "abort", "rollback", "watch", "check"] {
        help(
            &[command],
            &[
                "--executor <URL>",
                "ROLLOVER_EXECUTOR",
                "--format",
                "Exit status",
            ],
        );
    }
    help(&["completion"], &["bash", "zsh", "fish", "Exit status"]);
    let top = rollover(&["--help"]);
    for command in [
        "pki",
        "serve",
        "agent",
        "rotate",
        "status",
        "check",
        "watch",
        "pause",
        "resume",
        "abort",
        "rollback",
        "completion",
    ] {
        assert!(
            top.stdout.contains(&format!("  {command} ")),
            "`rollover --help` lists {command}:\n{}",
            top.stdout
        );
    }
}

#[test]
fn pki_init_writes_a_parseable_owner_only_root() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("root.pem");
    let out_s = out.to_str().unwrap();
    let run = rollover(&[
        "pki",
        "init",
        "--ca",
        "demo-root",
        "--generation",
        "3",
        "--out",
        out_s,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("demo-root gen 3"), "{}", run.stdout);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the root's file is owner-only");
    let text = std::fs::read_to_string(&out).unwrap();
    let root = rollover_pki::RootCa::from_pem(&text).expect("the root parses with its key");
    assert_eq!(
        rollover_pki::node_id_from_cert(root.cert_der()).as_deref(),
        Some("demo-root gen 3")
    );
    assert_eq!(root.alg(), rollover_pki::KeyAlg::EcdsaP256);
    assert!(run.stdout.contains(&root.fingerprint()), "{}", run.stdout);

    // Never replaced by accident.
    let again = rollover(&["pki", "init", "--ca", "other", "--out", out_s]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

    let ed = dir.path().join("ed.pem");
    let run = rollover(&[
        "pki",
        "init",
        "--ca",
        "ed",
        "--key-type",
        "ed25519",
        "--out",
        ed.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let root = rollover_pki::RootCa::from_pem(&std::fs::read_to_string(&ed).unwrap()).unwrap();
    assert_eq!(root.alg(), rollover_pki::KeyAlg::Ed25519);

    // A leaf from it, for the TLS flags: the key owner-only, the certificate issued
    // by the root for the id.
    let (cert, key) = (dir.path().join("p.pem"), dir.path().join("p-key.pem"));
    let run = rollover(&[
        "pki",
        "issue",
        "--ca",
        out_s,
        "--id",
        "planner",
        "--cert-out",
        cert.to_str().unwrap(),
        "--key-out",
        key.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let block = pem::parse(std::fs::read(&cert).unwrap()).unwrap();
    assert_eq!(
        rollover_pki::node_id_from_cert(block.contents()).as_deref(),
        Some("planner")
    );
}

#[test]
fn plaintext_is_refused_off_loopback_and_tls_flags_go_together() {
    let run = rollover(&["serve", "planner", "--listen", "0.0.0.0:0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("refusing to serve the planner in plaintext on 0.0.0.0:0")
            && run.stderr.contains("--tls-cert"),
        "{}",
        run.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ex");
    let run = rollover(&[
        "serve",
        "executor",
        "--listen",
        "0.0.0.0:0",
        "--planner",
        "127.0.0.1:1",
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("refusing to serve the executor in plaintext"),
        "{}",
        run.stderr
    );

    let run = rollover(&[
        "serve",
        "planner",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        "x.pem",
    ]);
    assert_eq!(run.code, 2, "clap refuses a partial set: {}", run.stderr);
    assert!(run.stderr.contains("--tls-key"), "{}", run.stderr);
}

#[test]
fn an_executor_needs_an_enrolment_and_an_agent_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ex");
    let run = rollover(&[
        "serve",
        "executor",
        "--listen",
        "127.0.0.1:0",
        "--planner",
        "127.0.0.1:1",
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--bootstrap-ca"), "{}", run.stderr);

    let node = dir.path().join("gw");
    let run = rollover(&[
        "agent",
        "--id",
        "gw",
        "--listen",
        "127.0.0.1:0",
        "--data-listen",
        "127.0.0.1:0",
        "--state",
        node.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("holds no node yet") && run.stderr.contains("--bootstrap-ca"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_export_dir_that_cannot_be_written_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("root.pem");
    let run = rollover(&["pki", "init", "--ca", "demo", "--out", ca.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A directory under a regular file cannot be made, whoever runs the test.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    let export = plain.join("tls");
    let node = dir.path().join("web-1");
    let run = rollover(&[
        "agent",
        "--id",
        "web-1",
        "--listen",
        "127.0.0.1:0",
        "--data-listen",
        "127.0.0.1:0",
        "--state",
        node.to_str().unwrap(),
        "--bootstrap-ca",
        ca.to_str().unwrap(),
        "--export",
        export.to_str().unwrap(),
        "--reload",
        "true",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--export") && run.stderr.contains("cannot create"),
        "{}",
        run.stderr
    );
    assert!(!node.exists(), "nothing enrolled");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "x");

    let run = rollover(&[
        "agent",
        "--id",
        "web-1",
        "--listen",
        "127.0.0.1:0",
        "--data-listen",
        "127.0.0.1:0",
        "--state",
        node.to_str().unwrap(),
        "--reload",
        "true",
    ]);
    assert_eq!(run.code, 2, "--reload needs --export: {}", run.stderr);
    assert!(run.stderr.contains("--export"), "{}", run.stderr);
}

const TOPOLOGY: &str = "\
ca: demo-root
nodes:
  - {id: gw, address: \"127.0.0.1:1\"}
  - {id: plc, mode: atomic, address: \"127.0.0.1:1\"}
links:
  - {client: gw, server: plc}
";

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_executor_is_named() {
    let topology = scratch("services", "reachable.yaml", TOPOLOGY);
    let url = format!("127.0.0.1:{}", closed_port());
    let run = rollover(&["rotate", "--executor", &url, &topology]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot reach the executor at {url}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("refused"),
        "{}",
        run.stderr
    );
    let run = rollover(&["status", "--executor", &url]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot reach the executor at {url}")),
        "{}",
        run.stderr
    );

    let run = rollover(&["status", "--executor", "10.1.2.3:7001"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("loopback") && run.stderr.contains("--tls-cert"),
        "{}",
        run.stderr
    );
}

#[test]
fn rotate_rejects_bad_topologies_before_calling() {
    let url = format!("127.0.0.1:{}", closed_port());
    let bad = scratch(
        "services",
        "bad.yaml",
        "ca: r\nnodes:\n  - {id: a, mode: dual}\n",
    );
    let run = rollover(&["rotate", "--executor", &url, &bad]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("bad.yaml:3:"),
        "names the file and line: {}",
        run.stderr
    );

    // MODEL §12's node fields: refused naming the field, before the executor is
    // called (it is unreachable: calling it would exit 1).
    for (name, node, field) in [
        (
            "identity.yaml",
            "{id: a, identity: dual}",
            "nodes[0].identity",
        ),
        ("probe.yaml", "{id: a, probe: \"nginx\"}", "nodes[0].probe"),
    ] {
        let bad = scratch("services", name, &format!("ca: r\nnodes:\n  - {node}\n"));
        let run = rollover(&["rotate", "--executor", &url, &bad]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("{name}:3:")) && run.stderr.contains(field),
            "names the file, line and field: {}",
            run.stderr
        );
    }

    let no_address = scratch(
        "services",
        "no-address.yaml",
        "ca: r\nnodes:\n  - {id: a, address: \"127.0.0.1:1\"}\nlinks:\n  - {client: a, server: b}\n",
    );
    let run = rollover(&["rotate", "--executor", &url, &no_address]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no-address.yaml")
            && run.stderr.contains("`b`")
            && run.stderr.contains("address"),
        "{}",
        run.stderr
    );
}
