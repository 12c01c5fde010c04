//! Retention runs against a real server and store: events at many ages under the default
//! policies, an override and legal holds; a dry run changes nothing; a run archives,
//! removes archived bodies, deletes what is past retention and keeps what holds cover,
//! records itself in the log, and the log and the archive still verify. Then, with the
//! clock under the test's control, runs years later, and runs cut off between their steps
//! that the next run completes.

mod common;

use std::collections::BTreeMap;

use common::TestServer;
use sealtrail_core::retention_policy::{Policy, PolicyOverride};
use sealtrail_core::time_format::{format_micros, now_micros};
use sealtrail_core::{CheckpointVerifier, Scope};
use sealtrail_server::app::retention_run::{RunContext, RunReport, run};
use sealtrail_store::holds::HoldStore;
use sealtrail_store::retention::{ActiveHolds, HoldCheck, LedgerRow, RetentionLedger, SegmentUse};
use sealtrail_store::sqlite::{SqliteLedger, SqliteReader};
use sealtrail_store::{LogReader, StoreError};
use serde_json::{Value, json};

const DAY: i64 = 86_400 * 1_000_000;

/// What a run must leave of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// In the hot store, not archived.
    Hot,
    /// Archived; its body gone from the hot store.
    Archived,
    /// Archived; its body kept hot by a legal hold.
    ArchivedHeld,
    /// Deleted: in neither.
    Deleted,
    /// Past retention, kept hot by a legal hold.
    Held,
}

/// (tenant, severity, action, resource id, age in days, what the first run leaves).
const CASES: &[(&str, &str, &str, &str, i64, Expect)] = &[
    ("bloom", "info", "guest.updated", "guest-1", 10, Expect::Hot),
    (
        "bloom",
        "info",
        "guest.updated",
        "guest-2",
        100,
        Expect::Archived,
    ),
    (
        "bloom",
        "info",
        "guest.updated",
        "guest-3",
        400,
        Expect::Deleted,
    ),
    (
        "bloom",
        "warning",
        "guest.updated",
        "guest-4",
        100,
        Expect::Hot,
    ),
    (
        "bloom",
        "warning",
        "guest.updated",
        "guest-5",
        200,
        Expect::Archived,
    ),
    (
        "bloom",
        "warning",
        "guest.updated",
        "guest-6",
        1200,
        Expect::Deleted,
    ),
    (
        "bloom",
        "critical",
        "guest.updated",
        "guest-8",
        300,
        Expect::Hot,
    ),
    (
        "bloom",
        "critical",
        "guest.updated",
        "guest-9",
        400,
        Expect::Archived,
    ),
    (
        "bloom",
        "critical",
        "guest.updated",
        "guest-10",
        2600,
        Expect::Deleted,
    ),
    // guest-7 is under a legal hold.
    (
        "bloom",
        "info",
        "guest.updated",
        "guest-7",
        100,
        Expect::ArchivedHeld,
    ),
    (
        "bloom",
        "info",
        "guest.updated",
        "guest-7",
        400,
        Expect::Held,
    ),
    // lakeside's payments: kept 10 years, archived after 30 days (an override).
    (
        "lakeside",
        "info",
        "payment.captured",
        "pay-1",
        20,
        Expect::Hot,
    ),
    (
        "lakeside",
        "info",
        "payment.captured",
        "pay-2",
        40,
        Expect::Archived,
    ),
    (
        "lakeside",
        "info",
        "payment.captured",
        "pay-3",
        400,
        Expect::Archived,
    ),
    // Not a payment: the defaults.
    (
        "lakeside",
        "info",
        "guest.updated",
        "guest-1",
        400,
        Expect::Deleted,
    ),
    // The whole tenant held.
    (
        "harbor",
        "info",
        "guest.updated",
        "guest-1",
        100,
        Expect::ArchivedHeld,
    ),
    (
        "harbor",
        "info",
        "guest.updated",
        "guest-2",
        400,
        Expect::Held,
    ),
];

