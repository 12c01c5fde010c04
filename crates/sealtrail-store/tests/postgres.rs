//! What only the PostgreSQL store has: month partitions, query plans on the partitioned
//! table, the schema version check, and `verify` against edits made with SQL behind the
//! server's back (the same kinds of tampering the SQLite tests make with the file).

mod common;

use common::{Kind, TestDatabase, TestLog, event};
use sealtrail_core::query::PageRequest;
use sealtrail_store::Finding;
use sealtrail_store::postgres::{PgReader, verify_postgres};
use serde_json::json;

/// A stopped log of 600 events (two full level-8 Merkle nodes) in its own database.
fn stopped_log() -> (TestDatabase, sealtrail_core::CheckpointVerifier) {
    let mut log = TestLog::on(Kind::Postgres);
    for chunk in (0..600u64).collect::<Vec<_>>().chunks(150) {
        log.append(chunk.iter().map(|&n| event(n)).collect());
    }
    let verifier = log.verifier.clone();
    let database = log.database.take().unwrap();
    drop(log);
    (database, verifier)
}

fn verify(db: &TestDatabase, verifier: &sealtrail_core::CheckpointVerifier) -> Option<Finding> {
    verify_postgres(&db.url, verifier, None, |_, _| {})
        .unwrap()
        .problem
}

#[test]
fn an_untouched_log_verifies() {
    let (db, verifier) = stopped_log();
    let report = verify_postgres(&db.url, &verifier, None, |_, _| {}).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.events, 600);
}

/// A client that bypasses the log's triggers, as a superuser tampering with it can.
fn forger(db: &TestDatabase) -> postgres::Client {
    let mut client = db.client();
    client
        .batch_execute("SET session_replication_role = replica")
        .unwrap();
    client
}

#[test]
fn the_log_refuses_updates_other_than_removing_a_body() {
    let (db, _) = stopped_log();
    let err = db
        .client()
        .execute(
            "UPDATE events SET record = replace(convert_from(record, 'UTF8'), 'coord-3', 'coord-4')::bytea
             WHERE seq = 123",
            &[],
        )
        .unwrap_err();
    let message = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("append-only"), "{err:?}");
}

#[test]
fn an_edited_record_is_found_at_its_seq() {
    let (db, verifier) = stopped_log();
    forger(&db)
        .execute(
            "UPDATE events SET record = replace(convert_from(record, 'UTF8'), 'coord-3', 'coord-4')::bytea
             WHERE seq = 123",
            &[],
        )
        .unwrap();
    let finding = verify(&db, &verifier).expect("found");
    assert_eq!(finding.seq(), Some(123), "{finding}");
}

#[test]
fn an_edited_column_is_found() {
    let (db, verifier) = stopped_log();
    forger(&db)
        .execute(
            "UPDATE events SET tenant_id = 'lakeside' WHERE seq = 77 AND tenant_id <> 'lakeside'",
            &[],
        )
        .unwrap();
    forger(&db)
        .execute(
            "UPDATE events SET tenant_id = 'bloom' WHERE seq = 77 AND tenant_id = 'lakeside'",
            &[],
        )
        .unwrap();
    let finding = verify(&db, &verifier).expect("found");
    assert!(
        matches!(
            finding,
            Finding::ColumnMismatch {
                seq: 77,
                column: "tenant_id",
                ..
            }
        ),
        "{finding}"
    );
}

#[test]
fn a_deleted_event_is_found() {
    let (db, verifier) = stopped_log();
    db.client()
        .execute("DELETE FROM events WHERE seq = 300", &[])
        .unwrap();
    let finding = verify(&db, &verifier).expect("found");
    assert!(
        matches!(finding, Finding::Missing { seq: 300, .. }),
        "{finding}"
    );
}

#[test]
fn an_event_deleted_from_a_partition_that_stays_is_found_whatever_the_ledger_says() {
    let (db, verifier) = stopped_log();
    // Retention drops whole partitions; a forger who deletes one row and writes the
    // ledger row a run would have written is still found.
    db.client()
        .batch_execute(
            "INSERT INTO retention (seq, deleted_at) VALUES (300, 1);
             DELETE FROM events WHERE seq = 300",
        )
        .unwrap();
    let finding = verify(&db, &verifier).expect("found");
    assert!(
        matches!(finding, Finding::Missing { seq: 300, ref detail } if detail.contains("dropped partition")),
        "{finding}"
    );
}

