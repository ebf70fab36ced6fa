//! The contract from another language: `python/contract_client.py`, written against
//! the stock `grpcio`, `grpcio-reflection` and `protobuf` packages and no generated
//! code, lists the services of the planner, the executor and three agents by v1alpha
//! reflection and runs a whole rotation through the renamed API (Plan, Verify,
//! StartRotation with a request_id and its retry, WatchRotation, GetRotation, paged
//! ListRotations).
//!
//! The fleet is real and in process, on 127.0.0.1 port 0: the planner and the executor
//! in plaintext (loopback), three agents whose control API is mTLS in a separate control
//! CA, from which the Python client gets a certificate of its own (reflection answers
//! any client of the control CA; the AgentService itself only `@executor`).
//!
//! Python comes from `.ci/setup-python-grpc.sh` (a venv under the target directory,
//! which `.ci/run` creates), or `ROLLOVER_PYTHON`, or `python3` on the PATH. Without
//! the modules the test skips loudly, unless `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rollover_agent::ControlCreds;
use rollover_core::Mode;
use rollover_executor::{ExecutorConfig, GrpcConnector};
use rollover_integration_tests::{
    EXECUTOR_ID, bounded, creds, quick_retry, root, start_agent, start_executor, start_planner,
};
use rollover_pki::{KeyAlg, NodeKey, Validity, node_dns_name};

/// The interpreter to run the client with, if it has the modules.
fn python() -> Option<PathBuf> {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("ROLLOVER_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(dir) = target.parent() {
        candidates.push(dir.join("tools/pyenv/bin/python3"));
    }
    candidates.push(PathBuf::from("python3"));
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn a_python_grpcio_client_lists_services_and_runs_a_rotation() {
    let Some(python) = python() else {
        let message = "python_client: SKIPPED: no python3 with grpcio, grpcio-reflection and \
                       protobuf (run .ci/setup-python-grpc.sh, or set ROLLOVER_PYTHON)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}; CI=true requires it");
        }
        eprintln!("\n*** {message} ***\n");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/contract_client.py");
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let output = rt.block_on(async {
        let old = root("corp", 1);
        let control = root("control", 1);
        let planner = start_planner().await;
        let mut agents = Vec::new();
        for (id, mode) in [("gw", Mode::Bundle), ("historian", Mode::Bundle), ("plc", Mode::Atomic)] {
            agents.push(
                start_agent(
                    &tmp.path().join(id),
                    id,
                    mode,
                    &old,
                    ControlCreds::Separate(creds(id, &control)),
                )
                .await,
            );
        }
        let mut config = ExecutorConfig::new(tmp.path().join("executor"))
            .planner_url(&planner.addr)
            .expect("planner url");
        config.retry = quick_retry();
        config.connector = Some(std::sync::Arc::new(GrpcConnector::tls(creds(
            EXECUTOR_ID,
            &control,
        ))));
        let (executor_server, executor) = start_executor(config).await;

        let mut topology = String::from("ca: corp\nnodes:\n");
        for agent in &agents {
            let mode = if agent.id() == "plc" { "atomic" } else { "bundle" };
            topology.push_str(&format!(
                "  - {{id: {}, mode: {mode}, address: \"{}\"}}\n",
                agent.id(),
                agent.control_addr()
            ));
        }
        topology.push_str(
            "links:\n  - {client: gw, server: plc}\n  - {client: gw, server: historian}\n  - {client: plc, server: historian}\n",
        );
        let dir = tmp.path();
        let fleet = write(dir, "fleet.yaml", &topology);
        // The Python client's own identity in the control CA; its key is made here.
        let key = NodeKey::generate(KeyAlg::default()).unwrap();
        let csr = key.csr_der("python-client").unwrap();
        let cert = control
            .issue_leaf(&csr, "python-client", Validity::default())
            .unwrap();
        let cert = write(dir, "client.pem", &pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec())));
        let key = write(dir, "client-key.pem", &key.to_pem());
        let ca = write(
            dir,
            "control-ca.pem",
            &pem::encode(&pem::Pem::new("CERTIFICATE", control.cert_der().to_vec())),
        );

        let mut args = vec![
            script.to_str().unwrap().to_string(),
            "--topology".into(),
            fleet,
            "--planner".into(),
            format!("http://{}", planner.addr),
            "--executor".into(),
            format!("http://{}", executor_server.addr),
            "--ca".into(),
            ca,
            "--cert".into(),
            cert,
            "--key".into(),
            key,
        ];
        for agent in &agents {
            args.push("--agent".into());
            args.push(format!(
                "{}=https://{},{}",
                agent.id(),
                agent.control_addr(),
                node_dns_name(agent.id())
            ));
        }
        let python = python.clone();
        let output = bounded(
            "the python client",
            Duration::from_secs(120),
            tokio::task::spawn_blocking(move || Command::new(python).args(&args).output()),
        )
        .await
        .expect("joined")
        .expect("python runs");
        executor.shutdown();
        executor_server.stop().await;
        for agent in agents {
            agent.shutdown().await;
        }
        planner.stop().await;
        output
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the python client failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    for want in [
        "services planner: grpc.health.v1.Health grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection rollover.v1.PlannerService",
        "services executor: grpc.health.v1.Health grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection rollover.v1.ExecutorService",
        "services agent gw: grpc.health.v1.Health grpc.reflection.v1.ServerReflection grpc.reflection.v1alpha.ServerReflection rollover.v1.AgentService",
        "retry with the same request_id: same rotation",
        "status: ROTATION_STATE_SUCCEEDED",
        "OK",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
}
