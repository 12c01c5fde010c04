//! The example service with Sealtrail stopped keeps answering at its normal speed; when
//! Sealtrail is back, every audit event reaches it exactly once — those spooled to disk
//! across a restart of the service too — and the sources report no hole.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealtrail_core::Scope;
use serde_json::{Value, json};

struct WeddingApi {
    child: Child,
    url: String,
}

impl WeddingApi {
    fn start(sealtrail: &str, key: &str, spool: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wedding-api"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--sealtrail-url",
                sealtrail,
                "--sealtrail-key",
                key,
            ])
            .arg("--spool-dir")
            .arg(spool)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(url.starts_with("http://"), "{line}");
        Self { child, url }
    }

    /// SIGTERM, and the exit: queued events delivered or spooled first.
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.child.wait().unwrap().success());
    }
}

/// Adds a guest and changes their diet `n` times; the latency of each request.
async fn use_the_app(api: &WeddingApi, http: &reqwest::Client, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let started = Instant::now();
    let guest: Value = http
        .post(format!("{}/guests", api.url))
        .bearer_auth("ines-token")
        .json(&json!({"name": "Rosa Almeida"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    latencies.push(started.elapsed());
    for i in 0..n {
        let started = Instant::now();
        let answer = http
            .put(format!(
                "{}/guests/{}/dietary-restriction",
                api.url, guest["id"]
            ))
            .bearer_auth("bruno-token")
            .json(&json!({"dietary_restriction": format!("diet {i}"), "reason": "Guest called"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        latencies.push(started.elapsed());
    }
    latencies
}

fn median(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[latencies.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sealtrail_down_the_service_answers_and_every_event_arrives_once_later() {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut config = sealtrail_server::Config {
        listen: addr,
        data_dir: dir.path().to_owned(),
        ..sealtrail_server::Config::default()
    };
    config.access_log.enabled = false;
    let keys = sealtrail_store::ApiKeyStore::open(dir.path()).unwrap();
    let key = keys
        .create(&[Scope::Ingest, Scope::Read], Some("bloom-and-vine"), None)
        .unwrap()
        .1;
    let sealtrail = format!("http://{addr}");
    let http = sealtrail_testkit::http_client();

    // Sealtrail is down: the service answers all the same.
    let api = WeddingApi::start(&sealtrail, &key, spool.path());
    let down = use_the_app(&api, &http, 100).await;
    api.stop();
    assert!(
        std::fs::read_dir(spool.path()).unwrap().count() > 2,
        "events were spooled"
    );

    // Sealtrail is back; the next run of the service delivers what the last one spooled.
    let server = sealtrail_server::start(config).await.unwrap();
    let api = WeddingApi::start(&sealtrail, &key, spool.path());
    let up = use_the_app(&api, &http, 100).await;
    api.stop();
    let (down, up) = (median(down), median(up));
    assert!(
        down <= up * 3 + Duration::from_millis(2),
        "median {down:?} with Sealtrail down, {up:?} up"
    );

    let client = sealtrail_client::Client::new(&sealtrail, &key).unwrap();
    let events: Vec<Value> = client
        .query_all(&[])
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    // Per run: 101 requests and 101 domain events (a guest added, 100 diet changes).
    assert_eq!(events.len(), 2 * 202);
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "every event exactly once");
    let changes = events
        .iter()
        .filter(|e| e["action"] == "guest.dietary_restriction.updated");
    assert!(
        changes
            .clone()
            .all(|e| e["user_id"] == "coord:bruno.costa" && e["ip_address"] == "127.0.0.1")
    );
    assert_eq!(changes.count(), 200);
    let sources: Value = http
        .get(format!("{sealtrail}/v1/sources"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sources = sources["sources"].as_array().unwrap().clone();
    assert_eq!(sources.len(), 2, "one per run of the service: {sources:?}");
    for source in sources {
        assert_eq!(
            (source["highest_seq"].as_u64(), source["missing"].as_u64()),
            (Some(202), Some(0)),
            "{source}"
        );
    }
    server.shutdown().await.unwrap();
}
