//! `sealtrail backup` and `sealtrail restore` with the real binary: a disaster drill under
//! continuous ingest, altered and wrongly keyed backups, and no master key in any backup.

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

/// Every name a backup may hold (the manifest and `sealtrail_backup::STATE_FILES`).
const PACKABLE: &[&str] = &[
    "manifest.json",
    "sinks.sqlite",
    "blind-index.sqlite",
    "sources.sqlite",
    "spool.cursor",
    "spool.ndjson",
    "log-signing.key",
    "log-signing.next",
    "log.sqlite",
    "data-keys.sqlite",
    "keys.sqlite",
];

/// The names above are the ones the owners of those files use, and all a backup packs.
#[test]
fn a_backup_packs_the_state_files_by_their_owners_names() {
    let mut names: Vec<&str> = sealtrail_backup::STATE_FILES
        .iter()
        .map(|f| f.name)
        .collect();
    names.insert(0, sealtrail_backup::MANIFEST_NAME);
    assert_eq!(names, PACKABLE);
    assert!(names.contains(&sealtrail_sinks::store::SINKS_DB_FILE));
    assert!(names.contains(&sealtrail_store::blind_index::BLIND_INDEX_FILE));
    assert!(names.contains(&sealtrail_store::sources::SOURCES_FILE));
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

fn backup(data: &Path, to: &Path, identity: &age::x25519::Identity) -> std::process::Output {
    sealtrail(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
        "--recipient",
        &identity.to_public().to_string(),
    ])
}

fn restore(from: &Path, identity_file: &Path, into: &Path) -> std::process::Output {
    sealtrail(&[
        "restore",
        "--from",
        from.to_str().unwrap(),
        "--identity",
        identity_file.to_str().unwrap(),
        "--data-dir",
        into.to_str().unwrap(),
    ])
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

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A stopped server's data directory with `events` events, and a backup of it.
fn small_backup(work: &Path, events: usize) -> (PathBuf, PathBuf, age::x25519::Identity) {
    let data = work.join("data");
    std::fs::create_dir(&data).unwrap();
    let key = create_key(&data);
    let server = ServeProcess::start_with_env(&data, None, &[]);
    let batch = (0..events)
        .map(|n| json!({"tenant_id": "bloom", "action": "guest.rsvp.updated", "resource_type": "guest", "resource_id": n.to_string()}))
        .collect();
    runtime().block_on(post(&server.url, &key, batch));
    server.stop();
    let (identity_file, identity) = age_identity(work, "key.txt");
    let file = work.join("backup.age");
    ok(&backup(&data, &file, &identity));
    (file, identity_file, identity)
}

/// The drill: ingest runs from two tasks while `sealtrail backup` snapshots the live
/// server; then everything stops, the data directory is deleted, the backup is restored
/// into a new one, `verify` passes, and a server on it holds every event acknowledged up
/// to the backup's checkpoint byte for byte (same leaf hash as the ingest answer, same
/// JSON as the original server answered), followed by the `backup.restored` event.
#[test]
fn disaster_drill_restores_every_event_acknowledged_before_the_backup() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let key = create_key(&data);
    let server = ServeProcess::start_with_env(&data, None, &[]);
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
                                        "details": {"table": round % 12, "seat": i}}))
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
    let summary = ok(&backup(&data, &file, &identity));
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
        (original.len() as u64) > tree_size,
        "ingest went on after the snapshot ({} stored, backup of {tree_size})",
        original.len()
    );
    eprintln!("{during} events acknowledged while the backup ran; {summary}");

    std::fs::remove_dir_all(&data).unwrap();
    let restored = work.path().join("restored");
    let out = ok(&restore(&file, &identity_file, &restored));
    assert_eq!(tree_size_in(&out), tree_size, "{out}");
    let verified = ok(&sealtrail(&[
        "verify",
        "--data-dir",
        restored.to_str().unwrap(),
    ]));
    assert!(
        verified.starts_with(&format!("ok: {} events", tree_size + 1)),
        "{verified}"
    );
    assert!(
        !names_in(&restored)
            .iter()
            .any(|n| n.starts_with(".sealtrail-backup"))
    );

    // The API key came back with the backup.
    let server = ServeProcess::start_with_env(&restored, None, &[]);
    let events = rt.block_on(all_events(&server.url, &key));
    server.stop();
    // Pages are in time order; concurrent producers' events interleave, so go by seq.
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
    assert_eq!(restore_event["tenant_id"], "_sealtrail");
    assert_eq!(restore_event["details"]["tree_size"], tree_size);
    assert_eq!(restore_event["details"]["backup_file"], "drill.age");
}

