//! What every [`Journal`] backend must do, as checks any backend's tests can run
//! (redb and memory here, PostgreSQL in its own crate). They panic on a mismatch:
//! call them from tests only.

use std::sync::{Arc, Mutex};

use crate::journal::{
    CommitTicket, Committer, DocKind, Journal, Op, RotationMeta, StartRequestKey, State,
    StepRecord, StepState, StoredOptions,
};

fn meta(id: &str, state: State) -> RotationMeta {
    RotationMeta {
        id: id.into(),
        ca: "corp".into(),
        state,
        rolling_back: false,
        paused_reason: None,
        error: None,
        options: StoredOptions {
            max_concurrency: 4,
            probe: true,
            ..Default::default()
        },
        generation: 2,
        created_ms: 1,
        updated_ms: 2,
        finished_ms: None,
        // One rotation with a StartRotation request_id: every backend keeps it.
        request: (id == "r1").then(|| StartRequestKey {
            id: "retry-me".into(),
            digest: "00ff".into(),
        }),
    }
}

fn step(id: &str, step: u64, undo: bool, state: StepState, attempts: u32) -> Op {
    Op::Step {
        rotation: id.into(),
        step,
        undo,
        record: StepRecord { state, attempts },
    }
}

/// Write a known set of records (two rotations, documents, steps, leaves, events, the
/// identity) in one batch.
pub fn exercise(journal: &dyn Journal) {
    journal
        .commit(&[
            Op::Rotation(meta("r1", State::Running)),
            Op::Rotation(meta("r2", State::Pending)),
            Op::Document {
                rotation: "r1".into(),
                kind: DocKind::NewRoot,
                data: b"PEM".to_vec(),
            },
            step("r1", 0, false, StepState::Probed, 1),
            step("r1", 1, false, StepState::Started, 2),
            step("r1", 1, true, StepState::Pending, 0),
            step("r2", 0, false, StepState::Started, 1),
            Op::Leaf {
                rotation: "r1".into(),
                node: "gw".into(),
                der: vec![1, 2, 3],
            },
            Op::Leaf {
                rotation: "r2".into(),
                node: "a".into(),
                der: vec![9],
            },
            Op::Event {
                rotation: "r1".into(),
                seq: 1,
                data: vec![10],
            },
            Op::Event {
                rotation: "r1".into(),
                seq: 2,
                data: vec![20],
            },
            Op::Identity(vec![7]),
        ])
        .expect("commit");
}

/// Check that the records of [`exercise`] read back as written.
pub fn check(journal: &dyn Journal) {
    let mut ids: Vec<String> = journal
        .rotations()
        .expect("rotations")
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["r1", "r2"]);
    assert_eq!(
        journal.rotation("r1").expect("rotation"),
        Some(meta("r1", State::Running))
    );
    assert_eq!(journal.rotation("nope").expect("rotation"), None);
    assert_eq!(
        journal
            .document("r1", DocKind::NewRoot)
            .expect("document")
            .as_deref(),
        Some(&b"PEM"[..])
    );
    assert_eq!(
        journal.document("r1", DocKind::Plan).expect("document"),
        None
    );
    let steps = journal.steps("r1").expect("steps");
    assert_eq!(steps.len(), 3);
    // A crash between "started" and "done" is visible.
    assert!(steps.contains(&(
        1,
        false,
        StepRecord {
            state: StepState::Started,
            attempts: 2
        }
    )));
    assert_eq!(
        journal.leaves("r1").expect("leaves"),
        [("gw".to_string(), vec![1, 2, 3])]
    );
    assert_eq!(
        journal.events("r1", 2, 10).expect("events"),
        [(2, vec![20])]
    );
    assert_eq!(journal.events("r1", 0, 1).expect("events"), [(1, vec![10])]);
    assert_eq!(journal.last_sequence("r1").expect("last"), 2);
    assert_eq!(journal.last_sequence("r2").expect("last"), 0);
    assert_eq!(journal.identity().expect("identity"), Some(vec![7]));
}

/// Later writes replace records, also twice in one batch (the last one wins).
pub fn check_replace(journal: &dyn Journal) {
    journal
        .commit(&[
            step("r1", 1, false, StepState::Done, 2),
            step(
                "r1",
                2,
                false,
                StepState::Failed {
                    maybe_applied: true,
                },
                3,
            ),
            step("r1", 2, false, StepState::Probed, 4),
            Op::Rotation(meta("r2", State::Running)),
            Op::Rotation(meta("r2", State::Succeeded)),
        ])
        .expect("commit");
    let steps = journal.steps("r1").expect("steps");
    assert!(steps.contains(&(
        1,
        false,
        StepRecord {
            state: StepState::Done,
            attempts: 2
        }
    )));
    assert!(steps.contains(&(
        2,
        false,
        StepRecord {
            state: StepState::Probed,
            attempts: 4
        }
    )));
    assert_eq!(
        journal.rotation("r2").expect("rotation").map(|m| m.state),
        Some(State::Succeeded)
    );
    journal
        .commit(&[step(
            "r1",
            3,
            true,
            StepState::Failed {
                maybe_applied: false,
            },
            70_000,
        )])
        .expect("commit");
    assert!(journal.steps("r1").expect("steps").contains(&(
        3,
        true,
        StepRecord {
            state: StepState::Failed {
                maybe_applied: false
            },
            attempts: 70_000
        }
    )));
}

/// The [`Committer`] in front of `journal` commits 50 queued batches and runs their
/// hooks in submission order.
pub async fn check_committer(journal: Arc<dyn Journal>) {
    let committer = Committer::start(journal.clone());
    let order = Arc::new(Mutex::new(Vec::new()));
    let tickets: Vec<CommitTicket> = (1..=50u64)
        .map(|seq| {
            let order = order.clone();
            committer.submit(
                vec![Op::Event {
                    rotation: "r".into(),
                    seq,
                    data: vec![seq as u8],
                }],
                Some(Box::new(move || {
                    order.lock().expect("order lock").push(seq);
                })),
            )
        })
        .collect();
    for t in tickets {
        t.wait().await.expect("commit");
    }
    assert_eq!(
        *order.lock().expect("order lock"),
        (1..=50).collect::<Vec<_>>()
    );
    assert_eq!(journal.last_sequence("r").expect("last"), 50);
}
