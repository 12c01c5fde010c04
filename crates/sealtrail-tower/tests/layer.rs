//! The layer on a real axum service, its events delivered to a real Sealtrail server:
//! route templates, statuses, severities, the client's address (a spoofed
//! `X-Forwarded-For` from an untrusted peer ignored, a trusted proxy's honoured), the
//! actor, request ids, redaction, skipped paths, and domain events carrying the request's
//! context.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, put};
use sealtrail_client::Client;
use sealtrail_client::event::Event;
use sealtrail_client::producer::{Producer, ProducerConfig};
use sealtrail_core::Scope;
use sealtrail_tower::{Audit, AuditLayer, TrustedProxies};
use serde_json::Value;

async fn sealtrail() -> (sealtrail_server::RunningServer, tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sealtrail_server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..sealtrail_server::Config::default()
    };
    config.access_log.enabled = false;
    let server = sealtrail_server::start(config).await.unwrap();
    let keys = sealtrail_store::ApiKeyStore::open(dir.path()).unwrap();
    let key = keys
        .create(&[Scope::Ingest, Scope::Read], Some("bloom"), None)
        .unwrap()
        .1;
    let client = Client::new(&format!("http://{}", server.local_addr()), &key).unwrap();
    (server, dir, client)
}

async fn update_diet(
    audit: Audit,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> &'static str {
    audit.set_user("coord:ines");
    audit
        .record(
            Event::new("guest.dietary_restriction.updated", "guest")
                .resource_id(id)
                .change("dietary_restriction", "none", "vegan")
                .reason("Guest called"),
        )
        .await
        .unwrap();
    "updated"
}

async fn panicking() -> &'static str {
    panic!("a bug in the handler")
}

fn app(layer: AuditLayer) -> Router {
    Router::new()
        .route("/guests/{id}", get(|| async { "guest" }))
        .route("/guests/{id}/diet", put(update_diet))
        .route(
            "/boom",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/panic", get(panicking))
        .route("/healthz", get(|| async { "ok" }))
        .layer(layer)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// The tenant's events, oldest first.
async fn stored(client: &Client) -> Vec<Value> {
    let events = client.query_all(&[]).await.unwrap();
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

fn actor_header(parts: &axum::http::request::Parts) -> Option<String> {
    parts
        .headers
        .get("x-user")?
        .to_str()
        .ok()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_recorded_with_its_route_status_actor_and_address() {
    let (_sealtrail, _dir, client) = sealtrail().await;
    let producer = Producer::start(client.clone(), ProducerConfig::new("wedding-api")).unwrap();
    // The peer (127.0.0.1) is not a trusted proxy here.
    let layer = AuditLayer::new(producer.clone())
        .actor(actor_header)
        .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).unwrap())
        .record_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::ACCEPT_LANGUAGE,
        ]);
    let addr = serve(app(layer)).await;
    let http = reqwest::Client::new();
    let answer = http
        .get(format!("http://{addr}/guests/4711?page=2&token=s3cret"))
        .header("x-user", "coord:bruno")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "req-42")
        .header("user-agent", "wedding-web/1.0")
        .header("authorization", "Bearer hunter2")
        .header("accept-language", "pt-PT")
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.headers()["x-request-id"],
        "req-42",
        "a request id sent is kept"
    );
    let answer = http
        .get(format!("http://{addr}/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let generated = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    assert!(
        http.get(format!("http://{addr}/panic"))
            .send()
            .await
            .is_err(),
        "the panic goes on"
    );
    http.get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    http.get(format!("http://{addr}/nowhere"))
        .send()
        .await
        .unwrap();
    http.put(format!("http://{addr}/guests/4711/diet"))
        .send()
        .await
        .unwrap();
    assert!(producer.flush().await.unwrap().all_delivered());

    let events = stored(&client).await;
    let requests: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "http.request")
        .collect();
    let routes: Vec<&str> = requests
        .iter()
        .map(|e| e["resource_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        [
            "/guests/{id}",
            "/boom",
            "/panic",
            "unmatched",
            "/guests/{id}/diet"
        ],
        "/healthz is skipped"
    );

    let guest = requests[0];
    assert_eq!(guest["resource_type"], "http.route");
    assert_eq!(guest["user_id"], "coord:bruno");
    assert_eq!(
        guest["ip_address"], "127.0.0.1",
        "the spoofed X-Forwarded-For is ignored"
    );
    assert_eq!(guest["request_id"], "req-42");
    assert_eq!(guest["user_agent"], "wedding-web/1.0");
    assert_eq!(
        (guest["severity"].as_str(), guest["outcome"].as_str()),
        (Some("info"), Some("success"))
    );
    let details = &guest["details"];
    assert_eq!(details["method"], "GET");
    assert_eq!(details["path"], "/guests/4711");
    assert_eq!(details["status"], 200);
    assert_eq!(
        details["query"],
        serde_json::json!({"page": "2", "token": "[redacted]"})
    );
    assert_eq!(
        details["headers"],
        serde_json::json!({"authorization": "[redacted]", "accept-language": "pt-PT"})
    );
    assert!(details["duration_us"].as_u64().is_some());

    let boom = requests[1];
    assert_eq!(
        (boom["severity"].as_str(), boom["outcome"].as_str()),
        (Some("warning"), Some("failure"))
    );
    assert_eq!(boom["request_id"].as_str(), Some(generated.as_str()));
    assert!(boom["user_id"].is_null(), "no actor: none recorded");
    let panic = requests[2];
    assert_eq!(
        (
            panic["severity"].as_str(),
            panic["details"]["status"].as_u64()
        ),
        (Some("critical"), Some(500))
    );
    assert_eq!(panic["details"]["panicked"], true);
    assert_eq!(requests[3]["details"]["status"], 404);

    // The handler named the user and recorded a domain event in the request's context.
    let diet = requests[4];
    assert_eq!(diet["user_id"], "coord:ines");
    let domain = events
        .iter()
        .find(|e| e["action"] == "guest.dietary_restriction.updated")
        .unwrap();
    assert_eq!(domain["user_id"], "coord:ines");
    assert_eq!(domain["ip_address"], "127.0.0.1");
    assert_eq!(domain["request_id"], diet["request_id"]);
    assert_eq!(domain["changes"][0]["after"], "vegan");
    producer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_clients() {
    let (_sealtrail, _dir, client) = sealtrail().await;
    let producer = Producer::start(client.clone(), ProducerConfig::new("wedding-api")).unwrap();
    let layer = AuditLayer::new(producer.clone())
        .trusted_proxies(TrustedProxies::parse(["127.0.0.1", "10.0.0.0/8"]).unwrap());
    let addr = serve(app(layer)).await;
    let http = reqwest::Client::new();
    for forwarded in ["6.6.6.6, 198.51.100.7, 10.1.1.1", "198.51.100.7"] {
        http.get(format!("http://{addr}/guests/1"))
            .header("x-forwarded-for", forwarded)
            .send()
            .await
            .unwrap();
    }
    http.get(format!("http://{addr}/guests/1"))
        .header("forwarded", "for=\"[2001:db8::7]:443\"")
        .send()
        .await
        .unwrap();
    assert!(producer.flush().await.unwrap().all_delivered());
    let ips: Vec<String> = stored(&client)
        .await
        .iter()
        .map(|e| e["ip_address"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ips, ["198.51.100.7", "198.51.100.7", "2001:db8::7"]);
    producer.shutdown(Duration::from_secs(5)).await;
}
