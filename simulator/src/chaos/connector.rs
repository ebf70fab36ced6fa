//! The fault-injecting [`AgentConnector`]: wraps the executor's normal connector
//! (`GrpcConnector::tls` with its own credentials) and, per call, as the run's seed
//! decides: holds it back (`delay`), cuts the executor off from the agent for a while
//! (`partition`), loses it before or after the agent acted (`drop`), sends it twice at
//! once (`duplicate`), takes the agent down past the executor's retries before a step
//! (`strand`) or kills and restarts it after one (`agent-crash`). Every request and
//! answer is checked for private key material.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use rollover_executor::{AgentApi, AgentConnector, AgentError};
use rollover_proto::v1;

use super::{CRASH_DOWN, Chaos, FaultKind, PARTITION, STRAND_DOWN, within};

/// Agents through the fault injector.
pub struct ChaosConnector {
    inner: Arc<dyn AgentConnector>,
    chaos: Arc<Chaos>,
}

impl ChaosConnector {
    /// Inject `chaos`'s faults into the calls `inner` makes.
    pub fn new(chaos: Arc<Chaos>, inner: Arc<dyn AgentConnector>) -> Self {
        ChaosConnector { inner, chaos }
    }
}

impl AgentConnector for ChaosConnector {
    fn connect(
        &self,
        node_id: &str,
        address: Option<&str>,
    ) -> Result<Arc<dyn AgentApi>, AgentError> {
        let inner = self.inner.connect(node_id, address)?;
        Ok(Arc::new(ChaosAgent {
            node: node_id.to_string(),
            inner,
            chaos: self.chaos.clone(),
        }))
    }
}

struct ChaosAgent {
    node: String,
    inner: Arc<dyn AgentApi>,
    chaos: Arc<Chaos>,
}

fn unavailable(message: String) -> AgentError {
    AgentError::new(tonic::Code::Unavailable, message)
}

/// What was decided about one call, drawn in a fixed order from its generator.
struct Decision {
    delay: f64,
    partition: bool,
    partition_for: std::time::Duration,
    drop: bool,
    drop_answer: bool,
    duplicate: bool,
    strand: bool,
    strand_for: std::time::Duration,
    crash: bool,
    crash_for: std::time::Duration,
    crash_loses_answer: bool,
}

impl ChaosAgent {
    fn decide(&self, key: &str) -> Decision {
        let spec = &self.chaos.spec;
        let mut rng = self.chaos.draw(key);
        Decision {
            delay: rng.fraction(),
            partition: rng.chance(spec.partition),
            partition_for: within(&mut rng, PARTITION),
            drop: rng.chance(spec.drop),
            drop_answer: rng.chance(0.5),
            duplicate: rng.chance(spec.duplicate),
            strand: rng.chance(spec.strand),
            strand_for: within(&mut rng, STRAND_DOWN),
            crash: rng.chance(spec.agent_crash),
            crash_for: within(&mut rng, CRASH_DOWN),
            crash_loses_answer: rng.chance(0.5),
        }
    }