fn event(case: &(&str, &str, &str, &str, i64, Expect), now: i64) -> Value {
    let (tenant, severity, action, resource, age, _) = *case;
    json!({
        "tenant_id": tenant,
        "action": action,
        "resource_type": if action.starts_with("payment") { "payment" } else { "guest" },
        "resource_id": resource,
        "user_id": "coord:ines",
        "severity": severity,
        "occurred_at": format_micros(now - age * DAY),
        "details": {"note": format!("{tenant} {resource} {age} days ago")},
    })
}

fn payments_override() -> PolicyOverride {
    PolicyOverride {
        name: "lakeside-payments".into(),
        tenant: Some("lakeside".into()),
        action: Some("payment.*".into()),
        resource_type: None,
        severity: None,
        policy: Policy {
            keep_days: 3650,
            archive_after_days: 30,
        },
    }
}

/// Which store the server keeps its log in, as the checks read it.
#[derive(Clone)]
enum Store {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Store {
    fn reader(&self) -> Box<dyn LogReader> {
        match self {
            Store::Sqlite(dir) => Box::new(SqliteReader::open(dir).unwrap()),
            Store::Postgres(url) => {
                Box::new(sealtrail_store::postgres::PgReader::open(url).unwrap())
            }
        }
    }

    fn ledger(&self) -> Box<dyn RetentionLedger> {
        match self {
            Store::Sqlite(dir) => Box::new(SqliteLedger::open(dir).unwrap()),
            Store::Postgres(url) => {
                Box::new(sealtrail_store::postgres::PgLedger::open(url).unwrap())
            }
        }
    }

    fn verify(&self, verifier: &CheckpointVerifier) -> sealtrail_store::VerifyReport {
        match self {
            Store::Sqlite(dir) => {
                sealtrail_store::verify::verify_sqlite(dir, verifier, None, |_, _| {}).unwrap()
            }
            Store::Postgres(url) => {
                sealtrail_store::postgres::verify_postgres(url, verifier, None, |_, _| {}).unwrap()
            }
        }
    }
}

struct Setup {
    /// Keeps a PostgreSQL server's cluster running.
    _cluster: Option<std::sync::Arc<sealtrail_testkit::PgCluster>>,
    store: Store,
    verifier: CheckpointVerifier,
    server: TestServer,
    admin: String,
    /// Seq of each case, in CASES order.
    seqs: Vec<u64>,
    archive: sealtrail_archive::ArchiveLocation,
    /// Keeps the S3 server of an archive on S3 running.
    _moto: Option<sealtrail_testkit::s3::MotoServer>,
}

async fn setup() -> Setup {
    setup_on(false, false).await
}

async fn setup_on(postgres: bool, s3: bool) -> Setup {
    let (archive_text, moto) = match s3 {
        false => (
            tempfile::tempdir()
                .unwrap()
                .keep()
                .to_string_lossy()
                .into_owned(),
            None,
        ),
        true => {
            let moto = tokio::task::spawn_blocking(|| {
                let moto = sealtrail_testkit::s3::MotoServer::start()
                    .expect("moto_server (cargo xtask test installs it)");
                // The server reads its S3 settings where every S3 client does.
                for (name, value) in moto.env() {
                    // SAFETY: set before the server starts; no other thread of this
                    // test reads these variables concurrently (they name only moto).
                    unsafe { std::env::set_var(name, value) };
                }
                let settings = sealtrail_archive::s3::S3Settings::from_env().unwrap();
                sealtrail_archive::s3::S3Bucket::new(&settings, "archive")
                    .unwrap()
                    .create(false)
                    .unwrap();
                moto
            })
            .await
            .unwrap();
            ("s3://archive/log-a".to_owned(), Some(moto))
        }
    };
    let archive_dir = archive_text.clone();
    let archive = {
        let text = archive_text.clone();
        tokio::task::spawn_blocking(move || {
            sealtrail_archive::ArchiveLocation::parse(&text).unwrap()
        })
        .await
        .unwrap()
    };
    let (cluster, url) = match postgres {
        true => {
            let (cluster, url) = common::postgres_with_schema().await;
            (Some(cluster), Some(url))
        }
        false => (None, None),
    };
    let database_url = url.clone();
    let server = TestServer::start_with(move |c| {
        c.retention.overrides.push(payments_override());
        c.retention_run.archive_to = Some(archive_dir);
        c.retention_run.every_hours = 0;
        c.database_url = database_url;
    })
    .await;
    let store = match url {
        Some(url) => Store::Postgres(url),
        None => Store::Sqlite(server.dir.path().to_owned()),
    };
    let verifier = {
        let (_, view) = server
            .get(&server.key(&[Scope::Read], None), "/v1/public-key")
            .await;
        CheckpointVerifier::from_vkey(view["vkey"].as_str().unwrap()).unwrap()
    };
    let admin = server.key(&[Scope::Admin, Scope::Ingest, Scope::Read], None);
    let now = now_micros();
    let events: Vec<Value> = CASES.iter().map(|c| event(c, now)).collect();
    let (status, body) = server
        .post_json(&admin, "/v1/events", &json!({ "events": events }))
        .await;
    assert_eq!(status, 201, "{body}");
    let seqs = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    for hold in [
        json!({"tenant_id": "bloom", "resource_type": "guest", "resource_id": "guest-7", "reason": "dispute"}),
        json!({"tenant_id": "harbor", "reason": "litigation"}),
    ] {
        let (status, body) = server.post_json(&admin, "/v1/holds", &hold).await;
        assert_eq!(status, 201, "{body}");
    }
    Setup {
        _cluster: cluster,
        store,
        verifier,
        server,
        admin,
        seqs,
        archive,
        _moto: moto,
    }
}

/// seq → has an archived record, over every verified segment at `location`.
fn archived_records(
    location: &sealtrail_archive::ArchiveLocation,
    verifier: &CheckpointVerifier,
) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(segments) = location.list_segments() else {
        return out; // a directory not created yet: nothing archived
    };
    let report = location.verify(Some(verifier)).unwrap();
    assert!(
        report.segments.iter().all(|s| s.problem.is_none()),
        "{report:?}"
    );
    for located in segments {
        let segment = location.open_segment(&located, Some(verifier)).unwrap();
        for event in segment.events().unwrap() {
            let event = event.unwrap();
            out.insert(event.stored.seq, event.stored.record);
        }
    }
    out
}

