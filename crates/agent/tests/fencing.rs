//! Fencing of deposed executors: an agent keeps the highest leader epoch it has seen
//! per rotation, across restarts, and refuses ApplyStep and CreateCsr calls with a
//! lower one, so a leader that lost its lease cannot undo or repeat what its
//! successor did.

mod common;

use common::{LoneAgent, bounded};
use rollover_core::state::Action;
use rollover_proto::v1::CreateCsrRequest;
use tonic::Code;

fn assert_stale(result: Result<impl std::fmt::Debug, tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    // ABORTED, not FAILED_PRECONDITION: the executor counts an undo refused with
    // FAILED_PRECONDITION as done, which a deposed leader must not do.
    assert_eq!(status.code(), Code::Aborted, "{what}: {status:?}");
    assert!(
        status.message().contains("stale leader"),
        "{what}: {}",
        status.message()
    );
}

#[tokio::test]
async fn a_deposed_leaders_late_calls_are_refused_even_after_a_restart() {
    bounded(async {
        let node = LoneAgent::new();
        let exec = &node.exec;
        let agent = node.start().await;

        // Leader 1 stages; leader 2 takes over and re-sends the stage (a repeat, which
        // still records its epoch), then presents.
        assert!(
            exec.step_as(1, &agent, 0, Action::Stage, false)
                .await
                .unwrap()
                .applied
        );
        assert!(
            !exec
                .step_as(2, &agent, 0, Action::Stage, false)
                .await
                .unwrap()
                .applied
        );
        assert!(
            exec.step_as(2, &agent, 3, Action::Present, false)
                .await
                .unwrap()
                .applied
        );
        let state = agent.state();

        // Leader 1's late calls: an undo, a repeat, the next step, a CSR.
        assert_stale(
            exec.step_as(1, &agent, 3, Action::Present, true).await,
            "late undo",
        );
        assert_stale(
            exec.step_as(1, &agent, 0, Action::Stage, false).await,
            "late repeat",
        );
        assert_stale(
            exec.step_as(1, &agent, 5, Action::Retire, false).await,
            "late next step",
        );
        assert_stale(
            exec.step_as(0, &agent, 5, Action::Retire, false).await,
            "a lone executor",
        );
        let late_csr = exec
            .client(&agent)
            .create_csr(CreateCsrRequest {
                ca_name: common::CA.into(),
                generation: 2,
                rotation_id: common::ROTATION.into(),
                leader_epoch: 1,
            })
            .await;
        assert_stale(late_csr, "late CreateCsr");
        assert_eq!(agent.state(), state, "nothing changed");
        assert_eq!(agent.metrics().epoch_refusals, 5);
        agent.shutdown().await;

        // The record survives a restart; leader 2 goes on, leader 1 still cannot.
        let agent = node.start().await;
        assert_stale(
            exec.step_as(1, &agent, 5, Action::Retire, false).await,
            "after restart",
        );
        assert!(
            exec.step_as(2, &agent, 5, Action::Retire, false)
                .await
                .unwrap()
                .applied
        );
        // A third leader takes over: now leader 2 is the deposed one.
        assert!(
            exec.step_as(3, &agent, 5, Action::Retire, true)
                .await
                .unwrap()
                .applied
        );
        assert_stale(
            exec.step_as(2, &agent, 5, Action::Retire, false).await,
            "leader 2 late",
        );
        agent.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_executor_without_a_lease_is_not_fenced() {
    bounded(async {
        let node = LoneAgent::new();
        let exec = &node.exec;
        let agent = node.start().await;
        for (id, action) in [
            (0, Action::Stage),
            (1, Action::Present),
            (2, Action::Retire),
        ] {
            assert!(exec.step(&agent, id, action, false).await.unwrap().applied);
        }
        assert_eq!(agent.metrics().epoch_refusals, 0);
        agent.shutdown().await;
    })
    .await;
}