    /// One call through the injector. `step`: the step id of an ApplyStep (forward),
    /// for `strand` and `agent-crash`.
    async fn call<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        key: String,
        step: Option<u64>,
        request: Req,
        send: F,
    ) -> Result<Resp, AgentError>
    where
        Req: prost::Message + Clone,
        Resp: prost::Message + Applied,
        F: Fn(Req) -> Fut,
        Fut: Future<Output = Result<Resp, AgentError>>,
    {
        let chaos = &self.chaos;
        let node = self.node.as_str();
        chaos.count_call();
        chaos.scan(
            node,
            &format!("a {method} request"),
            &request.encode_to_vec(),
        );
        let d = self.decide(&key);
        let spec = &chaos.spec;

        if chaos.is_cut(node) {
            return Err(unavailable(format!(
                "simulated partition: the executor is cut off from `{node}`"
            )));
        }
        if d.partition {
            chaos.cut(node, d.partition_for);
            chaos.fault(
                FaultKind::Partition,
                node,
                &format!("{method}: cut off for {} ms", d.partition_for.as_millis()),
            );
            return Err(unavailable(format!(
                "simulated partition: the executor is cut off from `{node}`"
            )));
        }
        if let Some(step) = step
            && d.strand
            && chaos.crash_agent(node, d.strand_for, FaultKind::Strand)
        {
            tracing::warn!(
                target_node = node,
                step,
                seed = chaos.seed,
                "chaos: agent stranded before a step"
            );
        }
        if !spec.delay.is_zero() {
            let wait = spec.delay.mul_f64(d.delay);
            chaos.fault(
                FaultKind::Delay,
                node,
                &format!("{method}: {} us", wait.as_micros()),
            );
            tokio::time::sleep(wait).await;
        }
        if d.drop && !d.drop_answer {
            chaos.fault(
                FaultKind::DropRequest,
                node,
                &format!("{method}: request lost"),
            );
            return Err(unavailable(format!(
                "simulated loss of a {method} request to `{node}`"
            )));
        }
        let result = if d.duplicate {
            chaos.fault(FaultKind::Duplicate, node, &format!("{method}: sent twice"));
            let (first, second) = futures::join!(send(request.clone()), send(request));
            if let Ok(answer) = &second {
                chaos.scan(node, &format!("a {method} answer"), &answer.encode_to_vec());
            }
            first
        } else {
            send(request).await
        };
        if let Ok(answer) = &result {
            chaos.scan(node, &format!("a {method} answer"), &answer.encode_to_vec());
        }
        if d.drop && d.drop_answer {
            chaos.fault(
                FaultKind::DropAnswer,
                node,
                &format!(
                    "{method}: answer lost ({})",
                    if result.is_ok() { "ok" } else { "error" }
                ),
            );
            return Err(unavailable(format!(
                "simulated loss of the answer to a {method} call to `{node}`"
            )));
        }
        if step.is_some()
            && d.crash
            && result.as_ref().is_ok_and(Applied::applied)
            && chaos.crash_agent(node, d.crash_for, FaultKind::AgentCrash)
            && d.crash_loses_answer
        {
            return Err(unavailable(format!(
                "`{node}`'s agent crashed before answering"
            )));
        }
        result
    }
}

/// Whether an answer says the agent changed (ApplyStep) — others never do.
trait Applied {
    fn applied(&self) -> bool {
        false
    }
}
impl Applied for v1::AgentState {}
impl Applied for v1::CreateCsrResponse {}
impl Applied for v1::ProbeResponse {}
impl Applied for v1::ApplyStepResponse {
    fn applied(&self) -> bool {
        self.applied
    }
}

impl AgentApi for ChaosAgent {
    fn get_state(&self) -> BoxFuture<'_, Result<v1::AgentState, AgentError>> {
        Box::pin(self.call(
            "GetState",
            format!("{}/GetState", self.node),
            None,
            v1::GetStateRequest {},
            |_| self.inner.get_state(),
        ))
    }

    fn create_csr(
        &self,
        request: v1::CreateCsrRequest,
    ) -> BoxFuture<'_, Result<v1::CreateCsrResponse, AgentError>> {
        Box::pin(async move {
            let key = format!(
                "{}/CreateCsr/{}/{}",
                self.node, request.ca_name, request.generation
            );
            let answer = self
                .call("CreateCsr", key, None, request, |r| {
                    self.inner.create_csr(r)
                })
                .await;
            // The node may have made a new key: look for it in later messages too.
            self.chaos.refresh_secrets(&self.node);
            answer
        })
    }

    fn apply_step(
        &self,
        request: v1::ApplyStepRequest,
    ) -> BoxFuture<'_, Result<v1::ApplyStepResponse, AgentError>> {
        let key = format!(
            "{}/ApplyStep/{}/{}/{}",
            self.node, request.rotation_id, request.step_id, request.undo
        );
        let step = (!request.undo).then_some(request.step_id);
        Box::pin(self.call("ApplyStep", key, step, request, |r| {
            self.inner.apply_step(r)
        }))
    }

    fn probe(
        &self,
        request: v1::ProbeRequest,
    ) -> BoxFuture<'_, Result<v1::ProbeResponse, AgentError>> {
        let key = format!("{}/Probe/{}", self.node, request.peer_id);
        Box::pin(self.call("Probe", key, None, request, |r| self.inner.probe(r)))
    }
}
