//! Per-source sequence numbers: `GET /v1/sources` reports, per producer instance, the
//! numbers that never reached the log, confined to a key's tenant, kept across restarts,
//! and counted once on a database several servers share.

mod common;

use common::{TestServer, eventually};
use sealtrail_core::Scope;
use serde_json::{Value, json};

fn stamped(tenant: &str, source: &str, seqs: impl IntoIterator<Item = u64>) -> Value {
    let events: Vec<Value> = seqs
        .into_iter()
        .map(|n| {
            json!({"tenant_id": tenant, "action": "guest.rsvp.updated", "resource_type": "guest",
                   "resource_id": n, "source": source, "source_seq": n})
        })
        .collect();
    json!({ "events": events })
}

async fn sources(server: &TestServer, key: &str, query: &str) -> Value {
    let (status, page) = server.get(key, &format!("/v1/sources{query}")).await;
    assert_eq!(status, 200, "{page}");
    page
}

/// Waits until the tracker has read the whole log, then the named source.
async fn source(server: &TestServer, key: &str, tenant: &str, name: &str, highest: u64) -> Value {
    let mut found = Value::Null;
    eventually("the tracker reads the log", async || {
        let page = sources(server, key, &format!("?tenant_id={tenant}")).await;
        found = page["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == name)
            .cloned()
            .unwrap_or(Value::Null);
        found["highest_seq"] == highest
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holes_are_reported_per_source_confined_to_the_keys_tenant_and_kept_across_a_restart() {
    let server = TestServer::start().await;
    let admin = server.key(&[Scope::Admin], None);
    // wedding-api/a lost 4 and 7..=9 on its way; wedding-api/b lost nothing.
    let a = [1, 2, 3, 5, 6, 10];
    for body in [
        stamped("bloom", "wedding-api/a", a),
        stamped("bloom", "wedding-api/b", 1..=3),
        stamped("lakeside", "wedding-api/a", 1..=2),
    ] {
        let (status, answer) = server.post_json(&admin, "/v1/events", &body).await;
        assert_eq!(status, 201, "{answer}");
    }
    // An unstamped event is none of the tracker's business.
    let (status, _) = server
        .post_json(
            &admin,
            "/v1/events",
            &json!({"tenant_id": "bloom", "action": "a", "resource_type": "g"}),
        )
        .await;
    assert_eq!(status, 201);
    let found = source(&server, &admin, "bloom", "wedding-api/a", 10).await;
    assert_eq!(
        (found["received"].as_u64(), found["missing"].as_u64()),
        (Some(6), Some(4))
    );
    assert_eq!(
        found["holes"],
        json!([{"from": 4, "to": 4}, {"from": 7, "to": 9}])
    );

    // A late event closes its hole; a retry of it (same id) counts nothing.
    let mut late = stamped("bloom", "wedding-api/a", [4]);
    late["events"][0]["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d");
    for _ in 0..2 {
        let (status, answer) = server.post_json(&admin, "/v1/events", &late).await;
        assert_eq!(status, 201, "{answer}");
    }
    // Seen again under a new id (a producer bug): one number, still counted once.
    late["events"][0]["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5e");
    let (status, _) = server.post_json(&admin, "/v1/events", &late).await;
    assert_eq!(status, 201);
    eventually("the late event is counted", async || {
        let page = sources(&server, &admin, "?tenant_id=bloom&missing=true").await;
        page["sources"].as_array().unwrap().len() == 1 && page["sources"][0]["missing"] == 3
    })
    .await;
    let page = sources(&server, &admin, "?tenant_id=bloom&missing=true").await;
    assert_eq!(page["sources"][0]["received"], 7);
    assert_eq!(page["sources"][0]["holes"], json!([{"from": 7, "to": 9}]));

    // A tenant-bound key sees its own tenant's sources only.
    let lakeside = server.key(&[Scope::Read], Some("lakeside"));
    let page = sources(&server, &lakeside, "").await;
    let tenants: Vec<&Value> = page["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["tenant_id"])
        .collect();
    assert_eq!(tenants, [&json!("lakeside")]);
    let (status, refused) = server.get(&lakeside, "/v1/sources?tenant_id=bloom").await;
    assert_eq!(status, 403, "{refused}");

    // Pages in (tenant, source) order.
    let first = sources(&server, &admin, "?limit=2").await;
    let names: Vec<String> = first["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["tenant_id"].as_str().unwrap(),
                s["source"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["bloom wedding-api/a", "bloom wedding-api/b"]);
    let next = first["next"].as_str().unwrap();
    let second = sources(
        &server,
        &admin,
        &format!("?limit=2&after={}", next.replace(' ', "%20")),
    )
    .await;
    assert_eq!(second["sources"][0]["tenant_id"], "lakeside");
    assert!(second["next"].is_null());

    // Bad parameters are refused by name.
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?missing=maybe", "missing"),
        ("?after=x", "after"),
        ("?colour=red", "colour"),
    ] {
        let (status, error) = server.get(&admin, &format!("/v1/sources{query}")).await;
        assert_eq!(
            (status, error["field"].as_str()),
            (400, Some(field)),
            "{query}: {error}"
        );
    }

    // The metrics count every source's missing events.
    eventually("the metrics count the holes", async || {
        let (_, metrics) = server.get_open("/metrics").await;
        metrics.contains("sealtrail_source_missing_events 3")
            && metrics.contains("sealtrail_sources 3")
    })
    .await;

    let server = server.restart().await;
    let found = source(&server, &admin, "bloom", "wedding-api/a", 10).await;
    assert_eq!(found["missing"], 3, "kept across a restart: {found}");
    let (status, _) = server
        .post_json(
            &admin,
            "/v1/events",
            &stamped("bloom", "wedding-api/a", [7, 8, 9]),
        )
        .await;
    assert_eq!(status, 201);
    eventually("the holes close", async || {
        sources(&server, &admin, "?missing=true").await["sources"]
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_sharing_a_database_count_each_event_once() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let first_url = url.clone();
    let first = TestServer::start_with(move |c| c.database_url = Some(first_url)).await;
    let (second, _second_dir) = common::another_server(&first, &url).await;
    let admin = first.key(&[Scope::Admin], None);
    // One producer's batches land on either server; 50 never arrives.
    for (i, chunk) in (1..=100u64)
        .filter(|n| *n != 50)
        .collect::<Vec<_>>()
        .chunks(9)
        .enumerate()
    {
        let server = if i % 2 == 0 { &first } else { &second };
        let (status, answer) = server
            .post_json(
                &admin,
                "/v1/events",
                &stamped("bloom", "wedding-api/p1", chunk.to_vec()),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    for server in [&first, &second] {
        let found = source(server, &admin, "bloom", "wedding-api/p1", 100).await;
        assert_eq!(
            (found["received"].as_u64(), found["missing"].as_u64()),
            (Some(99), Some(1)),
            "{found}"
        );
        assert_eq!(found["holes"], json!([{"from": 50, "to": 50}]));
    }
}
