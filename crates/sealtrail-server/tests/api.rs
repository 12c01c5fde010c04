//! The HTTP API against a real server: ingest, idempotency, bad input, auth and tenant
//! isolation, queries, proofs, operations endpoints and the OpenAPI document.

mod common;

use common::{TestServer, guest_event};
use sealtrail_core::api::{
    CheckpointView, Event, EventPage, EventWithProof, IngestResponse, StatsResponse,
};
use sealtrail_core::merkle::{Hash, verify_consistency, verify_inclusion};
use sealtrail_core::{CheckpointVerifier, Scope};
use serde_json::{Value, json};

const ALL: &[Scope] = &[Scope::Ingest, Scope::Read];

fn hash(hex_text: &str) -> Hash {
    hex::decode(hex_text).unwrap().try_into().unwrap()
}

#[tokio::test]
async fn one_event_a_batch_and_ndjson_are_stored_and_answered_with_receipts() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    let (status, one) = s.post_json(&key, "/v1/events", &guest_event(1)).await;
    assert_eq!(status, 201, "{one}");
    let one: IngestResponse = serde_json::from_value(one).unwrap();
    assert_eq!(one.events[0].seq, Some(1));
    assert_eq!(one.tree_size, 1);

    let batch = json!({"events": [guest_event(2), guest_event(3)]});
    let (status, many) = s.post_json(&key, "/v1/events", &batch).await;
    assert_eq!(status, 201, "{many}");
    let many: IngestResponse = serde_json::from_value(many).unwrap();
    assert_eq!(
        many.events
            .iter()
            .map(|e| e.seq.unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );

    let ndjson = format!("{}\n\n{}\n", guest_event(4), guest_event(5)).into_bytes();
    let (status, lines) = s.post_raw(&key, "application/x-ndjson", ndjson).await;
    assert_eq!(status, 201, "{lines}");
    let lines: IngestResponse = serde_json::from_value(lines).unwrap();
    assert_eq!(lines.events.len(), 2);

    // Every answer carries a checkpoint signed by the log's key.
    let (_, key_view) = s.get(&key, "/v1/public-key").await;
    let verifier = CheckpointVerifier::from_vkey(key_view["vkey"].as_str().unwrap()).unwrap();
    let checkpoint = verifier.verify(&lines.checkpoint).unwrap();
    assert_eq!(checkpoint.size, 5);
}

#[tokio::test]
async fn retry_with_same_id_returns_the_original_answer_and_other_content_is_a_conflict() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    let mut event = guest_event(1);
    event["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d");
    let (status, first) = s.post_json(&key, "/v1/events", &event).await;
    assert_eq!(status, 201);
    let (status, again) = s.post_json(&key, "/v1/events", &event).await;
    assert_eq!(status, 201);
    assert_eq!(first["events"], again["events"], "the original answer");
    assert_eq!(s.tree_size().await, 1, "nothing new stored");

    event["reason"] = json!("a different story");
    let (status, conflict) = s
        .post_json(
            &key,
            "/v1/events",
            &json!({"events": [guest_event(9), event]}),
        )
        .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["code"], "id_conflict");
    assert_eq!(conflict["field"], "events[1].id");
    assert_eq!(
        s.tree_size().await,
        1,
        "nothing of the conflicting batch stored"
    );
}

