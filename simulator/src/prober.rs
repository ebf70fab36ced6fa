//! Handshakes the simulator makes itself: on random links while steps run (so
//! interleavings inside a wave are exercised), and on every link at the end.
//!
//! Final checks handshake a rotated link over loopback TCP, from the client agent's
//! live credentials to the server agent's real data-plane listener, exactly as the
//! agents' own probes (after every step) do. Background probes, many per second, run
//! the same rustls handshake with both agents' live credentials of that moment through
//! memory instead of sockets, so their rate is bounded by TLS, not by the kernel. A link
//! under another CA is handshaken in memory with its own CA's static credentials.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollover_core::synth::SeededRng;
use rollover_core::{Fleet, Link};
use rollover_executor::driver::tls_probe;
use rollover_pki::handshake_in_memory;
use rollover_proto::v1::ProbeFailure;
use rollover_transport::ProbeError;
use tokio::sync::watch;

use crate::observe::{Observer, Source};
use crate::setup::SimFleet;

/// Deadline of one simulator handshake.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Picks recorded for reproducibility checks.
const SCHEDULE_KEPT: usize = 10_000;

/// A link the simulator can handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeLink {
    /// A link of the rotated CA, and whether the plan declares it disrupted.
    Rotated(Link, bool),
    /// A link under another CA: (client, server, CA).
    Foreign(String, String, String),
}

/// Every link the simulator probes: rotated links (self-links included) then
/// foreign ones.
pub fn probe_links(
    fleet: &Fleet,
    sim: &SimFleet,
    declared: &rustc_hash::FxHashSet<Link>,
) -> Vec<ProbeLink> {
    fleet
        .links
        .iter()
        .map(|&l| ProbeLink::Rotated(l, declared.contains(&l)))
        .chain(
            sim.foreign_links
                .iter()
                .map(|(c, s, ca)| ProbeLink::Foreign(c.clone(), s.clone(), ca.clone())),
        )
        .collect()
}

/// One handshake on `link`; `Err` carries the TLS or I/O error and its kind.
pub async fn handshake(fleet: &Fleet, sim: &SimFleet, link: &ProbeLink) -> Result<(), ProbeError> {
    match link {
        ProbeLink::Rotated(l, _) => {
            let Some(addr) = sim.data_addr(l.server) else {
                return Err(serves_nothing(fleet, l));
            };
            let config = sim.client_creds(fleet, l.client).client_config();
            tls_probe(config, fleet.id(l.server), &addr.to_string(), PROBE_TIMEOUT).await
        }
        ProbeLink::Foreign(..) => foreign_handshake(sim, link),
    }
}

/// One handshake on `link` through memory, with the live credentials both ends hold
/// right now (CPU-bound: run it off the async threads).
pub fn handshake_in_memory_now(
    fleet: &Fleet,
    sim: &SimFleet,
    link: &ProbeLink,
) -> Result<(), ProbeError> {
    match link {
        ProbeLink::Rotated(l, _) => {
            let Some(server) = sim.agents[l.server as usize].as_ref() else {
                return Err(serves_nothing(fleet, l));
            };
            let client = sim.client_creds(fleet, l.client).client_config();
            handshake_in_memory(
                client,
                server.credentials().server_config(),
                fleet.id(l.server),
            )
            .map(|_| ())
            .map_err(|e| ProbeError::from_error(&e))
        }
        ProbeLink::Foreign(..) => foreign_handshake(sim, link),
    }
}

/// The server of a rotated link has no agent (its data plane is down).
fn serves_nothing(fleet: &Fleet, link: &Link) -> ProbeError {
    ProbeError::new(
        ProbeFailure::Connection,
        format!("{} serves nothing", fleet.id(link.server)),
    )
}

fn foreign_handshake(sim: &SimFleet, link: &ProbeLink) -> Result<(), ProbeError> {
    let ProbeLink::Foreign(c, s, ca) = link else {
        return Err(ProbeError::new(ProbeFailure::NotRun, "not a foreign link"));
    };
    let client = sim.foreign.get(&(c.clone(), ca.clone()));
    let server = sim.foreign.get(&(s.clone(), ca.clone()));
    match (client, server) {
        (Some(client), Some(server)) => {
            handshake_in_memory(client.client_config(), server.server_config(), s)
                .map(|_| ())
                .map_err(|e| ProbeError::from_error(&e))
        }
        _ => Err(ProbeError::new(
            ProbeFailure::NotRun,
            format!("no credentials for {c} -> {s} under {ca}"),
        )),
    }
}

