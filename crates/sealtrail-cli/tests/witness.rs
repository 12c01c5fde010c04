//! Witnesses and the truncation drill, with the real binary: a server pushes every newer
//! signed checkpoint to its witnesses (a directory; a C2SP tlog-witness written in Python
//! without Sealtrail code, `tlog_witness.py`); someone with write access to the store deletes
//! the newest events together with their checkpoints, on SQLite and on PostgreSQL; plain
//! `sealtrail verify` cannot tell, `sealtrail verify --checkpoint WITNESS` fails naming the
//! kept size, and the restarted server raises the alarm instead of pushing the shorter log.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{ServeProcess, sealtrail};

const BATCH: usize = 50;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn create_key(dir: &Path) -> String {
    let out = sealtrail(&[
        "keys",
        "create",
        "--data-dir",
        dir.to_str().unwrap(),
        "--scopes",
        "ingest,read,admin",
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A config with one witness at `to`, looked at every second; every checkpoint is history,
/// so the store keeps one per commit and the forger can cut at a signed size.
fn config_with_witness(dir: &Path, to: &str, database_url: Option<&str>) -> PathBuf {
    let path = dir.join("sealtrail.toml");
    let database = database_url
        .map(|url| format!("database_url = {url:?}\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "{database}[log]\ncheckpoint_history_secs = 0\n\n\
             [[witnesses]]\nname = \"offsite\"\nto = {to:?}\nevery_secs = 1\n"
        ),
    )
    .unwrap();
    path
}

fn start(dir: &Path, config: &Path, postgres: bool) -> ServeProcess {
    if postgres {
        ServeProcess::start_postgres_with_env(dir, config, &[])
    } else {
        ServeProcess::start_with_config(dir, config)
    }
}

async fn ingest_batches(url: &str, key: &str, batches: usize) {
    let client = sealtrail_testkit::http_client();
    for b in 0..batches {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| {
                json!({
                    "tenant_id": "bloom",
                    "action": "guest.dietary_restriction.updated",
                    "resource_type": "guest",
                    "resource_id": format!("g-{b}-{i}"),
                    "user_id": "coord-1",
                    "reason": "the guest wrote in",
                })
            })
            .collect();
        let response = client
            .post(format!("{url}/v1/events"))
            .bearer_auth(key)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
}

async fn get_text(url: &str) -> String {
    sealtrail_testkit::http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of `metric{witness="offsite"}` in the server's /metrics.
async fn witness_metric(url: &str, metric: &str) -> Option<i64> {
    let text = get_text(&format!("{url}/metrics")).await;
    let prefix = format!("sealtrail_{metric}{{witness=\"offsite\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tree size of the note in `file` (its second line).
fn note_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

fn verify(dir: &Path, database_url: Option<&str>, checkpoint: Option<&str>) -> (bool, String) {
    let mut args = vec!["verify", "--data-dir", dir.to_str().unwrap()];
    if let Some(url) = database_url {
        args.extend(["--database-url", url]);
    }
    if let Some(place) = checkpoint {
        args.extend(["--checkpoint", place]);
    }
    let out = sealtrail(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// Runs the drill on one store. `truncate(data_dir, kept)` deletes every event after seq `kept` and
/// every checkpoint over it, as someone with write access to the store could.
fn truncation_drill(database_url: Option<&str>, truncate: impl FnOnce(&Path, u64)) {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let witness = work.path().join("witness");
    std::fs::create_dir_all(&data).unwrap();
    let key = create_key(&data);
    let config = config_with_witness(work.path(), witness.to_str().unwrap(), database_url);
    let rt = runtime();

    let server = start(&data, &config, database_url.is_some());
    rt.block_on(async {
        ingest_batches(&server.url, &key, 3).await;
        let full = (3 * BATCH) as u64;
        wait_for("the witness to keep the newest checkpoint", async || {
            std::fs::read_to_string(witness.join("latest.checkpoint"))
                .is_ok_and(|note| note_size(&note) == full)
        })
        .await;
        assert_eq!(
            witness_metric(&server.url, "witness_size").await,
            Some(full as i64)
        );
        assert_eq!(witness_metric(&server.url, "witness_alarm").await, Some(0));
    });
    server.stop();
    // Each checkpoint pushed stays, by size (the server looks once a second, so smaller
    // ones committed in between may have been passed over).
    let kept_file = witness.join(format!("{}.checkpoint", 3 * BATCH));
    assert!(kept_file.is_file());
    let witness_arg = witness.to_str().unwrap();
    let (ok, out) = verify(&data, database_url, Some(witness_arg));
    assert!(
        ok,
        "the untouched log extends the witness's checkpoint: {out}"
    );

    truncate(&data, BATCH as u64);
    let (ok, out) = verify(&data, database_url, None);
    assert!(
        ok,
        "the truncated log is consistent with itself, so verify alone passes: {out}"
    );
    let (ok, out) = verify(&data, database_url, Some(witness_arg));
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAILED") && out.contains("tree size 150") && out.contains("seq 51"),
        "the finding names the kept size and the first missing seq: {out}"
    );
    // The kept checkpoint as a file does the same.
    let (ok, out) = verify(&data, database_url, Some(kept_file.to_str().unwrap()));
    assert!(!ok && out.contains("tree size 150"), "{out}");

    // The restarted server finds the witness ahead of its log: it raises the alarm and
    // pushes nothing over the evidence.
    let server = start(&data, &config, database_url.is_some());
    rt.block_on(async {
        wait_for("the witness alarm", async || {
            witness_metric(&server.url, "witness_alarm").await == Some(1)
        })
        .await;
        let readiness: Value =
            serde_json::from_str(&get_text(&format!("{}/readyz", server.url)).await).unwrap();
        let warnings = readiness["warnings"].to_string();
        assert!(
            warnings.contains("witness offsite") && warnings.contains("tree size 150"),
            "{readiness}"
        );
        ingest_batches(&server.url, &key, 1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    let kept = std::fs::read_to_string(witness.join("latest.checkpoint")).unwrap();
    assert_eq!(
        note_size(&kept),
        150,
        "the witness's checkpoint is left as evidence"
    );
    server.stop();
}

#[test]
fn a_truncated_embedded_log_is_caught_by_its_witness() {
    truncation_drill(None, |data, kept| {
        let db = rusqlite::Connection::open(data.join("log.sqlite")).unwrap();
        db.execute("DELETE FROM events WHERE seq > ?1", [kept as i64])
            .unwrap();
        db.execute(
            "DELETE FROM checkpoints WHERE tree_size > ?1",
            [kept as i64],
        )
        .unwrap();
    });
}

#[test]
fn a_truncated_postgres_log_is_caught_by_its_witness() {
    let db = sealtrail_testkit::pg::TestDatabase::create();
    let out = sealtrail(&["migrate", "--database-url", &db.url]);
    assert!(out.status.success(), "{out:?}");
    truncation_drill(Some(&db.url), |_, kept| {
        // A superuser, bypassing the log's triggers.
        let mut client = db.client();
        let kept = kept as i64;
        client
            .batch_execute("SET session_replication_role = replica")
            .unwrap();
        client
            .execute("DELETE FROM events WHERE seq > $1", &[&kept])
            .unwrap();
        client
            .execute("DELETE FROM event_ids WHERE seq > $1", &[&kept])
            .unwrap();
        client
            .execute("DELETE FROM checkpoints WHERE tree_size > $1", &[&kept])
            .unwrap();
    });
}

/// `tlog_witness.py` as a child: its URL; killed when dropped.
struct TlogWitness {
    child: Child,
    url: String,
}

impl TlogWitness {
    fn start(log_key: &str, state: &Path) -> Self {
        let env = sealtrail_testkit::python::EVIDENCE_PYTHON_ENV;
        let python = std::env::var_os(env).unwrap_or_else(|| {
            panic!("{env} is not set: run `cargo xtask test` (it installs `cryptography`)")
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tlog_witness.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--log-key", log_key, "--state", state.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, url }
    }

    async fn state(&self) -> Value {
        serde_json::from_str(&get_text(&format!("{}/_state", self.url)).await).unwrap()
    }

    async fn fail_next(&self, status: u16, count: u32) {
        let response = sealtrail_testkit::http_client()
            .post(format!("{}/_fail", self.url))
            .json(&json!({ "status": status, "count": count }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}

impl Drop for TlogWitness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_tlog_witness_cosigns_every_newer_checkpoint_and_exposes_a_truncation() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = create_key(&data);
    let rt = runtime();
    // The witness is configured with the log's public key, made at the first start.
    let first = ServeProcess::start(&data);
    let vkey = rt.block_on(async {
        let answer: Value = sealtrail_testkit::http_client()
            .get(format!("{}/v1/public-key", first.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["vkey"].as_str().unwrap().to_owned()
    });
    first.stop();
    let witness = TlogWitness::start(&vkey, &work.path().join("witness-state.json"));
    let config = config_with_witness(work.path(), &witness.url, None);

    let server = start(&data, &config, false);
    rt.block_on(async {
        ingest_batches(&server.url, &key, 1).await;
        wait_for("the first cosignature", async || {
            witness.state().await["size"] == 50
        })
        .await;
        // The witness fails twice (503), then takes the newer checkpoint with the proof
        // from the size it holds.
        witness.fail_next(503, 2).await;
        ingest_batches(&server.url, &key, 2).await;
        wait_for("the witness to hold the newest checkpoint", async || {
            witness.state().await["size"] == 150
        })
        .await;
        let state = witness.state().await;
        assert_eq!(state["faults_left"], 0, "{state}");
        assert_eq!(state["refused"], 0, "{state}");
        assert!(witness_metric(&server.url, "witness_push_failures").await >= Some(2));
        assert_eq!(witness_metric(&server.url, "witness_alarm").await, Some(0));
        // The kept checkpoint can be read back over HTTP for verify.
        let note = get_text(&format!("{}/checkpoint", witness.url)).await;
        assert_eq!(note_size(&note), 150);
    });
    server.stop();
    let kept_url = format!("{}/checkpoint", witness.url);
    let (ok, out) = verify(&data, None, Some(&kept_url));
    assert!(ok, "{out}");

    // Cut the log back to 50 events; the restarted server is told by the witness (409)
    // that it holds 150 and raises the alarm.
    let db = rusqlite::Connection::open(data.join("log.sqlite")).unwrap();
    db.execute("DELETE FROM events WHERE seq > 50", []).unwrap();
    db.execute("DELETE FROM checkpoints WHERE tree_size > 50", [])
        .unwrap();
    drop(db);
    let (ok, out) = verify(&data, None, Some(&kept_url));
    assert!(!ok && out.contains("tree size 150"), "{out}");
    let server = start(&data, &config, false);
    rt.block_on(async {
        ingest_batches(&server.url, &key, 1).await;
        wait_for("the witness alarm", async || {
            witness_metric(&server.url, "witness_alarm").await == Some(1)
        })
        .await;
        let readiness = get_text(&format!("{}/readyz", server.url)).await;
        assert!(readiness.contains("tree size 150"), "{readiness}");
        assert_eq!(witness.state().await["size"], 150);
    });
    server.stop();
}
