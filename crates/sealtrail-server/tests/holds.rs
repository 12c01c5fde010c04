//! Legal holds over the admin API: placed on a tenant or on a resource, listed, released
//! (once), each change in the log as a `legal_hold.*` event; bound admins confined to their
//! tenant; bad input answered with the field; holds kept across a restart.

mod common;

use common::TestServer;
use sealtrail_core::Scope;
use serde_json::{Value, json};

async fn events_of(s: &TestServer, key: &str, tenant: &str, action: &str) -> Vec<Value> {
    let (status, page) = s
        .get(
            key,
            &format!("/v1/events?tenant_id={tenant}&action={action}"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["events"].as_array().unwrap().clone()
}

fn listed_ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_placed_listed_released_and_recorded_in_the_log() {
    let s = TestServer::start().await;
    let admin = s.key(&[Scope::Admin], None);

    // Tenant-wide.
    let (status, wide) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "acme", "reason": "litigation 2024-17"}),
        )
        .await;
    assert_eq!(status, 201, "{wide}");
    let wide_id = wide["hold"]["id"].as_str().unwrap().to_owned();
    assert_eq!(wide["hold"]["tenant_id"], "acme");
    assert_eq!(wide["hold"]["resource_type"], Value::Null);
    assert_eq!(wide["hold"]["active"], true);
    assert!(wide["seq"].as_u64().unwrap() >= 1);
    assert!(uuid::Uuid::parse_str(&wide_id).is_ok());

    // One resource.
    let (status, one) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "acme", "resource_type": "guest",
            "resource_id": "guest-7", "reason": "subject access dispute"}),
        )
        .await;
    assert_eq!(status, 201, "{one}");
    let one_id = one["hold"]["id"].as_str().unwrap().to_owned();
    assert_eq!(one["hold"]["resource_id"], "guest-7");

    // A resource type, in another tenant.
    let (status, other) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "globex", "resource_type": "vendor", "reason": "audit"}),
        )
        .await;
    assert_eq!(status, 201, "{other}");

    let (status, acme) = s.get(&admin, "/v1/holds?tenant_id=acme").await;
    assert_eq!(status, 200);
    assert_eq!(listed_ids(&acme), [wide_id.as_str(), one_id.as_str()]);
    let (_, every) = s.get(&admin, "/v1/holds").await;
    assert_eq!(every.as_array().unwrap().len(), 3, "{every}");

    // The placings are events in the hold's tenant.
    let placed = events_of(&s, &admin, "acme", "legal_hold.placed").await;
    assert_eq!(placed.len(), 2, "{placed:?}");
    let wide_event = placed
        .iter()
        .find(|e| e["id"] == wide["event_id"])
        .expect("the answer's event is in the log");
    assert_eq!(wide_event["seq"], wide["seq"]);
    assert_eq!(wide_event["resource_type"], "tenant");
    assert_eq!(wide_event["resource_id"], "acme");
    assert_eq!(wide_event["severity"], "warning");
    assert_eq!(wide_event["actor_type"], "service");
    assert_eq!(wide_event["reason"], "litigation 2024-17");
    assert!(wide_event["user_id"].as_str().unwrap().starts_with("key:"));
    assert_eq!(wide_event["details"]["hold_id"], wide_id.as_str());
    let one_event = placed.iter().find(|e| e["id"] == one["event_id"]).unwrap();
    assert_eq!(
        (&one_event["resource_type"], &one_event["resource_id"]),
        (&json!("guest"), &json!("guest-7"))
    );
    assert_eq!(one_event["details"]["resource_id"], "guest-7");
    assert_eq!(
        events_of(&s, &admin, "globex", "legal_hold.placed")
            .await
            .len(),
        1
    );

    // Release: recorded, listed only with all=true, and a second release says so.
    let (status, released) = s
        .post_json(
            &admin,
            &format!("/v1/holds/{wide_id}/release"),
            &json!({"reason": "settled"}),
        )
        .await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["hold"]["active"], false);
    assert_eq!(released["hold"]["release_reason"], "settled");
    assert!(released["hold"]["released_at"].is_string());
    let (status, again) = s
        .post_json(
            &admin,
            &format!("/v1/holds/{wide_id}/release"),
            &json!({"reason": "twice"}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("released already")
            && again["message"].as_str().unwrap().contains("settled"),
        "{again}"
    );
    let (_, active) = s.get(&admin, "/v1/holds?tenant_id=acme").await;
    assert_eq!(listed_ids(&active), [one_id.as_str()]);
    let (_, all) = s.get(&admin, "/v1/holds?tenant_id=acme&all=true").await;
    assert_eq!(listed_ids(&all), [wide_id.as_str(), one_id.as_str()]);

    let releases = events_of(&s, &admin, "acme", "legal_hold.released").await;
    assert_eq!(
        releases.len(),
        1,
        "one release, the refused one is not recorded"
    );
    assert_eq!(releases[0]["id"], released["event_id"]);
    assert_eq!(releases[0]["reason"], "settled");
    assert_eq!(releases[0]["details"]["hold_id"], wide_id.as_str());

    let (status, missing) = s
        .post_json(
            &admin,
            &format!("/v1/holds/{}/release", uuid::Uuid::now_v7()),
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_bound_admin_holds_only_its_own_tenant() {
    let s = TestServer::start().await;
    let admin = s.key(&[Scope::Admin], None);
    let acme_admin = s.key(&[Scope::Admin], Some("acme"));
    let reader = s.key(&[Scope::Read, Scope::Ingest], None);

    let (status, body) = s
        .post_json(
            &acme_admin,
            "/v1/holds",
            &json!({"tenant_id": "globex", "reason": "x"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "tenant_id");
    // Without tenant_id, a bound key holds its own tenant.
    let (status, own) = s
        .post_json(&acme_admin, "/v1/holds", &json!({"reason": "own"}))
        .await;
    assert_eq!(status, 201, "{own}");
    assert_eq!(own["hold"]["tenant_id"], "acme");

    let (_, globex) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "globex", "reason": "theirs"}),
        )
        .await;
    let globex_id = globex["hold"]["id"].as_str().unwrap();
    assert_eq!(
        s.get(&acme_admin, "/v1/holds?tenant_id=globex").await.0,
        403
    );
    let (_, listed) = s.get(&acme_admin, "/v1/holds").await;
    assert_eq!(
        listed_ids(&listed),
        [own["hold"]["id"].as_str().unwrap()],
        "only its tenant's"
    );
    // Another tenant's hold does not exist for it.
    let (status, _) = s
        .post_json(
            &acme_admin,
            &format!("/v1/holds/{globex_id}/release"),
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    // Without admin, nothing.
    let (status, _) = s
        .post_json(
            &reader,
            "/v1/holds",
            &json!({"tenant_id": "acme", "reason": "x"}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(s.get(&reader, "/v1/holds").await.0, 403);
    let (_, still) = s.get(&admin, "/v1/holds?tenant_id=globex").await;
    assert_eq!(listed_ids(&still), [globex_id], "still held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hold_requests_name_the_field() {
    let s = TestServer::start().await;
    let admin = s.key(&[Scope::Admin], None);
    let long = "r".repeat(1025);
    let cases = [
        (json!({"tenant_id": "acme"}), "reason"),
        (json!({"tenant_id": "acme", "reason": ""}), "reason"),
        (json!({"tenant_id": "acme", "reason": long}), "reason"),
        (json!({"reason": "x"}), "tenant_id"),
        (json!({"tenant_id": "ac me", "reason": "x"}), "tenant_id"),
        (
            json!({"tenant_id": "acme", "resource_id": "g-1", "reason": "x"}),
            "resource_id",
        ),
        (
            json!({"tenant_id": "acme", "resource_type": "r".repeat(129), "reason": "x"}),
            "resource_type",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = s.post_json(&admin, "/v1/holds", &body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "acme", "reason": "x", "until": 1}),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused: {answer}");
    let (status, answer) = s.get(&admin, "/v1/holds?all=maybe").await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("all")));
    let (status, answer) = s.get(&admin, "/v1/holds?tenant=acme").await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("tenant")));

    let (_, hold) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "acme", "reason": "x"}),
        )
        .await;
    let release = format!("/v1/holds/{}/release", hold["hold"]["id"].as_str().unwrap());
    for body in [json!({}), json!({"reason": "   "}), json!({"reason": long})] {
        let (status, answer) = s.post_json(&admin, &release, &body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some("reason")),
            "{answer}"
        );
    }
    // Nothing bad was stored or recorded.
    let (_, all) = s.get(&admin, "/v1/holds?all=true").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["active"], true);
    assert_eq!(
        events_of(&s, &admin, "acme", "legal_hold.placed")
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_survive_a_restart() {
    let s = TestServer::start().await;
    let admin = s.key(&[Scope::Admin], None);
    let (_, kept) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "acme", "resource_type": "guest",
            "reason": "kept"}),
        )
        .await;
    let (_, ended) = s
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "acme", "reason": "ended"}),
        )
        .await;
    let ended_id = ended["hold"]["id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .post_json(
            &admin,
            &format!("/v1/holds/{ended_id}/release"),
            &json!({"reason": "done"}),
        )
        .await;
    assert_eq!(status, 200);

    let s = s.restart().await;
    let (_, active) = s.get(&admin, "/v1/holds").await;
    assert_eq!(listed_ids(&active), [kept["hold"]["id"].as_str().unwrap()]);
    let (_, all) = s.get(&admin, "/v1/holds?all=true").await;
    let ended_after = all
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == ended_id.as_str())
        .unwrap();
    assert_eq!(ended_after["release_reason"], "done");
    assert_eq!(
        events_of(&s, &admin, "acme", "legal_hold.placed")
            .await
            .len(),
        2
    );
    assert_eq!(
        events_of(&s, &admin, "acme", "legal_hold.released")
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_holds_endpoints() {
    let s = TestServer::start().await;
    let doc: Value = serde_json::from_str(&s.get_open("/v1/openapi.json").await.1).unwrap();
    let paths = &doc["paths"];
    for (path, method, codes) in [
        ("/v1/holds", "post", &["201", "400", "403"][..]),
        ("/v1/holds", "get", &["200", "400", "403"][..]),
        (
            "/v1/holds/{hold_id}/release",
            "post",
            &["200", "400", "404", "409"][..],
        ),
    ] {
        for code in codes {
            assert!(
                paths[path][method]["responses"][code].is_object(),
                "{method} {path} does not document {code}"
            );
        }
    }
    for schema in [
        "HoldView",
        "HoldChangeView",
        "NewHold",
        "HoldReleaseRequest",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}
