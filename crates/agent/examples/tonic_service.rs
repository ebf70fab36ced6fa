//! Embedding: a Rust (tonic) service whose TLS follows the agent's live credentials,
//! so it rotates in process, without files or reloads.
//!
//! A workload that reads files (nginx, curl) needs `rollover agent --export DIR
//! --reload CMD`. A Rust service can do better: run the agent in its own process
//! ([`Agent::start`]) and serve its gRPC API with [`serve_tls`] on the agent's
//! [`LiveCredentials`] ([`AgentHandle::credentials`]). Every step the executor applies
//! swaps those credentials, and every handshake that starts afterwards uses the new
//! set: the service presents the leaf and trusts the roots of the node's current
//! MODEL §3 state, exactly as the agent's own data plane does. Established
//! connections keep what they negotiated.
//!
//! Outgoing calls work the same way: [`tls_channel`] dials with the credentials
//! current at connect time (and names the server by node id).
//!
//! This example enrols a node `billing` on a demo root, starts its agent (the executor
//! would rotate it through the agent's control address), serves a gRPC health service
//! (stand-in for your own) on the live credentials, and calls it as another node:
//!
//! ```sh
//! cargo run --release -p rollover-agent --example tonic_service
//! ```
//!
//! In a real service, the state directory is persistent, the node is enrolled by
//! your PKI (or `rollover agent --bootstrap-ca` once), and the agent's control
//! address is the node's `address` in the topology.

use std::time::Duration;

use rollover_agent::{Agent, AgentConfig, ControlCreds, single_root_credentials};
use rollover_core::Mode;
use rollover_pki::{KeyAlg, LiveCredentials, RootCa, Validity};
use rollover_transport::{base_router, serve_tls, tls_channel};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Demo enrolment: a root and the node's first leaf (key made in the state dir).
    let state = tempfile::tempdir()?;
    let root = RootCa::generate("demo-root", 1, KeyAlg::default(), Validity::default())?;
    rollover_agent::bootstrap(
        state.path(),
        "billing",
        Mode::Bundle,
        &root,
        Validity::default(),
    )?;

    // The agent, in process: its control API is what the executor calls to rotate it.
    let agent = Agent::start(AgentConfig {
        id: "billing".into(),
        mode: Mode::Bundle,
        state_dir: state.path().to_path_buf(),
        state_files: None,
        data_listen: "127.0.0.1:0".parse()?,
        control_listen: "127.0.0.1:0".parse()?,
        control: ControlCreds::Rotated,
        limits: rollover_agent::DEFAULT_LIMITS,
        chains: true,
    })
    .await?;
    println!(
        "agent of `billing`: control API on {}",
        agent.control_addr()
    );

    // Your service, served on the agent's live credentials: no files, no reload.
    // The same caps on callers as the agent's own API (request size, streams per
    // connection, open connections, idle time-out).
    let limits = rollover_agent::DEFAULT_LIMITS;
    let (router, health) = base_router(&mut limits.server(), &[])?;
    health
        .set_service_status("billing.v1.Billing", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        router,
        listener,
        agent.credentials(),
        &rollover_agent::DEFAULT_LIMITS,
        async {
            let _ = stopped.await;
        },
    ));
    println!("billing serves gRPC over mTLS on {addr}");

    // A client node of the same CA calls it; it verifies the server as `billing`.
    let client = LiveCredentials::new(single_root_credentials(
        "web-1",
        &root,
        Validity::default(),
    )?)?;
    let mut health_client = HealthClient::new(tls_channel(&addr, client, "billing")?);
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        health_client.check(HealthCheckRequest {
            service: "billing.v1.Billing".into(),
        }),
    )
    .await??;
    println!("web-1 -> billing: {:?}", answer.into_inner().status());

    let _ = stop.send(());
    server.await??;
    agent.shutdown().await;
    Ok(())
}
