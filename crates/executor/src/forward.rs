//! [`Forwarder`]: the Executor API as a follower of an executor group serves it.
//! Every call is first checked against this executor's own access rules (the same
//! roles as the leader's). Reads (GetRotation, ListRotations, WatchRotation) are then
//! answered from the group's journal itself when the forwarder was given one
//! ([`Forwarder::reading`], a [`JournalReader`]): they need no leader, so they keep
//! working between a leader's death and its successor's election. Every other call
//! (StartRotation, the controls, CheckFleet) is sent on to the executor that leads now,
//! found through a lookup the caller provides (the lease row), and fails UNAVAILABLE
//! while none leads. So clients may be given any member's address. With mTLS the
//! leader sees the follower's own identity as the caller: name the executors' identity
//! among the leader's `--operators`.
//!
//! A forwarded call is marked ([`FORWARDED`]), and a follower refuses a marked call
//! (UNAVAILABLE) instead of forwarding it again: when the lease names an address that
//! leads to a follower (a wildcard `--listen` reaching the follower itself, a
//! misrouted address), the call fails at once instead of going round until
//! something breaks.

use std::pin::Pin;
use std::sync::Arc;

use rollover_pki::LiveCredentials;
use rollover_proto::v1;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::executor_service_server::ExecutorService as ExecutorApi;
use std::future::Future;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::reader::JournalReader;
use crate::service::{EventStream, list_request, list_response, to_status, watch_response};
use crate::{Access, Journal, MAX_MESSAGE_BYTES, Role};

/// The metadata key marking a call a follower forwarded.
pub const FORWARDED: &str = "x-rollover-forwarded";

/// `message` as a call to the leader, marked as forwarded.
fn forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    request
}

/// Where the leader serves its API, if any executor leads now.
pub type LeaderFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// Looks the leader up (the lease row), once per forwarded call.
pub type LeaderLookup = Arc<dyn Fn() -> LeaderFuture + Send + Sync>;

/// How a follower reaches the leader.
#[derive(Clone)]
pub struct Forwarder {
    access: Access,
    leader: LeaderLookup,
    /// mTLS with the follower's own credentials (and the leader's identity); plaintext
    /// (loopback only) when `None`.
    tls: Option<(Arc<LiveCredentials>, String)>,
    /// Where reads are answered from, if not from the leader.
    reader: Option<Arc<JournalReader>>,
}

impl Forwarder {
    /// A forwarder admitting the callers `access` admits, finding the leader with
    /// `leader`, and calling it with `tls` (own credentials and the leader's node id)
    /// or in plaintext.
    pub fn new(
        access: Access,
        leader: LeaderLookup,
        tls: Option<(Arc<LiveCredentials>, String)>,
    ) -> Forwarder {
        Forwarder {
            access,
            leader,
            tls,
            reader: None,
        }
    }

    /// Answer reads from `journal` (the group's, which the leader writes) instead of
    /// forwarding them. Nothing is ever written to it through this forwarder.
    pub fn reading(mut self, journal: Arc<dyn Journal>) -> Forwarder {
        self.reader = Some(Arc::new(JournalReader::new(journal)));
        self
    }

    /// A client of the leader for `request`, unless another follower sent it here.
    async fn leader_for<T>(
        &self,
        request: &Request<T>,
    ) -> Result<ExecutorServiceClient<Channel>, Status> {
        if request.metadata().contains_key(FORWARDED) {
            tracing::warn!(
                "refused a call another executor forwarded here: it took this follower for the leader"
            );
            return Err(Status::unavailable(
                "another executor of the group forwarded this call here, taking this \
                 follower for the leader: the address in the lease (--advertise, or \
                 --listen) does not reach the leader; try again shortly",
            ));
        }
        self.leader().await
    }