/// Every kind of bad input gets a 4xx JSON error naming the field and the reason, stores
/// nothing, and leaves the server serving.
#[tokio::test]
async fn bad_input_is_refused_with_a_named_field_and_nothing_is_stored() {
    let s = TestServer::start_with(|c| {
        c.limits.max_batch_events = 10;
        c.limits.max_body_bytes = 200_000;
    })
    .await;
    let key = s.key(ALL, Some("bloom"));
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    let mut very_deep = String::new();
    for _ in 0..200 {
        very_deep.push_str("{\"d\":");
    }
    very_deep.push('1');
    very_deep.push_str(&"}".repeat(200));
    let event = |extra: Value| {
        let mut e = guest_event(1);
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        serde_json::to_vec(&e).unwrap()
    };
    let json_ct = "application/json";
    // (name, content type, body, status, code, field)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("malformed JSON", json_ct, b"{\"action\": ".to_vec(), 400, "invalid_json", None),
        ("not an object", json_ct, b"[1, 2]".to_vec(), 400, "invalid_event", None),
        ("wrong type", json_ct, event(json!({"action": 7})), 400, "invalid_event", Some("action")),
        ("missing action", json_ct, br#"{"resource_type": "guest"}"#.to_vec(), 400, "invalid_event", Some("action")),
        ("missing resource_type", json_ct, br#"{"action": "a.b"}"#.to_vec(), 400, "invalid_event", Some("resource_type")),
        ("unknown field", json_ct, event(json!({"colour": "blue"})), 400, "invalid_event", Some("colour")),
        ("server field", json_ct, event(json!({"seq": 5})), 400, "invalid_event", Some("seq")),
        ("invalid UUID", json_ct, event(json!({"id": "not-a-uuid"})), 400, "invalid_event", Some("id")),
        ("invalid IP", json_ct, event(json!({"ip_address": "300.1.2.3"})), 400, "invalid_event", Some("ip_address")),
        ("invalid timestamp", json_ct, event(json!({"occurred_at": "last tuesday"})), 400, "invalid_event", Some("occurred_at")),
        ("invalid severity", json_ct, event(json!({"severity": "catastrophic"})), 400, "invalid_event", Some("severity")),
        ("oversized field", json_ct, event(json!({"action": "a".repeat(129)})), 400, "invalid_event", Some("action")),
        ("oversized details", json_ct, event(json!({"details": {"blob": "x".repeat(70_000)}})), 400, "invalid_event", Some("details")),
        ("deep details", json_ct, event(json!({"details": {"d": deep}})), 400, "invalid_event", Some("details.d")),
        ("deeper than the parser allows", json_ct, format!("{{\"action\":\"a\",\"resource_type\":\"g\",\"details\":{very_deep}}}").into_bytes(), 400, "invalid_json", None),
        ("invalid UTF-8", json_ct, b"{\"action\": \"a\xff\xfe\", \"resource_type\": \"g\"}".to_vec(), 400, "invalid_json", None),
        ("other tenant", json_ct, event(json!({"tenant_id": "golden-hour"})), 403, "", None),
        ("batch over the limit", json_ct, serde_json::to_vec(&json!({"events": (0..11).map(guest_event).collect::<Vec<_>>()})).unwrap(), 413, "batch_too_large", Some("events")),
        ("body over the limit", json_ct, serde_json::to_vec(&json!({"events": [guest_event(1)], "padding": "x".repeat(300_000)})).unwrap(), 413, "body_too_large", None),
        ("bad event in a batch", json_ct, serde_json::to_vec(&json!({"events": [guest_event(1), {"action": "a.b", "resource_type": "g", "ip_address": "nope"}]})).unwrap(), 400, "invalid_event", Some("events[1].ip_address")),
        ("extra field beside events", json_ct, serde_json::to_vec(&json!({"events": [guest_event(1)], "dry_run": true})).unwrap(), 400, "invalid_event", Some("dry_run")),
        ("empty batch", json_ct, br#"{"events": []}"#.to_vec(), 400, "invalid_event", None),
        ("bad NDJSON line", "application/x-ndjson", format!("{}\n{{oops\n", guest_event(1)).into_bytes(), 400, "invalid_event", Some("events[1]")),
        ("unsupported content type", "text/plain", event(json!({})), 415, "unsupported_media_type", None),
    ];
    for (name, content_type, body, status, code, field) in cases {
        let (got, error) = s.post_raw(&key, content_type, body).await;
        assert_eq!(got, status, "{name}: {error}");
        if status == 403 {
            // Writing another tenant is refused as a named field error, before anything.
            assert_eq!(error["field"], "tenant_id", "{name}: {error}");
        } else {
            assert_eq!(error["code"], code, "{name}: {error}");
        }
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}: {error}"
        );
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{name}: {error}");
            assert!(
                error["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{name}: {error}"
            );
        }
        assert_eq!(s.tree_size().await, 0, "{name}: nothing may be stored");
    }
    let (status, _) = s.post_json(&key, "/v1/events", &guest_event(1)).await;
    assert_eq!(status, 201, "the server still serves");
}

