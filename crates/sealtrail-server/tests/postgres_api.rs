//! The API on the PostgreSQL store, where it differs in path: tenant-bound keys read
//! through row-level security, stats are counted by PostgreSQL, and proofs come from its
//! tables.

mod common;

use common::TestServer;
use sealtrail_core::Scope;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_bound_key_reads_only_its_tenant_through_row_level_security() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let server = TestServer::start_with(move |c| c.database_url = Some(url)).await;
    let admin = server.key(&[Scope::Admin], None);
    let events: Vec<_> = (0..30)
        .map(|n| {
            json!({"tenant_id": if n % 3 == 0 { "bloom" } else { "lakeside" },
                   "action": "guest.rsvp.updated", "resource_type": "guest",
                   "severity": if n % 2 == 0 { "info" } else { "warning" }})
        })
        .collect();
    let (status, _) = server
        .post_json(&admin, "/v1/events", &json!({ "events": events }))
        .await;
    assert_eq!(status, 201);

    let bloom = server.key(&[Scope::Read], Some("bloom"));
    let (status, page) = server.get(&bloom, "/v1/events?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    let tenants: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(tenants.len(), 10);
    assert!(tenants.iter().all(|t| *t == "bloom"));
    let (status, stats) = server.get(&bloom, "/v1/stats?group_by=severity").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total"], 10);
    let (status, _) = server.get(&bloom, "/v1/events?tenant_id=lakeside").await;
    assert_eq!(status, 403);

    // An event by id comes with its inclusion proof against a durable checkpoint.
    let id = page["events"][0]["id"].as_str().unwrap().to_owned();
    let (status, found) = server.get(&bloom, &format!("/v1/events/{id}")).await;
    assert_eq!(status, 200, "{found}");
    let (status, proof) = server
        .get(&admin, "/v1/proofs/consistency?from=10&to=30")
        .await;
    assert_eq!(status, 200, "{proof}");
    server.stop().await;
}