/// One altered byte — in the encrypted contents or in the header — and the restore
/// refuses, saying what failed, leaving the (empty) target empty and nothing beside it.
#[test]
fn an_altered_backup_is_refused_and_leaves_the_target_empty() {
    let work = tempfile::tempdir().unwrap();
    let (file, identity_file, _) = small_backup(work.path(), 300);
    let pristine = std::fs::read(&file).unwrap();
    let target_parent = work.path().join("restore-here");
    let target = target_parent.join("data");
    std::fs::create_dir_all(&target).unwrap();
    // The header's MAC line ("--- <base64>") ends the header.
    let mac = pristine.windows(4).position(|w| w == b"\n---").unwrap() + 6;
    let positions = [
        (pristine.len() / 2, "damaged"),
        (pristine.len() - 3, "damaged"),
        (mac, "cannot decrypt"),
    ];
    for (at, expect) in positions {
        let mut altered = pristine.clone();
        altered[at] ^= 0x01;
        let bad = work.path().join("altered.age");
        std::fs::write(&bad, &altered).unwrap();
        let out = restore(&bad, &identity_file, &target);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "byte {at} altered, yet restored");
        assert!(stderr.contains(expect), "byte {at}: {stderr}");
        assert!(stderr.contains("nothing was written there"), "{stderr}");
        assert_eq!(names_in(&target), Vec::<String>::new(), "byte {at}");
        assert_eq!(
            names_in(&target_parent),
            vec!["data".to_owned()],
            "no staging left behind"
        );
    }
    // The same backup unaltered restores into that directory.
    ok(&restore(&file, &identity_file, &target));
    assert!(target.join("log.sqlite").exists());
    // And a second restore into it is refused without --force.
    let out = restore(&file, &identity_file, &target);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a Sealtrail log"),
        "{out:?}"
    );
}

/// A backup made for another key cannot be restored, and the error says so.
#[test]
fn a_wrong_identity_gets_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let (file, _, _) = small_backup(work.path(), 10);
    let (other, _) = age_identity(work.path(), "other.txt");
    let target = work.path().join("restored");
    let out = restore(&file, &other, &target);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("none of the identities in") && stderr.contains("other recipients"),
        "{stderr}"
    );
    assert!(!target.exists());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// With field encryption on (master key from the environment, and — by mistake — also in
