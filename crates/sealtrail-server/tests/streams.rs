//! Live streams against a real server: SSE and WebSocket deliver exactly the matching
//! events, resume exactly after cuts at random points and across a restart, keep a
//! stalled client from holding memory or delaying others, and serve 1,000 subscribers.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{SseClient, TestServer, WsClient, eventually};
use sealtrail_core::Scope;
use sealtrail_core::api::IngestResponse;
use serde_json::{Value, json};

fn stream_event(n: u64) -> Value {
    json!({
        "tenant_id": (["bloom", "lakeside", "golden-hour"][(n % 3) as usize]),
        "severity": (["info", "info", "warning", "critical"][(n % 4) as usize]),
        "action": if n.is_multiple_of(5) { "vendor.added" } else { "guest.rsvp.updated" },
        "resource_type": "guest",
        "resource_id": n.to_string(),
    })
}

/// A subscription under test: its SSE query, its WebSocket filter, and which events match.
#[derive(Clone, Copy)]
struct Case {
    query: &'static str,
    ws_filter: fn() -> Value,
    keep: fn(&Value) -> bool,
}

const CASES: [Case; 4] = [
    Case {
        query: "tenant_id=bloom",
        ws_filter: || json!({"tenant_id": "bloom"}),
        keep: |e| e["tenant_id"] == "bloom",
    },
    Case {
        query: "tenant_id=lakeside&severity=warning,critical",
        ws_filter: || json!({"tenant_id": "lakeside", "severity": ["warning", "critical"]}),
        keep: |e| e["tenant_id"] == "lakeside" && e["severity"] != "info",
    },
    Case {
        query: "action=guest.*",
        ws_filter: || json!({"action": "guest.*"}),
        keep: |e| e["action"] != "vendor.added",
    },
    Case {
        query: "",
        ws_filter: || json!({}),
        keep: |_| true,
    },
];

/// Events stored so far with their seqs, shared between the ingest task and the checks.
type Ledger = Arc<Mutex<Vec<(u64, Value)>>>;

