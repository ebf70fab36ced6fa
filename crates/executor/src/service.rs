//! The `rollover.v1.ExecutorService` gRPC service over an [`Executor`]: a thin
//! adapter. It checks the caller's role, unwraps the request, calls the executor
//! ([`crate::operations`], [`crate::check`]) and maps its [`ApiError`] to a status
//! in one place ([`to_status`]).
//!
//! Unknown rotation ids are NOT_FOUND; bad input is INVALID_ARGUMENT with a message
//! naming the field; a control call that does not apply to the rotation's state is
//! FAILED_PRECONDITION; a caller without the role a method needs is
//! PERMISSION_DENIED ([`Access`]). Messages show at most a short excerpt of any value
//! the caller sent ([`rollover_proto::status`]).
//!
//! StartRotation with a `request_id` is idempotent: the id is journaled with the
//! rotation, and a retry returns that rotation. ListRotations pages newest first; its
//! page token is the position (creation time and id) of the last rotation returned,
//! so rotations started meanwhile do not shift the pages.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use rollover_proto::status::{clip_status, excerpt};
use rollover_proto::v1;
use rollover_proto::v1::executor_service_server::ExecutorService as ExecutorApi;
use tonic::{Request, Response, Status};

use crate::Executor;
use crate::access::{Access, Role};
use crate::error::ApiError;
use crate::operations::ListPosition;
use crate::rotation::Control;

pub use crate::operations::MAX_REQUEST_ID_CHARS;
pub use crate::wire::{state_name, status_of};

/// The gRPC face of an [`Executor`].
#[derive(Clone)]
pub struct ExecutorService {
    executor: Executor,
    access: Arc<Access>,
}

impl ExecutorService {
    /// Serve `executor` to everyone ([`Access::Open`]).
    pub fn new(executor: Executor) -> Self {
        Self::with_access(executor, Access::Open)
    }

    /// Serve `executor` to the callers `access` admits.
    pub fn with_access(executor: Executor, access: Access) -> Self {
        ExecutorService {
            executor,
            access: Arc::new(access),
        }
    }
}

/// ListRotations' page size when the request says 0, and the largest it gives.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest ListRotations page.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The status of an executor error: its code by kind, its message clipped
/// ([`clip_status`]).
pub fn to_status(e: ApiError) -> Status {
    let message = e.to_string();
    clip_status(match e {
        // The store is down or timed out: clients retry UNAVAILABLE (perhaps at
        // another executor of a group), not INTERNAL.
        _ if e.is_unavailable() => Status::unavailable(message),
        ApiError::Invalid(_) => Status::invalid_argument(message),
        ApiError::NotFound(_) => Status::not_found(message),
        ApiError::Refused(_) => Status::failed_precondition(message),
        ApiError::Planner(s) => Status::new(s.code(), message),
        ApiError::Unavailable(_) => Status::unavailable(message),
        ApiError::BadPlanner(_) | ApiError::Record { .. } | ApiError::Journal(_) => {
            Status::internal(message)
        }
    })
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        to_status(e)
    }
}

/// The page token after the rotation at (`created_ms`, `id`).
fn page_token(created_ms: u64, id: &str) -> String {
    hex::encode(format!("{created_ms}:{id}"))
}

/// The position a page token names; INVALID_ARGUMENT if it is not one.
fn parse_page_token(token: &str) -> Result<(u64, String), Status> {
    let bad = || {
        Status::invalid_argument(format!(
            "page_token: `{}` is not a next_page_token of ListRotations",
            excerpt(token)
        ))
    };
    let bytes = hex::decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ms, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((ms.parse().map_err(|_| bad())?, id.to_string()))
}

/// What a ListRotations request asks for.
pub(crate) struct ListQuery {
    /// Only rotations not yet finished.
    pub active_only: bool,
    /// The most rotations in the page.
    pub size: usize,
    /// The position after which the page starts (from its page token).
    pub after: Option<ListPosition>,
}

/// What a ListRotations request asks for; INVALID_ARGUMENT for a negative page size
/// or a page token that is not one.
pub(crate) fn list_request(r: &v1::ListRotationsRequest) -> Result<ListQuery, Status> {
    let size = match r.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => {
            return Err(Status::invalid_argument(format!(
                "page_size: {n} is negative"
            )));
        }
        n => (n as usize).min(MAX_PAGE_SIZE),
    };
    let after = if r.page_token.is_empty() {
        None
    } else {
        Some(parse_page_token(&r.page_token)?)
    };
    Ok(ListQuery {
        active_only: r.active_only,
        size,
        after,
    })
}

/// The ListRotations answer of a page and the position of its last rotation (when
/// more follow).
pub(crate) fn list_response(
    rotations: Vec<v1::RotationStatus>,
    next: Option<ListPosition>,
) -> v1::ListRotationsResponse {
    v1::ListRotationsResponse {
        rotations,
        next_page_token: next.map(|(ms, id)| page_token(ms, &id)).unwrap_or_default(),
    }
}

/// A stream of events as WatchRotation sends them.
pub(crate) fn watch_response(
    events: impl Stream<Item = Result<v1::RotationEvent, ApiError>> + Send + 'static,
) -> EventStream {
    Box::pin(events.map(|event| {
        event
            .map(|event| v1::WatchRotationResponse { event: Some(event) })
            .map_err(to_status)
    }))
}

