//! The rollover executor: runs rotations across a fleet's agents.
//!
//! * [`scheduler`]: the sans-IO state machine deciding which step may run next;

pub mod driver;
pub mod journal;
pub mod metrics;
pub mod scheduler;
