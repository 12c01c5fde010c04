//! The access log: every read made with a key leaves an `audit_log.*` event in the tenant
//! it read, so "who looked at this guest's records?" is an ordinary query.

mod common;

use common::{SseClient, TestServer, WsClient, eventually, guest_event};
use sealtrail_core::Scope;
use serde_json::{Value, json};

async fn start() -> TestServer {
    TestServer::start_with(|c| c.access_log.enabled = true).await
}

/// The access events of `tenant`, oldest first.
async fn accesses(s: &TestServer, officer: &str, tenant: &str) -> Vec<Value> {
    let (status, page) = s
        .get(
            officer,
            &format!("/v1/events?tenant_id={tenant}&action=audit_log.*&order=asc&limit=1000"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_is_recorded_in_the_tenant_it_read() {
    let s = start().await;
    let writer = s.key(&[Scope::Ingest], Some("acme"));
    let other_writer = s.key(&[Scope::Ingest], Some("globex"));
    let reader = s.key(&[Scope::Read], Some("acme"));
    let everyone = s.key(&[Scope::Read], None);
    let reader_id = reader.split('_').nth(1).unwrap().to_owned();
    assert_eq!(s.post_batch(&writer, 0..5).await.0, 201);
    assert_eq!(s.post_batch(&other_writer, 5..7).await.0, 201);

    // A coordinator's tool looks at guest-3's history, then at one event with its proof.
    let (_, page) = s
        .get(
            &reader,
            "/v1/events?resource_type=guest&resource_id=guest-3",
        )
        .await;
    let id = page["events"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&reader, &format!("/v1/events/{id}")).await.0, 200);
    assert_eq!(s.get(&reader, "/v1/stats?group_by=severity").await.0, 200);

    // The compliance officer asks: who looked at guest-3?
    let officer = s.key(&[Scope::Read], None);
    let (_, looked) = s
        .get(
            &officer,
            "/v1/events?tenant_id=acme&resource_id=guest-3&action=audit_log.*&order=asc",
        )
        .await;
    let looked = looked["events"].as_array().unwrap();
    assert_eq!(looked.len(), 2, "{looked:?}");
    assert_eq!(looked[0]["action"], "audit_log.read");
    assert_eq!(looked[0]["user_id"], format!("key:{reader_id}"));
    assert_eq!(looked[0]["actor_type"], "service");
    assert_eq!(looked[0]["resource_type"], "guest");
    assert_eq!(
        looked[0]["details"]["filter"],
        json!({"resource_type": "guest", "resource_id": "guest-3"})
    );
    assert_eq!(looked[0]["details"]["result_count"], 1);
    assert_eq!(looked[0]["ip_address"], "127.0.0.1");
    assert_eq!(looked[1]["action"], "audit_log.read_event");
    assert_eq!(looked[1]["details"]["event_id"], id);

    let acme = accesses(&s, &officer, "acme").await;
    assert!(
        acme.iter().any(|e| e["action"] == "audit_log.stats"),
        "{acme:?}"
    );

    // An unconfined read is recorded in each tenant whose events it returned.
    let (_, all) = s.get(&everyone, "/v1/events?limit=1000").await;
    assert!(all["events"].as_array().unwrap().len() >= 7);
    let globex = accesses(&s, &officer, "globex").await;
    let read = globex
        .iter()
        .find(|e| e["action"] == "audit_log.read")
        .unwrap();
    assert_eq!(
        read["details"]["result_count"], 2,
        "globex's share of the result"
    );
    // Stats over every tenant go to the global tenant.
    assert_eq!(s.get(&everyone, "/v1/stats?group_by=action").await.0, 200);
    let global = accesses(&s, &officer, "_sealtrail").await;
    assert!(
        global.iter().any(|e| e["action"] == "audit_log.stats"),
        "{global:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_subscriptions_and_proofs_are_recorded() {
    let s = start().await;
    let writer = s.key(&[Scope::Ingest, Scope::Read], Some("acme"));
    let follower = s.key(&[Scope::Stream], Some("acme"));
    let officer = s.key(&[Scope::Read], None);
    assert_eq!(s.post_batch(&writer, 0..3).await.0, 201);

    let mut sse = SseClient::connect(&s.base, &follower, "", None).await;
    let mut ws = WsClient::connect(&s.base, &follower).await;
    ws.send(json!({"type": "subscribe", "id": "s1", "filter": {"severity": "warning"}}))
        .await;
    let (_, proof) = s.get(&writer, "/v1/proofs/consistency?from=1&to=3").await;
    assert!(proof["hashes"].is_array(), "{proof}");
    eventually("the subscriptions and the proof are recorded", async || {
        let seen = accesses(&s, &officer, "acme").await;
        seen.iter()
            .filter(|e| e["action"] == "audit_log.subscribe")
            .count()
            == 2
            && seen.iter().any(|e| e["action"] == "audit_log.proof")
    })
    .await;
    let seen = accesses(&s, &officer, "acme").await;
    let own =
        |e: &Value| e["action"] == "audit_log.subscribe" && e["details"]["filter"] == json!({});
    let sse_record = seen.iter().find(|e| own(e)).unwrap();
    assert_eq!(sse_record["resource_type"], "audit_log");
    // A new stream starts after its own record: it sees the later ones (the WebSocket's,
    // the proof's), not its own.
    assert_eq!(
        s.post_json(&writer, "/v1/events", &guest_event(9)).await.0,
        201
    );
    let mut later_records = 0;
    loop {
        let (_, event) = sse.next_event().await.unwrap();
        if event["resource_id"] == "guest-9" {
            break;
        }
        assert!(!own(&event), "the stream saw its own record: {event}");
        later_records += 1;
    }
    assert!(
        later_records >= 2,
        "the WebSocket's and the proof's records come through"
    );
}
