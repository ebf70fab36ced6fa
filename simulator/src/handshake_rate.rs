//! The baseline for the simulator's handshake rate: bare rustls mutual handshakes
//! between two in-process endpoints with the same key type and the same live
//! credential machinery, driven through memory (no sockets), on as many threads as the
//! simulator may use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rollover_pki::{
    CredentialSet, HeldLeaf, KeyAlg, LiveCredentials, NodeKey, RootCa, Validity,
    handshake_in_memory,
};

use crate::error::SimError;

/// Handshakes completed in a timed run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandshakeRate {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Threads that made handshakes.
    pub threads: usize,
}

impl HandshakeRate {
    /// Handshakes per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.handshakes as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One endpoint's credentials under `root`: a key made here and a leaf for it.
pub fn endpoint(root: &RootCa, id: &str, alg: KeyAlg) -> Result<Arc<LiveCredentials>, SimError> {
    let key = NodeKey::generate(alg)?;
    let csr = key.csr_der(id)?;
    let leaf = root.issue_leaf(csr.as_ref(), id, Validity::default())?;
    let set = CredentialSet {
        server_roots: vec![root.cert_der().clone()],
        client_roots: vec![root.cert_der().clone()],
        held: vec![HeldLeaf::new(leaf, key)],
        presents: Some(0),
        ..CredentialSet::default()
    };
    Ok(LiveCredentials::new(set)?)
}

/// Mutual handshakes between two in-memory endpoints for `duration` on `threads`
/// threads.
pub fn bare_handshake_rate(duration: Duration, threads: usize) -> Result<HandshakeRate, SimError> {
    let root = RootCa::generate("bench-root", 0, KeyAlg::EcdsaP256, Validity::default())?;
    let client = endpoint(&root, "bench-client", KeyAlg::EcdsaP256)?;
    let server = endpoint(&root, "bench-server", KeyAlg::EcdsaP256)?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (client, server) = (client.client_config(), server.server_config());
            let (done, stop) = (done.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if handshake_in_memory(client.clone(), server.clone(), "bench-server").is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(HandshakeRate {
        handshakes: done.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
        threads: threads.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_handshakes_complete() {
        let rate = bare_handshake_rate(Duration::from_millis(200), 1).unwrap();
        assert!(rate.handshakes > 0);
        assert!(rate.per_second() > 0.0);
    }
}
