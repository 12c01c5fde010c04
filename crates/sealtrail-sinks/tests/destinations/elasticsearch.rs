//! The Elasticsearch sink: `_bulk` `create` with `_id` = the event id, date-named indexes.

use serde_json::Value;

use crate::common::receiver::Receiver;
use crate::common::{TestSinks, caught_up, ingest_the_wedding, secret_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_indexed_once_in_log_order_by_its_id_in_a_dated_index() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let t = TestSinks::start(&format!(
        r#"
        [[sinks]]
        name = "search"
        kind = "elasticsearch"
        url = "{base}"
        index = "audit-{{yyyy}}.{{mm}}"
        api_key = {{ file = "{es}" }}

        [[routes]]
        name = "everything"
        sinks = ["search"]
        "#,
        base = rx.base,
        es = secret_file(
            secrets.path(),
            "es",
            "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        ),
    ))
    .await;
    let total = ingest_the_wedding(&t).await;
    caught_up(&t, total).await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    let ids = t.ids_in_log_order();
    assert_eq!(ids.len(), total as usize);
    assert_eq!(rx.doc_ids(), ids);
    let doc = rx.doc(&ids[0]).unwrap();
    assert_eq!(doc["@timestamp"], doc["occurred_at"]);
    assert!(doc["leaf_hash"].is_string());
    let bulk = &rx.requests("/_bulk")[0];
    assert_eq!(
        bulk.headers["authorization"],
        "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
    );
    let first_action: Value = serde_json::from_str(
        std::str::from_utf8(&bulk.body)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let index = first_action["create"]["_index"].as_str().unwrap();
    assert!(
        index.starts_with("audit-20") && index.len() == "audit-2026.12".len(),
        "{index}"
    );

    // The status shows the sink's delivery.
    let status = t.status("search");
    assert_eq!(status["delivered_events"], total);
    assert_eq!(status["circuit"], "closed");
    assert_eq!(status["dead_letters"], 0);
    assert!(status["last_success_at"].is_string());
}
