//! `sealtrail backup` and `sealtrail restore` on the PostgreSQL store, with the real binary
//! and a real PostgreSQL (`SEALTRAIL_TEST_POSTGRES`, set by `cargo xtask test`; each test
//! creates its own databases): the disaster drill under continuous ingest with the
//! database dropped, altered backups, a non-empty target database, backups restored into
//! the other store, and no master key in any backup.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret as _;
use base64::Engine as _;
use serde_json::{Value, json};

mod common;

use common::{ServeProcess, all_events, runtime, sealtrail};

use sealtrail_testkit::pg::TestDatabase as Database;

/// The relations in the public schema of `db`.
fn relations(db: &Database) -> Vec<String> {
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

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn refused(out: &std::process::Output, expect: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded: {out:?}");
    assert!(stderr.contains(expect), "expected {expect:?} in: {stderr}");
    stderr
}

fn create_key(dir: &Path) -> String {
    let out = sealtrail(&[
        "keys",
        "create",
        "--data-dir",
        dir.to_str().unwrap(),
        "--scopes",
        "ingest,read",
    ]);
    ok(&out).trim().to_owned()
}

/// A new age X25519 identity written to `dir/name`; returns (file, identity).
fn age_identity(dir: &Path, name: &str) -> (PathBuf, age::x25519::Identity) {
    let identity = age::x25519::Identity::generate();
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!(
            "# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        ),
    )
    .unwrap();
    (file, identity)
}

async fn post(url: &str, key: &str, events: Vec<Value>) -> Value {
    let response = sealtrail_testkit::http_client()
        .post(format!("{url}/v1/events"))
        .bearer_auth(key)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

fn backup(
    data: &Path,
    db: &Database,
    to: &Path,
    identity: &age::x25519::Identity,
) -> std::process::Output {
    sealtrail(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--to",
        to.to_str().unwrap(),
        "--recipient",
        &identity.to_public().to_string(),
    ])
}

fn restore(
    from: &Path,
    identity_file: &Path,
    into: &Path,
    db: Option<&Database>,
) -> std::process::Output {
    let mut args = vec![
        "restore",
        "--from",
        from.to_str().unwrap(),
        "--identity",
        identity_file.to_str().unwrap(),
        "--data-dir",
        into.to_str().unwrap(),
    ];
    if let Some(db) = db {
        args.extend(["--database-url", db.url.as_str()]);
    }
    sealtrail(&args)
}

fn migrate(db: &Database) {
    ok(&sealtrail(&["migrate", "--database-url", &db.url]));
}

/// "… tree size N, …" in a summary line.
fn tree_size_in(summary: &str) -> u64 {
    let rest = summary
        .split("tree size ")
        .nth(1)
        .unwrap_or_else(|| panic!("no tree size in {summary:?}"));
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every entry of an age-encrypted tar, decrypted with the age crate as any age tool would.
fn entries(file: &Path, identity: &age::x25519::Identity) -> Vec<(String, Vec<u8>)> {
    let decryptor = age::Decryptor::new(std::fs::File::open(file).unwrap()).unwrap();
    let reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .unwrap();
    let mut entries = Vec::new();
    for entry in tar::Archive::new(reader).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.push((name, bytes));
    }
    entries
}

/// `entries` packed and encrypted to `identity` again, as anyone who knows a recipient can.
fn repack(entries: &[(String, Vec<u8>)], identity: &age::x25519::Identity, to: &Path) {
    let recipient = identity.to_public();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let output = encryptor
        .wrap_output(std::fs::File::create(to).unwrap())
        .unwrap();
    let mut archive = tar::Builder::new(output);
    for (name, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        archive.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap();
}

fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A stopped PostgreSQL server's database and data directory with `events` events, and a
/// backup of them.
struct SmallBackup {
    db: Database,
    file: PathBuf,
    identity_file: PathBuf,
    identity: age::x25519::Identity,
}

fn small_backup(work: &Path, events: usize) -> SmallBackup {
    let db = Database::create();
    migrate(&db);
    let data = work.join("data");
    std::fs::create_dir(&data).unwrap();
    let key = create_key(&data);
    let server = ServeProcess::start_postgres(&data, &db.url);
    let batch = (0..events)
        .map(|n| json!({"tenant_id": "bloom", "action": "guest.rsvp.updated", "resource_type": "guest", "resource_id": n.to_string()}))
        .collect();
    runtime().block_on(post(&server.url, &key, batch));
    server.stop();
    let (identity_file, identity) = age_identity(work, "key.txt");
    let file = work.join("backup.age");
    ok(&backup(&data, &db, &file, &identity));
    SmallBackup {
        db,
        file,
        identity_file,
        identity,
    }
}

/// The drill on PostgreSQL: ingest runs from two tasks while `sealtrail backup` copies the
/// live database; then the server stops, the database is DROPPED and the data directory
/// deleted, the backup is restored into a new empty database, `verify` passes, and a
/// server on it holds every event acknowledged up to the backup's checkpoint byte for
/// byte (same leaf hash as the ingest answer, same JSON as the original server answered),
/// followed by the `backup.restored` event. The backup itself is in the original log as a
/// `backup.created` event.
#[test]
fn postgres_disaster_drill_restores_every_event_acknowledged_before_the_backup() {
    let work = tempfile::tempdir().unwrap();
    let db = Database::create();
    migrate(&db);
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let key = create_key(&data);
    let server = ServeProcess::start_postgres(&data, &db.url);
    let (identity_file, identity) = age_identity(work.path(), "key.txt");

    let rt = runtime();
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|client| {
            let (url, key, acked, done) = (server.url.clone(), key.clone(), acked.clone(), done.clone());
            rt.spawn(async move {
                let mut round = 0u64;
                while !done.load(Ordering::Acquire) {
                    let events = (0..10)
                        .map(|i| json!({"tenant_id": format!("t{client}"), "action": "guest.seating.changed",
                                        "resource_type": "guest", "resource_id": format!("{client}-{round}-{i}"),
                                        "details": {"table": round % 12, "seat": i, "note": "naïve — ✓"}}))
                        .collect();
                    let answer = post(&url, &key, events).await;
                    let mut acked = acked.lock().unwrap();
                    for receipt in answer["events"].as_array().unwrap() {
                        acked.push((
                            receipt["seq"].as_u64().unwrap(),
                            receipt["leaf_hash"].as_str().unwrap().to_owned(),
                        ));
                    }
                    round += 1;
                }
            })
        })
        .collect();
    let wait_for = |count: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "ingest stalled below {count} events"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(1000);
    let file = work.path().join("drill.age");
    let before = acked.lock().unwrap().len();
    let backed_up = backup(&data, &db, &file, &identity);
    let summary = ok(&backed_up);
    let during = acked.lock().unwrap().len() - before;
    let tree_size = tree_size_in(&summary);
    let after = acked.lock().unwrap().len();
    wait_for(after + 200);
    done.store(true, Ordering::Release);
    for client in clients {
        rt.block_on(client).unwrap();
    }
    let original = rt.block_on(all_events(&server.url, &key));
    server.stop();
    let acked = acked.lock().unwrap().clone();
    assert!(
        tree_size >= before as u64,
        "the snapshot has what was acknowledged before it"
    );
    assert!(
        (original.len() as u64) > tree_size + 1,
        "ingest went on after the snapshot ({} stored, backup of {tree_size})",
        original.len()
    );
    eprintln!("{during} events acknowledged while the backup ran; {summary}");

    // The backup was recorded in the log it backed up, after its checkpoint.
    let created: Vec<&Value> = original
        .iter()
        .filter(|e| e["action"] == "backup.created")
        .collect();
    assert_eq!(created.len(), 1, "one backup, one backup.created event");
    assert_eq!(created[0]["tenant_id"], "_sealtrail");
    assert_eq!(created[0]["details"]["tree_size"], tree_size);
    assert_eq!(created[0]["details"]["store"], "postgres");
    assert_eq!(created[0]["details"]["backup_file"], "drill.age");
    assert!(created[0]["seq"].as_u64().unwrap() > tree_size);
    assert!(
        summary.contains(&format!("recorded in the log as seq {}", created[0]["seq"])),
        "{summary}"
    );

    // The manifest says what it holds: which store, which tables with how many rows.
    let packed = entries(&file, &identity);
    let manifest: Value = serde_json::from_slice(&packed[0].1).unwrap();
    assert_eq!(manifest["store"], "postgres");
    assert_eq!(manifest["version"], sealtrail_backup::FORMAT_VERSION);
    let tables: BTreeMap<String, u64> = manifest["postgres"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    for table in [
        "events",
        "event_ids",
        "merkle_nodes",
        "checkpoints",
        "sealtrail_meta",
    ] {
        assert!(tables.contains_key(table), "{table} in {tables:?}");
    }
    assert_eq!(tables["events"], tree_size);
    assert_eq!(tables["event_ids"], tree_size);
    assert!(!packed.iter().any(|(n, _)| n == "log.sqlite"));

    // Disaster: the database and the data directory are gone.
    db.drop_now();
    std::fs::remove_dir_all(&data).unwrap();

    let new_db = Database::create();
    let restored = work.path().join("restored");
    let restored_out = restore(&file, &identity_file, &restored, Some(&new_db));
    let out = ok(&restored_out);
    assert_eq!(tree_size_in(&out), tree_size, "{out}");
    // Off a terminal: a plain line per step, and a summary with counts and rates.
    let steps = String::from_utf8_lossy(&backed_up.stderr);
    for step in [
        "copy the PostgreSQL tables",
        "encrypt and write",
        "record the backup in the log",
    ] {
        assert!(steps.contains(step), "{step:?} in {steps}");
    }
    let steps = String::from_utf8_lossy(&restored_out.stderr);
    for step in [
        "decrypt and unpack",
        "copy table events in",
        "verify the log",
        "record the restore in the log",
    ] {
        assert!(steps.contains(step), "{step:?} in {steps}");
    }
    assert!(summary.contains("events/s"), "{summary}");
    assert!(out.contains("events/s"), "{out}");
    let verified = ok(&sealtrail(&[
        "verify",
        "--data-dir",
        restored.to_str().unwrap(),
        "--database-url",
        &new_db.url,
    ]));
    assert!(
        verified.starts_with(&format!("ok: {} events", tree_size + 1)),
        "{verified}"
    );
    assert!(
        !std::fs::read_dir(&restored).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".copy")),
        "the table copies went into the database, not the data directory"
    );

    // The API key came back with the backup.
    let server = ServeProcess::start_postgres(&restored, &new_db.url);
    let events = rt.block_on(all_events(&server.url, &key));
    server.stop();
    let by_seq = |events: &[Value]| -> BTreeMap<u64, Value> {
        events
            .iter()
            .map(|e| (e["seq"].as_u64().unwrap(), e.clone()))
            .collect()
    };
    let (events, original) = (by_seq(&events), by_seq(&original));
    assert_eq!(
        events.keys().copied().collect::<Vec<_>>(),
        (1..=tree_size + 1).collect::<Vec<_>>(),
        "the backup's events and the restore's, no gap"
    );
    for (seq, leaf_hash) in acked.iter().filter(|(seq, _)| *seq <= tree_size) {
        assert_eq!(events[seq]["leaf_hash"], leaf_hash.as_str(), "seq {seq}");
    }
    for seq in 1..=tree_size {
        assert_eq!(
            events[&seq], original[&seq],
            "seq {seq} as the original served it"
        );
    }
    let restore_event = &events[&(tree_size + 1)];
    assert_eq!(restore_event["action"], "backup.restored");
    assert_eq!(restore_event["details"]["tree_size"], tree_size);
    assert_eq!(restore_event["details"]["store"], "postgres");
}

