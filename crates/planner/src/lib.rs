//! The Planner gRPC service (`rollover.v1.PlannerService`) around rollover-core.
//!
//! * [`PlannerService`]: `Plan` builds a plan with the requested strategy (and start
//!   node, for `claim`); `Verify` runs core's independent verifier on any plan. Bad
//!   input is `INVALID_ARGUMENT` with core's located message.
//! * [`routes`]: the Planner with gRPC health (`grpc.health.v1.Health`) and reflection
//!   (`grpc.reflection.v1` and `v1alpha`, listing only what the planner serves), ready for any server (plaintext here, mTLS through the
//!   transport crate).
//! * [`serve`]: all of it in plaintext on a bound listener, until a shutdown future
//!   completes. Plaintext is for loopback and tests; the CLI refuses it elsewhere.

mod service;

use std::future::Future;

use rollover_proto::v1::planner_service_server::{PlannerServiceServer, SERVICE_NAME};
use rollover_transport::ServerLimits;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;

pub use service::PlannerService;

/// The largest plan the planner sends (and the largest request it can be told to
/// accept): big enough for raw topology documents of a million links. Clients sending
/// such fleets should raise their own limits to match.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The planner's default limits: requests up to 32 MiB (a topology document of about
/// half a million links; `--max-request-bytes` raises it), 64 in flight per
/// connection, 1024 connections, 5 minutes idle. Six concurrent requests of the
/// largest size keep the planner well under 512 MB; larger ones are refused from
/// their frame header, before they are read.
pub const DEFAULT_LIMITS: ServerLimits = ServerLimits::with_max_request_bytes(32 << 20);

/// Why the planner could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service rejected the descriptor sets.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] rollover_transport::TransportError),
    /// The server failed.
    #[error("planner server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The listener has no local address.
    #[error("planner listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// The Planner server with its message size limits ([`DEFAULT_LIMITS`]).
pub fn planner_server() -> PlannerServiceServer<PlannerService> {
    planner_server_with(&DEFAULT_LIMITS)
}

/// The Planner server accepting requests up to `limits.max_request_bytes`.
pub fn planner_server_with(limits: &ServerLimits) -> PlannerServiceServer<PlannerService> {
    PlannerServiceServer::new(PlannerService::new())
        .max_decoding_message_size(limits.max_request_bytes.min(MAX_MESSAGE_BYTES))
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The Planner, gRPC health (the server `""` and `rollover.v1.PlannerService` report
/// SERVING) and gRPC reflection (v1 and v1alpha) listing the planner, health and
/// reflection. The reporter lets the caller report NOT_SERVING on shutdown.
pub async fn routes() -> Result<(Routes, HealthReporter), ServeError> {
    routes_with(&DEFAULT_LIMITS).await
}

/// [`routes`] with the request size limit of `limits`.
pub async fn routes_with(limits: &ServerLimits) -> Result<(Routes, HealthReporter), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<PlannerServiceServer<PlannerService>>()
        .await;
    let routes = rollover_transport::reflection_routes(&[SERVICE_NAME])?
        .add_service(planner_server_with(limits))
        .add_service(health);
    Ok((routes, reporter))
}

/// Serve the Planner, health and reflection in plaintext on `listener` until
/// `shutdown` completes; health then reports NOT_SERVING and open calls are drained.
pub async fn serve<F>(listener: TcpListener, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()>,
{
    serve_with(listener, &DEFAULT_LIMITS, shutdown).await
}

/// [`serve`] with `limits` (request size, requests per connection, connections, idle
/// time).
pub async fn serve_with<F>(
    listener: TcpListener,
    limits: &ServerLimits,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()>,
{
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "planner serving plaintext on a non-loopback address");
    }
    let (routes, reporter) = routes_with(limits).await?;
    tracing::info!(%addr, "planner listening (plaintext)");
    let shutdown = async move {
        shutdown.await;
        reporter
            .set_not_serving::<PlannerServiceServer<PlannerService>>()
            .await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        tracing::info!(%addr, "planner shutting down");
    };
    limits
        .server()
        .add_routes(routes)
        .serve_with_incoming_shutdown(limits.guard(TcpListenerStream::new(listener)), shutdown)
        .await?;
    Ok(())
}