async fn ingest(base: &str, key: &str, from: u64, count: u64, ledger: &Ledger) {
    let http = sealtrail_testkit::http_client();
    let mut n = from;
    while n < from + count {
        let size = (1 + n % 7).min(from + count - n);
        let events: Vec<Value> = (n..n + size).map(stream_event).collect();
        let response = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(key)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let receipt: IngestResponse = response.json().await.unwrap();
        ledger
            .lock()
            .unwrap()
            .extend(receipt.events.iter().map(|r| r.seq.unwrap()).zip(events));
        n += size;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn expected(ledger: &Ledger, case: Case) -> Vec<u64> {
    let mut seqs: Vec<u64> = ledger
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| (case.keep)(e))
        .map(|(s, _)| *s)
        .collect();
    seqs.sort_unstable();
    seqs
}

/// A tiny deterministic generator for cut points.
struct Cuts(u64);

impl Cuts {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + self.0 % below
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Sse,
    Ws,
}

/// Follows `case`, cutting the connection after a random number of events and resuming
/// from the last seq seen, until `done` and everything expected has arrived. Returns the
/// seqs received, in order.
async fn follow_with_cuts(
    base: Arc<Mutex<String>>,
    key: String,
    case: Case,
    transport: Transport,
    seed: u64,
    done: Arc<AtomicBool>,
    ledger: Ledger,
) -> Vec<u64> {
    let mut cuts = Cuts(seed);
    let mut received = Vec::new();
    let mut last = 0u64;
    loop {
        let finished = done.load(Ordering::Acquire);
        let target = expected(&ledger, case).last().copied().unwrap_or(0);
        if finished && last >= target {
            return received;
        }
        let url = base.lock().unwrap().clone();
        let take = cuts.next(40);
        let read = Duration::from_millis(300);
        match transport {
            Transport::Sse => {
                let connecting = SseClient::try_connect(&url, &key, case.query, Some(last));
                let Ok(Some(mut client)) =
                    tokio::time::timeout(Duration::from_secs(5), connecting).await
                else {
                    // The server is restarting: try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                for _ in 0..take {
                    match tokio::time::timeout(read, client.next_event()).await {
                        Ok(Some((seq, _))) => {
                            received.push(seq);
                            last = seq;
                        }
                        _ => break,
                    }
                }
            }
            Transport::Ws => {
                let Some(mut client) = WsClient::try_connect(&url, &key).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                client.send(json!({"type": "subscribe", "id": "s", "filter": (case.ws_filter)(), "since": last})).await;
                let mut got = 0;
                while got < take {
                    match tokio::time::timeout(read, client.next()).await {
                        Ok(Some(message)) if message["type"] == "event" => {
                            assert_eq!(message["subscription"], "s");
                            let seq = message["event"]["seq"].as_u64().unwrap();
                            received.push(seq);
                            last = seq;
                            got += 1;
                        }
                        Ok(Some(message)) => assert!(message["type"] != "error", "{message}"),
                        _ => break,
                    }
                }
            }
        }
    }
}

async fn resume_is_exact(transport: Transport, restart_midway: bool) {
    let server = TestServer::start().await;
    let key = server.key(&[Scope::Admin], None);
    let base = Arc::new(Mutex::new(server.base.clone()));
    let ledger: Ledger = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let followers: Vec<_> = CASES
        .iter()
        .enumerate()
        .map(|(i, case)| {
            tokio::spawn(follow_with_cuts(
                base.clone(),
                key.clone(),
                *case,
                transport,
                0x9e37 + i as u64,
                done.clone(),
                ledger.clone(),
            ))
        })
        .collect();
    ingest(&server.base, &key, 0, 400, &ledger).await;
    let server = if restart_midway {
        let server = server.restart().await;
        *base.lock().unwrap() = server.base.clone();
        server
    } else {
        server
    };
    ingest(&server.base, &key, 400, 400, &ledger).await;
    done.store(true, Ordering::Release);
    for (follower, case) in followers.into_iter().zip(CASES) {
        let received = tokio::time::timeout(Duration::from_secs(60), follower)
            .await
            .expect("follower finished")
            .unwrap();
        assert_eq!(
            received,
            expected(&ledger, case),
            "{}: every matching seq once, in order",
            case.query
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resume_is_exact_when_connections_are_cut_at_random() {
    resume_is_exact(Transport::Sse, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_resume_is_exact_when_connections_are_cut_at_random() {
    resume_is_exact(Transport::Ws, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_is_exact_across_a_server_restart() {
    resume_is_exact(Transport::Sse, true).await;
    resume_is_exact(Transport::Ws, true).await;
}

#[tokio::test]
async fn sse_replays_then_goes_live_with_ids_heartbeats_and_caught_up() {
    let server = TestServer::start_with(|c| c.stream.heartbeat_secs = 1).await;
    let admin = server.key(&[Scope::Admin], None);
    let ledger: Ledger = Arc::default();
    ingest(&server.base, &admin, 0, 20, &ledger).await;
    let key = server.key(&[Scope::Stream], Some("bloom"));
    let mut client = SseClient::connect(&server.base, &key, "since=0", None).await;
    let mut seqs = Vec::new();
    loop {
        let message = client.next().await.unwrap();
        if message.event.as_deref() == Some("caught_up") {
            assert_eq!(
                serde_json::from_str::<Value>(&message.data).unwrap()["seq"],
                20
            );
            break;
        }
        let event: Value = serde_json::from_str(&message.data).unwrap();
        assert_eq!(
            event["tenant_id"], "bloom",
            "a bound key sees only its tenant"
        );
        assert_eq!(event["seq"].as_u64(), message.id);
        seqs.push(message.id.unwrap());
    }
    assert_eq!(seqs, expected(&ledger, CASES[0]));
    ingest(&server.base, &admin, 20, 10, &ledger).await;
    let (seq, event) = client.next_event().await.unwrap();
    assert!(
        seq > 20 && event["tenant_id"] == "bloom",
        "then live events"
    );
    // Other tenants and missing scopes are refused up front.
    let response = sealtrail_testkit::http_client()
        .get(format!("{}/v1/stream?tenant_id=lakeside", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // A replay is recorded as one subscription, not per tenant and page as queries are:
    // following takes its own scope.
    let reader = server.key(&[Scope::Read], None);
    let response = sealtrail_testkit::http_client()
        .get(format!("{}/v1/stream", server.base))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = sealtrail_testkit::http_client()
        .get(format!("{}/v1/stream?since=9999", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        400,
        "no resuming after a seq the log does not have"
    );
}

#[tokio::test]
async fn websocket_subscriptions_are_tagged_replaced_cancelled_and_bad_messages_get_errors() {
    let server = TestServer::start().await;
    let admin = server.key(&[Scope::Admin], None);
    let ledger: Ledger = Arc::default();
    ingest(&server.base, &admin, 0, 30, &ledger).await;
    let key = server.key(&[Scope::Stream], Some("bloom"));
    let mut ws = WsClient::connect(&server.base, &key).await;
    ws.send_text("this is not json").await;
    let error = ws.next().await.unwrap();
    assert_eq!(error["type"], "error", "{error}");
    ws.send(json!({"type": "subscribe", "id": "a", "filter": {"tenant_id": "lakeside"}}))
        .await;
    let error = ws.next().await.unwrap();
    assert_eq!(
        (error["type"].as_str(), error["subscription"].as_str()),
        (Some("error"), Some("a")),
        "{error}"
    );
    ws.send(json!({"type": "subscribe", "id": "a", "filter": {"colour": "red"}}))
        .await;
    assert_eq!(ws.next().await.unwrap()["type"], "error");

    ws.send(json!({"type": "subscribe", "id": "a", "since": 0}))
        .await;
    ws.send(
        json!({"type": "subscribe", "id": "b", "filter": {"severity": "critical"}, "since": 0}),
    )
    .await;
    let (mut by_a, mut by_b, mut caught_up) = (Vec::new(), Vec::new(), 0);
    while caught_up < 2 || by_a.len() + by_b.len() < expected(&ledger, CASES[0]).len() + 3 {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap();
        match message["type"].as_str().unwrap() {
            "subscribed" => {}
            "caught_up" => caught_up += 1,
            "event" => {
                let seq = message["event"]["seq"].as_u64().unwrap();
                assert_eq!(message["event"]["tenant_id"], "bloom");
                match message["subscription"].as_str().unwrap() {
                    "a" => by_a.push(seq),
                    "b" => by_b.push(seq),
                    other => panic!("unknown subscription {other}"),
                }
            }
            other => panic!("unexpected {other}: {message}"),
        }
    }
    assert_eq!(by_a, expected(&ledger, CASES[0]));
    assert!(by_b.iter().all(|s| {
        ledger
            .lock()
            .unwrap()
            .iter()
            .any(|(q, e)| q == s && e["severity"] == "critical")
    }));
    ws.send(json!({"type": "unsubscribe", "id": "b"})).await;
    ws.send(json!({"type": "unsubscribe", "id": "nope"})).await;
    let mut saw_unsubscribed = false;
    let mut saw_error = false;
    while !(saw_unsubscribed && saw_error) {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap();
        saw_unsubscribed |= message["type"] == "unsubscribed" && message["subscription"] == "b";
        saw_error |= message["type"] == "error" && message["subscription"] == "nope";
    }
}

/// A client that never reads is dropped from live delivery as soon as its bounded queue is
/// full and disconnected after the write timeout; another client gets every event on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_neither_holds_memory_nor_delays_others() {
    let server = TestServer::start_with(|c| {
        c.stream.live_queue_events = 16;
        c.stream.write_timeout_secs = 1;
    })
    .await;
    let key = server.key(&[Scope::Admin], None);
    // A stalled client: sends the request, never reads a byte.
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "GET /v1/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stalled, request.as_bytes())
        .await
        .unwrap();
    let mut healthy = SseClient::connect(&server.base, &key, "", None).await;
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    eventually("both subscribers are live", async || {
        metric(
            &server.get_open("/metrics").await.1,
            "sealtrail_stream_live_subscribers",
        ) == 2
    })
    .await;
    let ledger: Ledger = Arc::default();
    // Enough to fill the stalled socket's kernel buffers many times over.
    let details = "x".repeat(2000);
    let http = sealtrail_testkit::http_client();
    for round in 0..40u64 {
        let events: Vec<Value> = (0..50)
            .map(|i| {
                let mut e = stream_event(round * 50 + i);
                e["details"] = json!({"padding": details});
                e
            })
            .collect();
        let response = http
            .post(format!("{}/v1/events", server.base))
            .bearer_auth(&key)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        let receipt: IngestResponse = response.json().await.unwrap();
        ledger
            .lock()
            .unwrap()
            .extend(receipt.events.iter().map(|r| (r.seq.unwrap(), json!({}))));
    }
    let total = ledger.lock().unwrap().len() as u64;
    let mut last = 0;
    while last < total {
        let (seq, _) = tokio::time::timeout(Duration::from_secs(5), healthy.next_event())
            .await
            .expect("the healthy client is not delayed")
            .unwrap();
        assert_eq!(seq, last + 1, "no gap, no duplicate");
        last = seq;
    }
    let metrics = server.get_open("/metrics").await.1;
    assert!(
        metric(&metrics, "sealtrail_stream_evictions_total") >= 1,
        "the stalled client left live delivery:\n{metrics}"
    );
    eventually("the stalled client is disconnected", async || {
        metric(
            &server.get_open("/metrics").await.1,
            "sealtrail_stream_subscribers",
        ) == 1
    })
    .await;
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_all_receive_every_matching_event() {
    raise_open_file_limit();
    let server = TestServer::start().await;
    let admin = server.key(&[Scope::Admin], None);
    let tenants = ["bloom", "lakeside", "golden-hour"];
    let keys: Vec<String> = tenants
        .iter()
        .map(|t| server.key(&[Scope::Stream], Some(t)))
        .collect();
    let mut subscribers = Vec::new();
    for i in 0..1000usize {
        let (base, key, tenant) = (server.base.clone(), keys[i % 3].clone(), tenants[i % 3]);
        subscribers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            if i % 2 == 0 {
                let mut client = SseClient::connect(&base, &key, "", Some(0)).await;
                while let Ok(Some((seq, event))) =
                    tokio::time::timeout(Duration::from_secs(10), client.next_event()).await
                {
                    assert_eq!(event["tenant_id"], tenant);
                    seqs.push(seq);
                    if seqs.len() == 100 {
                        break;
                    }
                }
            } else {
                let mut client = WsClient::connect(&base, &key).await;
                client
                    .send(json!({"type": "subscribe", "id": "x", "since": 0}))
                    .await;
                while let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_secs(10), client.next()).await
                {
                    if message["type"] == "event" {
                        assert_eq!(message["event"]["tenant_id"], tenant);
                        seqs.push(message["event"]["seq"].as_u64().unwrap());
                        if seqs.len() == 100 {
                            break;
                        }
                    }
                }
            }
            (i % 3, seqs)
        }));
    }
    eventually("all 1,000 are subscribed", async || {
        server
            .get_open("/metrics")
            .await
            .1
            .contains("sealtrail_stream_subscribers 1000")
    })
    .await;
    let ledger: Ledger = Arc::default();
    ingest(&server.base, &admin, 0, 300, &ledger).await;
    for subscriber in subscribers {
        let (tenant, seqs) = subscriber.await.unwrap();
        let expected_seqs: Vec<u64> = {
            let ledger = ledger.lock().unwrap();
            let mut all: Vec<u64> = ledger
                .iter()
                .filter(|(_, e)| e["tenant_id"] == tenants[tenant])
                .map(|(s, _)| *s)
                .collect();
            all.sort_unstable();
            all.truncate(100);
            all
        };
        assert_eq!(seqs, expected_seqs);
    }
}

fn raise_open_file_limit() {
    // 1,000 client and 1,000 server sockets live in this one test process.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_ends_every_stream_so_the_server_stops_promptly() {
    let server = TestServer::start().await;
    let key = server.key(&[Scope::Admin], None);
    let ledger: Ledger = Arc::default();
    ingest(&server.base, &key, 0, 5, &ledger).await;
    let mut sse = SseClient::connect(&server.base, &key, "since=0", None).await;
    let mut ws = WsClient::connect(&server.base, &key).await;
    ws.send(json!({"type": "subscribe", "id": "all", "since": 0}))
        .await;
    for _ in 0..5 {
        sse.next_event().await.unwrap();
    }
    while ws.next().await.unwrap()["type"] != "caught_up" {}

    // Both clients stay connected: shutting down must not wait for them to leave.
    let stopping = tokio::spawn(server.stop());
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops although stream clients are still connected")
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        // What was sent before the end (the caught_up message) is still read first.
        while sse.next().await.is_some() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the SSE stream ends so the client reconnects with Last-Event-ID"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(
        matches!(closed, Ok(None)),
        "the WebSocket is closed (1001, going away)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_gets_the_stream_unchunked() {
    use std::io::{Read as _, Write as _};
    let server = TestServer::start().await;
    let key = server.key(&[Scope::Ingest, Scope::Stream], Some("bloom"));
    let (status, _) = server.post_batch(&key, 0..1).await;
    assert!((200..300).contains(&status));
    let address = server.base.trim_start_matches("http://").to_owned();
    let text = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let request =
            format!("GET /v1/stream?since=0 HTTP/1.0\r\nAuthorization: Bearer {key}\r\n\r\n");
        socket.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        let mut buffer = [0u8; 4096];
        while !text.contains("caught_up") {
            let n = socket.read(&mut buffer).unwrap();
            assert!(n > 0, "the stream ended early: {text}");
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        text
    })
    .await
    .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(body.contains("id: 1\n"), "{body:?}");
}
