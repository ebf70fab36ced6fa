//! The `rollover.v1.PlannerService`: `Plan` and `Verify` around rollover-core.
//!
//! Each call is a pure function of its request. The core work runs on tokio's blocking
//! pool (planning a large fleet is CPU-bound), inside a tracing span that records the
//! fleet's size, the plan's waves and the time taken. Bad input is `INVALID_ARGUMENT`
//! with core's located message (origin, line, field).

use std::time::Instant;

use rollover_core::{
    Fleet, Plan, PlanOptions, PlanOrder, Topology, Verdict, plan, source::Document, verify,
};
use rollover_proto::convert::{
    ConvertError, PLAN_ORIGIN, SourceError, core_document, core_error_status, plan_from_source,
    strategy_from_i32, topology_from_source,
};
use rollover_proto::v1::{self, planner_service_server::PlannerService as PlannerApi};
use tonic::{Request, Response, Status};
use tracing::{Span, field};

/// The Planner service. Stateless: clone it freely.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlannerService;

impl PlannerService {
    /// A planner.
    pub fn new() -> Self {
        PlannerService
    }

    /// `Plan` without the transport: the plan for a request, or `INVALID_ARGUMENT`.
    /// Records `nodes`, `links`, `steps`, `waves` and `disruptions` on the current span.
    pub fn plan_request(&self, request: &v1::PlanRequest) -> Result<v1::PlanResponse, Status> {
        let span = Span::current();
        let topology = topology_in(request.topology.as_ref())?;
        let strategy = strategy_from_i32(request.strategy).map_err(|e| e.within("strategy"))?;
        span.record("strategy", strategy.as_str());
        let options = PlanOptions {
            strategy,
            start: request.start_node.clone(),
        };
        let fleet = Fleet::new(&topology);
        record_fleet(&span, &fleet);
        let plan = plan(&fleet, &options).map_err(|e| core_error_status(&e))?;
        span.record("steps", plan.steps.len());
        span.record("waves", plan.wave_count());
        span.record("disruptions", plan.disruptions.len());
        Ok(v1::PlanResponse {
            plan: Some(v1::Plan::from(&plan)),
        })
    }

    /// `Verify` without the transport: the verdict on a plan for a topology, or
    /// `INVALID_ARGUMENT` when either is malformed or they do not fit together. A plan
    /// given as a document has its consistency errors placed in it (line and field).
    /// Records `nodes`, `links`, `steps`, `waves`, `safe` and `broken` on the current
    /// span.
    pub fn verify_request(
        &self,
        request: &v1::VerifyRequest,
    ) -> Result<v1::VerifyResponse, Status> {
        let span = Span::current();
        let topology = topology_in(request.topology.as_ref())?;
        let source = request
            .plan
            .as_ref()
            .ok_or_else(|| ConvertError::missing("plan"))?;
        let plan = plan_from_source(source)?;
        let doc = match &source.source {
            Some(v1::plan_source::Source::Document(d)) => core_document(d, PLAN_ORIGIN)?,
            _ => Document::new(PLAN_ORIGIN, ""),
        };
        let verdict = verify_in(&topology, &plan, &doc, &span)?;
        span.record("waves", verdict.waves);
        span.record("safe", verdict.safe);
        span.record("broken", verdict.broken.len());
        Ok(v1::VerifyResponse {
            verdict: Some(v1::Verdict::from(&verdict)),
        })
    }
}

fn topology_in(source: Option<&v1::TopologySource>) -> Result<Topology, Status> {
    let source = source.ok_or_else(|| ConvertError::missing("topology"))?;
    Ok(topology_from_source(source)?)
}

fn verify_in(
    topology: &Topology,
    plan: &Plan,
    doc: &Document<'_>,
    span: &Span,
) -> Result<Verdict, Status> {
    let fleet = Fleet::new(topology);
    record_fleet(span, &fleet);
    span.record("steps", plan.steps.len());
    let order = PlanOrder::resolve(plan, &fleet, doc).map_err(SourceError::from)?;
    Ok(verify(&fleet, plan, &order))
}

fn record_fleet(span: &Span, fleet: &Fleet) {
    span.record("nodes", fleet.len());
    span.record("links", fleet.links.len());
}

/// Run `work` on the blocking pool inside `span`, recording the outcome and duration.
async fn in_span<T, F>(span: Span, work: F) -> Result<Response<T>, Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Status> + Send + 'static,
{
    let started = Instant::now();
    let inner = span.clone();
    let result = tokio::task::spawn_blocking(move || inner.in_scope(work))
        .await
        .unwrap_or_else(|e| Err(Status::internal(format!("planner task failed: {e}"))));
    let _entered = span.enter();
    span.record("duration_ms", started.elapsed().as_secs_f64() * 1e3);
    match &result {
        Ok(_) => tracing::info!("done"),
        Err(status) => tracing::info!(code = ?status.code(), error = status.message(), "rejected"),
    }
    result.map(Response::new)
}

#[tonic::async_trait]
impl PlannerApi for PlannerService {
    async fn plan(
        &self,
        request: Request<v1::PlanRequest>,
    ) -> Result<Response<v1::PlanResponse>, Status> {
        let span = tracing::info_span!(
            "planner.plan",
            strategy = field::Empty,
            nodes = field::Empty,
            links = field::Empty,
            steps = field::Empty,
            waves = field::Empty,
            disruptions = field::Empty,
            duration_ms = field::Empty,
        );
        let service = *self;
        let request = request.into_inner();
        in_span(span, move || service.plan_request(&request)).await
    }

    async fn verify(
        &self,
        request: Request<v1::VerifyRequest>,
    ) -> Result<Response<v1::VerifyResponse>, Status> {
        let span = tracing::info_span!(
            "planner.verify",
            nodes = field::Empty,
            links = field::Empty,
            steps = field::Empty,
            waves = field::Empty,
            safe = field::Empty,
            broken = field::Empty,
            duration_ms = field::Empty,
        );
        let service = *self;
        let request = request.into_inner();
        in_span(span, move || service.verify_request(&request)).await
    }
}