#[tokio::test]
async fn partial_mode_stores_the_valid_events_and_reports_the_rest() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    let batch = json!({"events": [guest_event(1), {"action": "a.b"}, guest_event(3)]});
    let (status, body) = s.post_json(&key, "/v1/events?partial=true", &batch).await;
    assert_eq!(status, 200, "{body}");
    let results = body["events"].as_array().unwrap();
    assert_eq!(results[0]["seq"], 1);
    assert_eq!(results[1]["error"]["field"], "resource_type");
    assert_eq!(results[2]["seq"], 2);
    assert_eq!(s.tree_size().await, 2);
}

#[tokio::test]
async fn keys_are_required_scoped_and_revocable() {
    let s = TestServer::start().await;
    let reader = s.key(&[Scope::Read], None);
    let writer = s.key(&[Scope::Ingest], Some("bloom"));
    let response = s.http.get(s.url("/v1/events")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (status, body) = s.get("st_bogus_key", "/v1/events").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = s.post_json(&reader, "/v1/events", &guest_event(1)).await;
    assert_eq!(status, 403, "read scope cannot ingest");
    let (status, _) = s.get(&writer, "/v1/events").await;
    assert_eq!(status, 403, "ingest scope cannot read");
    let (status, _) = s.get(&reader, "/v1/events").await;
    assert_eq!(status, 200);
    s.revoke(&reader);
    let (status, _) = s.get(&reader, "/v1/events").await;
    assert_eq!(status, 401, "a revoked key is refused at once");
}

#[tokio::test]
async fn a_tenant_bound_key_neither_writes_nor_reads_another_tenant() {
    let s = TestServer::start().await;
    let admin = s.key(&[Scope::Admin], None);
    for (tenant, n) in [("bloom", 1), ("golden-hour", 2), ("golden-hour", 3)] {
        let mut e = guest_event(n);
        e["tenant_id"] = json!(tenant);
        assert_eq!(s.post_json(&admin, "/v1/events", &e).await.0, 201);
    }
    let bloom = s.key(ALL, Some("bloom"));
    let (_, page) = s.get(&bloom, "/v1/events").await;
    let page: EventPage = serde_json::from_value(page).unwrap();
    assert_eq!(page.events.len(), 1);
    assert!(page.events.iter().all(|e| e.tenant_id == "bloom"));
    let (status, body) = s.get(&bloom, "/v1/events?tenant_id=golden-hour").await;
    assert_eq!((status, body["field"].as_str()), (403, Some("tenant_id")));
    let (_, all) = s.get(&admin, "/v1/events?tenant_id=golden-hour").await;
    let other_id = all["events"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = s.get(&bloom, &format!("/v1/events/{other_id}")).await;
    assert_eq!(
        status, 404,
        "another tenant's event does not exist for this key"
    );
    let (_, stats) = s.get(&bloom, "/v1/stats").await;
    assert_eq!(stats["total"], 1);
    let (status, _) = s.get(&bloom, "/v1/stats?tenant_id=golden-hour").await;
    assert_eq!(status, 403);
    let mut sneaky = guest_event(4);
    sneaky["tenant_id"] = json!("golden-hour");
    let (status, _) = s.post_json(&bloom, "/v1/events", &sneaky).await;
    assert_eq!(status, 403);
    let (status, body) = s.post_json(&admin, "/v1/events", &guest_event(5)).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("tenant_id")),
        "an unbound key must name the tenant"
    );
}

