//! The agent under the barrage: GetState, CreateCsr, ApplyStep and Probe refuse
//! bad input clearly (no mutated step ever applies) and the agent keeps serving.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use prost::Message;
use rollover_agent::ControlCreds;
use rollover_core::Mode;
use rollover_integration_tests::{
    CA, EXECUTOR_ID, Tally, creds, refused, root, serving, start_agent,
};
use rollover_pki::{NodeKey, RootCa, Validity};
use rollover_proto::v1;
use rollover_proto::v1::agent_service_client::AgentServiceClient;
use tonic::Code;

use crate::fuzz::*;

/// Certificates an ApplyStep may carry. None of them, in any combination, is a leaf
/// for a key the agent made issued by a root offered as `new_root_der`, so no
/// mutated step can ever apply.
pub(crate) struct CertPool {
    pub(crate) certs: Vec<(&'static str, Vec<u8>)>,
    pub(crate) fingerprints: Vec<String>,
}

pub(crate) fn cert_pool(old: &RootCa, new: &RootCa, csr: &[u8]) -> CertPool {
    let hidden = root(CA, 99);
    let foreign = NodeKey::generate(Default::default()).expect("key");
    let foreign_csr = foreign.csr_der("a").expect("csr");
    let past = Validity {
        not_before: std::time::SystemTime::now() - Duration::from_secs(7200),
        not_after: std::time::SystemTime::now() - Duration::from_secs(3600),
    };
    let other_node = NodeKey::generate(Default::default()).expect("key");
    let new_der = new.cert_der().to_vec();
    let certs = vec![
        ("empty", Vec::new()),
        ("garbage", b"not a certificate".to_vec()),
        ("truncated new root", new_der[..new_der.len() / 2].to_vec()),
        ("new root", new_der),
        ("old (current) root", old.cert_der().to_vec()),
        ("another CA's root", root("other-ca", 1).cert_der().to_vec()),
        (
            "leaf for the agent's key from a root not offered",
            hidden
                .issue_leaf(csr, "a", Validity::default())
                .expect("leaf")
                .to_vec(),
        ),
        (
            "leaf for a foreign key",
            new.issue_leaf(&foreign_csr, "a", Validity::default())
                .expect("leaf")
                .to_vec(),
        ),
        (
            "expired leaf for a foreign key",
            new.issue_leaf(&foreign_csr, "a", past)
                .expect("leaf")
                .to_vec(),
        ),
        (
            "leaf for another node",
            new.issue_leaf(
                &other_node.csr_der("b").expect("csr"),
                "b",
                Validity::default(),
            )
            .expect("leaf")
            .to_vec(),
        ),
    ];
    let fingerprints = vec![
        String::new(),
        old.fingerprint(),
        old.fingerprint().to_uppercase(),
        new.fingerprint(),
        "00".repeat(32),
        "zz".into(),
    ];
    CertPool {
        certs,
        fingerprints,
    }
}

/// A call to the agent, typed.
#[derive(Debug, Clone)]
pub(crate) enum AgentCall {
    GetState,
    Csr(String, u32),
    Step {
        rotation_id: String,
        step_id: u64,
        action: i32,
        new_root: Index,
        leaf: Index,
        old_root: Index,
        undo: bool,
    },
    Probe(String, String),
}

pub(crate) fn agent_call(addresses: Vec<String>) -> BoxedStrategy<AgentCall> {
    let address = prop_oneof![
        select(addresses),
        Just(String::new()),
        Just("garbage".to_string()),
        Just("127.0.0.1:1".to_string()),
        Just("127.0.0.1".to_string()),
        Just("127.0.0.1:99999".to_string()),
        Just("[::1]:1".to_string()),
        Just("localhost:1".to_string()),
        Just("http://127.0.0.1:1/path".to_string()),
        word(),
    ];
    let step = (
        prop_oneof![Just("r1".to_string()), word()],
        prop_oneof![0u64..6, Just(u64::MAX)],
        enum_value(),
        any::<Index>(),
        any::<Index>(),
        any::<Index>(),
        any::<bool>(),
    )
        .prop_map(
            |(rotation_id, step_id, action, new_root, leaf, old_root, undo)| AgentCall::Step {
                rotation_id,
                step_id,
                action,
                new_root,
                leaf,
                old_root,
                undo,
            },
        );
    prop_oneof![
        1 => Just(AgentCall::GetState),
        2 => (word(), prop_oneof![0u32..4, Just(u32::MAX)]).prop_map(|(c, g)| AgentCall::Csr(c, g)),
        6 => step,
        2 => (word(), address).prop_map(|(p, a)| AgentCall::Probe(p, a)),
    ]
    .boxed()
}

#[test]
fn agent_refuses_bad_input_clearly_and_keeps_serving() {
    let rt = runtime();
    let _in_runtime = rt.enter();
    let dirs = tempfile::tempdir().expect("tempdir");
    let (old, new, control) = (root(CA, 1), root(CA, 2), root("control", 1));
    let exec = creds(EXECUTOR_ID, &control);
    let (agent, client) = rt.block_on(async {
        let agent = start_agent(
            &dirs.path().join("a"),
            "a",
            Mode::Bundle,
            &old,
            ControlCreds::Separate(creds("a", &control)),
        )
        .await;
        let channel =
            rollover_transport::tls_channel(&agent.control_addr().to_string(), exec.clone(), "a")
                .expect("channel");
        (agent, AgentServiceClient::new(channel))
    });
    let csr = rt.block_on(async {
        client
            .clone()
            .create_csr(v1::CreateCsrRequest {
                ca_name: CA.into(),
                generation: 2,
                ..Default::default()
            })
            .await
            .expect("csr")
            .into_inner()
            .csr_der
    });
    let pool = Arc::new(cert_pool(&old, &new, &csr));
    let tally = Tally::default();
    let addresses = vec![
        agent.data_addr().to_string(),
        agent.control_addr().to_string(),
    ];

    let c = client.clone();
    let p = pool.clone();
    drive(
        &rt,
        "Agent (typed)",
        2000,
        agent_call(addresses),
        &tally,
        |call| {
            let mut c = c.clone();
            let p = p.clone();
            Some(Box::pin(async move {
                match call {
                    AgentCall::GetState => c.get_state(v1::GetStateRequest {}).await.map(drop),
                    AgentCall::Csr(ca_name, generation) => c
                        .create_csr(v1::CreateCsrRequest {
                            ca_name,
                            generation,
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                    AgentCall::Step {
                        rotation_id,
                        step_id,
                        action,
                        new_root,
                        leaf,
                        old_root,
                        undo,
                    } => {
                        let request = v1::ApplyStepRequest {
                            rotation_id,
                            step_id,
                            action,
                            new_root_der: new_root.get(&p.certs).1.clone(),
                            issued_leaf_der: leaf.get(&p.certs).1.clone(),
                            old_root_fingerprint: old_root.get(&p.fingerprints).clone(),
                            undo,
                            ..Default::default()
                        };
                        c.apply_step(request).await.map(drop)
                    }
                    AgentCall::Probe(peer_id, peer_address) => c
                        .probe(v1::ProbeRequest {
                            peer_id,
                            peer_address,
                            workload: false,
                        })
                        .await
                        .map(drop),
                }
            }))
        },
    );
    let step_seeds = pool
        .certs
        .iter()
        .map(|(_, cert)| {
            v1::ApplyStepRequest {
                rotation_id: "r1".into(),
                step_id: 1,
                action: v1::StepAction::Stage as i32,
                new_root_der: new.cert_der().to_vec(),
                issued_leaf_der: cert.clone(),
                old_root_fingerprint: old.fingerprint(),
                undo: false,
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let c = client.clone();
    drive(
        &rt,
        "ApplyStep (bytes)",
        600,
        request_bytes(step_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::ApplyStepRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(
                async move { c.apply_step(request).await.map(drop) },
            ))
        },
    );
    let csr_seeds = vec![
        v1::CreateCsrRequest {
            ca_name: CA.into(),
            generation: 2,
            ..Default::default()
        }
        .encode_to_vec(),
    ];
    let c = client.clone();
    drive(
        &rt,
        "CreateCsr (bytes)",
        300,
        request_bytes(csr_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::CreateCsrRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(
                async move { c.create_csr(request).await.map(drop) },
            ))
        },
    );
    let probe_seeds = vec![
        v1::ProbeRequest {
            peer_id: "a".into(),
            peer_address: agent.data_addr().to_string(),
            workload: false,
        }
        .encode_to_vec(),
    ];
    let c = client.clone();
    drive(
        &rt,
        "Probe (bytes)",
        300,
        request_bytes(probe_seeds),
        &tally,
        |bytes| {
            let request = decoded::<v1::ProbeRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(async move { c.probe(request).await.map(drop) }))
        },
    );
    let c = client.clone();
    drive(
        &rt,
        "GetState (bytes)",
        100,
        request_bytes(vec![Vec::new()]),
        &tally,
        |bytes| {
            let request = decoded::<v1::GetStateRequest>(&bytes)?;
            let mut c = c.clone();
            Some(Box::pin(
                async move { c.get_state(request).await.map(drop) },
            ))
        },
    );

    // Nothing got through: no step applied. The agent still serves, and a real
    // rotation's steps apply, with replays, out-of-order steps, steps of another
    // rotation and steps naming another CA's root refused clearly.
    assert_eq!(agent.applied_count(), 0, "a bad input changed the node");
    rt.block_on(async {
        let mut c = client.clone();
        let channel =
            rollover_transport::tls_channel(&agent.control_addr().to_string(), exec.clone(), "a")
                .expect("channel");
        assert!(serving(channel, "rollover.v1.AgentService").await);
        let state = c
            .get_state(v1::GetStateRequest {})
            .await
            .expect("GetState")
            .into_inner()
            .state
            .unwrap();
        assert_eq!(state.server_roots, vec![old.fingerprint()]);

        let csr = c
            .create_csr(v1::CreateCsrRequest {
                ca_name: CA.into(),
                generation: 3,
                ..Default::default()
            })
            .await
            .expect("CreateCsr")
            .into_inner()
            .csr_der;
        let leaf = new
            .issue_leaf(&csr, "a", Validity::default())
            .expect("the agent's CSR names it");
        let step = |step_id: u64, action: v1::StepAction| v1::ApplyStepRequest {
            rotation_id: "real".into(),
            step_id,
            action: action as i32,
            old_root_fingerprint: old.fingerprint(),
            ..Default::default()
        };
        let stage = v1::ApplyStepRequest {
            new_root_der: new.cert_der().to_vec(),
            issued_leaf_der: leaf.to_vec(),
            ..step(1, v1::StepAction::Stage)
        };
        let applied = c
            .apply_step(stage.clone())
            .await
            .expect("stage")
            .into_inner();
        assert!(applied.applied);
        let replay = c
            .apply_step(stage)
            .await
            .expect("a replay is answered")
            .into_inner();
        assert!(!replay.applied, "a replayed step id applies nothing");

        let refusals = [
            (
                "a replayed step id with another action",
                step(1, v1::StepAction::Present),
                Code::FailedPrecondition,
            ),
            (
                "a step out of order",
                step(2, v1::StepAction::Retire),
                Code::FailedPrecondition,
            ),
            (
                "a step of the other mode",
                step(2, v1::StepAction::Finalize),
                Code::FailedPrecondition,
            ),
            (
                "an undo of a step never applied",
                v1::ApplyStepRequest {
                    undo: true,
                    ..step(7, v1::StepAction::Present)
                },
                Code::FailedPrecondition,
            ),
            (
                "a step of another rotation",
                v1::ApplyStepRequest {
                    rotation_id: "other".into(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::FailedPrecondition,
            ),
            (
                "a step replacing another CA's root",
                v1::ApplyStepRequest {
                    old_root_fingerprint: root("other-ca", 1).fingerprint(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::FailedPrecondition,
            ),
            (
                "a step bringing another CA's root",
                v1::ApplyStepRequest {
                    new_root_der: root("other-ca", 2).cert_der().to_vec(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::InvalidArgument,
            ),
            (
                "an unspecified action",
                step(2, v1::StepAction::Unspecified),
                Code::InvalidArgument,
            ),
            (
                "an empty rotation id",
                v1::ApplyStepRequest {
                    rotation_id: String::new(),
                    ..step(2, v1::StepAction::Present)
                },
                Code::InvalidArgument,
            ),
        ];
        for (what, request, code) in refusals {
            let result = c.apply_step(request).await;
            assert_eq!(refused(what, &result), code, "{what}: {result:?}");
        }
        for (id, action) in [(2, v1::StepAction::Present), (3, v1::StepAction::Retire)] {
            assert!(
                c.apply_step(step(id, action))
                    .await
                    .expect("step")
                    .into_inner()
                    .applied
            );
        }
        assert_eq!(agent.applied_count(), 3);
        let state = c
            .get_state(v1::GetStateRequest {})
            .await
            .expect("GetState")
            .into_inner()
            .state
            .unwrap();
        assert_eq!(state.server_roots, vec![new.fingerprint()]);
        agent.shutdown().await;
    });
    tally.report("agent (GetState, CreateCsr, ApplyStep, Probe)");
}