#[test]
fn an_id_pointing_elsewhere_is_found() {
    let (db, verifier) = stopped_log();
    db.client()
        .execute(
            "UPDATE event_ids SET leaf_hash = (SELECT leaf_hash FROM events WHERE seq = 2)
             WHERE seq = 5",
            &[],
        )
        .unwrap();
    let finding = verify(&db, &verifier).expect("found");
    assert!(
        matches!(
            finding,
            Finding::ColumnMismatch {
                seq: 5,
                column: "event_ids",
                ..
            }
        ),
        "{finding}"
    );
}

#[test]
fn an_appended_event_without_a_signed_checkpoint_is_found() {
    let (db, verifier) = stopped_log();
    // A forger copies the last event to seq 601 (the leaf hash is even right for the bytes).
    db.client()
        .batch_execute(
            "INSERT INTO events (seq, id, tenant_id, occurred_at, received_at, severity, action,
                                 user_id, resource_type, resource_id, content_hash, leaf_hash, record)
             SELECT 601, gen_random_uuid(), tenant_id, occurred_at, received_at, severity, action,
                    user_id, resource_type, resource_id, content_hash, leaf_hash, record
             FROM events WHERE seq = 600",
        )
        .unwrap();
    let finding = verify(&db, &verifier).expect("found");
    assert_eq!(finding.seq(), Some(601), "{finding}");
}

#[test]
fn months_get_partitions_of_their_own_when_events_arrive() {
    let log = TestLog::on(Kind::Postgres);
    let mut old = event(1);
    old["occurred_at"] = json!("2019-03-04T05:06:07Z");
    let mut later = event(2);
    later["occurred_at"] = json!("2025-12-31T23:59:59Z");
    log.append(vec![old, event(3), later]);
    let db = log.database.as_ref().unwrap();
    let placed: Vec<(String, i64)> = db
        .client()
        .query(
            "SELECT tableoid::regclass::text, seq FROM events ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        placed,
        vec![
            ("events_2019_03".to_owned(), 1),
            ("events_2026_11".to_owned(), 2),
            ("events_2025_12".to_owned(), 3),
        ]
    );
}

/// The query API's common shapes read index ranges: no sequential scan of any partition.
#[test]
fn common_queries_use_indexes_not_sequential_scans() {
    let log = TestLog::on(Kind::Postgres);
    for chunk in (0..3000u64).collect::<Vec<_>>().chunks(500) {
        log.append(chunk.iter().map(|&n| event(n)).collect());
    }
    let db = log.database.as_ref().unwrap();
    let mut client = db.client();
    client.batch_execute("ANALYZE").unwrap();
    let queries = [
        "SELECT seq FROM events WHERE tenant_id = 'bloom' ORDER BY occurred_at DESC, seq DESC LIMIT 101",
        "SELECT seq FROM events WHERE tenant_id = 'bloom' AND severity = 3 AND occurred_at >= 0 AND occurred_at < 9999999999999999 ORDER BY occurred_at DESC, seq DESC LIMIT 1001",
        "SELECT seq FROM events WHERE tenant_id = 'bloom' AND action = 'vendor.added' ORDER BY occurred_at DESC, seq DESC LIMIT 101",
        "SELECT seq FROM events WHERE tenant_id = 'bloom' AND user_id = 'coord-3' ORDER BY occurred_at DESC, seq DESC LIMIT 101",
        "SELECT seq FROM events WHERE tenant_id = 'bloom' AND resource_type = 'guest' AND resource_id = '4' ORDER BY occurred_at DESC, seq DESC LIMIT 101",
        "SELECT seq FROM events WHERE seq > 100 AND seq <= 50100 ORDER BY seq LIMIT 500",
    ];
    // On a small table scanning and sorting are rightly cheaper; make them look expensive
    // to see the plan a large table gets: an index range read in order, per partition.
    client
        .batch_execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off",
        )
        .unwrap();
    for sql in queries {
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {sql}"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
        let sorts = plan.lines().any(|line| {
            let node = line.trim_start().trim_start_matches("->").trim_start();
            node.starts_with("Sort  (") || node.starts_with("Incremental Sort  (")
        });
        assert!(!sorts, "read in index order: {sql}\n{plan}");
    }
    // And the reader's own SQL for a filtered page returns the right page.
    let reader = PgReader::open(&db.url).unwrap();
    let page = PageRequest::from_params([("tenant_id", "bloom"), ("severity", "warning")]).unwrap();
    use sealtrail_store::LogReader as _;
    assert!(!reader.query(&page).unwrap().events.is_empty());
}

