//! The Datadog sink: Logs intake v2, gzip, the documented fields and tags.

use crate::common::receiver::{self, Receiver};
use crate::common::{TestSinks, caught_up, ingest_the_wedding, secret_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_events_arrive_gzipped_as_logs_with_the_documented_fields() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let t = TestSinks::start(&format!(
        r#"
        [[sinks]]
        name = "dd"
        kind = "datadog"
        url = "{base}/api/v2/logs"
        api_key = {{ file = "{dd}" }}
        service = "wedding-planner"
        tags = ["env:test"]

        [[routes]]
        name = "acme guests"
        sinks = ["dd"]
        tenant = "acme"
        action = "guest.*"
        "#,
        base = rx.base,
        dd = secret_file(secrets.path(), "dd", receiver::DD_API_KEY),
    ))
    .await;
    let total = ingest_the_wedding(&t).await;
    caught_up(&t, total).await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    // acme's guest events only, gzip, the documented fields.
    let logs = rx.accepted("/api/v2/logs");
    assert_eq!(logs.len(), 40);
    assert!(
        rx.requests("/api/v2/logs")
            .iter()
            .all(|r| r.headers["content-encoding"] == "gzip")
    );
    assert_eq!(logs[0]["service"], "wedding-planner");
    assert!(logs[0]["ddtags"].as_str().unwrap().contains("env:test"));
    assert!(logs[0]["ddtags"].as_str().unwrap().contains("tenant:acme"));
    assert_eq!(logs[0]["status"], "warning", "guest_event(0) is a warning");
    assert_eq!(logs[1]["status"], "info");
    let shown = t.statuses().to_string();
    assert!(!shown.contains(receiver::DD_API_KEY), "{shown}");
}
