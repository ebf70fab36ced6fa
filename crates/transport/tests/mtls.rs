//! gRPC over mTLS on loopback: round trips, identities, refusals and live swaps.

use std::sync::Arc;
use std::time::Duration;

use rollover_pki::{CredentialSet, HeldLeaf, KeyAlg, LiveCredentials, NodeKey, RootCa, Validity};
use rollover_proto::v1::agent_service_client::AgentServiceClient;
use rollover_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use rollover_proto::v1::{
    AgentState, ApplyStepRequest, ApplyStepResponse, CreateCsrRequest, CreateCsrResponse,
    GetStateRequest, GetStateResponse, ProbeRequest, ProbeResponse,
};
use rollover_transport::{
    TransportError, base_router, peer_node_id, plain_channel, serve_plain, serve_tls, tls_channel,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const LIMITS: rollover_transport::ServerLimits =
    rollover_transport::ServerLimits::with_max_request_bytes(1 << 20);

fn root(generation: u32) -> RootCa {
    RootCa::generate(
        "corp-root",
        generation,
        KeyAlg::EcdsaP256,
        Validity::default(),
    )
    .unwrap()
}

/// Credentials of `id` trusting and holding `root` only.
fn creds(root: &RootCa, id: &str) -> Arc<LiveCredentials> {
    LiveCredentials::new(set(root, id)).unwrap()
}

fn set(root: &RootCa, id: &str) -> CredentialSet {
    let key = NodeKey::generate(KeyAlg::EcdsaP256).unwrap();
    let csr = key.csr_der(id).unwrap();
    let cert = root.issue_leaf(&csr, id, Validity::default()).unwrap();
    CredentialSet {
        server_roots: vec![root.cert_der().clone()],
        client_roots: vec![root.cert_der().clone()],
        held: vec![HeldLeaf::new(cert, key)],
        presents: Some(0),
        ..CredentialSet::default()
    }
}

/// Answers GetState with the caller's verified node id; nothing else.
struct WhoAmI;

#[tonic::async_trait]
impl AgentService for WhoAmI {
    async fn get_state(
        &self,
        request: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        let caller = peer_node_id(&request).unwrap_or_else(|| "<none>".into());
        Ok(Response::new(GetStateResponse {
            state: Some(AgentState {
                node_id: caller,
                ..Default::default()
            }),
        }))
    }
    async fn create_csr(
        &self,
        _: Request<CreateCsrRequest>,
    ) -> Result<Response<CreateCsrResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn apply_step(
        &self,
        _: Request<ApplyStepRequest>,
    ) -> Result<Response<ApplyStepResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    /// Slow on purpose: stands for a call in flight when the server goes away.
    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(Response::new(ProbeResponse::default()))
    }
}

/// A running server and what stops it.
struct Running {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), TransportError>>,
}

impl Running {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

async fn start(server_creds: Option<Arc<LiveCredentials>>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (router, reporter) = base_router(
        &mut Server::builder(),
        &[rollover_proto::v1::agent_service_server::SERVICE_NAME],
    )
    .unwrap();
    reporter.set_serving::<AgentServiceServer<WhoAmI>>().await;
    let router = router.add_service(AgentServiceServer::new(WhoAmI));
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(async move {
        match server_creds {
            Some(creds) => serve_tls(router, listener, creds, &LIMITS, shutdown).await,
            None => serve_plain(router, listener, &LIMITS, shutdown).await,
        }
    });
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn whoami(channel: tonic::transport::Channel) -> Result<String, Status> {
    let state = AgentServiceClient::new(channel)
        .get_state(GetStateRequest {})
        .await?
        .into_inner()
        .state
        .unwrap_or_default();
    Ok(state.node_id)
}

#[tokio::test]
async fn round_trip_over_mtls_names_the_client() {
    let ca = root(1);
    let server = start(Some(creds(&ca, "srv"))).await;
    let client = creds(&ca, "@executor");

    let channel = tls_channel(&server.addr, client.clone(), "srv").unwrap();
    assert_eq!(whoami(channel.clone()).await.unwrap(), "@executor");

    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "rollover.v1.AgentService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    server.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let ca = root(1);
    let server = start(Some(creds(&ca, "srv"))).await;
    let channel = tls_channel(&server.addr, creds(&ca, "c"), "srv").unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected {answer:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["rollover.v1.AgentService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn client_with_an_untrusted_root_is_refused() {
    let (ca, rogue) = (root(1), root(7));
    let server = start(Some(creds(&ca, "srv"))).await;

    // The rogue client trusts the real root (so it accepts the server), but its own
    // leaf comes from a root the server does not trust.
    let mut rogue_set = set(&rogue, "@executor");
    rogue_set.client_roots = vec![ca.cert_der().clone()];
    let rogue_creds = LiveCredentials::new(rogue_set).unwrap();
    let channel = tls_channel(&server.addr, rogue_creds, "srv").unwrap();
    let err = whoami(channel).await.unwrap_err();
    // TLS 1.3: the client's handshake completes before the server checks the client
    // certificate; the server's alert arrives on the first read.
    assert!(format!("{err:?}").contains("UnknownCA"), "{err:?}");

    // A client that does not trust the server's root refuses the server.
    let channel = tls_channel(&server.addr, creds(&rogue, "c"), "srv").unwrap();
    assert!(whoami(channel).await.is_err());

    // The server is verified under the id the client expects.
    let channel = tls_channel(&server.addr, creds(&ca, "c"), "other").unwrap();
    assert!(whoami(channel).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn swaps_apply_to_new_connections_only() {
    let (old, new) = (root(1), root(2));
    let server_creds = creds(&old, "srv");
    let server = start(Some(server_creds.clone())).await;
    let client = creds(&old, "c");

    let established = tls_channel(&server.addr, client.clone(), "srv").unwrap();
    assert_eq!(whoami(established.clone()).await.unwrap(), "c");

    server_creds.swap(set(&new, "srv")).unwrap();
    // The open connection keeps what it negotiated...
    assert_eq!(whoami(established.clone()).await.unwrap(), "c");
    // ...a new one is made with the new server credentials and fails...
    let fresh = tls_channel(&server.addr, client.clone(), "srv").unwrap();
    assert!(whoami(fresh.clone()).await.is_err());
    // ...until the client has moved to the new root too (same channel: it reconnects).
    client.swap(set(&new, "c")).unwrap();
    assert_eq!(whoami(fresh).await.unwrap(), "c");
    server.stop().await;
}

#[tokio::test]
async fn plaintext_is_loopback_only() {
    let server = start(None).await;
    let channel = plain_channel(&server.addr).unwrap();
    assert_eq!(whoami(channel).await.unwrap(), "<none>");
    server.stop().await;

    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let (router, _) = base_router(
        &mut Server::builder(),
        &[rollover_proto::v1::agent_service_server::SERVICE_NAME],
    )
    .unwrap();
    let err = serve_plain(router, listener, &LIMITS, async {})
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::NotLoopback { .. }), "{err}");
}

#[tokio::test]
async fn no_connection_outlives_an_aborted_server() {
    let ca = root(1);
    let server = start(Some(creds(&ca, "srv"))).await;
    let channel = tls_channel(&server.addr, creds(&ca, "c"), "srv").unwrap();
    assert_eq!(whoami(channel.clone()).await.unwrap(), "c");

    // A call in flight when the server task is aborted is cut off, not served by a
    // connection task left behind.
    let in_flight = tokio::spawn(async move {
        AgentServiceClient::new(channel)
            .probe(ProbeRequest::default())
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.task.abort();
    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the call in flight ends with the server")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
}