/// A flipped byte in a record inside the decrypted COPY payload, packed and encrypted
/// again: refused by the manifest's checksum; with the checksum fixed as well, refused by
/// the Merkle tree, naming the seq. Either way nothing is left in the database or beside
/// the data directory, and the pristine backup then restores into that same database.
#[test]
fn an_edited_table_copy_is_refused_and_leaves_the_database_empty() {
    use sha2::Digest as _;
    let work = tempfile::tempdir().unwrap();
    let backup = small_backup(work.path(), 300);
    let pristine = entries(&backup.file, &backup.identity);
    let events_at = pristine
        .iter()
        .position(|(n, _)| n == "pg-events.copy")
        .unwrap();
    let mut edited = pristine.clone();
    let payload = &mut edited[events_at].1;
    // The records are stored verbatim in the binary COPY: seq 77 is resource 76.
    let at = position(payload, b"\"resource_id\":\"76\"").unwrap();
    payload[at + "\"resource_id\":\"".len()] = b'6';
    let target_db = Database::create();
    let target = work.path().join("restored");

    let altered = work.path().join("altered.age");
    repack(&edited, &backup.identity, &altered);
    let out = restore(&altered, &backup.identity_file, &target, Some(&target_db));
    refused(&out, "pg-events.copy does not match its manifest");
    assert!(!target.exists());
    assert_eq!(relations(&target_db), Vec::<String>::new());

    let bytes = edited[events_at].1.clone();
    let mut manifest: Value = serde_json::from_slice(&edited[0].1).unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["name"] == "pg-events.copy" {
            f["sha256"] = json!(hex::encode(sha2::Sha256::digest(&bytes)));
        }
    }
    edited[0].1 = serde_json::to_vec(&manifest).unwrap();
    let repacked = work.path().join("repacked.age");
    repack(&edited, &backup.identity, &repacked);
    let out = restore(&repacked, &backup.identity_file, &target, Some(&target_db));
    let stderr = refused(&out, "does not verify");
    assert!(stderr.contains("seq 77"), "{stderr}");
    assert!(stderr.contains("nothing was written there"), "{stderr}");
    assert!(!target.exists());
    assert_eq!(
        relations(&target_db),
        Vec::<String>::new(),
        "the restore's transaction left nothing behind"
    );
    assert!(
        !std::fs::read_dir(work.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".restore-")),
        "no staging left behind"
    );

    ok(&restore(
        &backup.file,
        &backup.identity_file,
        &target,
        Some(&target_db),
    ));
    let verified = ok(&sealtrail(&[
        "verify",
        "--data-dir",
        target.to_str().unwrap(),
        "--database-url",
        &target_db.url,
    ]));
    assert!(verified.starts_with("ok: 301 events"), "{verified}");
    drop(backup.db);
}

