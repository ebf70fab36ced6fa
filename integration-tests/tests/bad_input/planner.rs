//! The planner under the barrage: Plan and Verify refuse bad input clearly and the
//! service keeps serving.

use prost::Message;
use rollover_integration_tests::{Tally, refused, serving, start_planner};
use rollover_proto::v1;
use rollover_proto::v1::planner_service_client::PlannerServiceClient;

use crate::fuzz::*;
use crate::inputs::*;

#[test]
fn planner_refuses_bad_input_clearly_and_keeps_serving() {
    let rt = runtime();
    let _in_runtime = rt.enter();
    let planner = rt.block_on(start_planner());
    let client = PlannerServiceClient::new(planner.channel());
    let tally = Tally::default();
    let seeds = input_seeds();

    rt.block_on(async {
        let mut c = client.clone();
        for case in named_cases() {
            if let Some(code) = case.plan {
                let result = c.plan(case.inputs.plan_request()).await;
                assert_eq!(refused(case.name, &result), code, "Plan: {}", case.name);
                tally.count(&result);
            }
            if let Some(code) = case.verify {
                let result = c.verify(case.inputs.verify_request()).await;
                assert_eq!(refused(case.name, &result), code, "Verify: {}", case.name);
                tally.count(&result);
            }
        }
    });
    let c = client.clone();
    drive(
        &rt,
        "Plan (typed)",
        1500,
        mutated_inputs(),
        &tally,
        |inputs| {
            let mut c = c.clone();
            Some(Box::pin(async move {
                c.plan(inputs.plan_request()).await.map(drop)
            }))
        },
    );
    let c = client.clone();
    drive(
        &rt,
        "Verify (typed)",
        1500,
        mutated_inputs(),
        &tally,
        |inputs| {
            let mut c = c.clone();
            Some(Box::pin(async move {
                c.verify(inputs.verify_request()).await.map(drop)
            }))
        },
    );
    let plan_seeds = seeds
        .iter()
        .map(|s| s.plan_request().encode_to_vec())
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "Plan (bytes)",
        1000,
        request_bytes(plan_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::PlanRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(async move { c.plan(request).await.map(drop) }))
        },
    );
    let verify_seeds = seeds
        .iter()
        .map(|s| s.verify_request().encode_to_vec())
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "Verify (bytes)",
        1000,
        request_bytes(verify_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::VerifyRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(async move { c.verify(request).await.map(drop) }))
        },
    );

    // Still serving, and a real request is answered with a safe plan.
    rt.block_on(async {
        assert!(planner.is_running());
        assert!(serving(planner.channel(), "rollover.v1.PlannerService").await);
        let mut client = client.clone();
        let plan = client
            .plan(seeds[0].plan_request())
            .await
            .expect("a valid Plan after the barrage")
            .into_inner()
            .plan
            .expect("a plan");
        assert!(!plan.steps.is_empty());
        let verdict = client
            .verify(v1::VerifyRequest {
                topology: seeds[0].topology.clone(),
                plan: Some(v1::PlanSource {
                    source: Some(v1::plan_source::Source::Plan(plan)),
                }),
            })
            .await
            .expect("a valid Verify after the barrage")
            .into_inner()
            .verdict
            .unwrap();
        assert!(verdict.safe, "{verdict:?}");
        planner.stop().await;
    });
    tally.report("planner (Plan, Verify)");
}
