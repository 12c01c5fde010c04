//! Rotating the log's signing key under ingest: the rotation record is in the log, signed
//! by the old and the new key; checkpoints before it verify under the old key, after it
//! under the new one; `verify` passes across it, from the data directory, pinned to the
//! first key, and against a checkpoint kept before it; a forged rotation is refused. On
//! PostgreSQL a second server holding the next key follows the rotation made on the first,
//! and a third without it stops writing rather than sign with a retired key.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{ServeProcess, runtime, sealtrail};
use sealtrail_core::CheckpointVerifier;
use sealtrail_core::checkpoint::CheckpointError;
use serde_json::{Value, json};

struct Api {
    url: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    fn new(url: &str, key: &str) -> Self {
        Self {
            url: url.to_owned(),
            key: key.to_owned(),
            http: sealtrail_testkit::http_client(),
        }
    }

    /// Posts one event; its id when stored (201).
    async fn post(&self, n: usize) -> Option<String> {
        let (status, id) = self.post_status(n).await?;
        (status == 201).then_some(id)
    }

    /// Posts one event: the answer's status and the event's id.
    async fn post_status(&self, n: usize) -> Option<(u16, String)> {
        let id = format!("0192f1c4-0000-7000-8000-{n:012}");
        let event = json!({
            "id": id, "tenant_id": "acme", "action": "guest.dietary_restriction.updated",
            "resource_type": "guest", "resource_id": format!("g{n}"), "user_id": "coord:ines",
            "reason": "guest asked", "changes": [{"field": "diet", "before": "none", "after": "vegan"}],
        });
        let response = self
            .http
            .post(format!("{}/v1/events", self.url))
            .bearer_auth(&self.key)
            .json(&json!({ "events": [event] }))
            .send()
            .await
            .ok()?;
        Some((response.status().as_u16(), id))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn rotate(&self, reason: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/log/signing-key/rotate", self.url))
            .bearer_auth(&self.key)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn checkpoint_note(&self) -> String {
        let (status, checkpoint) = self.get("/v1/checkpoint").await;
        assert_eq!(status, 200, "{checkpoint}");
        checkpoint["note"].as_str().unwrap().to_owned()
    }
}

/// Posts events from `first` on, one per request, until `stop`; the acknowledged ids.
async fn ingest_until(api: Arc<Api>, first: usize, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        if let Some(id) = api.post(n).await {
            acked.push(id);
        }
        n += 1;
    }
    acked
}

fn admin_key(args: &[&str]) -> String {
    common::create_key(&[&["--scopes", "ingest,read,admin"], args].concat())
}

fn verify(args: &[&str]) -> (bool, String) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let out = sealtrail(&all);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_signing_key_is_rotated_under_ingest_and_verify_follows_the_chain() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let dir = data.to_str().unwrap();
    let key = admin_key(&["--data-dir", dir]);
    let tenant_admin = admin_key(&["--data-dir", dir, "--tenant", "acme"]);
    let runtime = runtime();
    let server = ServeProcess::start(&data);
    let first_key_file = work.path().join("first-key.json");
    let kept_file = work.path().join("kept-checkpoint.txt");
    let first_seed = std::fs::read_to_string(data.join("log-signing.key")).unwrap();

