//! The services every rollover gRPC server offers besides its own: health and
//! reflection.

use std::sync::OnceLock;

use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::TransportError;

/// The reflection services, built once per process and shared by every server: their
/// decoded descriptor index is ~180 KB, which a simulator of a thousand agents would
/// otherwise hold a thousand times.
static REFLECTION: OnceLock<Result<Routes, String>> = OnceLock::new();

fn reflection() -> Result<Routes, TransportError> {
    let built = REFLECTION.get_or_init(|| {
        let builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(rollover_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let v1 = builder().build_v1().map_err(|e| e.to_string())?;
        let v1alpha = builder().build_v1alpha().map_err(|e| e.to_string())?;
        Ok(Routes::new(v1).add_service(v1alpha))
    });
    built.clone().map_err(TransportError::Reflection)
}

/// A router holding gRPC health (`grpc.health.v1`, overall status SERVING) and
/// reflection (v1 and v1alpha, describing `rollover.v1` and the health service).
///
/// Add the server's own service(s) to the router, then mark each one serving with
/// the reporter, e.g. `reporter.set_serving::<AgentServiceServer<MyAgent>>().await`.
pub fn base_router(server: &mut Server) -> Result<(Router, HealthReporter), TransportError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let router = server.add_routes(reflection()?).add_service(health);
    Ok((router, reporter))
}
