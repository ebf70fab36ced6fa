//! Agents crashed on purpose and restarted on their state directory and ports.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{Chaos, FaultKind, lock};

impl Chaos {
    /// Kill `node`'s agent now and start it again after `down`; false if it was
    /// not running.
    pub fn crash_agent(self: &Arc<Self>, node: &str, down: Duration, kind: FaultKind) -> bool {
        let Some(&ix) = self.index.get(node) else {
            return false;
        };
        let Some(sim) = self.sim.upgrade() else {
            return false;
        };
        let Some(slot) = sim.agents[ix].as_ref() else {
            return false;
        };
        // Marked down before the kill, so that no failure it causes goes unexcused.
        self.down(node);
        if !slot.crash() {
            self.up(node);
            return false;
        }
        self.fault(
            kind,
            node,
            &format!("agent killed, restarting in {} ms", down.as_millis()),
        );
        let (this, node) = (self.clone(), node.to_string());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let Some(slot_of) = this.sim.upgrade() else {
                return;
            };
            if let Some(slot) = slot_of.agents[ix].as_ref() {
                slot.hold_ports().await;
            }
            drop(slot_of);
            tokio::time::sleep(down.saturating_sub(started.elapsed())).await;
            let Some(sim) = this.sim.upgrade() else {
                return;
            };
            let Some(slot) = sim.agents[ix].as_ref() else {
                return;
            };
            match slot.restart().await {
                Ok(()) => {
                    this.agent_restarts.fetch_add(1, Ordering::Relaxed);
                    this.up(&node);
                    tracing::info!(target_node = %node, seed = this.seed, incarnation = slot.incarnations(), "chaos: agent restarted");
                }
                Err(e) => this.violation(format!("the agent of `{node}` did not come back: {e}")),
            }
        });
        lock(&self.restarts).push(task);
        true
    }

    /// Wait for every pending agent restart.
    pub async fn settle(&self) {
        loop {
            let tasks: Vec<JoinHandle<()>> = lock(&self.restarts).drain(..).collect();
            if tasks.is_empty() {
                return;
            }
            for task in tasks {
                if let Err(e) = task.await
                    && !e.is_cancelled()
                {
                    self.violation(format!("an agent restart task failed: {e}"));
                }
            }
        }
    }
}
