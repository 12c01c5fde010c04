//! Rotating the field-encryption master key online: the server runs with the new key and
//! the old one listed as previous, `sealtrail keys rotate-master` wraps every data key by
//! the new one while it runs, and afterwards the old key opens nothing and is not needed;
//! values, blind-index searches and content hashes are the same throughout.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::{ServeProcess, sealtrail};
use serde_json::{Value, json};

fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        base64::engine::general_purpose::STANDARD.encode([byte; 32]),
    )
    .unwrap();
    path
}

/// A configuration sealing the guest's notes and email (searchable), under `master`,
/// with `previous` master keys still accepted.
fn config(dir: &Path, master: &Path, previous: &[&Path]) -> PathBuf {
    let previous: Vec<String> = previous
        .iter()
        .map(|p| format!("{{ file = {:?} }}", p.display().to_string()))
        .collect();
    let path = dir.join("sealtrail.toml");
    std::fs::write(
        &path,
        format!(
            "[encryption]\nmaster_key = {{ file = {:?} }}\nprevious_master_keys = [{}]\n\
             fields = [\"/details/guest/dietary_notes\", \"/details/guest/email\"]\n\
             subject = \"/details/guest/id\"\nblind_index = [\"/details/guest/email\"]\n",
            master.display().to_string(),
            previous.join(", ")
        ),
    )
    .unwrap();
    path
}

fn change(id: &str, guest: &str) -> Value {
    json!({
        "id": id, "tenant_id": "acme", "action": "guest.dietary_restriction.updated",
        "resource_type": "guest", "resource_id": guest, "user_id": "coord:ines",
        "details": {"guest": {"id": guest, "dietary_notes": format!("{guest}: no shellfish"),
                              "email": format!("{guest}@guests.example")}},
    })
}

struct Api {
    url: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    async fn post(&self, event: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/events", self.url))
            .bearer_auth(&self.key)
            .json(&json!({ "events": [event] }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Every guest's notes as read, sorted.
    async fn notes(&self) -> Vec<String> {
        let page = self.get("/v1/events?tenant_id=acme&action=guest.*").await;
        let mut notes: Vec<String> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["details"]["guest"]["dietary_notes"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        notes.sort();
        notes
    }

    /// How many events the blind index finds for `guest`'s email (once it caught up).
    async fn found(&self, guest: &str, expect: usize) -> usize {
        let path = format!(
            "/v1/events/search?tenant_id=acme&field=/details/guest/email&equals={guest}@guests.example"
        );
        for _ in 0..200 {
            let n = self.get(&path).await["events"].as_array().unwrap().len();
            if n == expect {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.get(&path).await["events"].as_array().unwrap().len()
    }
}

fn api(server: &ServeProcess, key: &str) -> Api {
    Api {
        url: server.url.clone(),
        key: key.to_owned(),
        http: sealtrail_testkit::http_client(),
    }
}

#[test]
fn the_master_key_is_rotated_online_and_the_old_one_is_then_not_needed() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let old = key_file(work.path(), "old.key", 1);
    let new = key_file(work.path(), "new.key", 2);
    let out = sealtrail(&[
        "keys",
        "create",
        "--data-dir",
        data.to_str().unwrap(),
        "--scopes",
        "ingest,read,admin",
    ]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ids = [
        "0192f1c4-0000-7000-8000-000000000001",
        "0192f1c4-0000-7000-8000-000000000002",
        "0192f1c4-0000-7000-8000-000000000003",
    ];

    // Under the old key.
    let server = ServeProcess::start_with_config(&data, &config(work.path(), &old, &[]));
    runtime.block_on(async {
        let api = api(&server, &key);
        assert_eq!(api.post(&change(ids[0], "g1")).await.0, 201);
        assert_eq!(api.found("g1", 1).await, 1);
    });
    server.stop();

    // The new key with the old one as previous: old values open, new ones are sealed by
    // new data keys wrapped by the new key; rotate-master runs while the server does.
    let rotating = config(work.path(), &new, &[&old]);
    let server = ServeProcess::start_with_config(&data, &rotating);
    let under_ingest = runtime.block_on(async {
        let api = api(&server, &key);
        assert_eq!(api.post(&change(ids[1], "g2")).await.0, 201);
        // Events keep coming (other guests, new data keys) while the rotation runs.
        let (config, dir) = (rotating.clone(), data.clone());
        let rotation = tokio::task::spawn_blocking(move || {
            sealtrail(&[
                "keys",
                "rotate-master",
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                dir.to_str().unwrap(),
            ])
        });
        let mut sent = 0;
        while !rotation.is_finished() || sent < 20 {
            let id = format!("0192f1c4-0000-7000-8001-{sent:012}");
            let mut seated = change(&id, &format!("x{sent}"));
            seated["action"] = json!("seating.guest.moved");
            let (status, body) = api.post(&seated).await;
            assert_eq!(status, 201, "{body}");
            sent += 1;
        }
        let out = rotation.await.unwrap();
        assert!(out.status.success(), "{out:?}");
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        // g1's key and the root key were wrapped by the old key; g2's (and those of the
        // guests sent meanwhile) by the new one.
        assert!(
            said.starts_with("2 data keys wrapped by the new master key, "),
            "{said}"
        );
        assert_eq!(api.post(&change(ids[2], "g3")).await.0, 201);
        assert_eq!(
            api.notes().await,
            ["g1: no shellfish", "g2: no shellfish", "g3: no shellfish"]
        );
        sent
    });
    server.stop();

    // The new key alone: everything opens, and the blind index and content hashes did not
    // change (the same event sent again is the same event, not a conflicting one).
    let server = ServeProcess::start_with_config(&data, &config(work.path(), &new, &[]));
    runtime.block_on(async {
        let api = api(&server, &key);
        assert_eq!(
            api.notes().await,
            ["g1: no shellfish", "g2: no shellfish", "g3: no shellfish"]
        );
        for guest in ["g1", "g2", "g3"] {
            assert_eq!(api.found(guest, 1).await, 1, "{guest} found by email");
        }
        let (status, body) = api.post(&change(ids[0], "g1")).await;
        assert!(status == 200 || status == 201, "{status} {body}");
        assert_eq!(
            api.notes().await.len(),
            3,
            "a retry, not a new event: {body}"
        );
        // What was sent while the rotation ran opens under the new key alone.
        let page = api
            .get("/v1/events?tenant_id=acme&action=seating.*&limit=1000")
            .await;
        let seated = page["events"].as_array().unwrap();
        assert_eq!(seated.len(), under_ingest);
        for event in seated {
            let notes = event["details"]["guest"]["dietary_notes"].as_str().unwrap();
            assert!(notes.ends_with(": no shellfish"), "{event}");
        }
        println!("{under_ingest} events sent while rotate-master ran");
    });
    server.stop();
    let out = sealtrail(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "verify passes across the rotation: {out:?}"
    );

    // The old key alone opens nothing any more: the server says so and does not start.
    let out = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--config", config(work.path(), &old, &[]).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("does not open with this master key"),
        "{said}"
    );
}