/// seq → the hot store's record, if it still has the body.
fn hot_records(store: &Store, through: u64) -> BTreeMap<u64, Vec<u8>> {
    let reader = store.reader();
    let page = reader
        .events_after(0, through, &Default::default(), 10_000)
        .unwrap();
    page.events.into_iter().map(|e| (e.seq, e.record)).collect()
}

/// Every case is where `expect` says, byte for byte where it is in both places, and the
/// log still verifies.
fn check_cases(setup: &Setup, expect: impl Fn(usize) -> Expect) {
    // The PostgreSQL client blocks: off the async workers.
    tokio::task::block_in_place(|| check_cases_now(setup, expect))
}

fn check_cases_now(setup: &Setup, expect: impl Fn(usize) -> Expect) {
    let through = setup
        .store
        .reader()
        .latest_checkpoint()
        .unwrap()
        .unwrap()
        .tree_size;
    let hot = hot_records(&setup.store, through);
    let archived = archived_records(&setup.archive, &setup.verifier);
    for (i, seq) in setup.seqs.iter().enumerate() {
        let case = CASES[i];
        let found = match (hot.get(seq), archived.get(seq)) {
            (Some(_), None) => Expect::Hot,
            (None, Some(_)) => Expect::Archived,
            (Some(a), Some(b)) => {
                assert_eq!(a, b, "seq {seq}: the archived record is the hot one");
                Expect::ArchivedHeld
            }
            (None, None) => Expect::Deleted,
        };
        let wanted = expect(i);
        let found = match (wanted, found) {
            (Expect::Held, Expect::Hot) => Expect::Held,
            (_, f) => f,
        };
        assert_eq!(found, wanted, "case {i} {case:?} (seq {seq})");
    }
    let report = setup.store.verify(&setup.verifier);
    assert_eq!(report.problem, None, "the log still verifies");
}

