//! The services every rollover gRPC server offers besides its own: health and
//! reflection.

use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::TransportError;

/// A router holding gRPC health (`grpc.health.v1`, overall status SERVING) and
/// reflection (v1 and v1alpha, describing `rollover.v1` and the health service).
///
/// Add the server's own service(s) to the router, then mark each one serving with
/// the reporter, e.g. `reporter.set_serving::<AgentServer<MyAgent>>().await`.
pub fn base_router(server: &mut Server) -> Result<(Router, HealthReporter), TransportError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rollover_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let router = server
        .add_service(health)
        .add_service(builder().build_v1()?)
        .add_service(builder().build_v1alpha()?);
    Ok((router, reporter))
}
