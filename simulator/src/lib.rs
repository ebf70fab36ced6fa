//! The rollover simulator: hundreds to thousands of in-process agents (the real agent
//! code: rustls servers and clients with live-swapped credentials) rotated by the real
//! planner and executor over gRPC on loopback, with real TLS 1.3 mutual handshakes on
//! every link while the rotation runs, and a report of every failure (MODEL §10).
//!
//! * [`setup`]: roots, bootstrapped agents, the executor's credentials, foreign CAs;
//! * [`services`]: planner and executor on loopback;
//! * [`group`]: an executor group on PostgreSQL, its leader followed, crashed or cut
//!   off its database;
//! * [`prober`]: background and final handshakes;
//! * [`observe`]: what was seen (failures, the step running, coverage);
//! * [`checks`]: the end state behind `all_new`;
//! * [`run`]: [`simulate`], tying it together;
//! * [`chaos`]: fault injection (crashed agents and executor, lost, late, duplicated
//!   calls, partitions) and the invariants checked after a chaotic run;
//! * [`handshake_rate`]: the bare-handshake baseline for the speed target;
//! * [`limits`]: open files and ports, raised or explained before a large run.

pub mod bench;
pub mod chaos;
pub mod checks;
pub mod error;
pub mod group;
pub mod handshake_rate;
pub mod limits;
pub mod observe;
pub mod options;
pub mod prober;
pub mod run;
pub mod services;
pub mod setup;

pub use chaos::{ChaosReport, ChaosSpec};
pub use error::SimError;
pub use group::GroupOptions;
pub use options::{Progress, ProgressFn, SimOptions};
pub use run::{SimOutcome, simulate};
