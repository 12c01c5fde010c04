//! The `sealtrail` binary end to end: keys, serve, ingest, query, verify — and a SIGKILL
//! during concurrent ingest that must lose no acknowledged event.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{BIN, ServeProcess, all_events, sealtrail};

fn create_key(dir: &Path, scopes: &str, tenant: Option<&str>) -> String {
    let mut args = vec![
        "keys",
        "create",
        "--data-dir",
        dir.to_str().unwrap(),
        "--scopes",
        scopes,
    ];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    let out = sealtrail(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key alone on stdout: {stdout:?}");
    assert!(lines[0].starts_with("st_"));
    lines[0].to_owned()
}

/// A `sealtrail serve` child on a port the OS chose.
/// `/readyz`: (tree size, index lag).
fn ready(url: &str) -> (u64, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ready: Value = runtime.block_on(async {
        sealtrail_testkit::http_client()
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    (
        ready["tree_size"].as_u64().unwrap(),
        ready["index_lag_events"].as_u64().unwrap(),
    )
}

#[test]
fn keys_serve_ingest_query_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "ingest,read", Some("bloom"));
    let admin = create_key(dir.path(), "admin", None);
    let server = ServeProcess::start(dir.path());
    let input = dir.path().join("events.ndjson");
    let lines: Vec<String> = (0..1200)
        .map(|n| {
            json!({"action": "guest.rsvp.updated", "resource_type": "guest", "resource_id": n.to_string(),
                   "severity": if n % 10 == 0 { "critical" } else { "info" }})
            .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = sealtrail(&[
        "ingest",
        input.to_str().unwrap(),
        "--url",
        &server.url,
        "--key",
        &key,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ingested 1200 events"),
        "{out:?}"
    );
    // Running the same import again (after an interruption, say) stores nothing twice: the
    // ids derived for lines without one are the same. A line with a producer id keeps it.
    let with_ids = dir.path().join("with-ids.ndjson");
    std::fs::write(
        &with_ids,
        format!("{}\n", json!({"id": "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d", "action": "a.b", "resource_type": "g"})),
    )
    .unwrap();
    for file in [&input, &with_ids, &with_ids] {
        let out = sealtrail(&[
            "ingest",
            file.to_str().unwrap(),
            "--url",
            &server.url,
            "--key",
            &key,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (tree_size, _) = ready(&server.url);
    assert_eq!(tree_size, 1201, "the re-run stored nothing new");
    let out = sealtrail(&[
        "spool",
        "receipt",
        "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d",
        "--url",
        &server.url,
        "--key",
        &key,
    ]);
    let receipt: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(receipt["status"], "stored", "{receipt}");
    assert_eq!(receipt["seq"], 1201, "{receipt}");
    let out = sealtrail(&["spool", "rejected", "--url", &server.url, "--key", &admin]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 spooled events refused"),
        "{out:?}"
    );
    let out = sealtrail(&[
        "query",
        "--url",
        &server.url,
        "--key",
        &key,
        "--severity",
        "critical",
        "--limit",
        "500",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 120);
    let out = sealtrail(&["query", "--url", &server.url, "--key", &key, "--limit", "3"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("SEQ"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    server.stop();

    let out = sealtrail(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{summary}");
    assert!(summary.starts_with("ok: 1201 events"), "{summary}");

    let db = rusqlite::Connection::open(dir.path().join("log.sqlite")).unwrap();
    db.execute(
        "UPDATE events SET record = replace(record, '\"info\"', '\"warning\"') WHERE seq = 77",
        [],
    )
    .unwrap();
    let out = sealtrail(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    let summary = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{summary}");
    assert!(
        summary.contains("seq 77") && summary.contains("edited"),
        "{summary}"
    );
}

#[test]
fn bad_arguments_get_clear_errors() {
    let out = sealtrail(&[
        "keys",
        "create",
        "--data-dir",
        "/nonexistent-parent/x/y",
        "--scopes",
        "write",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scope \"write\""));
    let out = sealtrail(&["verify", "--data-dir", "/nonexistent-sealtrail-dir"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no Sealtrail log"),
        "{out:?}"
    );
}

/// Several clients ingest concurrently; the server is killed with SIGKILL mid-stream and
/// restarted. Every acknowledged event is there exactly once, seqs have no gaps, and
/// `verify` passes.
#[test]
fn sigkill_during_concurrent_ingest_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "ingest,read", Some("crash-test"));
    let server = ServeProcess::start(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = server.url.clone();
    let clients: Vec<_> = (0..6)
        .map(|client| {
            let (url, key, acked) = (url.clone(), key.clone(), acked.clone());
            runtime.spawn(async move {
                let http = sealtrail_testkit::http_client_builder().timeout(Duration::from_secs(10)).build().unwrap();
                for round in 0u64.. {
                    // Alternate single events and batches, every event with its own id.
                    let size = if round % 2 == 0 { 1 } else { 25 };
                    let events: Vec<Value> = (0..size)
                        .map(|i| {
                            json!({"id": uuid::Uuid::now_v7().to_string(), "action": "guest.seating.changed",
                                   "resource_type": "guest", "resource_id": format!("{client}-{round}-{i}")})
                        })
                        .collect();
                    let ids: Vec<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
                    let sent = http.post(format!("{url}/v1/events")).bearer_auth(&key).json(&json!({"events": events})).send().await;
                    match sent {
                        Ok(response) if response.status() == 201 => {
                            // Acknowledged only once the body (the receipt) is read.
                            if response.bytes().await.is_ok() {
                                acked.lock().unwrap().extend(ids);
                            }
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => return round, // the server is gone
                    }
                }
                unreachable!()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 3000 {
        assert!(Instant::now() < deadline, "ingest too slow before the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill_hard();
    for client in clients {
        runtime.block_on(client).unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();

    let server = ServeProcess::start(dir.path());
    let stored = runtime.block_on(all_events(&server.url, &key));
    let mut count: std::collections::HashMap<&str, usize> = Default::default();
    for e in &stored {
        *count.entry(e["id"].as_str().unwrap()).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(
            count.get(id.as_str()),
            Some(&1),
            "acknowledged event {id} must be stored exactly once"
        );
    }
    assert!(count.values().all(|&n| n == 1), "no event stored twice");
    let seqs: BTreeSet<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect(),
        "seqs are gap-free"
    );
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len());
    server.stop();

    let out = sealtrail(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "verify after the crash: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "{} acknowledged, {} stored after SIGKILL",
        acked.len(),
        stored.len()
    );
}

/// `sealtrail tail` prints every matching event once, in order, and resumes by itself
/// across a crash and restart of the server.
#[test]
fn tail_follows_across_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "ingest,read,stream", Some("bloom"));
    // One port for both lives of the server, so tail finds it again.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let server = ServeProcess::start_on(dir.path(), &listen);
    let url = server.url.clone();
    let mut tail = Command::new(BIN)
        .args([
            "tail", "--url", &url, "--key", &key, "--since", "0", "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |url: &str, from: u64| {
        runtime.block_on(async {
            let events: Vec<Value> = (from..from + 20)
                .map(|n| json!({"action": "guest.rsvp.updated", "resource_type": "guest", "resource_id": n.to_string()}))
                .collect();
            let response = sealtrail_testkit::http_client()
                .post(format!("{url}/v1/events"))
                .bearer_auth(&key)
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        })
    };
    let mut seqs = Vec::new();
    let take = |n: usize, seqs: &mut Vec<u64>| {
        for _ in 0..n {
            let line = received
                .recv_timeout(Duration::from_secs(20))
                .expect("tail prints the event");
            let event: Value = serde_json::from_str(&line).unwrap();
            seqs.push(event["seq"].as_u64().unwrap());
        }
    };
    post(&url, 0);
    take(20, &mut seqs);
    server.kill_hard();
    let server = ServeProcess::start_on(dir.path(), &listen);
    post(&server.url, 20);
    take(20, &mut seqs);
    assert_eq!(
        seqs,
        (1..=40).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    assert!(
        received.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing more"
    );
    tail.kill().unwrap();
    let _ = tail.wait();
    server.stop();
}

/// Two servers on one PostgreSQL database; the one writing is killed with SIGKILL in the
/// middle of concurrent ingest. Producers retry on the other, which takes over: every
/// acknowledged event is stored exactly once, the seqs have no gap, and verify passes.
#[test]
fn the_other_server_takes_over_when_one_is_killed_during_ingest() {
    let cluster = sealtrail_testkit::PgCluster::start(60).unwrap();
    let database = cluster.database_url("postgres");
    let out = sealtrail(&["migrate", "--database-url", &database]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "ingest,read", None);
    let first = ServeProcess::start_postgres(dir.path(), &database);
    // The second server: its own data directory, with copies of the signing key and keys.
    let second_dir = tempfile::tempdir().unwrap();
    for file in ["log-signing.key", "keys.sqlite"] {
        std::fs::copy(dir.path().join(file), second_dir.path().join(file)).unwrap();
    }
    let second = ServeProcess::start_postgres(second_dir.path(), &database);
    let nodes = [first.url.clone(), second.url.clone()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..6usize)
        .map(|client| {
            let (nodes, key, acked, done) = (nodes.clone(), key.clone(), acked.clone(), done.clone());
            runtime.spawn(async move {
                let http = sealtrail_testkit::http_client_builder().timeout(Duration::from_secs(10)).build().unwrap();
                let mut round = 0usize;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let events: Vec<Value> = (0..10)
                        .map(|i| {
                            json!({"id": uuid::Uuid::now_v7().to_string(), "action": "guest.seating.changed",
                                   "tenant_id": "bloom", "resource_type": "guest",
                                   "resource_id": format!("{client}-{round}-{i}")})
                        })
                        .collect();
                    let ids: Vec<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
                    // Spread over both servers; on any failure retry the same events on the other.
                    let mut node = (client + round) % 2;
                    loop {
                        let sent = http
                            .post(format!("{}/v1/events", nodes[node]))
                            .bearer_auth(&key)
                            .json(&json!({"events": events}))
                            .send()
                            .await;
                        if let Ok(response) = sent
                            && response.status() == 201
                            && response.bytes().await.is_ok()
                        {
                            acked.lock().unwrap().extend(ids);
                            break;
                        }
                        node = 1 - node;
                        tokio::time::sleep(Duration::from_millis(50)).await;
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
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(2000);
    first.kill_hard();
    let at_kill = acked.lock().unwrap().len();
    wait_for(at_kill + 2000);
    done.store(true, std::sync::atomic::Ordering::Release);
    for client in clients {
        runtime.block_on(client).unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();

    let stored = runtime.block_on(all_events(&second.url, &key));
    let mut count: std::collections::HashMap<&str, usize> = Default::default();
    for e in &stored {
        *count.entry(e["id"].as_str().unwrap()).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(
            count.get(id.as_str()),
            Some(&1),
            "acknowledged event {id} stored exactly once"
        );
    }
    assert!(count.values().all(|&n| n == 1), "no event stored twice");
    let seqs: BTreeSet<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as u64).collect(),
        "seqs are gap-free"
    );
    second.stop();
    let out = sealtrail(&[
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        &database,
    ]);
    assert!(
        out.status.success(),
        "verify after the failover: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// An Elasticsearch `_bulk` stand-in that stores documents by `_id` (a second `create` of
/// an id is a 409 item, as Elasticsearch answers) and takes 20 ms per request, so a
/// delivery is in flight when the server is killed.
async fn slow_bulk_receiver() -> (String, Arc<Mutex<(BTreeSet<String>, usize)>>) {
    let seen = Arc::new(Mutex::new((BTreeSet::new(), 0usize)));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/_bulk",
        axum::routing::post(move |body: String| {
            let state = state.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut items = Vec::new();
                let mut seen = state.lock().unwrap();
                for action in body.lines().step_by(2) {
                    let action: Value = serde_json::from_str(action).unwrap();
                    let id = action["create"]["_id"].as_str().unwrap().to_owned();
                    seen.1 += 1;
                    let status = if seen.0.insert(id.clone()) { 201 } else { 409 };
                    items.push(json!({"create": {"_id": id, "status": status}}));
                }
                let errors = items.iter().any(|i| i["create"]["status"] == 409);
                axum::Json(json!({"took": 1, "errors": errors, "items": items}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// A sink is delivering when the server is killed with SIGKILL; after a restart it resumes
/// from its saved cursor and the receiver ends up with every event, none twice in the
/// index; `sealtrail sinks list` shows it caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_sink_delivery_loses_nothing() {
    let (base, seen) = slow_bulk_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "ingest,read", Some("acme"));
    let admin = create_key(dir.path(), "admin", None);
    let config = dir.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        format!(
            "[[sinks]]\nname = \"search\"\nkind = \"elasticsearch\"\nurl = \"{base}\"\nmax_batch_events = 10\n\n[[routes]]\nsinks = [\"search\"]\n"
        ),
    )
    .unwrap();
    let server = ServeProcess::start_with_config(dir.path(), &config);
    let client = sealtrail_testkit::http_client();
    for start in (0..1000).step_by(100) {
        let events: Vec<Value> = (start..start + 100)
            .map(|n| json!({"action": "guest.rsvp.updated", "resource_type": "guest", "resource_id": format!("g{n}")}))
            .collect();
        let response = client
            .post(format!("{}/v1/events", server.url))
            .bearer_auth(&key)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().0.len() < 100 {
        assert!(
            Instant::now() < deadline,
            "the sink did not start delivering"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_hard();
    let at_kill = seen.lock().unwrap().0.len();
    assert!(at_kill < 1000, "the kill came after delivery was done");

    let server = ServeProcess::start_with_config(dir.path(), &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().0.len() < 1000 {
        assert!(Instant::now() < deadline, "delivery did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored: BTreeSet<String> = all_events(&server.url, &key)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let (delivered, sent) = seen.lock().unwrap().clone();
    assert_eq!(delivered, stored, "every event, in the index once");
    // At-least-once: at most the requests in flight at the kill are sent again.
    assert!(sent - 1000 <= 20, "{} redelivered", sent - 1000);

    let listed = tokio::task::spawn_blocking({
        let (url, admin) = (server.url.clone(), admin.clone());
        move || sealtrail(&["sinks", "list", "--url", &url, "--key", &admin, "--json"])
    })
    .await
    .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let sinks: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(sinks[0]["name"], "search");
    assert_eq!(sinks[0]["cursor"], 1000);
    assert_eq!(sinks[0]["lag_events"], 0);
    server.stop();
}
