//! The simulation report of MODEL §10 (`rollover-sim/1`).

use serde::{Deserialize, Serialize};

/// The `format` tag of simulation reports.
pub const REPORT_FORMAT: &str = "rollover-sim/1";

/// What a simulated rotation observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    /// Target nodes simulated.
    pub nodes: usize,
    /// Links simulated (rotated and foreign).
    pub links: usize,
    /// Every handshake attempted.
    pub handshakes_total: u64,
    /// Handshakes that failed.
    pub handshakes_failed: u64,
    /// Failed handshakes on links the plan did not declare as disruptions.
    pub failed_undeclared: u64,
    /// The first failures observed.
    pub failures: Vec<SimFailure>,
    /// Fraction of (step, touching link) pairs probed right after the step.
    pub links_probed_every_step: f64,
    /// Wall time of the rotation.
    pub rotation_seconds: f64,
    /// Handshakes per second during the rotation.
    pub handshakes_per_second: f64,
    /// Every node ends on the new key only.
    pub all_new: bool,
}

/// One failed handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimFailure {
    /// The connecting node.
    pub client: String,
    /// The serving node.
    pub server: String,
    /// The step that was running (or had just run) when it failed.
    pub step: String,
    /// The TLS error.
    pub error: String,
    /// Whether the plan declared this link as a disruption.
    pub declared: bool,
}
