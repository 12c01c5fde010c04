//! One sink configured on three `sealtrail serve` processes on one PostgreSQL database:
//! it runs on one of them at a time, under a lease. Each event reaches the receiver once
//! while the holder lives; SIGKILL the holder and another server takes the sink over from
//! the saved cursor, losing nothing (redelivering at most what was sent after the last
//! saved cursor: at least once). The time to take over and the duplicates are printed.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ServeProcess, sealtrail};
use serde_json::{Value, json};

/// Seconds a lease lasts without renewal in this test.
const LEASE_SECS: u64 = 2;
const BATCH: usize = 20;

/// What the receiver got: deliveries per event id, and when the last request came.
#[derive(Default)]
struct Received {
    per_id: HashMap<String, u32>,
    requests: u64,
}

/// A webhook receiver on a port of its own counting every event it is sent.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let seen = received.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let seen = seen.clone();
        async move {
            let body: Value = serde_json::from_str(&body).unwrap();
            let events = match body["type"].as_str() {
                Some("audit_events.created") => body["data"]["events"].as_array().unwrap().clone(),
                _ => vec![body["data"].clone()],
            };
            let mut seen = seen.lock().unwrap();
            seen.requests += 1;
            for event in events {
                *seen
                    .per_id
                    .entry(event["id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, received)
}

fn config(dir: &Path, database_url: &str, receiver: &str) -> PathBuf {
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let path = dir.join("sealtrail.toml");
    std::fs::write(
        &path,
        format!(
            "database_url = {database_url:?}\nsink_lease_secs = {LEASE_SECS}\n\n\
             [[sinks]]\nname = \"caterer\"\nkind = \"webhook\"\nurl = \"{receiver}/hook\"\n\
             secret = {{ file = {:?} }}\nstart = \"oldest\"\n\n\
             [[routes]]\nsinks = [\"caterer\"]\n",
            secret.display()
        ),
    )
    .unwrap();
    path
}

async fn ingest(url: &str, key: &str, first: usize, batches: usize) {
    let client = sealtrail_testkit::http_client();
    for b in 0..batches {
        let events: Vec<Value> = (0..BATCH)
            .map(|i| {
                json!({
                    "tenant_id": "bloom-and-vine", "action": "guest.dietary_restriction.updated",
                    "resource_type": "guest", "resource_id": format!("g{}", first + b * BATCH + i),
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

/// The sink as one server shows it.
async fn sink_status(url: &str, key: &str) -> Value {
    let client = sealtrail_testkit::http_client();
    let sinks: Value = client
        .get(format!("{url}/v1/sinks"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sinks[0].clone()
}

/// `sealtrail_sink_lease_held{sink="caterer"}` in the server's /metrics.
async fn lease_metric(url: &str) -> i64 {
    let text = sealtrail_testkit::http_client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("sealtrail_sink_lease_held{sink=\"caterer\"} "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no lease metric in {text}"))
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_sink_on_three_servers_delivers_once_and_moves_when_its_holder_is_killed() {
    let db = sealtrail_testkit::pg::TestDatabase::create();
    let out = sealtrail(&["migrate", "--database-url", &db.url]);
    assert!(out.status.success(), "{out:?}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (hook, received) = receiver().await;
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let key_out = sealtrail(&[
            "keys",
            "create",
            "--database-url",
            &db.url,
            "--scopes",
            "ingest,read,admin",
        ]);
        assert!(key_out.status.success(), "{key_out:?}");
        let key = String::from_utf8(key_out.stdout).unwrap().trim().to_owned();

        let first = ServeProcess::start_postgres_with_env(
            dirs[0].path(),
            &config(dirs[0].path(), &db.url, &hook),
            &[],
        );
        let mut servers = vec![Some(first)];
        for dir in &dirs[1..] {
            std::fs::copy(
                dirs[0].path().join("log-signing.key"),
                dir.path().join("log-signing.key"),
            )
            .unwrap();
            let config = config(dir.path(), &db.url, &hook);
            servers.push(Some(ServeProcess::start_postgres_with_env(
                dir.path(),
                &config,
                &[],
            )));
        }
        let urls: Vec<String> = servers
            .iter()
            .map(|s| s.as_ref().unwrap().url.clone())
            .collect();

        // Events through every server: each reaches the receiver once.
        for (i, url) in urls.iter().enumerate() {
            ingest(url, &key, i * 5 * BATCH, 5).await;
        }
        let phase_one = 3 * 5 * BATCH;
        wait_for("every event delivered", Duration::from_secs(20), || {
            received.lock().unwrap().per_id.len() >= phase_one
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        {
            let received = received.lock().unwrap();
            assert_eq!(received.per_id.len(), phase_one);
            let twice = received.per_id.values().filter(|n| **n > 1).count();
            assert_eq!(twice, 0, "three servers, one delivery of each event");
        }

        // One holds the lease; the others stand by naming it.
        let mut statuses = Vec::new();
        for url in &urls {
            statuses.push(sink_status(url, &key).await);
        }
        let holders: Vec<usize> = (0..3).filter(|i| statuses[*i]["lease"] == "held").collect();
        assert_eq!(holders.len(), 1, "{statuses:?}");
        let holder = holders[0];
        let holder_name = statuses[holder]["lease_holder"].clone();
        for (i, status) in statuses.iter().enumerate() {
            if i != holder {
                assert_eq!(status["lease"], "standby", "{status}");
                assert_eq!(status["lease_holder"], holder_name, "{status}");
            }
            assert_eq!(lease_metric(&urls[i]).await, i64::from(i == holder));
        }

        // SIGKILL the holder while events keep coming through the others.
        let others: Vec<String> = (0..3)
            .filter(|i| *i != holder)
            .map(|i| urls[i].clone())
            .collect();
        let producer = {
            let (others, key) = (others.clone(), key.clone());
            tokio::spawn(async move {
                for round in 0..10 {
                    let url = &others[round % 2];
                    ingest(url, &key, phase_one + round * 2 * BATCH, 2).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let total = phase_one + 10 * 2 * BATCH;
        wait_for(
            "deliveries after phase one",
            Duration::from_secs(20),
            || received.lock().unwrap().per_id.len() >= phase_one + 3 * BATCH,
        )
        .await;
        let before_kill = received.lock().unwrap().per_id.len();
        let requests_at_kill = received.lock().unwrap().requests;
        servers[holder].take().unwrap().kill_hard();
        let killed_at = Instant::now();
        wait_for(
            "a request from the server that took over",
            Duration::from_secs(LEASE_SECS * 5),
            || received.lock().unwrap().requests > requests_at_kill,
        )
        .await;
        let takeover = killed_at.elapsed();
        producer.await.unwrap();
        wait_for(
            "every event delivered after the takeover",
            Duration::from_secs(30),
            || received.lock().unwrap().per_id.len() >= total,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (delivered, duplicates) = {
            let received = received.lock().unwrap();
            let duplicates: u32 = received.per_id.values().map(|n| n - 1).sum();
            (received.per_id.len(), duplicates)
        };
        assert_eq!(delivered, total, "nothing lost");
        println!(
            "sink lease ({LEASE_SECS} s): {before_kill} of {total} events delivered when the \
             holder was killed; another server sent its first request {} ms later; \
             {duplicates} events delivered twice",
            takeover.as_millis()
        );
        assert!(
            takeover < Duration::from_secs(LEASE_SECS + 3),
            "taken over within the lease and a poll: {takeover:?}"
        );
        // At least once: at most what was sent after the holder's last saved cursor (a
        // few batches), never the log again.
        assert!(
            (duplicates as usize) < 10 * BATCH,
            "{duplicates} duplicates"
        );

        // The new holder is one of the survivors, and a clean stop hands over at once.
        let mut new_holder = None;
        for i in (0..3).filter(|i| *i != holder) {
            if sink_status(&urls[i], &key).await["lease"] == "held" {
                new_holder = Some(i);
            }
        }
        let new_holder = new_holder.expect("a survivor holds the lease");
        let last = (0..3).find(|i| *i != holder && *i != new_holder).unwrap();
        servers[new_holder].take().unwrap().stop();
        let stopped_at = Instant::now();
        let mut handed_over = false;
        while stopped_at.elapsed() < Duration::from_secs(LEASE_SECS) {
            if sink_status(&urls[last], &key).await["lease"] == "held" {
                handed_over = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "after a clean stop the last server held the lease {} ms later",
            stopped_at.elapsed().as_millis()
        );
        assert!(
            handed_over,
            "a clean stop gives the lease up before it expires"
        );
        servers[last].take().unwrap().stop();
    });
}
