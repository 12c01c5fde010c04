//! The sinks' state on PostgreSQL: a lease goes to one server at a time, and a server
//! whose lease expired can no longer move the cursor or the dead letters, whatever it
//! still believes; a `sinks.sqlite` is copied in once.

use std::time::Duration;

use sealtrail_sinks::store::{LeaseAnswer, SinkStore, StoreFailure};

fn migrated() -> sealtrail_testkit::pg::TestDatabase {
    let db = sealtrail_testkit::pg::TestDatabase::create();
    sealtrail_store::postgres::migrate(&mut db.client()).unwrap();
    db
}

fn held(answer: LeaseAnswer) -> sealtrail_sinks::store::Fence {
    match answer {
        LeaseAnswer::Held(fence) => fence,
        LeaseAnswer::HeldBy(other) => panic!("held by {other}"),
    }
}

#[test]
fn an_expired_holder_cannot_write_once_another_server_holds_the_lease() {
    let db = migrated();
    let (a, _) = SinkStore::open_postgres(&db.url, None).unwrap();
    let (b, _) = SinkStore::open_postgres(&db.url, None).unwrap();
    let short = Duration::from_millis(300);

    let fence_a = held(a.acquire_lease("caterer", "server-a", short).unwrap());
    assert_eq!(
        b.acquire_lease("caterer", "server-b", short).unwrap(),
        LeaseAnswer::HeldBy("server-a".into())
    );
    a.advance(
        "caterer",
        10,
        &[(4, "id-4".into(), "400 bad".into())],
        &[],
        Some(&fence_a),
    )
    .unwrap();
    assert!(a.renew_lease("caterer", &fence_a, short).unwrap());
    // Another sink's lease is its own.
    held(b.acquire_lease("search", "server-b", short).unwrap());

    // server-a stalls past its lease; server-b takes over where it left.
    std::thread::sleep(short + Duration::from_millis(100));
    let fence_b = held(b.acquire_lease("caterer", "server-b", short).unwrap());
    assert!(fence_b.epoch > fence_a.epoch);
    assert_eq!(b.cursor("caterer").unwrap(), 10);
    assert_eq!(b.dead_letter_count("caterer").unwrap(), 1);

    assert!(matches!(
        a.advance("caterer", 20, &[], &[], Some(&fence_a)),
        Err(StoreFailure::LeaseLost)
    ));
    assert!(matches!(
        a.replay_delivered("caterer", 4, Some(&fence_a)),
        Err(StoreFailure::LeaseLost)
    ));
    assert!(!a.renew_lease("caterer", &fence_a, short).unwrap());
    assert_eq!(
        a.cursor("caterer").unwrap(),
        10,
        "the old holder moved nothing"
    );
    assert_eq!(a.dead_letter_count("caterer").unwrap(), 1);

    // Any server may ask for a replay; the holder carries it out.
    assert_eq!(a.request_replay("caterer", None).unwrap(), 1);
    assert_eq!(b.replays_requested("caterer", 10).unwrap().len(), 1);
    b.replay_delivered("caterer", 4, Some(&fence_b)).unwrap();
    b.advance("caterer", 20, &[], &[], Some(&fence_b)).unwrap();
    assert_eq!(a.cursor("caterer").unwrap(), 20);
    assert_eq!(a.dead_letter_count("caterer").unwrap(), 0);

    // Released on a clean stop: the next server need not wait for the expiry.
    b.release_lease("caterer", &fence_b).unwrap();
    let fence_a2 = held(a.acquire_lease("caterer", "server-a", short).unwrap());
    assert!(fence_a2.epoch > fence_b.epoch);
}

#[test]
fn a_sinks_sqlite_is_copied_in_when_the_database_has_no_sink_state() {
    let db = migrated();
    let dir = tempfile::tempdir().unwrap();
    {
        let local = SinkStore::open(dir.path()).unwrap();
        local
            .advance(
                "caterer",
                42,
                &[(7, "id-7".into(), "400 mapper_parsing_exception".into())],
                &[],
                None,
            )
            .unwrap();
    }
    let (shared, imported) = SinkStore::open_postgres(&db.url, Some(dir.path())).unwrap();
    assert_eq!(imported, 1);
    assert_eq!(shared.cursor("caterer").unwrap(), 42);
    let dead = shared.dead_letters("caterer", 10).unwrap();
    assert_eq!(
        (dead[0].seq, dead[0].error.as_str()),
        (7, "400 mapper_parsing_exception")
    );
    // A second server with a file of its own finds the database's state and keeps it.
    let other = tempfile::tempdir().unwrap();
    SinkStore::open(other.path())
        .unwrap()
        .advance("caterer", 5, &[], &[], None)
        .unwrap();
    let (again, imported) = SinkStore::open_postgres(&db.url, Some(other.path())).unwrap();
    assert_eq!(imported, 0);
    assert_eq!(again.cursor("caterer").unwrap(), 42);
}
