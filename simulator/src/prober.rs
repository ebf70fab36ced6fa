//! Handshakes the simulator makes itself: on random links while steps run (so
//! interleavings inside a wave are exercised), and on every link at the end.
//!
//! Final checks handshake a rotated link over loopback TCP, from the client agent's
//! live credentials to the server agent's real data-plane listener, exactly as the
//! agents' own probes (after every step) do. Background probes, many per second, run
//! the same rustls handshake with both agents' live credentials of that moment through
//! memory instead of sockets, so their rate is bounded by TLS, not by the kernel. A link
//! under another CA is handshaken in memory with its own CA's static credentials.

use std::sync::Arc;
use std::time::Duration;

use rollover_core::synth::SeededRng;
use rollover_core::{Fleet, Link};
use rollover_executor::driver::tls_probe;
use rollover_pki::handshake_in_memory;
use rollover_proto::v1::ProbeFailure;
use rollover_transport::ProbeError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::observe::{Observer, Source};
use crate::setup::SimFleet;

/// Deadline of one simulator handshake.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Background handshakes in flight at once.
const WORKERS: usize = 4;

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
pub async fn background(
    fleet: Arc<Fleet>,
    sim: Arc<SimFleet>,
    links: Arc<Vec<ProbeLink>>,
    observer: Arc<Observer>,
    seed: u64,
    rate: u32,
    mut stop: watch::Receiver<bool>,
) -> Vec<usize> {
    let mut schedule = Vec::new();
    if rate == 0 || links.is_empty() {
        return schedule;
    }
    let (tx, rx) = mpsc::channel::<usize>(WORKERS * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        let (fleet, sim, links, observer, rx) = (
            fleet.clone(),
            sim.clone(),
            links.clone(),
            observer.clone(),
            rx.clone(),
        );
        workers.spawn(async move {
            loop {
                let Some(pick) = rx.lock().await.recv().await else {
                    break;
                };
                let (f, s, l) = (fleet.clone(), sim.clone(), links.clone());
                let result =
                    tokio::task::spawn_blocking(move || handshake_in_memory_now(&f, &s, &l[pick]))
                        .await
                        .unwrap_or_else(|e| {
                            Err(ProbeError::new(
                                ProbeFailure::NotRun,
                                format!("probe task: {e}"),
                            ))
                        });
                let (client, server, declared) = ends(&fleet, &links[pick]);
                observer.handshake(Source::Background, client, server, result, declared, None);
            }
        });
    }
    let mut rng = SeededRng::new(seed ^ 0x5eed_cafe);
    // Paced by the count due since the start rather than by one timer tick per
    // probe: tokio's timers have millisecond resolution, so a tick per probe would
    // cap the rate near 1,000/s whatever was asked (and a bench asking for "as fast
    // as possible" would measure the timer). Bursts wait on the workers' channel.
    let started = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    while !*stop.borrow() {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        if sent >= due {
            let next = started + Duration::from_secs_f64((sent + 1) as f64 / f64::from(rate));
            tokio::select! {
                _ = stop.changed() => continue,
                () = tokio::time::sleep_until(next) => {}
            }
            continue;
        }
        let pick = rng.below(links.len() as u32) as usize;
        if schedule.len() < SCHEDULE_KEPT {
            schedule.push(pick);
        }
        tokio::select! {
            _ = stop.changed() => continue,
            result = tx.send(pick) => if result.is_err() { break },
        }
        sent += 1;
    }
    drop(tx);
    while workers.join_next().await.is_some() {}
    schedule
}
