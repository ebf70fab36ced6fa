//! The `rollover.v1` gRPC contract (`proto/rollover/v1/*.proto`): generated prost
//! messages and tonic clients and servers for the Planner, Executor and Agent services,
//! and the encoded file descriptor set for tonic-reflection.
//!
//! The code is generated at build time by `build.rs` with protox and
//! tonic-prost-build; no `protoc` is needed. Timestamps are `prost_types::Timestamp`
//! (depend on `prost-types` to make them, e.g. from a `SystemTime`). [`labels`] prints
//! wire enum values without their type prefix; [`state`] says which rotation states
//! are ends.

pub mod codec;
pub mod convert;
pub mod labels;
pub mod state;
pub mod status;

/// Messages, enums, clients and servers of the `rollover.v1` package.
///
/// Clients: [`v1::planner_service_client::PlannerServiceClient`], [`v1::executor_service_client::ExecutorServiceClient`],
/// [`v1::agent_service_client::AgentServiceClient`]. Servers: [`v1::planner_service_server::PlannerServiceServer`],
/// [`v1::executor_service_server::ExecutorServiceServer`], [`v1::agent_service_server::AgentServiceServer`], each
/// wrapping an implementation of the service trait of the same module.
// Generated code is not ours to lint: newer clippy versions must not break the build.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("rollover.v1");
}

/// The encoded `google.protobuf.FileDescriptorSet` of `rollover.v1` (with its imports
/// and source comments), for
/// `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rollover_v1_descriptor.bin"));
