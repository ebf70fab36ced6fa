//! The `rollover.v1.AgentService` gRPC service: who may call it, request parsing, and one
//! tracing span per call (node, rotation, step).

use std::sync::Arc;

use rollover_core::EXECUTOR_ID;
use rollover_pki::{Bridges, CertificateDer};
use rollover_proto::convert::action_from_i32;
use rollover_proto::v1::agent_service_server::AgentService as AgentApi;
use rollover_proto::v1::{
    ApplyStepRequest, ApplyStepResponse, CreateCsrRequest, CreateCsrResponse, GetStateRequest,
    GetStateResponse, ProbeRequest, ProbeResponse,
};
use rollover_transport::peer_node_id;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::AgentError;
use crate::node::{Caller, CsrLabel, StepRequest};
use crate::shared::Inner;

/// The Agent service of one node.
pub(crate) struct AgentService {
    inner: Arc<Inner>,
}

impl AgentService {
    pub fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

/// Runs an operation that changes the node to its end even when the call is cancelled
/// (the executor went away mid-call): dropped halfway, its state-directory writes
/// would go on in the background, unserialized, racing the retried call's (a
/// retried CreateCsr's key file was seen deleted under it), and the node in memory
/// would lag the node on disk.
async fn to_the_end<T: Send + 'static>(
    operation: impl Future<Output = Result<T, AgentError>> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::spawn(operation.in_current_span())
        .await
        .map_err(|e| AgentError::Server(format!("control operation task: {e}")))?
}

/// Accepts the call only from a client whose verified certificate names `@executor`.
fn authorize<T>(request: &Request<T>) -> Result<(), Status> {
    match peer_node_id(request) {
        Some(id) if id == EXECUTOR_ID => Ok(()),
        other => {
            let caller = other.map_or("an unidentified client".into(), |id| format!("{id:?}"));
            tracing::warn!(%caller, "control call refused");
            Err(AgentError::PermissionDenied(format!(
                "control calls are accepted from {EXECUTOR_ID} only, not from {caller}"
            ))
            .into())
        }
    }
}

fn action_name(action: i32) -> &'static str {
    rollover_proto::v1::StepAction::try_from(action).map_or("?", |a| a.as_str_name())
}

fn parse_step(r: ApplyStepRequest) -> Result<StepRequest, AgentError> {
    if r.rotation_id.is_empty() {
        return Err(AgentError::InvalidRequest("rotation_id is empty".into()));
    }
    let action = action_from_i32(r.action)
        .map_err(|e| AgentError::InvalidRequest(format!("action: {e}")))?;
    let der = |bytes: Vec<u8>| (!bytes.is_empty()).then(|| CertificateDer::from(bytes));
    Ok(StepRequest {
        leader_epoch: r.leader_epoch,
        rotation_id: r.rotation_id,
        step_id: r.step_id,
        action,
        undo: r.undo,
        new_root: der(r.new_root_der),
        new_leaf: der(r.issued_leaf_der),
        old_root_fingerprint: (!r.old_root_fingerprint.is_empty())
            .then_some(r.old_root_fingerprint),
        bridges: match (der(r.bridge_new_der), der(r.bridge_old_der)) {
            (Some(b_new), Some(b_old)) => Some(Bridges { b_new, b_old }),
            (None, None) => None,
            _ => {
                return Err(AgentError::InvalidRequest(
                    "bridge_new_der and bridge_old_der come together".into(),
                ));
            }
        },
    })
}

#[tonic::async_trait]
impl AgentApi for AgentService {
    async fn get_state(
        &self,
        request: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        let span = tracing::info_span!("get_state", node = %self.inner.id);
        let _enter = span.enter();
        authorize(&request)?;
        Ok(Response::new(GetStateResponse {
            state: Some(self.inner.snapshot()?),
        }))
    }

    async fn create_csr(
        &self,
        request: Request<CreateCsrRequest>,
    ) -> Result<Response<CreateCsrResponse>, Status> {
        let span = tracing::info_span!(
            "create_csr",
            node = %self.inner.id,
            ca = %request.get_ref().ca_name,
            generation = request.get_ref().generation,
        );
        async move {
            authorize(&request)?;
            let r = request.into_inner();
            if r.ca_name.is_empty() {
                return Err(AgentError::InvalidRequest("ca_name is empty".into()).into());
            }
            let label = CsrLabel {
                ca_name: r.ca_name,
                generation: r.generation,
            };
            let caller = Caller {
                rotation_id: r.rotation_id,
                leader_epoch: r.leader_epoch,
            };
            let inner = self.inner.clone();
            let csr_der = to_the_end(async move { inner.create_csr(label, &caller).await }).await?;
            Ok(Response::new(CreateCsrResponse { csr_der }))
        }
        .instrument(span)
        .await
    }

    async fn apply_step(
        &self,
        request: Request<ApplyStepRequest>,
    ) -> Result<Response<ApplyStepResponse>, Status> {
        let r = request.get_ref();
        let span = tracing::info_span!(
            "apply_step",
            node = %self.inner.id,
            rotation = %r.rotation_id,
            step = r.step_id,
            action = %action_name(r.action),
            undo = r.undo,
        );
        async move {
            authorize(&request)?;
            let step = parse_step(request.into_inner())?;
            let inner = self.inner.clone();
            let result = to_the_end(async move { inner.apply_step(step).await }).await;
            if let Err(e) = &result {
                tracing::warn!(error = %e, "step refused");
            }
            let (applied, state) = result?;
            Ok(Response::new(ApplyStepResponse {
                applied,
                state: Some(state),
            }))
        }
        .instrument(span)
        .await
    }

    async fn probe(
        &self,
        request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let r = request.get_ref();
        let span = tracing::info_span!(
            "probe",
            node = %self.inner.id,
            peer = %r.peer_id,
            address = %r.peer_address,
        );
        async move {
            authorize(&request)?;
            let r = request.into_inner();
            if r.peer_address.is_empty() {
                return Err(AgentError::InvalidRequest("peer_address is empty".into()).into());
            }
            let answer = self
                .inner
                .probe(&r.peer_id, &r.peer_address, r.workload)
                .await;
            if answer.ok {
                tracing::debug!("probe ok");
            } else {
                tracing::info!(error = %answer.error, "probe failed");
            }
            Ok(Response::new(answer))
        }
        .instrument(span)
        .await
    }
}
