//! The producer against a real server started in this process: delivery exactly once by
//! id, gapless `source_seq`, the spool across a server outage and a producer restart,
//! graceful shutdown, the queue bound under a flood, refusals, and retries of 503 and 429
//! (the last two against a local fake that checks the request).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealtrail_client::Client;
use sealtrail_client::event::Event;
use sealtrail_client::producer::{Overflow, Producer, ProducerConfig, ProducerError};
use sealtrail_core::Scope;
use serde_json::Value;

/// A server on a fixed address (so it can be stopped and started again there).
struct Server {
    running: Option<sealtrail_server::RunningServer>,
    config: sealtrail_server::Config,
    _dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Server {
    /// A server's configuration on `addr`, not started.
    fn configured(addr: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = sealtrail_server::Config {
            listen: addr,
            data_dir: dir.path().to_owned(),
            ..sealtrail_server::Config::default()
        };
        config.access_log.enabled = false;
        Self {
            running: None,
            config,
            _dir: dir,
        }
    }

    async fn start(&mut self) {
        self.running = Some(sealtrail_server::start(self.config.clone()).await.unwrap());
    }

    async fn stop(&mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }

    fn url(&self) -> String {
        format!("http://{}", self.config.listen)
    }

    fn key(&self, scopes: &[Scope]) -> String {
        let keys = sealtrail_store::ApiKeyStore::open(&self.config.data_dir).unwrap();
        keys.create(scopes, Some("bloom"), None).unwrap().1
    }

    fn client(&self) -> Client {
        Client::new(&self.url(), &self.key(&[Scope::Ingest, Scope::Read])).unwrap()
    }
}

fn config(spool: Option<&Path>) -> ProducerConfig {
    let mut config = ProducerConfig::new("wedding-api");
    config.linger = Duration::from_millis(10);
    config.spool_after = Duration::from_millis(200);
    config.max_retry_delay = Duration::from_millis(200);
    config.spool_dir = spool.map(Path::to_owned);
    config
}

fn guest_event(n: u64) -> Event {
    Event::new("guest.rsvp.updated", "guest")
        .resource_id(n.to_string())
        .user("coord:ines")
}

/// Every event of the tenant, oldest first.
async fn stored(client: &Client) -> Vec<Value> {
    let events = client.query_all(&[]).await.unwrap();
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

/// Asserts the ids are distinct and a source's numbers are exactly `1..=n`.
fn assert_exactly_once(events: &[Value], source: &str, n: u64) {
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an id stored twice");
    let mut seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["source"] == source)
        .map(|e| e["source_seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "{source}");
}

async fn sources(server: &Server, key: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/sources", server.url()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_deliver_every_event_once_with_gapless_numbers() {
    let mut server = Server::configured(free_addr());
    server.start().await;
    let client = server.client();
    let producer = Producer::start(client.clone(), config(None)).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let producer = producer.clone();
            tokio::spawn(async move {
                for n in 0..625 {
                    producer.send(guest_event(task * 1000 + n)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let report = producer.flush().await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    let metrics = producer.metrics();
    assert_eq!(
        (metrics.delivered, metrics.dropped, metrics.refused),
        (5000, 0, 0)
    );
    assert_exactly_once(&stored(&client).await, producer.source(), 5000);
    producer.shutdown(Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sealtrail_down_events_are_spooled_and_delivered_once_after_a_producer_restart() {
    let spool = tempfile::tempdir().unwrap();
    let mut server = Server::configured(free_addr());
    let client = server.client();
    let producer = Producer::start(client.clone(), config(Some(spool.path()))).unwrap();
    let mut slowest = Duration::ZERO;
    for n in 0..300 {
        let started = Instant::now();
        producer.send(guest_event(n)).await.unwrap();
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(50),
        "a send waited {slowest:?}"
    );
    let report = producer.shutdown(Duration::from_secs(2)).await;
    assert_eq!((report.spooled, report.undelivered), (300, 0), "{report:?}");
    let first_source = producer.source().to_owned();

    // The next process on the same spool delivers them once Sealtrail is back.
    server.start().await;
    let producer = Producer::start(client.clone(), config(Some(spool.path()))).unwrap();
    producer.send(guest_event(1000)).await.unwrap();
    let report = producer.flush().await.unwrap();
    assert!(report.all_delivered(), "{report:?}");
    let events = stored(&client).await;
    assert_eq!(events.len(), 301);
    assert_exactly_once(&events, &first_source, 300);
    assert_exactly_once(&events, producer.source(), 1);
    assert_eq!(producer.metrics().spool_files, 0);
    producer.shutdown(Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_everything_queued() {
    let mut server = Server::configured(free_addr());
    server.start().await;
    let client = server.client();
    let mut settings = config(None);
    settings.queue_capacity = 5000;
    settings.linger = Duration::from_secs(60);
    let producer = Producer::start(client.clone(), settings).unwrap();
    for n in 0..2050 {
        producer.try_send(guest_event(n)).unwrap();
    }
    let report = producer.shutdown(Duration::from_secs(10)).await;
    assert!(report.all_delivered(), "{report:?}");
    assert_eq!(producer.metrics().delivered, 2050);
    assert_exactly_once(&stored(&client).await, producer.source(), 2050);
    assert!(matches!(
        producer.send(guest_event(0)).await,
        Err(ProducerError::Closed)
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_flood_the_queue_bound_holds_and_drops_show_as_holes() {
    let mut server = Server::configured(free_addr());
    let client = server.client();
    let reader = server.key(&[Scope::Read]);
    let mut settings = config(None);
    settings.queue_capacity = 100;
    settings.overflow = Overflow::DropNewest;
    let producer = Producer::start(client.clone(), settings).unwrap();
    let (mut sent, mut dropped) = (0u64, 0u64);
    for n in 0..10_000 {
        match producer.send(guest_event(n)).await {
            Ok(()) => sent += 1,
            Err(ProducerError::Dropped) => dropped += 1,
            Err(other) => panic!("{other}"),
        }
        assert!(producer.metrics().queued <= 100);
    }
    // The queue and one batch in the delivery task's hands: the rest is dropped.
    assert!(sent <= 100 + 100, "{sent} queued");
    assert_eq!(producer.metrics().dropped, dropped);

    // Blocking producers wait for room instead.
    let mut blocking = config(None);
    blocking.queue_capacity = 50;
    let waiting = Producer::start(client.clone(), blocking).unwrap();
    let flood = {
        let waiting = waiting.clone();
        tokio::spawn(async move {
            for n in 0..1000 {
                waiting.send(guest_event(n)).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!flood.is_finished(), "sends wait while Sealtrail is away");
    assert!(waiting.metrics().queued <= 50);

    server.start().await;
    flood.await.unwrap();
    assert!(producer.flush().await.unwrap().all_delivered());
    assert!(waiting.flush().await.unwrap().all_delivered());
    assert_eq!(producer.metrics().delivered, sent);
    assert_eq!(waiting.metrics().delivered, 1000);
    // Once a later number arrives, the server sees the dropped ones as missing.
    producer.send(guest_event(0)).await.unwrap();
    assert!(producer.flush().await.unwrap().all_delivered());
    let mut missing = Value::Null;
    for _ in 0..200 {
        let page = sources(&server, &reader).await;
        missing = page["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == producer.source() && s["highest_seq"] == sent + dropped + 1)
            .map(|s| s["missing"].clone())
            .unwrap_or(Value::Null);
        if !missing.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(missing, dropped, "every dropped number is a hole");
    producer.shutdown(Duration::from_secs(5)).await;
    waiting.shutdown(Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_reported_and_the_rest_of_its_batch_is_stored() {
    let mut server = Server::configured(free_addr());
    server.start().await;
    let client = server.client();
    let producer = Producer::start(client.clone(), config(None)).unwrap();
    producer.send(guest_event(1)).await.unwrap();
    producer
        .send(Event::new("has space", "guest"))
        .await
        .unwrap();
    producer.send(guest_event(2)).await.unwrap();
    producer.flush().await.unwrap();
    let metrics = producer.metrics();
    assert_eq!((metrics.delivered, metrics.refused), (2, 1), "{metrics:?}");
    let refusals = producer.refusals();
    assert_eq!(refusals[0].field, "action");
    assert!(refusals[0].reason.contains("contains ' '"), "{refusals:?}");
    assert_eq!(stored(&client).await.len(), 2);
    producer.shutdown(Duration::from_secs(5)).await;
    server.stop().await;
}

/// Answers 503, then 429 with `Retry-After: 1`, then what a server answers — after
/// checking each request is what the API takes.
async fn flaky_server() -> (
    SocketAddr,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<Instant>>>,
) {
    use axum::http::{HeaderMap, StatusCode};
    let calls = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counted, timed) = (calls.clone(), times.clone());
    let app = axum::Router::new().route(
        "/v1/events",
        axum::routing::post(
            move |query: axum::extract::RawQuery, headers: HeaderMap, body: axum::body::Bytes| {
                let (calls, times) = (counted.clone(), timed.clone());
                async move {
                    assert_eq!(query.0.as_deref(), Some("partial=true"));
                    assert_eq!(headers["authorization"], "Bearer st_fake_key");
                    assert_eq!(headers["content-type"], "application/json");
                    let batch: Value = serde_json::from_slice(&body).unwrap();
                    let events = batch["events"].as_array().unwrap();
                    assert!(events.iter().all(|e| e["id"].is_string() && e["source_seq"].is_u64()));
                    times.lock().unwrap().push(Instant::now());
                    let answer = serde_json::json!({
                        "events": events.iter().enumerate()
                            .map(|(i, e)| serde_json::json!({"index": i, "id": e["id"], "seq": i + 1, "leaf_hash": "00"}))
                            .collect::<Vec<_>>(),
                        "tree_size": events.len(), "checkpoint": "x",
                    });
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new(), "{}".to_owned()),
                        1 => {
                            let mut headers = HeaderMap::new();
                            headers.insert("retry-after", "1".parse().unwrap());
                            (StatusCode::TOO_MANY_REQUESTS, headers, "{}".to_owned())
                        }
                        _ => (StatusCode::OK, HeaderMap::new(), answer.to_string()),
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls, times)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_and_rate_limited_answers_are_retried_honouring_retry_after() {
    let (addr, calls, times) = flaky_server().await;
    let client = Client::new(&format!("http://{addr}"), "st_fake_key").unwrap();
    let mut settings = config(None);
    settings.max_retry_delay = Duration::from_secs(2);
    let producer = Producer::start(client, settings).unwrap();
    producer.send(guest_event(1)).await.unwrap();
    assert!(producer.flush().await.unwrap().all_delivered());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let times = times.lock().unwrap();
    assert!(
        times[2] - times[1] >= Duration::from_millis(950),
        "Retry-After: 1 was honoured: {:?}",
        times[2] - times[1]
    );
    let metrics = producer.metrics();
    assert_eq!((metrics.delivered, metrics.retries), (1, 2));
    assert!(metrics.last_error.unwrap().contains("429"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_a_shutdown_stops_retrying_at_its_deadline_and_counts_what_is_lost() {
    let server = Server::configured(free_addr());
    let mut settings = config(None);
    settings.max_retry_delay = Duration::from_secs(5);
    let producer = Producer::start(server.client(), settings).unwrap();
    for n in 0..350 {
        producer.send(guest_event(n)).await.unwrap();
    }
    // Let the delivery task get into its retries.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let report = producer.shutdown(Duration::from_millis(500)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!((report.undelivered, report.spooled), (350, 0), "{report:?}");
}