/// A database that holds anything — a log (the source itself), or an unrelated table — is
/// refused with a clear message and left as it was; so are restores across stores.
#[test]
fn a_restore_goes_only_into_an_empty_database_of_its_own_store() {
    let work = tempfile::tempdir().unwrap();
    let backup = small_backup(work.path(), 20);
    let target = work.path().join("restored");

    let out = restore(
        &backup.file,
        &backup.identity_file,
        &target,
        Some(&backup.db),
    );
    refused(&out, "is not empty");
    assert!(!target.exists());

    let other = Database::create();
    other
        .client()
        .batch_execute("CREATE TABLE guest_list (name text); INSERT INTO guest_list VALUES ('ana')")
        .unwrap();
    let out = restore(&backup.file, &backup.identity_file, &target, Some(&other));
    let stderr = refused(&out, "is not empty");
    assert!(stderr.contains("guest_list"), "{stderr}");
    assert_eq!(relations(&other), vec!["guest_list".to_owned()]);
    assert!(!target.exists());

    // A PostgreSQL backup into a data directory alone, and an embedded one into a database.
    let out = restore(&backup.file, &backup.identity_file, &target, None);
    refused(&out, "is a backup of a PostgreSQL store");
    assert!(!target.exists());
    let sqlite_data = work.path().join("sqlite-data");
    std::fs::create_dir(&sqlite_data).unwrap();
    let key = create_key(&sqlite_data);
    let server = ServeProcess::start(&sqlite_data);
    runtime().block_on(post(
        &server.url,
        &key,
        vec![json!({"tenant_id": "bloom", "action": "guest.added", "resource_type": "guest"})],
    ));
    server.stop();
    let sqlite_backup = work.path().join("sqlite.age");
    ok(&sealtrail(&[
        "backup",
        "--data-dir",
        sqlite_data.to_str().unwrap(),
        "--to",
        sqlite_backup.to_str().unwrap(),
        "--recipient",
        &backup.identity.to_public().to_string(),
    ]));
    let empty = Database::create();
    let out = restore(&sqlite_backup, &backup.identity_file, &target, Some(&empty));
    refused(&out, "is a backup of the embedded (SQLite) store");
    assert_eq!(relations(&empty), Vec::<String>::new());
    assert!(!target.exists());
}