#[test]
fn the_server_refuses_a_schema_it_does_not_know() {
    let db = TestDatabase::create();
    let mut client = db.client();
    client
        .execute("INSERT INTO sealtrail_schema (version) VALUES (99)", &[])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let refused = sealtrail_store::postgres::open_log(&db.url, dir.path(), None)
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("newer Sealtrail"), "{refused}");
    let refused = sealtrail_store::postgres::migrate(&mut client).expect_err("migrate refuses too");
    assert!(refused.to_string().contains("schema 99"), "{refused}");
}

/// Row-level security: a tenant-scoped read cannot see another tenant's rows even when its
/// SQL forgets the tenant filter.
/// A role that is not a superuser (superusers bypass row-level security), granted what
/// the service needs; its connection URL.
fn service_role(db: &TestDatabase) -> String {
    let mut admin = db.client();
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE sealtrail_app LOGIN;
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .unwrap();
    sealtrail_store::postgres::grant_service_role(&mut admin, "sealtrail_app").unwrap();
    format!("{} user=sealtrail_app", db.url)
}

#[test]
fn a_tenant_scoped_read_sees_only_its_tenant_even_without_a_filter() {
    let log = TestLog::on(Kind::Postgres);
    log.append((0..30).map(event).collect());
    let db = log.database.as_ref().unwrap();
    // The service role connects; tenant-confined reads switch to sealtrail_tenant_reader.
    let reader = PgReader::open(&service_role(db)).unwrap();
    let tenants = |scope: Option<&str>, table: &str| -> Vec<String> {
        reader
            .scoped_query(
                scope,
                &format!("SELECT DISTINCT tenant_id FROM {table} ORDER BY 1"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(
        tenants(None, "events"),
        ["bloom", "golden-hour", "lakeside"]
    );
    assert_eq!(tenants(Some("bloom"), "events"), ["bloom"]);
    assert_eq!(tenants(Some("bloom"), "event_ids"), ["bloom"]);
    // Through the query API's path: a scope and another tenant's filter find nothing.
    let mut page = PageRequest::from_params([("tenant_id", "lakeside")]).unwrap();
    page.scope = Some("bloom".into());
    use sealtrail_store::LogReader as _;
    assert!(reader.query(&page).unwrap().events.is_empty());
}

#[test]
fn the_service_role_can_append_and_read_but_never_change_or_delete_an_event() {
    let db = TestDatabase::create();
    let app_url = service_role(&db);
    let dir = tempfile::tempdir().unwrap();
    let (backend, signer) =
        sealtrail_store::postgres::open_log(&app_url, dir.path(), None).unwrap();
    let (handle, thread) = sealtrail_store::Sequencer::spawn(
        backend,
        signer,
        sealtrail_store::SequencerConfig::default(),
        Default::default(),
    )
    .unwrap();
    // Appends work, including one that needs a new month partition.
    let mut old = event(1);
    old["occurred_at"] = json!("2020-02-02T02:02:02Z");
    handle
        .append_blocking(vec![common::prepare(event(0)), common::prepare(old)])
        .unwrap();
    handle
        .append_blocking((2..12).map(|n| common::prepare(event(n))).collect())
        .unwrap();
    drop(handle);
    thread.join().unwrap();
    let mut app = postgres::Client::connect(&app_url, postgres::NoTls).unwrap();
    // The sequencer superseded its checkpoints through the one function allowed to:
    // the empty tree's (history) and the newest are left.
    let sizes: Vec<i64> = app
        .query("SELECT tree_size FROM checkpoints ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sizes, [0, 12]);
    let count: i64 = app
        .query_one("SELECT count(*) FROM events", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 12);
    for statement in [
        "UPDATE events SET tenant_id = 'x' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 1",
        "UPDATE event_ids SET seq = 99 WHERE seq = 1",
        "DELETE FROM event_ids",
        "TRUNCATE events",
        "UPDATE merkle_nodes SET hash = ''::bytea",
        // Nor roll the signed tree head back.
        "DELETE FROM checkpoints",
        "TRUNCATE checkpoints",
        "UPDATE checkpoints SET history = false",
        "SELECT sealtrail_supersede_checkpoint((SELECT max(tree_size) FROM checkpoints))",
        "SELECT sealtrail_supersede_checkpoint(0)",
    ] {
        let refused = app.batch_execute(statement).unwrap_err();
        assert_eq!(
            refused.code(),
            Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {refused}"
        );
    }
    // The service role can back the log up: every tenant's rows (it bypasses row-level
    // security). A role that row-level security would confine gets an error, never a
    // backup missing rows.
    let copies = tempfile::tempdir().unwrap();
    let dump =
        sealtrail_store::postgres::dump_postgres(&app_url, copies.path(), |_, _| {}).unwrap();
    let events = dump.tables.iter().find(|t| t.name == "events").unwrap();
    assert_eq!((dump.tree_size, events.rows), (12, 12));
    db.client()
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE sealtrail_confined LOGIN;
             EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO sealtrail_confined",
        )
        .unwrap();
    let confined = format!("{} user=sealtrail_confined", db.url);
    let copies = tempfile::tempdir().unwrap();
    let error =
        sealtrail_store::postgres::dump_postgres(&confined, copies.path(), |_, _| {}).unwrap_err();
    assert!(error.to_string().contains("row-level security"), "{error}");
}

/// The relations in a database's public schema.
fn relations(db: &TestDatabase) -> Vec<String> {
    db.client()
        .query(
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A dump holds the log up to its newest checkpoint and no further (a row past it is of no
/// signed tree), leaves the generated column out, and restores into an empty database
/// that then verifies; a table a later migration added is in the dump too, and a build
/// whose migrations do not create it refuses the restore and leaves the database empty.
#[test]
fn a_dump_is_cut_at_its_checkpoint_and_holds_every_table_of_the_schema() {
    use sealtrail_store::postgres::{dump_postgres, restore_postgres};
    let (db, verifier) = stopped_log();
    // An event row with no checkpoint over it (as a writer's uncommitted row would be).
    db.client()
        .execute(
            "INSERT INTO events (seq, id, tenant_id, occurred_at, received_at, severity, action,
                                 user_id, resource_type, resource_id, content_hash, leaf_hash, record)
             SELECT 601, gen_random_uuid(), tenant_id, occurred_at, received_at, severity, action,
                    user_id, resource_type, resource_id, content_hash, leaf_hash, record
             FROM events WHERE seq = 600",
            &[],
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dump = dump_postgres(&db.url, dir.path(), |_, _| {}).unwrap();
    assert_eq!(dump.tree_size, 600);
    let rows = |name: &str| dump.tables.iter().find(|t| t.name == name).map(|t| t.rows);
    assert_eq!(rows("events"), Some(600));
    assert_eq!(rows("event_ids"), Some(600));
    assert_eq!(rows("merkle_nodes"), Some(2));
    assert_eq!(
        rows("sealtrail_schema"),
        None,
        "the restore's migrations write it"
    );
    let events = dump.tables.iter().find(|t| t.name == "events").unwrap();
    assert!(!events.columns.contains(&"details".to_owned()), "generated");
    assert!(events.columns.contains(&"record".to_owned()));

    let target = TestDatabase::create_empty();
    let report = restore_postgres(&target.url, &dump, dir.path(), &verifier, |_| {}).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.events, 600);
    let again = verify_postgres(&target.url, &verifier, Some(&dump.checkpoint), |_, _| {}).unwrap();
    assert_eq!((again.problem, again.events), (None, 600));

    // A table added after this build's migrations (another feature's, say).
    db.client()
        .batch_execute(
            "CREATE TABLE retention_runs (id bigserial PRIMARY KEY, note text NOT NULL);
             INSERT INTO retention_runs (note) VALUES ('a'), ('b'), ('c')",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dump = dump_postgres(&db.url, dir.path(), |_, _| {}).unwrap();
    let runs = dump
        .tables
        .iter()
        .find(|t| t.name == "retention_runs")
        .unwrap();
    assert_eq!(
        (runs.rows, runs.columns.clone()),
        (3, vec!["id".into(), "note".into()])
    );
    let target = TestDatabase::create_empty();
    let error = restore_postgres(&target.url, &dump, dir.path(), &verifier, |_| {}).unwrap_err();
    assert!(error.to_string().contains("retention_runs"), "{error}");
    assert_eq!(
        relations(&target),
        Vec::<String>::new(),
        "nothing left behind"
    );
}

#[test]
fn api_keys_are_shared_by_every_server_and_the_service_role_cannot_rewrite_one() {
    use sealtrail_core::Scope;
    use sealtrail_store::ApiKeyStore;
    let db = TestDatabase::create();
    let app_url = service_role(&db);
    // A data directory with keys made before the move to PostgreSQL: copied in once.
    let dir = tempfile::tempdir().unwrap();
    let local = ApiKeyStore::open(dir.path()).unwrap();
    let (old, old_secret) = local.create(&[Scope::Ingest], Some("bloom"), None).unwrap();
    let (revoked, revoked_secret) = local.create(&[Scope::Read], None, None).unwrap();
    local.revoke(&revoked.key_id).unwrap();
    let (one, imported) = ApiKeyStore::open_postgres(&app_url, Some(dir.path())).unwrap();
    assert_eq!(imported, 2);
    let (two, imported) = ApiKeyStore::open_postgres(&app_url, Some(dir.path())).unwrap();
    assert_eq!(
        imported, 0,
        "the database has keys: nothing is copied again"
    );
    assert!(two.authenticate(&old_secret).unwrap().is_some());
    assert!(
        two.authenticate(&revoked_secret).unwrap().is_none(),
        "a revocation comes along"
    );

    // Made on one server, seen by the other; revoked there, refused here within the recheck.
    let (key, secret) = one.create(&[Scope::Admin], None, Some("ops")).unwrap();
    // An unknown key makes the other server look again, at most every PG_MISS_RECHECK.
    std::thread::sleep(sealtrail_store::keys::PG_MISS_RECHECK);
    assert_eq!(
        two.authenticate(&secret).unwrap().unwrap().key_id,
        key.key_id
    );
    assert!(two.revoke(&key.key_id).unwrap());
    assert!(
        two.authenticate(&secret).unwrap().is_none(),
        "at once where revoked"
    );
    std::thread::sleep(sealtrail_store::keys::PG_RECHECK + std::time::Duration::from_millis(50));
    assert!(
        one.authenticate(&secret).unwrap().is_none(),
        "within the recheck elsewhere"
    );
    let (rotated, new_secret) = one.rotate(&old.key_id, Some(60_000_000)).unwrap().unwrap();
    assert!(two.get(&rotated.key_id).unwrap().is_some());
    std::thread::sleep(sealtrail_store::keys::PG_RECHECK + std::time::Duration::from_millis(50));
    assert!(two.authenticate(&new_secret).unwrap().is_some());

    // The service role may add keys and revoke or expire them, nothing else.
    refused_to_the_service_role(
        &app_url,
        &[
            "DELETE FROM api_keys",
            "UPDATE api_keys SET scopes = 'admin'",
            "UPDATE api_keys SET tenant_id = NULL",
            "UPDATE api_keys SET secret_hash = secret_hash",
        ],
    );
}

#[test]
fn data_keys_are_shared_and_a_destroyed_one_never_comes_back() {
    use sealtrail_core::FieldSealer as _;
    use sealtrail_crypto::{DataKeyStore, EncryptionSettings, FieldCipher};
    use sealtrail_store::data_keys::{PgDataKeyStore, SqliteDataKeyStore};
    let db = TestDatabase::create();
    let app_url = service_role(&db);
    let settings = || EncryptionSettings {
        previous_master_keys: Vec::new(),
        master_key: [7; 32],
        fields: vec!["ip_address".into()],
        subject: Some("/user_id".into()),
        blind_index: Vec::new(),
    };
    // Keys kept in a data directory before the move: copied in, so old values open.
    let dir = tempfile::tempdir().unwrap();
    let old = FieldCipher::new(
        settings(),
        Box::new(SqliteDataKeyStore::open(dir.path()).unwrap()),
    )
    .unwrap();
    let sealed_before = old
        .seal("acme", Some("coord:ines"), "ip_address", "\"203.0.113.7\"")
        .unwrap();
    drop(old);
    let (keys, imported) = PgDataKeyStore::open(&app_url, Some(dir.path())).unwrap();
    assert_eq!(imported, 2, "the root key and ines's");
    assert!(
        !dir.path().join("data-keys.sqlite").exists(),
        "no copy is left to outlive a shredding"
    );
    let one = FieldCipher::new(settings(), Box::new(keys)).unwrap();
    let two = FieldCipher::new(
        settings(),
        Box::new(PgDataKeyStore::open(&app_url, None).unwrap().0),
    )
    .unwrap();
    let opened = |c: &FieldCipher, sealed: &str| {
        let record = format!("{{\"ip_address\":\"{sealed}\",\"tenant_id\":\"acme\"}}");
        let stored = sealtrail_core::StoredEvent {
            seq: 1,
            tenant_id: "acme".into(),
            occurred_at: 0,
            leaf_hash: [0; 32],
            record: record.into_bytes(),
        };
        let json: serde_json::Value = serde_json::from_slice(&c.open_api_json(&stored)).unwrap();
        json["ip_address"].clone()
    };
    assert_eq!(opened(&two, &sealed_before), "203.0.113.7");
    // Sealed on one server, opened on the other (one key per subject, not one per server).
    let sealed = two
        .seal("acme", Some("coord:tom"), "ip_address", "\"198.51.100.9\"")
        .unwrap();
    assert_eq!(opened(&one, &sealed), "198.51.100.9");

    // Shredded on one: the other drops its cached keys once it sees the count change.
    let mut seen = None;
    two.forget_keys_if_shredded(&mut seen).unwrap();
    assert_eq!(opened(&two, &sealed), "198.51.100.9");
    assert!(one.shred("acme", Some("coord:tom")).unwrap());
    assert_eq!(
        opened(&two, &sealed),
        "198.51.100.9",
        "cached until it looks"
    );
    assert!(two.forget_keys_if_shredded(&mut seen).unwrap());
    assert_eq!(opened(&two, &sealed), sealtrail_crypto::SHREDDED);
    assert!(
        !two.forget_keys_if_shredded(&mut seen).unwrap(),
        "nothing new"
    );

    // The master key rotated: the service role may wrap live keys again, by a new key.
    let rotating = FieldCipher::new(
        EncryptionSettings {
            master_key: [9; 32],
            previous_master_keys: vec![[7; 32]],
            ..settings()
        },
        Box::new(PgDataKeyStore::open(&app_url, None).unwrap().0),
    )
    .unwrap();
    let report = rotating.rewrap_under_current_master().unwrap();
    assert_eq!((report.rewrapped, report.already), (2, 0), "{report:?}");
    let rotated = FieldCipher::new(
        EncryptionSettings {
            master_key: [9; 32],
            ..settings()
        },
        Box::new(PgDataKeyStore::open(&app_url, None).unwrap().0),
    )
    .unwrap();
    assert_eq!(opened(&rotated, &sealed_before), "203.0.113.7");

    // A second filing of a key id is refused quietly (the caller takes the first).
    let store = PgDataKeyStore::open(&app_url, None).unwrap().0;
    let key = sealtrail_crypto::NewDataKey {
        key_id: "t/other#1",
        base: "t/other",
        generation: 1,
        wrapped: &[1; 60],
        created_at: 0,
    };
    assert!(store.insert(&key).unwrap());
    assert!(!store.insert(&key).unwrap());

    // The service role may file and destroy keys, never restore, rewrite or delete one.
    refused_to_the_service_role(
        &app_url,
        &[
            "DELETE FROM data_keys",
            "UPDATE data_keys SET wrapped = '\\x00'::bytea WHERE shredded_at IS NOT NULL",
            "UPDATE data_keys SET shredded_at = NULL WHERE shredded_at IS NOT NULL",
            "UPDATE data_keys SET base = 't/x'",
        ],
    );
}

#[test]
fn holds_are_shared_merged_from_each_server_and_only_ever_released() {
    use sealtrail_core::holds::Hold;
    use sealtrail_store::holds::{HoldStore, Release};
    let db = TestDatabase::create();
    let app_url = service_role(&db);
    let hold = |id: &str| Hold {
        id: id.into(),
        tenant: "bloom".into(),
        resource_type: Some("guest".into()),
        resource_id: Some("guest-7".into()),
        reason: "dispute".into(),
        placed_by: "k1".into(),
        placed_at: 1,
        release: None,
    };
    // Two servers that kept holds in their data directories: both are merged in.
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    HoldStore::open(one_dir.path())
        .unwrap()
        .place(&hold("h1"))
        .unwrap();
    let local_two = HoldStore::open(two_dir.path()).unwrap();
    local_two.place(&hold("h2")).unwrap();
    local_two.release("h2", "k2", "settled", 5).unwrap();
    drop(local_two);
    let (one, merged) = HoldStore::open_postgres(&app_url, Some(one_dir.path())).unwrap();
    assert_eq!(merged, 1);
    let (two, merged) = HoldStore::open_postgres(&app_url, Some(two_dir.path())).unwrap();
    assert_eq!(merged, 1);
    assert_eq!(
        HoldStore::open_postgres(&app_url, Some(two_dir.path()))
            .unwrap()
            .1,
        0
    );
    assert_eq!(
        two.covering("bloom", "guest", Some("guest-7"))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(one.list(None, true).unwrap().len(), 2);
    // Placed on one, released on the other, released once.
    two.place(&hold("h3")).unwrap();
    assert!(one.place(&hold("h3")).is_err(), "an id is taken once");
    assert!(matches!(
        one.release("h3", "k1", "done", 9).unwrap(),
        Release::Released(_)
    ));
    assert!(matches!(
        two.release("h3", "k2", "again", 10).unwrap(),
        Release::AlreadyReleased(_)
    ));
    assert_eq!(
        two.get("h3").unwrap().unwrap().release.unwrap().reason,
        "done"
    );
    // The service role can place and release, never delete, rewrite or un-release one.
    refused_to_the_service_role(
        &app_url,
        &[
            "DELETE FROM holds",
            "UPDATE holds SET released_at = NULL, released_by = NULL, release_reason = NULL WHERE id = 'h3'",
            "UPDATE holds SET tenant_id = 'other'",
        ],
    );
}

/// Each statement, run as the service role at `app_url`, is refused for lack of privilege.
fn refused_to_the_service_role(app_url: &str, statements: &[&str]) {
    let mut app = postgres::Client::connect(app_url, postgres::NoTls).unwrap();
    for sql in statements {
        let err = app.batch_execute(sql).unwrap_err();
        assert_eq!(
            err.code(),
            Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
}

fn blind_entry(
    tenant: &str,
    token: &str,
    seq: u64,
    subject: Option<&str>,
) -> sealtrail_crypto::BlindEntry {
    sealtrail_crypto::BlindEntry {
        tenant: tenant.into(),
        field: "/details/guest/email".into(),
        token: token.into(),
        seq,
        subject_tag: subject.map(str::to_owned),
    }
}

#[test]
fn the_blind_index_in_postgres_is_one_for_every_server_and_a_shredding_empties_it_for_all() {
    use sealtrail_crypto::BlindIndexStore as _;
    use sealtrail_store::blind_index::PgBlindIndex;
    let (db, _) = stopped_log();
    let url = service_role(&db);
    // Two servers' indexers, through the service role.
    let (a, b) = (PgBlindIndex::open(&url), PgBlindIndex::open(&url));
    let entries = [
        blind_entry("acme", "t1", 3, Some("s1")),
        blind_entry("acme", "t1", 9, Some("s2")),
        blind_entry("acme", "t2", 4, Some("s1")),
        blind_entry("globex", "t1", 5, None),
    ];
    a.add(&entries, 10).unwrap();
    // The other indexer read the same log: its entries are kept once, the cursor only
    // moves forwards.
    b.add(&entries[..2], 9).unwrap();
    assert_eq!(b.cursor().unwrap(), 10);
    assert_eq!(
        b.find("acme", "/details/guest/email", "t1", 10).unwrap(),
        [9, 3]
    );
    assert_eq!(
        b.find("acme", "/details/guest/email", "t1", 1).unwrap(),
        [9]
    );
    assert_eq!(
        b.find("acme", "/other", "t1", 10).unwrap(),
        Vec::<u64>::new()
    );
    // A subject shredded through one server is gone from the other's searches.
    a.forget("acme", Some("s1")).unwrap();
    assert_eq!(
        b.find("acme", "/details/guest/email", "t1", 10).unwrap(),
        [9]
    );
    assert_eq!(
        b.find("acme", "/details/guest/email", "t2", 10).unwrap(),
        Vec::<u64>::new()
    );
    a.forget("acme", None).unwrap();
    assert_eq!(
        b.find("acme", "/details/guest/email", "t1", 10).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        b.find("globex", "/details/guest/email", "t1", 10).unwrap(),
        [5]
    );
}
