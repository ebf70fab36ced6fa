//! One node of the fleet: its state directory, its data-plane mTLS server and
//! client, and the `rollover.v1.AgentService` gRPC service through which the executor
//! rotates it (MODEL §2, §3, §6; docs/DESIGN.md "Agent").
//!
//! * [`bootstrap`] / [`bootstrap_control`]: enrol a node before any rotation (in a
//!   state directory on the disk, or, [`bootstrap_in`], in any [`StateFiles`], e.g.
//!   the simulator's [`MemFiles`]).
//! * [`Agent::start`] -> [`AgentHandle`]: serve a node in process (tests, the
//!   simulator and `rollover agent` run the same code); [`run`] is `rollover agent`.
//! * [`machine`]: the pure step state machine (which credential set each step
//!   leaves, what may come next, undo).
//! * [`export`]: the node's credentials as files for a workload (nginx, curl...)
//!   and its reload command (MODEL §12).
//!
//! Private keys are made in the state directory and never leave it: CreateCsr
//! returns a CSR, ApplyStep brings certificates only.

mod agent;
mod bootstrap;
mod dataplane;
mod error;
pub mod export;
mod fence;
mod files;
pub mod machine;
mod node;
mod run;
mod service;
mod shared;
mod store;

pub use agent::{
    Agent, AgentConfig, AgentHandle, AgentMetrics, ControlCreds, DEFAULT_LIMITS, SHUTDOWN_GRACE,
};
pub use bootstrap::{
    bootstrap, bootstrap_control, bootstrap_in, has_control_credentials, is_bootstrapped,
    single_root_credentials,
};
pub use dataplane::LINE_TIMEOUT;
pub use error::AgentError;
pub use export::Export;
pub use files::{DiskFiles, MemFiles, StateDir, StateFiles, set_synced_writes};
pub use rollover_core::EXECUTOR_ID;
pub use rollover_transport::ServerLimits;
pub use run::{RunOptions, read_root, run};
pub use store::{CONTROL_FILE, CONTROL_KEY_FILE, KEYS_DIR, NODE_FILE};