async fn events_in(s: &TestServer, key: &str, tenant: &str, action: &str) -> Vec<Value> {
    let (status, page) = s
        .get(
            key,
            &format!("/v1/events?tenant_id={tenant}&action={action}&limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

fn count(e: Expect) -> u64 {
    CASES.iter().filter(|c| c.5 == e).count() as u64
}

/// A dry run, a run, and a second run, through the API.
async fn run_through_the_api(setup: &Setup) {
    let Setup {
        server,
        admin,
        seqs,
        ..
    } = setup;

    // A dry run reports and changes nothing.
    let (status, dry) = server
        .post_json(admin, "/v1/retention/run", &json!({"dry_run": true}))
        .await;
    assert_eq!(status, 200, "{dry}");
    let planned = |fate: &str| -> u64 {
        dry["plan"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[fate].as_u64().unwrap())
            .sum()
    };
    assert_eq!(planned("archive"), count(Expect::Archived), "{dry}");
    assert_eq!(
        planned("archive_held"),
        count(Expect::ArchivedHeld),
        "{dry}"
    );
    assert_eq!(planned("delete"), count(Expect::Deleted), "{dry}");
    assert_eq!(planned("held"), count(Expect::Held), "{dry}");
    check_cases(setup, |_| Expect::Hot);

    // A dry run may look at another moment; a run may not.
    let (status, refused) = server
        .post_json(
            admin,
            "/v1/retention/run",
            &json!({"at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["field"], "at", "{refused}");
    // A key bound to a tenant cannot run what spans every tenant.
    let bound = server.key(&[Scope::Admin], Some("bloom"));
    let (status, _) = server
        .post_json(&bound, "/v1/retention/run", &json!({}))
        .await;
    assert_eq!(status, 403);

    let (status, ran) = server
        .post_json(admin, "/v1/retention/run", &json!({}))
        .await;
    assert_eq!(status, 200, "{ran}");
    check_cases(setup, |i| CASES[i].5);
    assert!(
        !ran["segments_written"].as_array().unwrap().is_empty(),
        "{ran}"
    );

    // Hot reads no longer find what left the hot store.
    let (_, page) = server
        .get(
            admin,
            "/v1/events?tenant_id=bloom&resource_type=guest&resource_id=guest-3",
        )
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 0, "{page}");

    // With include_archived the archived events are found again, merged in order across
    // pages; deleted ones are not. An archived event by id comes with its proof.
    let mut archived_found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path =
            "/v1/events?tenant_id=bloom&action=guest.updated&include_archived=true&limit=2"
                .to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = server.get(admin, &path).await;
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            archived_found.push((
                e["occurred_at"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut wanted: Vec<u64> = CASES
        .iter()
        .zip(seqs.iter())
        .filter(|(c, _)| c.0 == "bloom" && c.5 != Expect::Deleted)
        .map(|(_, s)| *s)
        .collect();
    let mut got: Vec<u64> = archived_found.iter().map(|(_, s)| *s).collect();
    let mut sorted = archived_found.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(
        sorted, archived_found,
        "newest first across hot and archive"
    );
    wanted.sort();
    got.sort();
    got.dedup();
    assert_eq!(got, wanted, "every kept bloom event once");
    let archived_id = {
        let (_, page) = server
            .get(admin, "/v1/events?tenant_id=bloom&resource_type=guest&resource_id=guest-2&include_archived=true")
            .await;
        page["events"][0]["id"].as_str().unwrap().to_owned()
    };
    let (status, _) = server
        .get(admin, &format!("/v1/events/{archived_id}"))
        .await;
    assert_eq!(status, 404, "not in the hot store");
    let (status, proven) = server
        .get(
            admin,
            &format!("/v1/events/{archived_id}?include_archived=true"),
        )
        .await;
    assert_eq!(status, 200, "{proven}");
    assert_eq!(proven["event"]["resource_id"], "guest-2");
    assert!(proven["proof"]["hashes"].as_array().is_some(), "{proven}");

    // The run is in the log: bloom's counts in bloom, the totals in the server's tenant.
    let bloom = events_in(server, admin, "bloom", "retention.run").await;
    assert_eq!(bloom.len(), 1, "{bloom:?}");
    let details = &bloom[0]["details"];
    assert_eq!(details["deleted"], 3, "{details}");
    assert_eq!(details["archived"], 4, "{details}");
    assert_eq!(details["bodies_removed"], 3, "{details}");
    assert_eq!(details["held"], 1, "{details}");
    let totals = events_in(server, admin, "_sealtrail", "retention.run").await;
    assert_eq!(totals.len(), 1);
    assert_eq!(
        totals[0]["details"]["deleted"],
        count(Expect::Deleted),
        "{}",
        totals[0]
    );

    // A second run finds nothing more to do.
    let (status, again) = server
        .post_json(admin, "/v1/retention/run", &json!({}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["segments_written"], json!([]), "{again}");
    for t in again["tenants"].as_array().unwrap() {
        assert_eq!(t["archived"], 0, "{again}");
        assert_eq!(t["deleted"], 0, "{again}");
        assert_eq!(t["bodies_removed"], 0, "{again}");
    }
    check_cases(setup, |i| CASES[i].5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_archives_deletes_and_keeps_exactly_what_policies_and_holds_say() {
    run_through_the_api(&setup().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_archiving_to_s3_archives_deletes_and_keeps_the_same() {
    let setup = setup_on(false, true).await;
    run_through_the_api(&setup).await;
    tokio::task::block_in_place(|| {
        let ledger = setup.store.ledger();
        let report = run_at_now(&setup, &*ledger, now_micros() + 11 * 365 * DAY);
        check_cases_now(&setup, years_later);
        assert!(!report.segments_removed.is_empty(), "{report:?}");
        assert_eq!(
            setup.archive.list_segments().unwrap().len(),
            ledger.segments().unwrap().len(),
            "the bucket and the ledger agree"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_postgresql_archives_deletes_and_keeps_the_same() {
    let setup = setup_on(true, false).await;
    run_through_the_api(&setup).await;
    // Years on, with the clock under the test's control: only held events remain.
    let dropped = tokio::task::block_in_place(|| {
        let ledger = setup.store.ledger();
        let report = run_at_now(&setup, &*ledger, now_micros() + 11 * 365 * DAY);
        check_cases_now(&setup, years_later);
        // Months none of whose events is held are dropped whole; the log still verifies
        // (check_cases) from the leaf hashes the id table keeps.
        assert!(!report.partitions_dropped.is_empty(), "{report:?}");
        report.partitions_dropped[0].clone()
    });
    // The running server's sequencer remembered that month's partition; a back-dated
    // event for it still gets one.
    let (year, month) = dropped
        .strip_prefix("events_")
        .and_then(|ym| ym.split_once('_'))
        .unwrap_or_else(|| panic!("a partition name: {dropped}"));
    let occurred_at = format!("{year}-{month}-15T12:00:00Z");
    let late = json!({"tenant_id": "bloom", "action": "guest.imported", "resource_type": "guest",
                      "resource_id": "guest-late", "occurred_at": occurred_at});
    let (status, body) = setup
        .server
        .post_json(&setup.admin, "/v1/events", &json!({ "events": [late] }))
        .await;
    assert_eq!(status, 201, "{body}");
    let found = events_in(&setup.server, &setup.admin, "bloom", "guest.imported").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let at = found[0]["occurred_at"].as_str().unwrap();
    assert!(at.starts_with(&occurred_at[..19]), "{found:?}");
}

/// The run over the store, at a moment of the test's choosing.
fn run_at(setup: &Setup, ledger: &dyn RetentionLedger, now: i64) -> RunReport {
    tokio::task::block_in_place(|| run_at_now(setup, ledger, now))
}

fn run_at_now(setup: &Setup, ledger: &dyn RetentionLedger, now: i64) -> RunReport {
    let reader = setup.store.reader();
    // Where the server keeps its holds: in its data directory, or in the database.
    let holds_store = match &setup.store {
        Store::Sqlite(dir) => HoldStore::open(dir).unwrap(),
        Store::Postgres(url) => HoldStore::open_postgres(url, None).unwrap().0,
    };
    let holds = || -> Result<Box<dyn HoldCheck>, StoreError> {
        Ok(Box::new(ActiveHolds::load(&holds_store)?))
    };
    let mut policies = sealtrail_core::retention_policy::RetentionConfig::default();
    policies.overrides.push(payments_override());
    let cx = RunContext {
        reader: &*reader,
        ledger,
        policies: &policies,
        archive: Some(&setup.archive),
        zstd_level: 3,
        verifier: &setup.verifier,
        holds: &holds,
    };
    let checkpoint = reader.latest_checkpoint().unwrap().unwrap();
    run(&cx, now, &checkpoint, false, |_, _| {}).unwrap()
}

/// What 11 years leave: held events, nothing else.
fn years_later(i: usize) -> Expect {
    match CASES[i].5 {
        held @ (Expect::ArchivedHeld | Expect::Held) => held,
        _ => Expect::Deleted,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn years_later_only_held_events_remain_and_segments_go_with_their_events() {
    let setup = setup().await;
    let (status, body) = setup
        .server
        .post_json(&setup.admin, "/v1/retention/run", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let ledger = setup.store.ledger();
    // 11 years on: everything is past its retention, the payments included.
    let report = run_at(&setup, &*ledger, now_micros() + 11 * 365 * DAY);
    check_cases(&setup, years_later);
    // Every segment without a held event went; the held events' segments stayed.
    let left: Vec<SegmentUse> = ledger.segments().unwrap();
    assert!(left.iter().all(|s| s.live > 0), "{left:?}");
    assert!(!report.segments_removed.is_empty(), "{report:?}");
    let on_disk = setup.archive.list_segments().unwrap().len();
    assert_eq!(on_disk, left.len(), "files and ledger agree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_event_deleted_past_retention_is_not_read_from_its_segment() {
    let setup = setup().await;
    let (server, admin) = (&setup.server, &setup.admin);
    let (status, body) = server
        .post_json(admin, "/v1/retention/run", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let path =
        "/v1/events?tenant_id=bloom&resource_type=guest&resource_id=guest-2&include_archived=true";
    let (_, page) = server.get(admin, path).await;
    let archived = page["events"][0].clone();
    let (id, seq) = (
        archived["id"].as_str().unwrap().to_owned(),
        archived["seq"].as_u64().unwrap(),
    );
    // As a later run does for an event past its retention.
    let ledger = setup.store.ledger();
    let deleted = tokio::task::block_in_place(|| ledger.mark_deleted(&[seq], now_micros()));
    assert_eq!(deleted.unwrap(), 1);
    // Its segment is still there: until a run removes it (or for good, when it holds
    // events not yet deleted).
    assert!(
        !tokio::task::block_in_place(|| setup.archive.list_segments())
            .unwrap()
            .is_empty()
    );
    let (status, page) = server.get(admin, path).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["seq"] != seq),
        "{page}"
    );
    let (status, body) = server
        .get(admin, &format!("/v1/events/{id}?include_archived=true"))
        .await;
    assert_eq!(status, 404, "{body}");
}

/// A ledger that fails (as a crash would) at its `fail_at`-th change, then always.
struct CrashingLedger<'a> {
    inner: &'a dyn RetentionLedger,
    changes: std::sync::atomic::AtomicUsize,
    fail_at: usize,
}

impl CrashingLedger<'_> {
    fn step(&self) -> Result<(), StoreError> {
        let n = self
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match n >= self.fail_at {
            true => Err(StoreError::Invalid("crashed".into())),
            false => Ok(()),
        }
    }
}

impl RetentionLedger for CrashingLedger<'_> {
    fn rows(&self, after: u64, through: u64, limit: usize) -> Result<Vec<LedgerRow>, StoreError> {
        self.inner.rows(after, through, limit)
    }
    fn records(&self, seqs: &[u64]) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.records(seqs)
    }
    fn mark_archived(&self, stem: &str, seqs: &[u64]) -> Result<(), StoreError> {
        self.step()?;
        self.inner.mark_archived(stem, seqs)
    }
    fn remove_bodies(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError> {
        self.step()?;
        self.inner.remove_bodies(seqs, at)
    }
    fn mark_deleted(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError> {
        self.step()?;
        self.inner.mark_deleted(seqs, at)
    }
    fn deleted_among(&self, seqs: &[u64]) -> Result<std::collections::HashSet<u64>, StoreError> {
        self.inner.deleted_among(seqs)
    }
    fn segments(&self) -> Result<Vec<SegmentUse>, StoreError> {
        self.inner.segments()
    }
    fn forget_segment(&self, stem: &str) -> Result<(), StoreError> {
        self.step()?;
        self.inner.forget_segment(stem)
    }
    fn drop_expired_storage(&self) -> Result<Vec<String>, StoreError> {
        self.step()?;
        self.inner.drop_expired_storage()
    }
}

/// A run at `now` whose ledger fails at its `fail_at`-th change; whether it was cut off.
fn cut_off_run(setup: &Setup, ledger: &dyn RetentionLedger, fail_at: usize, now: i64) -> bool {
    let crashing = CrashingLedger {
        inner: ledger,
        changes: 0.into(),
        fail_at,
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_at(setup, &crashing, now)
    }))
    .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_at_any_step_loses_nothing_and_the_next_run_completes_it() {
    for fail_at in 0..6 {
        let setup = setup().await;
        let ledger = setup.store.ledger();
        let now = now_micros();
        assert!(
            cut_off_run(&setup, &*ledger, fail_at, now),
            "fail_at {fail_at}: the run was cut off"
        );
        // Cut off: nothing is gone that is not archived.
        let through = setup
            .store
            .reader()
            .latest_checkpoint()
            .unwrap()
            .unwrap()
            .tree_size;
        let hot = hot_records(&setup.store, through);
        let archived = archived_records(&setup.archive, &setup.verifier);
        for (i, seq) in setup.seqs.iter().enumerate() {
            if CASES[i].5 != Expect::Deleted {
                assert!(
                    hot.contains_key(seq) || archived.contains_key(seq),
                    "fail_at {fail_at}: case {i} is neither hot nor archived"
                );
            }
        }
        // The next run completes the job.
        let report = run_at(&setup, &*ledger, now);
        check_cases(&setup, |i| CASES[i].5);
        if fail_at == 0 {
            assert!(!report.segments_adopted.is_empty(), "{report:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecorded_segment_that_cannot_be_read_stops_the_run_and_a_copy_is_removed() {
    let setup = setup().await;
    let ledger = setup.store.ledger();
    let now = now_micros();
    assert!(
        cut_off_run(&setup, &*ledger, 0, now),
        "cut off between publishing and recording"
    );
    let published = tokio::task::block_in_place(|| setup.archive.list_segments()).unwrap();
    assert_eq!(published.len(), 1, "{published:?}");
    let manifest = std::path::PathBuf::from(&published[0].shown);
    let file =
        std::path::PathBuf::from(published[0].shown.replace(".manifest.json", ".ndjson.zst"));
    let aside = |p: &std::path::Path| p.with_extension("aside");

    // Unreadable for now (a directory where the file was): the run stops rather than
    // archive those events a second time.
    std::fs::rename(&file, aside(&file)).unwrap();
    std::fs::create_dir(&file).unwrap();
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_at(&setup, &*ledger, now + 2_000_000)
    }));
    assert!(
        stopped.is_err(),
        "the run stops on an archive it cannot read"
    );
    let recorded = tokio::task::block_in_place(|| ledger.segments()).unwrap();
    assert!(recorded.is_empty(), "nothing archived again: {recorded:?}");
    std::fs::remove_dir(&file).unwrap();
    std::fs::rename(aside(&file), &file).unwrap();

    // A run that does not see it (its manifest away) archives the events again...
    std::fs::rename(&manifest, aside(&manifest)).unwrap();
    run_at(&setup, &*ledger, now + 4_000_000);
    std::fs::rename(aside(&manifest), &manifest).unwrap();
    // ...and the next run finds the first segment a copy of what is recorded: removed.
    let report = run_at(&setup, &*ledger, now + 6_000_000);
    let stem = published[0]
        .manifest_name
        .trim_end_matches(".manifest.json");
    assert_eq!(report.segments_removed, vec![stem.to_owned()], "{report:?}");
    assert!(report.segments_adopted.is_empty(), "{report:?}");
    assert!(!manifest.exists() && !file.exists());
    let again = run_at(&setup, &*ledger, now + 8_000_000);
    assert!(
        again.segments_removed.is_empty() && again.segments_adopted.is_empty(),
        "{again:?}"
    );
    check_cases(&setup, |i| CASES[i].5);
}
