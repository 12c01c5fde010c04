//! Field encryption and crypto-shredding: sensitive fields are sealed before they are
//! hashed and stored, so no store file holds their plaintext; authorised reads see it;
//! shredding a subject's or a tenant's key turns them into "[shredded]" for good, and the
//! log still verifies.

mod common;

use base64::Engine as _;
use common::{SseClient, TestServer};
use sealtrail_core::{CheckpointVerifier, Scope};
use serde_json::{Value, json};

const NOTES_G1: &str = "anaphylaxis to peanuts";
const NOTES_G2: &str = "gluten free, please";
const IP: &str = "203.0.113.77";

async fn start() -> (TestServer, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("master.key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
    )
    .unwrap();
    let config = format!(
        r#"
        [encryption]
        master_key = {{ file = "{}" }}
        fields = ["ip_address", "user_agent", "/details/guest/dietary_notes", "/details/guest/email"]
        subject = "/details/guest/id"
        blind_index = ["/details/guest/email"]
        "#,
        key_file.display()
    );
    let parsed: sealtrail_server::Config = toml::from_str(&config).unwrap();
    let s = TestServer::start_with(|c| {
        c.encryption = parsed.encryption;
        c.access_log.enabled = true;
    })
    .await;
    (s, secrets)
}

fn change(guest: &str, notes: &str) -> Value {
    json!({
        "action": "guest.dietary_restriction.updated", "resource_type": "guest",
        "resource_id": guest, "user_id": "coord:ines", "ip_address": IP,
        "user_agent": "wedding-planner/2.1",
        "details": {"guest": {"id": guest, "name": "Ada", "dietary_notes": notes,
                              "email": format!("{guest}@guests.example")}},
    })
}

fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn guest_view(s: &TestServer, key: &str, guest: &str) -> Value {
    let (status, page) = s
        .get(
            key,
            &format!("/v1/events?resource_id={guest}&action=guest.*"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["events"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_fields_never_reach_the_store_and_shredding_keeps_the_log_verifiable() {
    let (s, _secrets) = start().await;
    let writer = s.key(&[Scope::Ingest], Some("acme"));
    let reader = s.key(&[Scope::Read, Scope::Stream], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    let mut follower = SseClient::connect(&s.base, &reader, "action=guest.*", None).await;
    assert_eq!(
        s.post_json(&writer, "/v1/events", &change("g1", NOTES_G1))
            .await
            .0,
        201
    );
    assert_eq!(
        s.post_json(&writer, "/v1/events", &change("g2", NOTES_G2))
            .await
            .0,
        201
    );

    // Authorised reads see plaintext: queries, streams.
    let g1 = guest_view(&s, &reader, "g1").await;
    assert_eq!(g1["details"]["guest"]["dietary_notes"], NOTES_G1);
    assert_eq!(g1["ip_address"], IP);
    assert_eq!(g1["details"]["guest"]["name"], "Ada");
    let (_, live) = follower.next_event().await.unwrap();
    assert_eq!(live["details"]["guest"]["dietary_notes"], NOTES_G1);

    // No file of the data directory — log, indexes, WAL, keys — holds the plaintext; a copy
    // of it (a backup) holds none either.
    for secret in [NOTES_G1, NOTES_G2, IP, "wedding-planner/2.1"] {
        let found = files_containing(s.dir.path(), secret);
        assert!(found.is_empty(), "{secret:?} in {found:?}");
    }
    assert!(
        !files_containing(s.dir.path(), "Ada").is_empty(),
        "unconfigured fields are plain"
    );

    // The data subject g1 asks to be forgotten.
    let (status, shredded) = s
        .post_json(&admin, "/v1/tenants/acme/subjects/g1/shred", &json!({}))
        .await;
    assert_eq!(status, 200, "{shredded}");
    assert_eq!(shredded["key_existed"], true);
    let g1 = guest_view(&s, &reader, "g1").await;
    assert_eq!(g1["details"]["guest"]["dietary_notes"], "[shredded]");
    assert_eq!(g1["ip_address"], "[shredded]");
    assert_eq!(
        g1["action"], "guest.dietary_restriction.updated",
        "the rest stays"
    );
    let g2 = guest_view(&s, &reader, "g2").await;
    assert_eq!(
        g2["details"]["guest"]["dietary_notes"], NOTES_G2,
        "another subject is untouched"
    );
    let (_, record) = s.get(&reader, "/v1/events?action=subject.shredded").await;
    assert_eq!(record["events"].as_array().unwrap().len(), 1, "{record}");
    assert!(
        !record.to_string().contains("\"g1\""),
        "the record names the subject by hash only"
    );

    // A later event about the same subject is sealed under a new key: readable, while the
    // old one stays shredded.
    let (status, _) = s
        .post_json(&writer, "/v1/events", &change("g1", "now vegetarian"))
        .await;
    assert_eq!(status, 201);
    let (_, both) = s
        .get(
            &reader,
            "/v1/events?resource_id=g1&action=guest.*&order=asc",
        )
        .await;
    let notes: Vec<&Value> = both["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["details"]["guest"]["dietary_notes"])
        .collect();
    assert_eq!(notes, [&json!("[shredded]"), &json!("now vegetarian")]);

    // The whole tenant.
    let (status, _) = s
        .post_json(&admin, "/v1/tenants/acme/shred", &json!({}))
        .await;
    assert_eq!(status, 200);
    let g2 = guest_view(&s, &reader, "g2").await;
    assert_eq!(g2["details"]["guest"]["dietary_notes"], "[shredded]");

    // Every record and hash is as it was: the log verifies.
    let (_, key_view) = s.get(&reader, "/v1/public-key").await;
    let verifier = CheckpointVerifier::from_vkey(key_view["vkey"].as_str().unwrap()).unwrap();
    let dir = s.stop().await;
    let report =
        sealtrail_store::verify::verify_sqlite(dir.path(), &verifier, None, |_, _| {}).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert!(report.events >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredding_needs_an_admin_of_the_tenant_and_encryption() {
    let (s, _secrets) = start().await;
    let other_admin = s.key(&[Scope::Admin], Some("globex"));
    let reader = s.key(&[Scope::Read], Some("acme"));
    assert_eq!(
        s.post_json(&reader, "/v1/tenants/acme/shred", &json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        s.post_json(&other_admin, "/v1/tenants/acme/shred", &json!({}))
            .await
            .0,
        403
    );
    let plain = TestServer::start().await;
    let admin = plain.key(&[Scope::Admin], None);
    let (status, body) = plain
        .post_json(&admin, "/v1/tenants/acme/shred", &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_field_is_found_by_equality_through_the_blind_index() {
    let (s, _secrets) = start().await;
    let writer = s.key(&[Scope::Ingest], Some("acme"));
    let other_writer = s.key(&[Scope::Ingest], Some("globex"));
    let reader = s.key(&[Scope::Read], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    for guest in ["g1", "g2", "g3"] {
        assert_eq!(
            s.post_json(&writer, "/v1/events", &change(guest, "none"))
                .await
                .0,
            201
        );
    }
    // The same address in another tenant is another token.
    assert_eq!(
        s.post_json(&other_writer, "/v1/events", &change("g1", "none"))
            .await
            .0,
        201
    );
    let search = "/v1/events/search?field=/details/guest/email&equals=g2@guests.example";
    common::eventually("the blind index has caught up", async || {
        s.get(&reader, search).await.1["events"]
            .as_array()
            .is_some_and(|e| e.len() == 1)
    })
    .await;
    let (_, found) = s.get(&reader, search).await;
    assert_eq!(found["events"][0]["details"]["guest"]["id"], "g2");
    assert_eq!(
        found["events"][0]["details"]["guest"]["email"],
        "g2@guests.example"
    );
    let (_, none) = s
        .get(
            &reader,
            "/v1/events/search?field=/details/guest/email&equals=nobody@x.example",
        )
        .await;
    assert_eq!(none["events"], json!([]));
    let (status, body) = s
        .get(
            &reader,
            "/v1/events/search?field=ip_address&equals=203.0.113.77",
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("field")),
        "{body}"
    );
    // The index holds tokens, never the values.
    assert!(files_containing(s.dir.path(), "g2@guests.example").is_empty());

    // Forgetting g2 forgets its index entries too.
    let (status, _) = s
        .post_json(&admin, "/v1/tenants/acme/subjects/g2/shred", &json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, gone) = s.get(&reader, search).await;
    assert_eq!(gone["events"], json!([]));
    let g1 = "/v1/events/search?field=/details/guest/email&equals=g1@guests.example";
    assert_eq!(
        s.get(&reader, g1).await.1["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A receiver that echoes the decrypted value it was sent in its error: 503 to its first
/// request, 400 to the rest, each naming the guest's dietary notes and email.
async fn echoing_receiver() -> String {
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().fallback(move |body: String| {
        let answered = answered.clone();
        async move {
            let sent: Value = serde_json::from_str(&body).unwrap_or_default();
            let text = sent.to_string();
            let echo = [NOTES_G1, "g1@guests.example", IP]
                .iter()
                .filter(|v| text.contains(*v))
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let first = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            let status = if first {
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                axum::http::StatusCode::BAD_REQUEST
            };
            (status, format!("cannot store {echo}; raw: {body}"))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_echoing_a_decrypted_value_leaves_no_trace_of_it_in_dead_letters_or_status() {
    let receiver = echoing_receiver().await;
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("master.key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
    )
    .unwrap();
    let hook = secrets.path().join("hook");
    std::fs::write(&hook, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    let config = format!(
        r#"
        [encryption]
        master_key = {{ file = "{}" }}
        fields = ["ip_address", "/details/guest/dietary_notes", "/details/guest/email"]
        subject = "/details/guest/id"

        [[sinks]]
        name = "caterer"
        kind = "webhook"
        url = "{receiver}/hook"
        secret = {{ file = "{}" }}
        retry_initial_delay_ms = 10
        retry_max_delay_ms = 50

        [[routes]]
        sinks = ["caterer"]
        "#,
        key_file.display(),
        hook.display()
    );
    let parsed: sealtrail_server::Config = toml::from_str(&config).unwrap();
    let s = TestServer::start_with(|c| {
        c.encryption = parsed.encryption;
        c.sinks = parsed.sinks;
        c.routes = parsed.routes;
    })
    .await;
    let writer = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    let (status, body) = s
        .post_json(&writer, "/v1/events", &change("g1", NOTES_G1))
        .await;
    assert_eq!(status, 201, "{body}");
    common::eventually("the event is dead-lettered", async || {
        let (_, dead) = s.get(&admin, "/v1/sinks/caterer/dead-letters").await;
        dead.as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    let (_, dead) = s.get(&admin, "/v1/sinks/caterer/dead-letters").await;
    let (_, status) = s.get(&admin, "/v1/sinks").await;
    let error = dead[0]["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 400") && error.contains("[redacted]"),
        "{error}"
    );
    let last_error = status[0]["last_error"]["message"].to_string();
    assert!(
        last_error.contains("HTTP 503") && last_error.contains("[redacted]"),
        "{status}"
    );
    let shown = format!("{dead}{status}");
    for value in [NOTES_G1, "g1@guests.example", IP] {
        assert!(!shown.contains(value), "{value} in {shown}");
    }
    // Nor is it in any file of the data directory (sinks.sqlite holds the dead letter).
    let dir = s.stop().await;
    for value in [NOTES_G1, "g1@guests.example"] {
        assert_eq!(
            files_containing(dir.path(), value),
            Vec::<String>::new(),
            "{value}"
        );
    }
}
