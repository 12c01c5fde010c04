//! The sinks as the server exposes them: `/v1/sinks` and its dead-letter endpoints (admin
//! keys only), replay over HTTP, and the per-sink `/metrics`. What each kind sends and how
//! delivery rides out faults is tested in the sinks crate
//! (`crates/sealtrail-sinks/tests/destinations/`), against a receiver that checks each
//! service's wire format; here a stub receiver that accepts, refuses or is down will do.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use common::{TestServer, eventually, guest_event};
use sealtrail_core::Scope;
use sealtrail_server::Config;
use serde_json::{Value, json};

/// A receiver that answers 204, or 400 to bodies naming `guest-poison` while `refusing`,
/// or 503 to everything while `down`.
struct Stub {
    base: String,
    refusing: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
}

impl Stub {
    async fn start() -> Self {
        let refusing = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let (r, d) = (refusing.clone(), down.clone());
        let app = axum::Router::new().fallback(move |body: String| {
            let (refusing, down) = (r.load(Ordering::SeqCst), d.load(Ordering::SeqCst));
            async move {
                if down {
                    StatusCode::SERVICE_UNAVAILABLE
                } else if refusing && body.contains("guest-poison") {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            refusing,
            down,
        }
    }
}

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path.display().to_string()
}

/// `[[sinks]]`/`[[routes]]` as a user writes them, parsed the way `serve` parses its file.
fn sinks_config(config: &mut Config, toml_text: &str) {
    let parsed: Config = toml::from_str(toml_text).unwrap();
    config.sinks = parsed.sinks;
    config.routes = parsed.routes;
    config.validate().unwrap();
}

/// A webhook sink `name` to `url` that every event is routed to, with fast retries.
fn webhook_sink(name: &str, url: &str, secret: &str) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = {{ file = \"{secret}\" }}\nmax_batch_events = 10\nrequest_timeout_ms = 400\nretry_initial_delay_ms = 10\nretry_max_delay_ms = 50\nbreaker_failures = 3\nbreaker_cooldown_ms = 150\n\n[[routes]]\nsinks = [\"{name}\"]\n"
    )
}

async fn sink_status(s: &TestServer, admin: &str, name: &str) -> Value {
    let (status, body) = s.get(admin, "/v1/sinks").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_are_an_admin_matter_and_their_status_shows_no_secret() {
    let stub = Stub::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let hook = secret_file(
        secrets.path(),
        "hook",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let dd = secret_file(secrets.path(), "dd", "dd-test-key-0123456789");
    let pd = secret_file(secrets.path(), "pd", "R0UT1NGKEY0123456789abcdefABCDEF");
    let toml_text = format!(
        "{}\n[[sinks]]\nname = \"dd\"\nkind = \"datadog\"\nurl = \"{base}/api/v2/logs\"\napi_key = {{ file = \"{dd}\" }}\n\n[[sinks]]\nname = \"pager\"\nkind = \"pagerduty\"\nurl = \"{base}/v2/enqueue\"\nrouting_key = {{ file = \"{pd}\" }}\n\n[[routes]]\nsinks = [\"dd\", \"pager\"]\n",
        webhook_sink("hook", &format!("{}/hook", stub.base), &hook),
        base = stub.base,
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let acme = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    assert_eq!(s.post_batch(&acme, 0..5).await.0, 201);
    eventually("the webhook sink has caught up", async || {
        sink_status(&s, &admin, "hook").await["cursor"] == 5
    })
    .await;
    let (_, all) = s.get(&admin, "/v1/sinks").await;
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let shown = all.to_string();
    for secret in [
        "dd-test-key-0123456789",
        "R0UT1NGKEY0123456789abcdefABCDEF",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }

    // Sinks are an admin matter.
    let reader = s.key(&[Scope::Read], None);
    assert_eq!(s.get(&reader, "/v1/sinks").await.0, 403);
    let bound_admin = s.key(&[Scope::Admin], Some("acme"));
    assert_eq!(s.get(&bound_admin, "/v1/sinks").await.0, 403);
    assert_eq!(s.get(&admin, "/v1/sinks/nope/dead-letters").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_listed_as_a_dead_letter_and_replayed_over_http() {
    let stub = Stub::start().await;
    stub.refusing.store(true, Ordering::SeqCst);
    let secrets = tempfile::tempdir().unwrap();
    let hook = secret_file(
        secrets.path(),
        "hook",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let toml_text = webhook_sink("hook", &format!("{}/hook", stub.base), &hook);
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    let mut events: Vec<Value> = (0..4).map(guest_event).collect();
    events[2]["resource_id"] = json!("guest-poison");
    let (status, _) = s
        .post_json(&key, "/v1/events", &json!({ "events": events }))
        .await;
    assert_eq!(status, 201);
    eventually("the sink is past every event", async || {
        sink_status(&s, &admin, "hook").await["cursor"] == 4
    })
    .await;
    let (status, dead) = s.get(&admin, "/v1/sinks/hook/dead-letters").await;
    assert_eq!(status, 200);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["error"].as_str().unwrap().contains("HTTP 400"),
        "{dead:?}"
    );
    let dead_seq = dead[0]["seq"].as_u64().unwrap();
    assert_eq!(dead_seq, 3);
    assert_eq!(sink_status(&s, &admin, "hook").await["dead_letters"], 1);

    // The receiver has been fixed: replay.
    stub.refusing.store(false, Ordering::SeqCst);
    let replay = s
        .http
        .post(s.url("/v1/sinks/hook/dead-letters/replay"))
        .bearer_auth(&admin)
        .json(&json!({"seqs": [dead_seq]}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    eventually("the dead letter is gone", async || {
        s.get(&admin, "/v1/sinks/hook/dead-letters").await.1 == json!([])
    })
    .await;
    assert_eq!(sink_status(&s, &admin, "hook").await["dead_letters"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_each_sinks_lag_and_deliveries() {
    let dead = Stub::start().await;
    dead.down.store(true, Ordering::SeqCst);
    let healthy = Stub::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let hook = secret_file(
        secrets.path(),
        "hook",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let toml_text = format!(
        "{}\n{}",
        webhook_sink("dead", &format!("{}/hook", dead.base), &hook),
        webhook_sink("healthy", &format!("{}/hook", healthy.base), &hook),
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    for start in (0..300).step_by(30) {
        assert_eq!(s.post_batch(&key, start..start + 30).await.0, 201);
    }
    eventually("the healthy sink has delivered everything", async || {
        sink_status(&s, &admin, "healthy").await["delivered_events"] == 300
    })
    .await;
    let stuck = sink_status(&s, &admin, "dead").await;
    assert_eq!(stuck["cursor"], 0, "{stuck}");
    assert_eq!(stuck["lag_events"], 300);
    assert!(
        stuck["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{stuck}"
    );
    let (_, metrics) = s.get_open("/metrics").await;
    assert!(
        metrics.contains(r#"sealtrail_sink_lag_events{sink="dead"} 300"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sealtrail_sink_delivered_events{sink="healthy"} 300"#),
        "{metrics}"
    );
}