#[tokio::test]
async fn queries_filter_page_and_return_documented_events() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    let events: Vec<Value> = (0..30).map(guest_event).collect();
    s.post_json(&key, "/v1/events", &json!({ "events": events }))
        .await;
    let (status, page) = s.get(&key, "/v1/events?severity=warning&limit=3").await;
    assert_eq!(status, 200);
    let page: EventPage = serde_json::from_value(page).expect("the documented EventPage shape");
    assert_eq!(page.events.len(), 3);
    assert!(
        page.events
            .iter()
            .all(|e| matches!(e.severity, sealtrail_core::api::SeverityDoc::Warning))
    );
    let mut seen = page.events.len();
    let mut cursor = page.next_cursor;
    while let Some(c) = cursor {
        let (_, next) = s
            .get(
                &key,
                &format!("/v1/events?severity=warning&limit=3&cursor={c}"),
            )
            .await;
        let next: EventPage = serde_json::from_value(next).unwrap();
        seen += next.events.len();
        cursor = next.next_cursor;
    }
    assert_eq!(seen, 8, "30 events, every fourth a warning");
    let (status, body) = s.get(&key, "/v1/events?severty=warning").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("severty")),
        "{body}"
    );
    let (status, body) = s.get(&key, "/v1/events?action=guest.*&limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(body["events"].as_array().unwrap().len(), 30);
    let (status, stats) = s.get(&key, "/v1/stats?group_by=severity").await;
    assert_eq!(status, 200);
    let stats: StatsResponse = serde_json::from_value(stats).unwrap();
    assert_eq!(stats.total, 30);
}