/// With field encryption on (master key from the environment, and — by mistake — also in
/// a file in the data directory), the backup of a PostgreSQL store holds only the
/// manifest, the table copies and the data directory's state files, none of which holds
/// the master key, raw or in base64.
#[test]
fn no_postgres_backup_holds_the_master_key() {
    let work = tempfile::tempdir().unwrap();
    let db = Database::create();
    migrate(&db);
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let master: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(41).wrapping_add(7));
    let master_b64 = base64::engine::general_purpose::STANDARD.encode(master);
    std::fs::write(data.join("master.key"), &master_b64).unwrap();
    let config = work.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = {:?}\n[encryption]\nmaster_key = {{ env = \"SEALTRAIL_TEST_MASTER_KEY\" }}\nfields = [\"ip_address\"]\n",
            db.url
        ),
    )
    .unwrap();
    let env = [("SEALTRAIL_TEST_MASTER_KEY", master_b64.as_str())];
    let key = create_key(&data);
    let server = ServeProcess::start_postgres_with_env(&data, &config, &env);
    let events = (0..30)
        .map(|n| {
            json!({"tenant_id": "bloom", "action": "guest.viewed", "resource_type": "guest",
                         "resource_id": n.to_string(), "ip_address": "85.240.12.9"})
        })
        .collect();
    runtime().block_on(post(&server.url, &key, events));
    let (_, identity) = age_identity(work.path(), "key.txt");
    let file = work.path().join("sealed.age");
    // The store is found from the configuration, as `serve` finds it.
    let out = sealtrail(&[
        "backup",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        file.to_str().unwrap(),
        "--recipient",
        &identity.to_public().to_string(),
    ]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master.key"),
        "the summary names what it left out: {out:?}"
    );
    server.stop();
    let packed = entries(&file, &identity);
    let names: Vec<&str> = packed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "manifest.json");
    assert!(names.contains(&"pg-events.copy"), "{names:?}");
    // The wrapped data keys are in the database, so in its table copies.
    assert!(names.contains(&"pg-data_keys.copy"), "{names:?}");
    assert!(names.contains(&"log-signing.key"), "{names:?}");
    for (name, bytes) in &packed {
        assert!(
            name == "manifest.json"
                || (name.starts_with("pg-") && name.ends_with(".copy"))
                || sealtrail_backup::STATE_FILES
                    .iter()
                    .any(|f| f.name == name && f.name != "log.sqlite"),
            "{name} packed"
        );
        assert!(!name.contains("master"), "{name} packed");
        assert!(
            position(bytes, &master).is_none(),
            "{name} holds the master key"
        );
        assert!(
            position(bytes, master_b64.as_bytes()).is_none(),
            "{name} holds the master key (base64)"
        );
    }
}
