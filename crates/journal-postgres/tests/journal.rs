//! The journal conformance checks, the schema migration, epoch fencing and a
//! follower's reads against a real PostgreSQL (`ROLLOVER_TEST_POSTGRES`; see
//! `rollover_journal_postgres::testing`).

use std::sync::Arc;
use std::time::Duration;

use rollover_executor::conformance;
use rollover_executor::journal::{Journal, Op};
use rollover_journal_postgres::testing::fresh_database;
use rollover_journal_postgres::{Lease, LeaseConfig, PgError, PgJournal};

#[test]
fn postgres_journal_conforms_and_survives_reconnect() {
    let Some(url) = fresh_database("journal_conforms") else {
        return;
    };
    {
        let journal = PgJournal::connect(&url).unwrap();
        conformance::exercise(&journal);
        conformance::check(&journal);
    }
    // A second open finds the schema in place and the records as written.
    let journal = PgJournal::connect(&url).unwrap();
    conformance::check(&journal);
    conformance::check_replace(&journal);
    assert!(journal.commit(&[]).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_committer_groups_batches_in_order() {
    let Some(url) = fresh_database("committer_in_order") else {
        return;
    };
    let journal: Arc<dyn Journal> =
        Arc::new(tokio::task::block_in_place(|| PgJournal::connect(&url)).unwrap());
    conformance::check_committer(journal).await;
}

fn event(seq: u64) -> Op {
    Op::Event {
        rotation: "r".into(),
        seq,
        data: vec![1],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_write_and_a_dead_one_is_replaced() {
    let Some(url) = fresh_database("fencing") else {
        return;
    };
    let (a, b) = tokio::task::block_in_place(|| {
        (
            PgJournal::connect(&url).unwrap(),
            PgJournal::connect(&url).unwrap(),
        )
    });
    let short = |name: &str| LeaseConfig {
        ttl: Duration::from_millis(600),
        renew_every: Duration::from_millis(150),
        ..LeaseConfig::new(name, format!("{name}:1"))
    };
    let lease_a = Lease::new(&url, short("a")).unwrap();
    let lease_b = Lease::new(&url, short("b")).unwrap();

    let epoch_a = lease_a.try_acquire().await.unwrap().expect("a leads");
    assert_eq!(lease_b.try_acquire().await.unwrap(), None, "one leader");
    assert!(lease_a.renew(epoch_a).await.unwrap());
    a.set_fence(epoch_a);
    tokio::task::block_in_place(|| a.commit(&[event(1)])).unwrap();

    // a stops renewing (it died); b takes over after the lease expires.
    let epoch_b = lease_b
        .acquire(tokio::time::sleep(Duration::from_secs(5)))
        .await
        .expect("b takes the expired lease");
    assert!(epoch_b > epoch_a, "the epoch increases");
    b.set_fence(epoch_b);
    tokio::task::block_in_place(|| b.commit(&[event(2)])).unwrap();
    let current = lease_a.current().await.unwrap().unwrap();
    assert_eq!((current.epoch, current.holder.as_str()), (epoch_b, "b"));

    // a comes back: its writes and its renewals fail.
    let err = tokio::task::block_in_place(|| a.commit(&[event(3)])).unwrap_err();
    assert!(err.to_string().contains("deposed"), "{err}");
    assert!(!lease_a.renew(epoch_a).await.unwrap());
    assert!(matches!(
        lease_a.hold(epoch_a).await,
        PgError::Deposed { .. }
    ));
    assert_eq!(
        tokio::task::block_in_place(|| a.last_sequence("r")).unwrap(),
        2
    );

    // A graceful release hands over at once.
    lease_b.release(epoch_b).await.unwrap();
    let epoch_a2 = lease_a.try_acquire().await.unwrap().expect("a leads again");
    assert_eq!(epoch_a2, epoch_b + 1);
}

/// A follower's reads (a `JournalReader` on a connection of its own, as a CLI follower
/// has) answer from PostgreSQL exactly as the executor that writes the journal does:
/// the status with its plan, the list, and every event to the Finished one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_rotations_as_the_leader_reports_them() {
    use rollover_executor::reader::JournalReader;
    use rollover_executor::{Executor, ExecutorConfig, instant_fleet};
    let Some(url) = fresh_database("follower_reads") else {
        return;
    };
    let topology = instant_fleet::start(60).await.unwrap();
    let (writer, follower) = tokio::task::block_in_place(|| {
        (
            PgJournal::connect(&url).unwrap(),
            PgJournal::connect(&url).unwrap(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = ExecutorConfig::new(dir.path());
    config.journal = Some(Arc::new(writer));
    let executor = tokio::task::block_in_place(|| Executor::open(config)).unwrap();
    let reader = Arc::new(JournalReader::new(Arc::new(follower)));
    let rotated = instant_fleet::rotate(&executor, &topology).await.unwrap();
    let id = executor.list_rotations(false)[0].id.clone();
    let theirs = executor.get_rotation(&id, true).unwrap();
    assert_eq!(theirs.steps_done as usize, rotated.steps, "{theirs:?}");
    assert_eq!(
        reader.get_rotation_async(id.clone(), true).await.unwrap(),
        theirs
    );
    assert_eq!(
        reader.list_page_async(false, 10, None).await.unwrap(),
        executor.list_page(false, 10, None)
    );
    let mut events = reader.watch(&id, 0).await.unwrap().into_inner();
    let mut sequences = Vec::new();
    while let Some(event) = events.recv().await {
        sequences.push(event.unwrap().sequence);
    }
    assert_eq!(sequences, (1..=theirs.last_sequence).collect::<Vec<_>>());
    executor.shutdown();
}
