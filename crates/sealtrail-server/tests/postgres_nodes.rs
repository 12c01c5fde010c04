//! Several servers on one PostgreSQL database: both take ingest, they write one log between
//! them (one at a time, gap-free), and a live stream on either delivers every event,
//! whichever server stored it; an API key made or revoked on one is honoured by all.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{SseClient, TestServer};
use sealtrail_core::Scope;
use serde_json::json;

const PER_SERVER_BATCHES: u64 = 30;
const BATCH_EVENTS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_log_and_every_stream_sees_every_event() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let a_url = url.clone();
    let a = TestServer::start_with(move |c| c.database_url = Some(a_url)).await;
    let key = a.key(&[Scope::Admin], None);
    // The second server has a data directory of its own, with a copy of the log's signing
    // key (the API keys are in the database).
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a.dir.path().join("log-signing.key"),
        b_dir.path().join("log-signing.key"),
    )
    .unwrap();
    let (b_url, b_path) = (url.clone(), b_dir.path().to_owned());
    let b = TestServer::start_with(move |c| {
        c.database_url = Some(b_url);
        c.data_dir = b_path;
    })
    .await;

    let mut streams = vec![
        SseClient::connect(&a.base, &key, "since=0", None).await,
        SseClient::connect(&b.base, &key, "since=0", None).await,
    ];
    let producers: Vec<_> = [a.base.clone(), b.base.clone()]
        .into_iter()
        .enumerate()
        .map(|(node, base)| {
            let key = key.clone();
            tokio::spawn(async move {
                let http = sealtrail_testkit::http_client();
                for batch in 0..PER_SERVER_BATCHES {
                    let events: Vec<_> = (0..BATCH_EVENTS)
                        .map(|i| {
                            json!({
                                "tenant_id": format!("node-{node}"), "action": "guest.rsvp.updated",
                                "resource_type": "guest", "resource_id": format!("{batch}-{i}"),
                            })
                        })
                        .collect();
                    let response = http
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(&key)
                        .json(&json!({ "events": events }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    let total = 2 * PER_SERVER_BATCHES * BATCH_EVENTS;
    for (name, stream) in ["first", "second"].into_iter().zip(&mut streams) {
        let mut seqs = Vec::new();
        let mut tenants = HashSet::new();
        while (seqs.len() as u64) < total {
            let (seq, event) = tokio::time::timeout(Duration::from_secs(20), stream.next_event())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the {name} server's stream stalled at {} events",
                        seqs.len()
                    )
                })
                .expect("the stream stays open");
            tenants.insert(event["tenant_id"].as_str().unwrap().to_owned());
            seqs.push(seq);
        }
        assert_eq!(
            seqs,
            (1..=total).collect::<Vec<_>>(),
            "the {name} server streams every event once, in seq order"
        );
        assert_eq!(tenants.len(), 2, "events stored through both servers");
    }
    // Each server reads what the other stored, with proofs against a durable checkpoint.
    for server in [&a, &b] {
        let (status, page) = server
            .get(&key, "/v1/events?tenant_id=node-0&limit=1000")
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            page["events"].as_array().unwrap().len() as u64,
            PER_SERVER_BATCHES * BATCH_EVENTS
        );
        let id = page["events"][0]["id"].as_str().unwrap().to_owned();
        let (status, found) = server.get(&key, &format!("/v1/events/{id}")).await;
        assert_eq!(status, 200, "{found}");
    }
    drop(streams);
    b.stop().await;
    a.stop().await;
}

/// A server on `url` sharing the signing key of `first`.
async fn another_server(first: &TestServer, url: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.dir.path().join("log-signing.key"),
        dir.path().join("log-signing.key"),
    )
    .unwrap();
    let (url, path) = (url.to_owned(), dir.path().to_owned());
    let server = TestServer::start_with(move |c| {
        c.database_url = Some(url);
        c.data_dir = path;
    })
    .await;
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_or_revoked_on_one_of_three_servers_is_honoured_by_all_within_a_second() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let a_url = url.clone();
    let a = TestServer::start_with(move |c| c.database_url = Some(a_url)).await;
    let (b, _b_dir) = another_server(&a, &url).await;
    let (c, _c_dir) = another_server(&a, &url).await;
    let admin = a.key(&[Scope::Admin], None);

    // Made through the API of server a, used at once on b and c.
    let (status, created) = a
        .post_json(
            &admin,
            "/v1/keys",
            &json!({"scopes": ["ingest", "read"], "tenant_id": "bloom"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    for server in [&b, &c] {
        let (status, body) = server.get(&key, "/v1/events?limit=1").await;
        assert_eq!(status, 200, "a key made on another server: {body}");
    }

    // Revoked through b: refused by b at once, by a and c within a second.
    let revoked = b
        .http
        .delete(b.url(&format!("/v1/keys/{key_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let started = std::time::Instant::now();
    assert_eq!(b.get(&key, "/v1/events?limit=1").await.0, 401);
    let mut refused_after = Vec::new();
    for server in [&a, &c] {
        while server.get(&key, "/v1/events?limit=1").await.0 != 401 {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "still accepted a second after the revocation"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        refused_after.push(started.elapsed());
    }
    println!("a key revoked on one server was refused by the other two after {refused_after:?}");
}
