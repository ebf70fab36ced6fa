//! The services every rollover gRPC server offers besides its own: health and
//! reflection (v1 and v1alpha).
//!
//! Reflection lists exactly what the server serves: its own service(s), health and
//! both reflection versions, not every service of the `rollover.v1` package (a
//! planner that listed `rollover.v1.ExecutorService` would send a client to a method
//! that answers UNIMPLEMENTED). Both versions are offered because clients differ:
//! grpcurl and newer tools speak v1, the stock Python and many older clients v1alpha.

use std::sync::Mutex;

use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::TransportError;

/// The services a server offers besides its own, as reflection lists them.
pub const COMMON_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The reflection services, built once per set of listed services and shared by
/// every server that lists the same: their decoded descriptor index is ~180 KB, which
/// a simulator of a thousand agents would otherwise hold a thousand times.
static REFLECTION: Mutex<Vec<(Vec<String>, Routes)>> = Mutex::new(Vec::new());

/// Reflection v1 and v1alpha over the `rollover.v1`, health and reflection
/// descriptors, listing `own` (fully qualified names, e.g.
/// `rollover.v1.PlannerService`) and [`COMMON_SERVICES`].
pub fn reflection_routes(own: &[&str]) -> Result<Routes, TransportError> {
    let key: Vec<String> = own.iter().map(|s| s.to_string()).collect();
    let mut cache = REFLECTION
        .lock()
        .map_err(|_| TransportError::Reflection("reflection cache poisoned".into()))?;
    if let Some((_, routes)) = cache.iter().find(|(k, _)| *k == key) {
        return Ok(routes.clone());
    }
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rollover_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Both reflection descriptors in both versions, so that each version
            // can describe everything it lists.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .include_reflection_service(false);
        for name in own.iter().chain(COMMON_SERVICES.iter()) {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let v1 = builder()
        .build_v1()
        .map_err(|e| TransportError::Reflection(e.to_string()))?;
    let v1alpha = builder()
        .build_v1alpha()
        .map_err(|e| TransportError::Reflection(e.to_string()))?;
    let routes = Routes::new(v1).add_service(v1alpha);
    cache.push((key, routes.clone()));
    Ok(routes)
}

/// A router holding gRPC health (`grpc.health.v1`, overall status SERVING) and
/// reflection (v1 and v1alpha) listing `own` (the server's own services, fully
/// qualified, e.g. `rollover.v1.AgentService`), health and reflection.
///
/// Add the server's own service(s) to the router, then mark each one serving with
/// the reporter, e.g. `reporter.set_serving::<AgentServiceServer<MyAgent>>().await`.
pub fn base_router(
    server: &mut Server,
    own: &[&str],
) -> Result<(Router, HealthReporter), TransportError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let router = server
        .add_routes(reflection_routes(own)?)
        .add_service(health);
    Ok((router, reporter))
}
