//! When each node was unreachable (its agent down, or the executor cut off from it by
//! a partition), and what that excuses: a failed handshake, a pause naming it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollover_proto::v1::ProbeFailure;
use rollover_transport::ProbeError;

use super::{Chaos, EXCUSE_WINDOW, lock};
use crate::observe::{ExcuseFn, Source};

/// A stretch of time a node was unreachable.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outage {
    /// A partition (control calls only) rather than the agent being down.
    cut: bool,
    start: Instant,
    end: Option<Instant>,
}

impl Chaos {
    /// Cut the executor off from `node` for `duration`.
    pub(crate) fn cut(&self, node: &str, duration: Duration) {
        let now = Instant::now();
        self.outage(node, true, now, Some(now + duration));
    }

    /// Record an outage of `node` from `start` (until `end`; open if `None`).
    fn outage(&self, node: &str, cut: bool, start: Instant, end: Option<Instant>) {
        lock(&self.outages)
            .entry(node.to_string())
            .or_default()
            .push(Outage { cut, start, end });
    }

    /// Whether the executor is cut off from `node` now.
    pub fn is_cut(&self, node: &str) -> bool {
        let now = Instant::now();
        lock(&self.outages)
            .get(node)
            .is_some_and(|o| o.iter().any(|o| o.cut && o.end.is_some_and(|e| e > now)))
    }

    /// `node`'s agent is down from now until [`Chaos::up`].
    pub(super) fn down(&self, node: &str) {
        self.outage(node, false, Instant::now(), None);
    }

    /// `node`'s agent runs again.
    pub(super) fn up(&self, node: &str) {
        let now = Instant::now();
        if let Some(o) = lock(&self.outages).get_mut(node) {
            for o in o.iter_mut().filter(|o| !o.cut && o.end.is_none()) {
                o.end = Some(now);
            }
        }
    }

    /// Whether `node` had an outage (agent down; or, with `cuts`, a partition) at
    /// any time within [`EXCUSE_WINDOW`] before now.
    pub fn had_outage(&self, node: &str, cuts: bool) -> bool {
        let now = Instant::now();
        let since = now.checked_sub(EXCUSE_WINDOW).unwrap_or(now);
        lock(&self.outages).get(node).is_some_and(|o| {
            o.iter()
                .any(|o| (cuts || !o.cut) && o.start <= now && o.end.is_none_or(|e| e >= since))
        })
    }

    /// Whether `node` had an outage (agent down or cut off) that lasted past `since`
    /// or began after it: a pause on a node resumed at `since` is explained only by a
    /// new outage, not by the one an earlier pause was resumed after.
    pub fn outage_since(&self, node: &str, since: Instant) -> bool {
        lock(&self.outages)
            .get(node)
            .is_some_and(|o| o.iter().any(|o| o.end.is_none_or(|e| e > since)))
    }

    /// Whether the executor can reach `node` now: its agent runs and no partition
    /// cuts it off.
    pub fn reachable(&self, node: &str) -> bool {
        let up = self
            .index
            .get(node)
            .and_then(|&ix| {
                let sim = self.sim.upgrade()?;
                sim.agents[ix].as_ref().map(|a| a.is_up())
            })
            .unwrap_or(true);
        up && !self.is_cut(node)
    }

    /// The nodes named in a pause reason that had an outage.
    pub fn stranded_in(&self, reason: &str) -> Vec<String> {
        let mut named: Vec<String> = self
            .index
            .keys()
            .filter(|id| reason.contains(&format!("({id} ")) || reason.contains(&format!("`{id}`")))
            .filter(|id| self.had_outage(id, true))
            .cloned()
            .collect();
        named.sort();
        named
    }

    /// Wait until every node of `nodes` is reachable; false after `deadline`.
    pub async fn wait_reachable(&self, nodes: &[String], deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if nodes.iter().all(|n| self.reachable(n)) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether a failed handshake is excused: never a TLS refusal, never a final
    /// check; a probe that could not run because its client's agent was down or cut
    /// off; a connection that failed because the server's agent was down.
    pub fn excuses(&self, source: Source, client: &str, server: &str, error: &ProbeError) -> bool {
        if source == Source::Final || error.is_refusal() {
            return false;
        }
        let excused = if error.kind == ProbeFailure::NotRun {
            self.had_outage(client, true)
        } else {
            self.had_outage(server, false)
        };
        if excused {
            tracing::info!(
                client,
                server,
                %error,
                seed = self.seed,
                "chaos: failed handshake excused (an end was down)"
            );
        }
        excused
    }

    /// [`Chaos::excuses`] as the observer's hook.
    pub fn excuse_fn(self: &Arc<Self>) -> ExcuseFn {
        let this = self.clone();
        Arc::new(move |source, client, server, error| this.excuses(source, client, server, error))
    }
}