#[tokio::test]
async fn an_event_comes_with_a_proof_that_verifies_against_the_signed_checkpoint() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    let (_, first) = s.post_batch(&key, 0..300).await;
    let first: IngestResponse = serde_json::from_value(first).unwrap();
    s.post_batch(&key, 300..333).await;
    let (_, key_view) = s.get(&key, "/v1/public-key").await;
    let verifier = CheckpointVerifier::from_vkey(key_view["vkey"].as_str().unwrap()).unwrap();

    let id = first.events[123].id.clone().unwrap();
    let (status, body) = s.get(&key, &format!("/v1/events/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let with_proof: EventWithProof = serde_json::from_value(body).expect("the documented shape");
    let signed = verifier.verify(&with_proof.checkpoint.note).unwrap();
    assert_eq!(signed.size, 333);
    assert_eq!(hex::encode(signed.root), with_proof.checkpoint.root_hash);
    // Recompute the leaf from the event itself: drop leaf_hash, canonicalise, hash.
    let event: Event = with_proof.event;
    let mut record = serde_json::to_value(&event).unwrap();
    record.as_object_mut().unwrap().remove("leaf_hash");
    record.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    let leaf = sealtrail_core::merkle::leaf_hash(&sealtrail_core::canonical::to_vec(&record));
    assert_eq!(hex::encode(leaf), event.leaf_hash);
    let hashes: Vec<Hash> = with_proof.proof.hashes.iter().map(|h| hash(h)).collect();
    assert!(verify_inclusion(
        with_proof.proof.leaf_index,
        333,
        &leaf,
        &hashes,
        &signed.root
    ));

    // Against a checkpoint the client holds (the first batch's), with the stored record.
    let (status, body) = s
        .get(&key, &format!("/v1/events/{id}?tree_size=300&record=true"))
        .await;
    assert_eq!(status, 200, "{body}");
    let at_300: EventWithProof = serde_json::from_value(body).expect("the documented shape");
    assert_eq!(at_300.proof.tree_size, 300);
    let record = at_300.record.expect("record=true sends the record");
    let leaf = sealtrail_core::merkle::leaf_hash(record.as_bytes());
    assert_eq!(
        hex::encode(leaf),
        event.leaf_hash,
        "the record is what was hashed"
    );
    let old = verifier.verify(&first.checkpoint).unwrap();
    let hashes: Vec<Hash> = at_300.proof.hashes.iter().map(|h| hash(h)).collect();
    assert!(verify_inclusion(123, 300, &leaf, &hashes, &old.root));
    let (status, body) = s.get(&key, &format!("/v1/events/{id}?tree_size=100")).await;
    assert_eq!(status, 400, "a tree before the event: {body}");
    assert_eq!(body["field"], "tree_size");

    let (_, latest) = s.get(&key, "/v1/checkpoint").await;
    let latest: CheckpointView = serde_json::from_value(latest).unwrap();
    let (status, proof) = s.get(&key, "/v1/proofs/consistency?from=300&to=333").await;
    assert_eq!(status, 200, "{proof}");
    let hashes: Vec<Hash> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect();
    let old = verifier.verify(&first.checkpoint).unwrap();
    assert!(verify_consistency(
        300,
        333,
        &old.root,
        &hash(&latest.root_hash),
        &hashes
    ));
    let (status, body) = s.get(&key, "/v1/proofs/consistency?from=300&to=334").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (status, _) = s.get(&key, "/v1/events/not-a-uuid").await;
    assert_eq!(status, 400);
    let (status, _) = s
        .get(&key, &format!("/v1/events/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn operations_endpoints_and_the_openapi_document() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    s.post_json(&key, "/v1/events", &guest_event(1)).await;
    assert_eq!(s.get_open("/healthz").await.0, 200);
    let ready: Value = serde_json::from_str(&s.get_open("/readyz").await.1).unwrap();
    assert_eq!(ready["ready"], true);
    let metrics = s.get_open("/metrics").await.1;
    for name in [
        "sealtrail_ingest_requests_total{outcome=\"accepted\"} 1",
        "sealtrail_ingest_events_total 1",
        "sealtrail_ingest_duration_seconds_bucket",
        "sealtrail_commit_events_bucket",
        "sealtrail_store_size_bytes",
        "sealtrail_log_tree_size 1",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    let doc: Value = serde_json::from_str(&s.get_open("/v1/openapi.json").await.1).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/events",
        "/v1/events/{id}",
        "/v1/stats",
        "/v1/checkpoint",
        "/v1/proofs/consistency",
        "/v1/public-key",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    for schema in [
        "EventInput",
        "Event",
        "EventPage",
        "IngestResponse",
        "ErrorBody",
        "EventWithProof",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "OpenAPI lacks schema {schema}"
        );
    }
    let (status, body) = s.get(&key, "/v1/nope").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn acknowledged_events_survive_a_graceful_restart() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    let (_, body) = s.post_batch(&key, 0..50).await;
    let acked: IngestResponse = serde_json::from_value(body).unwrap();
    let s = s.restart().await;
    let (status, page) = s.get(&key, "/v1/events?limit=1000&order=asc").await;
    assert_eq!(status, 200);
    let page: EventPage = serde_json::from_value(page).unwrap();
    let stored: Vec<String> = page.events.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<String> = acked.events.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(stored, expected, "every acknowledged event, in order, once");
    s.stop().await;
}

#[tokio::test]
async fn ndjson_errors_name_the_line() {
    let s = TestServer::start().await;
    let key = s.key(ALL, Some("bloom"));
    let body = format!(
        "\n{}\n\n{{\"action\": \"a.b\", \"resource_type\": \"g\", \"severity\": \"loud\"}}\n",
        guest_event(1)
    );
    let (status, error) = s
        .post_raw(&key, "application/x-ndjson", body.into_bytes())
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["field"], "events[1].severity");
    assert_eq!(error["errors"][0]["line"], 4, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("(line 4)"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slower_than_the_request_timeout_gets_408_or_is_disconnected() {
    use std::io::{Read as _, Write as _};
    let server = TestServer::start_with(|c| c.limits.request_timeout_secs = 1).await;
    let key = server.key(&[Scope::Ingest], None);
    let address = server.base.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        // A whole head, then only half of the body it announced: 408.
        let mut slow_body = std::net::TcpStream::connect(&address).unwrap();
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"action\":"
        );
        slow_body.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        slow_body.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

        // Half a head: the connection is closed, and quickly.
        let started = std::time::Instant::now();
        let mut slow_head = std::net::TcpStream::connect(&address).unwrap();
        slow_head.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
        let mut rest = Vec::new();
        let _ = slow_head.read_to_end(&mut rest);
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "no answer to a request never completed"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "closed after the timeout, not left open"
        );
    })
    .await
    .unwrap();
}
