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
    /// The seed of the probe schedule (and of the interleaving of a given plan).
    #[serde(default)]
    pub seed: u64,
    /// How the plan was made (`waves`, `claim`, or a given plan's own).
    #[serde(default)]
    pub strategy: String,
    /// Steps in the plan.
    #[serde(default)]
    pub steps: usize,
    /// Waves in the plan's partial order.
    #[serde(default)]
    pub waves: u32,
    /// Links the plan declares as disruptions.
    #[serde(default)]
    pub declared_disruptions: usize,
    /// Handshakes made right after steps, on every link touching the stepped node.
    #[serde(default)]
    pub probes_after_steps: u64,
    /// Handshakes on random links while steps ran.
    #[serde(default)]
    pub background_handshakes: u64,
    /// Links under other CAs (simulated with their own CA, never touched).
    #[serde(default)]
    pub foreign_links: usize,
    /// Final handshakes on every link with the old root withdrawn, and how many failed.
    #[serde(default)]
    pub final_handshakes: u64,
    /// Final handshakes that failed.
    #[serde(default)]
    pub final_failed: u64,
    /// Nodes that refused a client holding only an old-root leaf, out of those tried.
    #[serde(default)]
    pub old_key_refused: u64,
    /// Nodes tried with an old-root client.
    #[serde(default)]
    pub old_key_checks: u64,
    /// Nodes whose trust, held and presented certificates are all under the new root.
    #[serde(default)]
    pub nodes_on_new_only: u64,
    /// How the rotation ended (e.g. `succeeded`), or why it stopped.
    #[serde(default)]
    pub outcome: String,
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