/// a file in the data directory), neither the backup nor the restored data directory holds
/// the master key, raw or in base64; the restored server still opens the sealed fields.
#[test]
fn no_backup_and_no_restored_directory_holds_the_master_key() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let master: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let master_b64 = base64::engine::general_purpose::STANDARD.encode(master);
    std::fs::write(data.join("master.key"), &master_b64).unwrap();
    let config = work.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        "[encryption]\nmaster_key = { env = \"SEALTRAIL_TEST_MASTER_KEY\" }\nfields = [\"ip_address\", \"user_agent\"]\n",
    )
    .unwrap();
    let env = [("SEALTRAIL_TEST_MASTER_KEY", master_b64.as_str())];
    let key = create_key(&data);
    let server = ServeProcess::start_with_env(&data, Some(&config), &env);
    let events = (0..50)
        .map(|n| json!({"tenant_id": "bloom", "action": "guest.viewed", "resource_type": "guest",
                         "resource_id": n.to_string(), "ip_address": "85.240.12.9", "user_agent": "planner/1.0"}))
        .collect();
    let rt = runtime();
    rt.block_on(post(&server.url, &key, events));
    let (identity_file, identity) = age_identity(work.path(), "key.txt");
    let file = work.path().join("sealed.age");
    let out = backup(&data, &file, &identity);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master.key"),
        "{out:?}"
    );
    server.stop();

    // What the backup holds, decrypted with the age crate as any age tool would.
    let decryptor = age::Decryptor::new(std::fs::File::open(&file).unwrap()).unwrap();
    let reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut archive = tar::Archive::new(reader);
    let mut packed = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        assert!(PACKABLE.contains(&name.as_str()), "{name} packed");
        assert!(!contains(&bytes, &master), "{name} holds the master key");
        assert!(
            !contains(&bytes, master_b64.as_bytes()),
            "{name} holds the master key (base64)"
        );
        packed.push(name);
    }
    assert_eq!(packed[0], "manifest.json");
    assert!(
        packed.contains(&"data-keys.sqlite".to_owned()),
        "{packed:?}"
    );
    assert!(!packed.contains(&"index.sqlite".to_owned()));

    let restored = work.path().join("restored");
    ok(&restore(&file, &identity_file, &restored));
    for name in names_in(&restored) {
        assert!(!name.contains("master"), "{name} restored");
        let path = restored.join(&name);
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(!contains(&bytes, &master), "{name} holds the master key");
            assert!(
                !contains(&bytes, master_b64.as_bytes()),
                "{name} holds the master key (base64)"
            );
        }
    }
    let server = ServeProcess::start_with_env(&restored, Some(&config), &env);
    let events = rt.block_on(all_events(&server.url, &key));
    server.stop();
    assert_eq!(events.len(), 51);
    assert_eq!(
        events[0]["ip_address"], "85.240.12.9",
        "the restored data keys open the field"
    );
}

/// A backup whose log was edited and then packed again with matching checksums — as
/// anyone who knows a recipient could — passes every file check but not the Merkle tree:
/// the restore names the edited seq and writes nothing.
#[test]
fn a_repacked_backup_with_an_edited_log_fails_verification_and_restores_nothing() {
    use sha2::Digest as _;
    let work = tempfile::tempdir().unwrap();
    let (file, identity_file, identity) = small_backup(work.path(), 300);
    let decryptor = age::Decryptor::new(std::fs::File::open(&file).unwrap()).unwrap();
    let reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in tar::Archive::new(reader).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.push((name, bytes));
    }
    let log = work.path().join("edited.sqlite");
    let position = entries.iter().position(|(n, _)| n == "log.sqlite").unwrap();
    std::fs::write(&log, &entries[position].1).unwrap();
    {
        let db = rusqlite::Connection::open(&log).unwrap();
        db.pragma_update(None, "journal_mode", "DELETE").unwrap();
        let changed = db
            .execute(
                "UPDATE events SET record = replace(record, 'guest.rsvp.updated', 'guest.rsvp.deleted'), \
                 action = 'guest.rsvp.deleted' WHERE seq = 77",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let edited = std::fs::read(&log).unwrap();
    let mut manifest: Value = serde_json::from_slice(&entries[0].1).unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["name"] == "log.sqlite" {
            f["bytes"] = json!(edited.len());
            f["sha256"] = json!(hex::encode(sha2::Sha256::digest(&edited)));
        }
    }
    entries[0].1 = serde_json::to_vec(&manifest).unwrap();
    entries[position].1 = edited;

    let repacked = work.path().join("repacked.age");
    let recipient = identity.to_public();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .unwrap();
    let output = encryptor
        .wrap_output(std::fs::File::create(&repacked).unwrap())
        .unwrap();
    let mut archive = tar::Builder::new(output);
    for (name, bytes) in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        archive.append_data(&mut header, name, &bytes[..]).unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap();

    let target = work.path().join("restored");
    let out = restore(&repacked, &identity_file, &target);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not verify") && stderr.contains("seq 77"),
        "{stderr}"
    );
    assert!(!target.exists());
    assert_eq!(
        names_in(work.path())
            .iter()
            .filter(|n| n.contains(".restore-"))
            .count(),
        0,
        "no staging left behind"
    );
}