/// Names of a probe link's ends.
pub fn ends<'a>(fleet: &'a Fleet, link: &'a ProbeLink) -> (&'a str, &'a str, bool) {
    match link {
        ProbeLink::Rotated(l, declared) => (fleet.id(l.client), fleet.id(l.server), *declared),
        ProbeLink::Foreign(c, s, _) => (c.as_str(), s.as_str(), false),
    }
}

/// Probe random links at `rate` per second until `stop` turns true; returns the
/// sequence of links picked (the first [`SCHEDULE_KEPT`]), which depends on the seed
/// only.
///
/// The handshakes run on threads of their own, one per core (as the bare baseline
/// of `rollover bench handshake` does), each drawing its next link from the one
/// seeded sequence, handshaking and recording the result without a round trip
/// through the async runtime: handed out as async tasks that each wait for a
/// blocking thread, a few background probes could not keep the cores busy while
/// the rotation's own tasks waited on the network.
pub async fn background(
    fleet: Arc<Fleet>,
    sim: Arc<SimFleet>,
    links: Arc<Vec<ProbeLink>>,
    observer: Arc<Observer>,
    seed: u64,
    rate: u32,
    mut stop: watch::Receiver<bool>,
) -> Vec<usize> {
    if rate == 0 || links.is_empty() {
        return Vec::new();
    }
    let picker = Arc::new(Picker::new(seed, rate, links.len()));
    let halt = Arc::new(AtomicBool::new(false));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let (fleet, sim, links, observer, picker, halt) = (
            fleet.clone(),
            sim.clone(),
            links.clone(),
            observer.clone(),
            picker.clone(),
            halt.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("sim-prober-{i}"))
            .spawn(move || {
                while let Some(pick) = picker.next(&halt) {
                    let result = handshake_in_memory_now(&fleet, &sim, &links[pick]);
                    let (client, server, declared) = ends(&fleet, &links[pick]);
                    observer.handshake(Source::Background, client, server, result, declared, None);
                }
            });
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(e) => tracing::warn!(error = %e, "could not start a background prober thread"),
        }
    }
    let _ = stop.wait_for(|s| *s).await;
    halt.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
    })
    .await;
    picker.schedule()
}

/// The background probes' one seeded sequence of links, paced at `rate` per second.
struct Picker {
    rate: f64,
    links: u32,
    started: Instant,
    state: Mutex<PickerState>,
}

struct PickerState {
    rng: SeededRng,
    sent: u64,
    schedule: Vec<usize>,
}

impl Picker {
    fn new(seed: u64, rate: u32, links: usize) -> Self {
        Picker {
            rate: f64::from(rate),
            links: u32::try_from(links).unwrap_or(u32::MAX),
            started: Instant::now(),
            state: Mutex::new(PickerState {
                rng: SeededRng::new(seed ^ 0x5eed_cafe),
                sent: 0,
                schedule: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PickerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next link to probe once it is due, or `None` once `halt` is set. Paced by
    /// the count due since the start rather than by one timer tick per probe, so a
    /// high rate is not capped by the timer's resolution.
    fn next(&self, halt: &AtomicBool) -> Option<usize> {
        loop {
            if halt.load(Ordering::Relaxed) {
                return None;
            }
            let mut state = self.state();
            let due = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
            if state.sent < due {
                let pick = state.rng.below(self.links) as usize;
                state.sent += 1;
                if state.schedule.len() < SCHEDULE_KEPT {
                    state.schedule.push(pick);
                }
                return Some(pick);
            }
            let next = Duration::from_secs_f64((state.sent + 1) as f64 / self.rate);
            drop(state);
            // Short naps, so a stop is seen soon even at a low rate.
            let wait = next.saturating_sub(self.started.elapsed());
            std::thread::sleep(wait.min(MAX_NAP));
        }
    }

    fn schedule(&self) -> Vec<usize> {
        std::mem::take(&mut self.state().schedule)
    }
}

/// Longest a background prober thread sleeps before looking at the stop flag again.
const MAX_NAP: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(picker: &Picker, n: usize) -> Vec<usize> {
        let halt = AtomicBool::new(false);
        (0..n).map(|_| picker.next(&halt).unwrap()).collect()
    }

    #[test]
    fn the_picks_depend_on_the_seed_only_and_stop_on_halt() {
        let (a, b, c) = (
            Picker::new(7, u32::MAX, 50),
            Picker::new(7, u32::MAX, 50),
            Picker::new(8, u32::MAX, 50),
        );
        let picks = draw(&a, 100);
        assert!(picks.iter().all(|&p| p < 50));
        assert_eq!(picks, draw(&b, 100));
        assert_ne!(picks, draw(&c, 100));
        assert_eq!(a.schedule(), picks);
        assert_eq!(a.next(&AtomicBool::new(true)), None);
    }
}