    let (acked, rotation) = runtime.block_on(async {
        let api = Arc::new(Api::new(&server.url, &key));
        let (_, first) = api.get("/v1/public-key").await;
        assert_eq!(first["rotations"], json!([]));
        std::fs::write(&first_key_file, first.to_string()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| tokio::spawn(ingest_until(api.clone(), w * 1_000_000, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&kept_file, api.checkpoint_note().await).unwrap();

        // Bad input names the field; nothing changes. A tenant's admin may not rotate the
        // whole log's key, and producers may not write the action of its record.
        let (status, body) = api.rotate("").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains("reason"), "{body}");
        let (status, body) = Api::new(&server.url, &tenant_admin).rotate("mine").await;
        assert_eq!(status, 403, "{body}");
        let response = api
            .http
            .post(format!("{}/v1/events", api.url))
            .bearer_auth(&key)
            .json(
                &json!({"events": [{"tenant_id": "acme", "action": "log.signing_key_rotated",
                                      "resource_type": "log"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert!(
            body["field"].as_str().unwrap().ends_with("action"),
            "{body}"
        );

        let out = sealtrail(&[
            "log",
            "rotate-signing-key",
            "--url",
            &server.url,
            "--key",
            &key,
            "--reason",
            "yearly rotation",
        ]);
        assert!(out.status.success(), "{out:?}");
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            said.starts_with("rotated the signing key at tree size "),
            "{said}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        for writer in writers {
            acked.extend(writer.await.unwrap());
        }

        let (_, now) = api.get("/v1/public-key").await;
        assert_ne!(now["vkey"], first["vkey"]);
        let rotations: Vec<String> = serde_json::from_value(now["rotations"].clone()).unwrap();
        assert_eq!(rotations.len(), 1);

        // A verifier that trusts the first key follows the chain to today's checkpoints;
        // the first key alone no longer signs them.
        let first_vkey = first["vkey"].as_str().unwrap();
        let pinned = CheckpointVerifier::from_vkey(first_vkey).unwrap();
        let latest = api.checkpoint_note().await;
        assert_eq!(pinned.verify(&latest), Err(CheckpointError::BadSignature));
        let chain = pinned.anchored(&rotations).unwrap();
        let size = chain.verify(&latest).unwrap().size;
        let kept = std::fs::read_to_string(&kept_file).unwrap();
        assert!(chain.verify(&kept).is_ok());

        // The rotation record is in the log, in the server's own tenant, with the statement.
        let (status, page) = api
            .get("/v1/events?tenant_id=_sealtrail&action=log.signing_key_rotated")
            .await;
        assert_eq!(status, 200, "{page}");
        let record = &page["events"][0];
        assert_eq!(record["details"]["statement"], json!(rotations[0]));
        assert_eq!(record["reason"], "yearly rotation");
        let from = record["seq"].as_u64().unwrap();
        assert_eq!(record["details"]["from_size"], json!(from));
        assert!(size > from, "events were acknowledged after the rotation");
        println!(
            "rotated at seq {from} while ingesting: {} events acknowledged, tree size {size}",
            acked.len()
        );
        (acked, rotations[0].clone())
    });

    // The next seed became the key; the retired seed is gone from the data directory.
    assert!(!data.join("log-signing.next").exists());
    let seed = std::fs::read_to_string(data.join("log-signing.key")).unwrap();
    assert_ne!(seed, first_seed);
    server.stop();

    // A crash after the rotation was durable but before the rename leaves the retired seed
    // as the key and the new one waiting: tools accept it, and the next start finishes it.
    std::fs::write(data.join("log-signing.key"), &first_seed).unwrap();
    std::fs::write(data.join("log-signing.next"), &seed).unwrap();
    let (ok, said) = verify(&["--data-dir", dir]);
    assert!(ok, "{said}");
    ServeProcess::start(&data).stop();
    assert!(!data.join("log-signing.next").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("log-signing.key")).unwrap(),
        seed
    );

    // verify passes across the rotation: from the data directory, pinned to the first key
    // (the store's rotations extend it), and against the checkpoint kept before it.
    for args in [
        vec!["--data-dir", dir],
        vec![
            "--data-dir",
            dir,
            "--public-key",
            first_key_file.to_str().unwrap(),
        ],
        vec![
            "--data-dir",
            dir,
            "--checkpoint",
            kept_file.to_str().unwrap(),
        ],
    ] {
        let (ok, said) = verify(&args);
        assert!(ok && said.starts_with("ok: "), "{args:?}: {said}");
    }

    // Restarted on the new key: every acknowledged event is there, and it goes on; a
    // second rotation extends the chain, which verify still follows from the first key.
    let server = ServeProcess::start(&data);
    runtime.block_on(async {
        let api = Api::new(&server.url, &key);
        for id in &acked {
            assert_eq!(api.get(&format!("/v1/events/{id}")).await.0, 200, "{id}");
        }
        assert!(api.post(9_999_999).await.is_some());
        let (status, body) = api.rotate("second rotation").await;
        assert_eq!(status, 200, "{body}");
        assert!(api.post(9_999_998).await.is_some());
        let (_, now) = api.get("/v1/public-key").await;
        assert_eq!(now["rotations"].as_array().unwrap().len(), 2);
    });
    // An evidence bundle made now carries the rotations: an auditor who pinned the first
    // key checks it.
    let bundle = work.path().join("evidence.json");
    let out = sealtrail(&[
        "export",
        "--evidence",
        "--url",
        &server.url,
        "--key",
        &key,
        "--tenant",
        "acme",
        "--output",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let (ok, said) = verify(&[
        "--evidence",
        bundle.to_str().unwrap(),
        "--public-key",
        first_key_file.to_str().unwrap(),
    ]);
    assert!(ok && said.starts_with("ok: "), "{said}");
    server.stop();
    let (ok, said) = verify(&[
        "--data-dir",
        dir,
        "--public-key",
        first_key_file.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");

    // A rotation forged in the store (from a key nobody holds for this log) is refused: the
    // chain no longer leads to the data directory's key.
    let stranger = sealtrail_core::CheckpointSigner::new(
        CheckpointVerifier::from_rotations(std::slice::from_ref(&rotation))
            .unwrap()
            .origin(),
        &[42u8; 32],
    )
    .unwrap();
    let forged = stranger.rotation_note(&[43u8; 32], 1_000_000).unwrap();
    let log = rusqlite::Connection::open(data.join("log.sqlite")).unwrap();
    // A row under the prefix that is not filed under its statement's size is not the
    // sequencer's: ignored (and logged), it changes nothing.
    for (key, value) in [
        ("signing_key_rotation/00000000000000000001", "garbage"),
        ("signing_key_rotation_0", forged.as_str()),
    ] {
        log.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            [key, value],
        )
        .unwrap();
    }
    let (ok, said) = verify(&["--data-dir", dir]);
    assert!(ok, "{said}");
    log.execute(
        "INSERT INTO meta (key, value) VALUES ('signing_key_rotation/00000000000001000000', ?1)",
        [&forged],
    )
    .unwrap();
    drop(log);
    let (ok, said) = verify(&["--data-dir", dir]);
    assert!(!ok, "{said}");
    assert!(said.contains("key chain"), "{said}");

    // A rotation filed without its record in the log (made with the current key, as one
    // who stole it could) is found too: the log, not the index of rotations, is the truth.
    let current = std::fs::read_to_string(data.join("log-signing.key")).unwrap();
    let current: [u8; 32] = hex::decode(current.trim()).unwrap().try_into().unwrap();
    let origin = CheckpointVerifier::from_rotations(std::slice::from_ref(&rotation))
        .unwrap()
        .origin()
        .to_owned();
    let holder = sealtrail_core::CheckpointSigner::new(&origin, &current).unwrap();
    let unrecorded = holder.rotation_note(&[44u8; 32], 1_000_000).unwrap();
    let log = rusqlite::Connection::open(data.join("log.sqlite")).unwrap();
    log.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'signing_key_rotation/00000000000001000000'",
        [&unrecorded],
    )
    .unwrap();
    drop(log);
    let (ok, said) = verify(&["--data-dir", dir]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("a key rotation is filed for tree size 1000000"),
        "{said}"
    );
}

#[test]
fn servers_on_one_database_follow_a_rotation_with_the_next_key_and_others_stop_writing() {
    let db = sealtrail_testkit::pg::TestDatabase::create();
    let out = sealtrail(&["migrate", "--database-url", &db.url]);
    assert!(out.status.success(), "{out:?}");
    let key = admin_key(&["--database-url", &db.url]);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = ServeProcess::start_postgres(dirs[0].path(), &db.url);
    for dir in &dirs[1..] {
        std::fs::copy(
            dirs[0].path().join("log-signing.key"),
            dir.path().join("log-signing.key"),
        )
        .unwrap();
    }
    let runtime = runtime();
    let origin = runtime.block_on(async {
        let (_, public) = Api::new(&a.url, &key).get("/v1/public-key").await;
        public["origin"].as_str().unwrap().to_owned()
    });
    // The next key, prepared on A and copied to B (not to C) before the rotation.
    let out = sealtrail(&[
        "log",
        "prepare-signing-key",
        "--data-dir",
        dirs[0].path().to_str().unwrap(),
        "--origin",
        &origin,
    ]);
    assert!(out.status.success(), "{out:?}");
    let next_vkey = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    std::fs::copy(
        dirs[0].path().join("log-signing.next"),
        dirs[1].path().join("log-signing.next"),
    )
    .unwrap();
    let b = ServeProcess::start_postgres(dirs[1].path(), &db.url);
    let c = ServeProcess::start_postgres(dirs[2].path(), &db.url);

    runtime.block_on(async {
        let (a_api, b_api, c_api) = (
            Api::new(&a.url, &key),
            Api::new(&b.url, &key),
            Api::new(&c.url, &key),
        );
        for (n, api) in [&a_api, &b_api, &c_api].into_iter().enumerate() {
            assert!(api.post(n).await.is_some());
        }
        let (status, rotated) = a_api.rotate("key custodian changed").await;
        assert_eq!(status, 200, "{rotated}");
        assert_eq!(rotated["new_vkey"], json!(next_vkey));

        // B signs with the next key from its next write on; A accepts what B signed.
        assert!(b_api.post(10).await.is_some());
        assert!(!dirs[1].path().join("log-signing.next").exists());
        assert!(a_api.post(11).await.is_some());
        let chain = CheckpointVerifier::from_vkey(&next_vkey).unwrap();
        let (_, public) = b_api.get("/v1/public-key").await;
        assert_eq!(public["vkey"], json!(next_vkey));
        assert!(chain.verify(&b_api.checkpoint_note().await).is_ok());

        // C holds only the retired key: it refuses to sign with it (the event is kept in
        // its outage spool, 202), and it still reads (its verifier followed the chain).
        assert_eq!(c_api.post_status(12).await.unwrap().0, 202);
        let (status, _) = c_api
            .get("/v1/events/0192f1c4-0000-7000-8000-000000000011")
            .await;
        assert_eq!(status, 200);
        let (status, ready) = c_api.get("/readyz").await;
        println!("server without the next key: /readyz {status} {ready}");
    });
    c.kill_hard();
    a.stop();
    b.stop();

    // C cannot start on the retired key; with the new one copied in it starts, and the
    // event it spooled enters the log. verify passes across the rotation.
    let start_c = || {
        std::process::Command::new(common::BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &db.url,
            ])
            .args(["--data-dir", dirs[2].path().to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = start_c();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("retired key"), "{said}");
    std::fs::copy(
        dirs[0].path().join("log-signing.key"),
        dirs[2].path().join("log-signing.next"),
    )
    .unwrap();
    let c = ServeProcess::start_postgres(dirs[2].path(), &db.url);
    runtime.block_on(async {
        let api = Api::new(&c.url, &key);
        let spooled = "/v1/events/0192f1c4-0000-7000-8000-000000000012";
        let mut status = 0;
        for _ in 0..100 {
            status = api.get(spooled).await.0;
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, 200, "the spooled event entered the log");
        assert!(api.post(13).await.is_some());
    });
    c.stop();
    let (ok, said) = verify(&[
        "--database-url",
        &db.url,
        "--data-dir",
        dirs[1].path().to_str().unwrap(),
    ]);
    assert!(ok, "{said}");
    println!("{said}");
}
