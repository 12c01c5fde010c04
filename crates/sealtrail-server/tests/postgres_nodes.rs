//! Two servers on one PostgreSQL database: both take ingest, they write one log between
//! them (one at a time, gap-free), and a live stream on either delivers every event,
//! whichever server stored it.

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
    // The second server has a data directory of its own, with copies of the log's signing
    // key and of the API keys.
    let b_dir = tempfile::tempdir().unwrap();
    for file in ["log-signing.key", "keys.sqlite", "keys.sqlite-wal"] {
        if a.dir.path().join(file).exists() {
            std::fs::copy(a.dir.path().join(file), b_dir.path().join(file)).unwrap();
        }
    }
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