    async fn leader(&self) -> Result<ExecutorServiceClient<Channel>, Status> {
        let addr = (self.leader)().await.ok_or_else(|| {
            Status::unavailable("no executor of the group leads now; try again shortly")
        })?;
        let channel = match &self.tls {
            Some((creds, id)) => rollover_transport::tls_channel(&addr, creds.clone(), id),
            None => rollover_transport::plain_channel(&addr),
        }
        .map_err(|e| Status::unavailable(format!("the leader at {addr}: {e}")))?;
        tracing::debug!(leader = %addr, "forwarding a call to the leader");
        Ok(ExecutorServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// The most rotations a follower reads for one ListRotations page: each costs it
/// journal queries the leader answers from memory.
const FOLLOWER_PAGE_SIZE: usize = 100;

#[tonic::async_trait]
impl ExecutorApi for Forwarder {
    async fn start_rotation(
        &self,
        request: Request<v1::StartRotationRequest>,
    ) -> Result<Response<v1::StartRotationResponse>, Status> {
        self.access
            .check(&request, "StartRotation", Role::Operator)?;
        self.leader_for(&request)
            .await?
            .start_rotation(forwarded(request.into_inner()))
            .await
    }

    async fn get_rotation(
        &self,
        request: Request<v1::GetRotationRequest>,
    ) -> Result<Response<v1::GetRotationResponse>, Status> {
        self.access.check(&request, "GetRotation", Role::Reader)?;
        if let Some(reader) = &self.reader {
            let r = request.into_inner();
            let rotation = reader
                .get_rotation_async(r.rotation_id, r.include_plan)
                .await
                .map_err(to_status)?;
            return Ok(Response::new(v1::GetRotationResponse {
                rotation: Some(rotation),
            }));
        }
        self.leader_for(&request)
            .await?
            .get_rotation(forwarded(request.into_inner()))
            .await
    }

    async fn list_rotations(
        &self,
        request: Request<v1::ListRotationsRequest>,
    ) -> Result<Response<v1::ListRotationsResponse>, Status> {
        self.access.check(&request, "ListRotations", Role::Reader)?;
        if let Some(reader) = &self.reader {
            let q = list_request(request.get_ref())?;
            let (rotations, next) = reader
                .list_page_async(q.active_only, q.size.min(FOLLOWER_PAGE_SIZE), q.after)
                .await
                .map_err(to_status)?;
            return Ok(Response::new(list_response(rotations, next)));
        }
        self.leader_for(&request)
            .await?
            .list_rotations(forwarded(request.into_inner()))
            .await
    }

    async fn pause(
        &self,
        request: Request<v1::PauseRequest>,
    ) -> Result<Response<v1::PauseResponse>, Status> {
        self.access.check(&request, "Pause", Role::Operator)?;
        self.leader_for(&request)
            .await?
            .pause(forwarded(request.into_inner()))
            .await
    }

    async fn resume(
        &self,
        request: Request<v1::ResumeRequest>,
    ) -> Result<Response<v1::ResumeResponse>, Status> {
        self.access.check(&request, "Resume", Role::Operator)?;
        self.leader_for(&request)
            .await?
            .resume(forwarded(request.into_inner()))
            .await
    }

    async fn abort(
        &self,
        request: Request<v1::AbortRequest>,
    ) -> Result<Response<v1::AbortResponse>, Status> {
        self.access.check(&request, "Abort", Role::Operator)?;
        self.leader_for(&request)
            .await?
            .abort(forwarded(request.into_inner()))
            .await
    }

    async fn rollback(
        &self,
        request: Request<v1::RollbackRequest>,
    ) -> Result<Response<v1::RollbackResponse>, Status> {
        self.access.check(&request, "Rollback", Role::Operator)?;
        self.leader_for(&request)
            .await?
            .rollback(forwarded(request.into_inner()))
            .await
    }

    async fn check_fleet(
        &self,
        request: Request<v1::CheckFleetRequest>,
    ) -> Result<Response<v1::CheckFleetResponse>, Status> {
        self.access.check(&request, "CheckFleet", Role::Reader)?;
        self.leader_for(&request)
            .await?
            .check_fleet(forwarded(request.into_inner()))
            .await
    }

    type WatchRotationStream = EventStream;

    async fn watch_rotation(
        &self,
        request: Request<v1::WatchRotationRequest>,
    ) -> Result<Response<Self::WatchRotationStream>, Status> {
        self.access.check(&request, "WatchRotation", Role::Reader)?;
        if let Some(reader) = &self.reader {
            let r = request.into_inner();
            let events = reader
                .watch(&r.rotation_id, r.from_sequence)
                .await
                .map_err(to_status)?;
            return Ok(Response::new(watch_response(events)));
        }
        let events = self
            .leader_for(&request)
            .await?
            .watch_rotation(forwarded(request.into_inner()))
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(events)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A lease naming an address that reaches a follower (here: the follower itself):
    /// the call comes back marked, is refused, and the refusal reaches the caller at
    /// once instead of the call going round.
    #[tokio::test]
    async fn a_call_forwarded_back_to_a_follower_is_refused_not_forwarded_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let me = addr.clone();
        let lookup: LeaderLookup = Arc::new(move || {
            let me = me.clone();
            Box::pin(async move { Some(me) }) as LeaderFuture
        });
        let forwarder = Forwarder::new(Access::Open, lookup, None);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve_forwarder(
            listener,
            forwarder,
            None,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        let mut client =
            ExecutorServiceClient::new(rollover_transport::plain_channel(&addr).unwrap());
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            client.pause(v1::PauseRequest {
                rotation_id: "r1".into(),
                reason: String::new(),
            }),
        )
        .await
        .expect("an answer, not a call going round");
        let status = answer.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("forwarded this call here"),
            "{status:?}"
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