pub(crate) type EventStream =
    Pin<Box<dyn Stream<Item = Result<v1::WatchRotationResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExecutorApi for ExecutorService {
    async fn start_rotation(
        &self,
        request: Request<v1::StartRotationRequest>,
    ) -> Result<Response<v1::StartRotationResponse>, Status> {
        self.access
            .check(&request, "StartRotation", Role::Operator)?;
        self.executor
            .start_rotation(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    type WatchRotationStream = EventStream;

    async fn watch_rotation(
        &self,
        request: Request<v1::WatchRotationRequest>,
    ) -> Result<Response<Self::WatchRotationStream>, Status> {
        self.access.check(&request, "WatchRotation", Role::Reader)?;
        let r = request.into_inner();
        let stream = self
            .executor
            .watch(&r.rotation_id, r.from_sequence)
            .map_err(to_status)?;
        Ok(Response::new(watch_response(stream)))
    }

    async fn get_rotation(
        &self,
        request: Request<v1::GetRotationRequest>,
    ) -> Result<Response<v1::GetRotationResponse>, Status> {
        self.access.check(&request, "GetRotation", Role::Reader)?;
        let r = request.into_inner();
        let rotation = self
            .executor
            .get_rotation(&r.rotation_id, r.include_plan)
            .map_err(to_status)?;
        Ok(Response::new(v1::GetRotationResponse {
            rotation: Some(rotation),
        }))
    }

    async fn list_rotations(
        &self,
        request: Request<v1::ListRotationsRequest>,
    ) -> Result<Response<v1::ListRotationsResponse>, Status> {
        self.access.check(&request, "ListRotations", Role::Reader)?;
        let q = list_request(request.get_ref())?;
        let (rotations, next) = self.executor.list_page(q.active_only, q.size, q.after);
        Ok(Response::new(list_response(rotations, next)))
    }

    async fn pause(
        &self,
        request: Request<v1::PauseRequest>,
    ) -> Result<Response<v1::PauseResponse>, Status> {
        self.access.check(&request, "Pause", Role::Operator)?;
        let r = request.into_inner();
        let rotation = self
            .control(&r.rotation_id, Control::Pause(r.reason))
            .await?;
        Ok(Response::new(v1::PauseResponse {
            rotation: Some(rotation),
        }))
    }

    async fn resume(
        &self,
        request: Request<v1::ResumeRequest>,
    ) -> Result<Response<v1::ResumeResponse>, Status> {
        self.access.check(&request, "Resume", Role::Operator)?;
        let r = request.into_inner();
        let rotation = self.control(&r.rotation_id, Control::Resume).await?;
        Ok(Response::new(v1::ResumeResponse {
            rotation: Some(rotation),
        }))
    }

    async fn abort(
        &self,
        request: Request<v1::AbortRequest>,
    ) -> Result<Response<v1::AbortResponse>, Status> {
        self.access.check(&request, "Abort", Role::Operator)?;
        let r = request.into_inner();
        let rotation = self
            .control(&r.rotation_id, Control::Abort(r.reason))
            .await?;
        Ok(Response::new(v1::AbortResponse {
            rotation: Some(rotation),
        }))
    }

    async fn rollback(
        &self,
        request: Request<v1::RollbackRequest>,
    ) -> Result<Response<v1::RollbackResponse>, Status> {
        self.access.check(&request, "Rollback", Role::Operator)?;
        let r = request.into_inner();
        let rotation = self
            .control(&r.rotation_id, Control::Rollback(r.reason))
            .await?;
        Ok(Response::new(v1::RollbackResponse {
            rotation: Some(rotation),
        }))
    }

    async fn check_fleet(
        &self,
        request: Request<v1::CheckFleetRequest>,
    ) -> Result<Response<v1::CheckFleetResponse>, Status> {
        // It dials every agent of the fleet the caller names: a step towards a
        // rotation, so for operators only.
        // A read: it changes nothing, so readers may pre-flight too.
        self.access.check(&request, "CheckFleet", Role::Reader)?;
        self.executor
            .check_fleet(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}

impl ExecutorService {
    async fn control(&self, id: &str, control: Control) -> Result<v1::RotationStatus, Status> {
        self.executor.control(id, control).await.map_err(to_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalError;

    /// A call the journal's store cannot answer now is retried by clients
    /// (UNAVAILABLE), on a leader as on a follower reading the journal; bad data in
    /// it is not (INTERNAL).
    #[test]
    fn a_read_the_store_cannot_answer_now_is_unavailable() {
        let down = ApiError::Journal(JournalError::backend(std::io::Error::other(
            "connection refused",
        )));
        assert_eq!(to_status(down).code(), tonic::Code::Unavailable);
        let corrupt = ApiError::Journal(JournalError::Corrupt {
            what: "rotation r1".into(),
            reason: "bad bytes".into(),
        });
        assert_eq!(to_status(corrupt).code(), tonic::Code::Internal);
        let unwritten = ApiError::Record {
            what: "the pause",
            source: JournalError::backend(std::io::Error::other("timed out")),
        };
        assert_eq!(to_status(unwritten).code(), tonic::Code::Unavailable);
        let missing = ApiError::NotFound("no rotation r2".into());
        assert_eq!(to_status(missing).code(), tonic::Code::NotFound);
    }
}
