//! A first end-to-end run: the mesh example rotates with zero failures.

use rollover_core::Topology;
use rollover_simulator::{SimOptions, simulate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_rotates_cleanly() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/mesh.yaml"
    ))
    .unwrap();
    let topology = Topology::parse("mesh.yaml", &text).unwrap();
    let outcome = simulate(&topology, SimOptions::default()).await.unwrap();
    let r = &outcome.report;
    eprintln!("{}", serde_json::to_string_pretty(r).unwrap());
    assert_eq!(r.failed_undeclared, 0, "{:?}", r.failures);
    assert!(r.all_new);
    assert_eq!(r.links_probed_every_step, 1.0);
}
