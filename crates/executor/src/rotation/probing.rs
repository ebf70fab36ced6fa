//! Probing after a step: every link touching the step's node, by the client's agent
//! (at the server's workload endpoint when it has one) or, for `@executor`, by the
//! executor's own handshake; results journaled as ProbeResult events.

use super::*;

impl Rotation {
    /// Probe every link touching the step's node; journal the results.
    pub(super) async fn probe_step(self: Arc<Self>, ix: StepIx, undo: bool) -> Msg {
        let node = self.order.step_node[ix as usize];
        let mut probes = JoinSet::new();
        for (k, &link) in self.node_links[node as usize].iter().enumerate() {
            let this = self.clone();
            probes.spawn(async move {
                // Waiting for a permit does not count against the probe's deadline.
                let _permit = this.ctx.probe_limit.clone().acquire_owned().await;
                (k, link, this.probe_link(link).await)
            });
        }
        let mut results: Vec<(usize, Link, ProbeOutcome)> = probes.join_all().await;
        results.sort_by_key(|r| r.0);
        let step_id = self.plan.steps[ix as usize].id;
        let mut events = Vec::with_capacity(results.len());
        let (mut total, mut failed) = (0, 0);
        let mut failure = None;
        for (_, link, result) in results {
            let Some(result) = result else { continue };
            let declared = self.order.disrupted.contains(&link);
            let (client, server) = (self.fleet.id(link.client), self.fleet.id(link.server));
            total += 1;
            self.ctx.metrics.probe(result.is_ok());
            if let Err(error) = &result {
                failed += 1;
                tracing::warn!(client, server, declared, %error, "probe failed");
                if !declared && failure.is_none() {
                    failure = Some(format!(
                        "link {client} -> {server} failed its probe after {}: {error}",
                        self.step_name(ix, undo)
                    ));
                }
            }
            let (error, kind) = match result {
                Ok(()) => (String::new(), v1::ProbeFailure::Unspecified),
                Err(e) => (e.message, e.kind),
            };
            events.push(Event::ProbeResult(v1::ProbeResult {
                client: client.to_string(),
                server: server.to_string(),
                ok: kind == v1::ProbeFailure::Unspecified,
                error,
                after_step_id: Some(step_id),
                declared_disruption: declared,
                failure: kind as i32,
            }));
        }
        let mut ops = Vec::new();
        if failure.is_none() {
            let attempts = self.attempts[usize::from(undo)][ix as usize].load(Ordering::Relaxed);
            ops.push(self.step_op(ix, undo, StepState::Probed, attempts));
        }
        if let Err(e) = self.record(ops, events).wait().await {
            failure = Some(format!("journal: {e}"));
        }
        Msg::Probed {
            step: ix,
            undo,
            held: failure,
            total,
            failed,
        }
    }

    /// Probe one link; `None` when it cannot be probed by design (client
    /// `@executor` without credentials of its own).
    pub(super) async fn probe_link(&self, link: Link) -> ProbeOutcome {
        let server = self.fleet.id(link.server);
        let prepared = self.prepared();
        let Some(address) = prepared.facts[link.server as usize].data_address.clone() else {
            return Some(Err(ProbeError::new(
                v1::ProbeFailure::Connection,
                format!("`{server}` reports no data-plane address to probe"),
            )));
        };
        if Some(link.client) == self.fleet.executor {
            let creds = self.ctx.own_creds.as_ref()?;
            return Some(
                tls_probe(
                    creds.client_config(),
                    server,
                    &address,
                    self.ctx.probe_timeout,
                )
                .await,
            );
        }
        let agent = self.agents[link.client as usize].as_ref()?;
        // A server with a workload endpoint is probed there (MODEL §12), so the
        // probe shows what the workload's own clients see.
        let workload = self.workload_at[link.server as usize].clone();
        let request = v1::ProbeRequest {
            peer_id: server.to_string(),
            workload: workload.is_some(),
            peer_address: workload.unwrap_or(address),
        };
        let answer = self
            .ctx
            .retry
            .run(|| agent.probe(request.clone()), |_, _| {})
            .await;
        Some(match answer {
            Ok(r) if r.ok => Ok(()),
            Ok(r) => Err(ProbeError::from_wire(r.failure, r.error)),
            Err(e) => Err(ProbeError::new(
                v1::ProbeFailure::NotRun,
                format!(
                    "the probe could not run on `{}`: {e}",
                    self.fleet.id(link.client)
                ),
            )),
        })
    }
}

/// A probe's outcome; `None` when the link cannot be probed by design.
pub(super) type ProbeOutcome = Option<Result<(), ProbeError>>;
