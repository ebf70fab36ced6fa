//! Bad input against every gRPC method of the three services (issue 6, item 4), over
//! real servers on 127.0.0.1 started once per test: random bytes decoded as the
//! request type (when prost accepts them), random protobuf fields, byte-level
//! mutations of valid requests, and typed mutations of valid requests (wrong enums,
//! missing oneofs, empty and unknown ids, steps out of order, a plan for another CA,
//! replayed step ids, steps naming unknown nodes, documents with garbage text).
//!
//! Every call is bounded by a timeout and must come back either answered or refused
//! with a clear code (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
//! RESOURCE_EXHAUSTED, OUT_OF_RANGE) and a non-empty message: never a panic, an
//! INTERNAL/UNKNOWN status, a dropped connection or a hang. After the barrage the
//! service must still report SERVING and serve a real request. Each test prints how
//! many inputs it sent (`cargo test -- --nocapture`).
//!
//! Also: a message over a server's size limit, a watcher asking for events past a
//! finished rotation's end, and control calls while a rotation waits on agents that
//! never answer.
//!
//! One test binary, a module per service: `planner.rs`, `executor.rs`, `agent.rs`,
//! `edges.rs`, and `ids.rs` for node ids at the edge; the inputs in `inputs.rs` and the
//! machinery in `fuzz.rs`.

mod agent;
mod edges;
mod executor;
mod fuzz;
mod ids;
mod inputs;
mod planner;
