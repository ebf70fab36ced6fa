//! [`Forwarder`]: the Executor API as a follower of an executor group serves it.
//! Every call is first checked against this executor's own access rules (the same
//! roles as the leader's), then sent on to the executor that leads now, found through
//! a lookup the caller provides (the lease row). So clients may be given any member's
//! address: reads, watches and controls all reach the one executor that runs
//! rotations. With mTLS the leader sees the follower's own identity as the caller:
//! name the executors' identity among the leader's `--operators`.

use std::pin::Pin;
use std::sync::Arc;

use rollover_pki::LiveCredentials;
use rollover_proto::v1;
use rollover_proto::v1::executor_service_client::ExecutorServiceClient;
use rollover_proto::v1::executor_service_server::ExecutorService as ExecutorApi;
use std::future::Future;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::{Access, MAX_MESSAGE_BYTES, Role};

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
        }
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

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::WatchRotationResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExecutorApi for Forwarder {
    async fn start_rotation(
        &self,
        request: Request<v1::StartRotationRequest>,
    ) -> Result<Response<v1::StartRotationResponse>, Status> {
        self.access
            .check(&request, "StartRotation", Role::Operator)?;
        self.leader()
            .await?
            .start_rotation(request.into_inner())
            .await
    }

    async fn get_rotation(
        &self,
        request: Request<v1::GetRotationRequest>,
    ) -> Result<Response<v1::GetRotationResponse>, Status> {
        self.access.check(&request, "GetRotation", Role::Reader)?;
        self.leader()
            .await?
            .get_rotation(request.into_inner())
            .await
    }

    async fn list_rotations(
        &self,
        request: Request<v1::ListRotationsRequest>,
    ) -> Result<Response<v1::ListRotationsResponse>, Status> {
        self.access.check(&request, "ListRotations", Role::Reader)?;
        self.leader()
            .await?
            .list_rotations(request.into_inner())
            .await
    }

    async fn pause(
        &self,
        request: Request<v1::PauseRequest>,
    ) -> Result<Response<v1::PauseResponse>, Status> {
        self.access.check(&request, "Pause", Role::Operator)?;
        self.leader().await?.pause(request.into_inner()).await
    }

    async fn resume(
        &self,
        request: Request<v1::ResumeRequest>,
    ) -> Result<Response<v1::ResumeResponse>, Status> {
        self.access.check(&request, "Resume", Role::Operator)?;
        self.leader().await?.resume(request.into_inner()).await
    }

    async fn abort(
        &self,
        request: Request<v1::AbortRequest>,
    ) -> Result<Response<v1::AbortResponse>, Status> {
        self.access.check(&request, "Abort", Role::Operator)?;
        self.leader().await?.abort(request.into_inner()).await
    }

    async fn rollback(
        &self,
        request: Request<v1::RollbackRequest>,
    ) -> Result<Response<v1::RollbackResponse>, Status> {
        self.access.check(&request, "Rollback", Role::Operator)?;
        self.leader().await?.rollback(request.into_inner()).await
    }

    async fn check_fleet(
        &self,
        request: Request<v1::CheckFleetRequest>,
    ) -> Result<Response<v1::CheckFleetResponse>, Status> {
        self.access.check(&request, "CheckFleet", Role::Operator)?;
        self.leader().await?.check_fleet(request.into_inner()).await
    }

    type WatchRotationStream = EventStream;

    async fn watch_rotation(
        &self,
        request: Request<v1::WatchRotationRequest>,
    ) -> Result<Response<Self::WatchRotationStream>, Status> {
        self.access.check(&request, "WatchRotation", Role::Reader)?;
        let events = self
            .leader()
            .await?
            .watch_rotation(request.into_inner())
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(events)))
    }
}
