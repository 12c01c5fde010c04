//! What every kind shares, from the runner: faults retried (5xx, 429 with Retry-After,
//! timeouts, dropped connections, redirects), per-item results, narrowing a refused batch
//! to its bad event, dead letters and their replay, outages, restarts, and one dead
//! receiver holding back only its own sink.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::receiver::{self, Fault, Receiver};
use crate::common::{TestSinks, eventually, fast_retries, guest_event, secret_file};

/// One Elasticsearch sink "search" that every event is routed to, with fast retries.
fn search_sink(base: &str, batch: usize) -> String {
    format!(
        "[[sinks]]\nname = \"search\"\nkind = \"elasticsearch\"\nurl = \"{base}\"\nmax_batch_events = {batch}\n{}\n\n[[routes]]\nsinks = [\"search\"]\n",
        fast_retries()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_and_a_refused_event_is_dead_lettered_then_replayed() {
    let rx = Receiver::start().await;
    // Every fault a receiver has, before the first request gets through: a 5xx, a 429
    // with Retry-After, an answer slower than the timeout, a dropped connection; then
    // per-item results in the first accepted bulk: one 429 (retried), one 400 (refused).
    rx.fault(Fault::Status(503, None));
    rx.fault(Fault::Status(429, Some(1)));
    rx.fault(Fault::Delay(Duration::from_millis(800)));
    rx.fault(Fault::Drop);
    rx.item_faults(&[201, 429, 400]);
    let t = TestSinks::start(&search_sink(&rx.base, 10)).await;
    t.ingest_guests("acme", 0..20).await;

    eventually("19 events are in the index", async || {
        rx.doc_ids().len() == 19
    })
    .await;
    eventually("the cursor is at the end", async || {
        t.status("search")["cursor"] == 20
    })
    .await;
    let requests = rx.requests("/_bulk");
    let after_429 = requests.iter().position(|r| r.status == 429).unwrap();
    let waited = requests[after_429 + 1].at - requests[after_429].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {waited:?}"
    );

    let dead = t.dead_letters("search");
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("item status 400"),
        "{dead:?}"
    );
    let dead_seq = dead[0]["seq"].as_u64().unwrap();
    let status = t.status("search");
    assert_eq!(status["dead_letters"], 1);
    assert_eq!(status["circuit"], "closed");
    let last_error = status["last_error"]["message"].as_str().unwrap();
    assert!(!last_error.is_empty());

    // The receiver has been fixed: replay.
    assert_eq!(t.sinks().replay("search", Some(&[dead_seq])).unwrap(), 1);
    eventually("the replayed event is in the index", async || {
        rx.doc_ids().len() == 20
    })
    .await;
    eventually("the dead letter is gone", async || {
        t.dead_letters("search") == json!([])
    })
    .await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_and_a_restart_lose_nothing_and_duplicate_nothing() {
    let rx = Receiver::start().await;
    rx.set_down(true);
    let t = TestSinks::start(&search_sink(&rx.base, 25)).await;
    for start in (0..200).step_by(50) {
        t.ingest_guests("acme", start..start + 50).await;
    }
    eventually("the circuit opens", async || {
        let st = t.status("search");
        st["circuit"] != "closed"
            && st["lag_events"] == 200
            && st["lag_seconds"].as_f64().unwrap() > 0.0
    })
    .await;
    // Sealtrail restarts in the middle of the outage.
    let t = t.restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.set_down(false);
    eventually("every event arrived", async || rx.doc_ids().len() == 200).await;
    eventually("the sink has caught up", async || {
        t.status("search")["lag_events"] == 0
    })
    .await;
    // In log order, each once.
    assert_eq!(rx.doc_ids(), t.ids_in_log_order());
    let sent: usize = rx
        .requests("/_bulk")
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.body.iter().filter(|&&b| b == b'\n').count() / 2)
        .sum();
    assert_eq!(
        sent, 200,
        "nothing was sent twice once the receiver answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_slows_neither_ingest_nor_the_other_sinks() {
    let dead = Receiver::start().await;
    dead.set_down(true);
    let healthy = Receiver::start().await;
    let t = TestSinks::start(&format!(
        r#"
        [[sinks]]
        name = "dead"
        kind = "elasticsearch"
        url = "{dead}"
        max_batch_events = 10
        {fast}

        [[sinks]]
        name = "healthy"
        kind = "elasticsearch"
        url = "{healthy}"
        max_batch_events = 10

        [[routes]]
        sinks = ["dead", "healthy"]
        "#,
        dead = dead.base,
        healthy = healthy.base,
        fast = fast_retries(),
    ))
    .await;
    for start in (0..300).step_by(30) {
        t.ingest_guests("acme", start..start + 30).await;
    }
    // Received first, then the cursor saved past it (a moment later, off the async
    // workers): both, while the dead receiver holds back only its own sink.
    eventually("the healthy receiver has everything", async || {
        healthy.doc_ids().len() == 300 && t.status("healthy")["lag_events"] == 0
    })
    .await;
    let stuck = t.status("dead");
    assert_eq!(stuck["cursor"], 0, "{stuck}");
    assert_eq!(stuck["lag_events"], 300);
    assert!(
        stuck["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{stuck}"
    );
    assert!(dead.doc_ids().is_empty());
    let fine = t.status("healthy");
    assert_eq!(fine["delivered_events"], 300, "{fine}");
    assert_eq!(
        (fine["lag_events"].as_u64(), fine["circuit"].as_str()),
        (Some(0), Some("closed"))
    );
}

/// Every kind of sink rides out the same faults: a 5xx, a 429 with Retry-After, an answer
/// slower than its timeout and a dropped connection; then the receiver accepts each event
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_sink_rides_out_5xx_429_timeouts_and_dropped_connections() {
    let secrets = tempfile::tempdir().unwrap();
    let kinds = [
        ("webhook", "/hook"),
        ("datadog", "/api/v2/logs"),
        ("slack", "/slack"),
        ("pagerduty", "/v2/enqueue"),
    ];
    for (kind, path) in kinds {
        let rx = Receiver::start().await;
        let target = match kind {
            "webhook" => format!(
                "url = \"{}/hook\"\nsecret = {{ file = \"{}\" }}\nmax_batch_events = 1",
                rx.base,
                secret_file(secrets.path(), "hook", receiver::WEBHOOK_SECRET)
            ),
            "datadog" => format!(
                "url = \"{}/api/v2/logs\"\napi_key = {{ file = \"{}\" }}",
                rx.base,
                secret_file(secrets.path(), "dd", receiver::DD_API_KEY)
            ),
            "slack" => format!(
                "webhook_url = {{ file = \"{}\" }}",
                secret_file(secrets.path(), "slack", &format!("{}/slack", rx.base))
            ),
            _ => format!(
                "url = \"{}/v2/enqueue\"\nrouting_key = {{ file = \"{}\" }}",
                rx.base,
                secret_file(secrets.path(), "pd", receiver::PD_ROUTING_KEY)
            ),
        };
        let toml_text = format!(
            "[[sinks]]\nname = \"s\"\nkind = \"{kind}\"\n{target}\n{fast}\n\n[[routes]]\nsinks = [\"s\"]\n",
            fast = fast_retries()
        );
        rx.fault(Fault::Status(308, None));
        rx.fault(Fault::Status(503, None));
        rx.fault(Fault::Status(429, Some(1)));
        rx.fault(Fault::Delay(Duration::from_millis(800)));
        rx.fault(Fault::Drop);
        let t = TestSinks::start(&toml_text).await;
        t.ingest_guests("acme", 0..3).await;
        eventually(&format!("{kind} accepted the events"), async || {
            rx.accepted(path).len() >= 3
        })
        .await;
        eventually(&format!("{kind} caught up"), async || {
            t.status("s")["lag_events"] == 0
        })
        .await;
        assert_eq!(rx.accepted(path).len(), 3, "{kind}: each event once");
        let statuses: Vec<u16> = rx.requests(path).iter().map(|r| r.status).collect();
        // The slow answer is not recorded: the client gave up on it, which cancelled it.
        // A redirect is not followed (it would turn the POST into a GET): it is retried.
        assert!(
            statuses.starts_with(&[308, 503, 429, 200]),
            "{kind}: {statuses:?}"
        );
        let status = t.status("s");
        assert_eq!(status["dead_letters"], 0, "{kind}: {status}");
        assert!(rx.violations().is_empty(), "{kind}: {:?}", rx.violations());
        t.stop().await;
    }
}

/// A receiver refuses any request holding one "poison" event: the sink narrows its batch
/// down to that event in a few requests, dead-letters it, and delivers all the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_event_is_isolated_and_never_blocks_the_others() {
    let rx = Receiver::start().await;
    rx.refuse_containing("guest-poison");
    let secrets = tempfile::tempdir().unwrap();
    let t = TestSinks::start(&format!(
        "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/hook\"\nsecret = {{ file = \"{}\" }}\nmax_batch_events = 16\n{}\n\n[[routes]]\nsinks = [\"hook\"]\n",
        rx.base,
        secret_file(secrets.path(), "hook", receiver::WEBHOOK_SECRET),
        fast_retries()
    ))
    .await;
    let mut events: Vec<Value> = (0..32).map(guest_event).collect();
    events[11]["resource_id"] = json!("guest-poison");
    t.ingest("acme", events).await;
    eventually("the sink is past every event", async || {
        t.status("hook")["cursor"] == 32
    })
    .await;
    let delivered: usize = rx
        .accepted("/hook")
        .iter()
        .map(|m| {
            m["message"]["data"]["events"]
                .as_array()
                .map_or(1, Vec::len)
        })
        .sum();
    assert_eq!(delivered, 31);
    let dead = t.dead_letters("hook");
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    assert_eq!(dead[0]["seq"], 12);
    let requests = rx.requests("/hook").len();
    assert!(
        requests <= 12,
        "{requests} requests to isolate one event in 32"
    );
}
