//! The Slack sink: readable Block Kit messages, digests past a route's rate limit, and a
//! webhook URL (a credential) that never shows.

use std::time::Duration;

use crate::common::receiver::Receiver;
use crate::common::{
    TestSinks, caught_up, eventually, fast_retries, ingest_the_wedding, secret_file,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_warnings_arrive_as_readable_messages_with_a_link() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let t = TestSinks::start(&format!(
        r#"
        [[sinks]]
        name = "chat"
        kind = "slack"
        webhook_url = {{ file = "{slack}" }}
        event_url = "https://audit.example/events/{{id}}"

        [[routes]]
        name = "dietary warnings"
        sinks = ["chat"]
        severities = ["warning"]
        action = "guest.dietary_restriction.updated"
        "#,
        slack = secret_file(secrets.path(), "slack", &format!("{}/slack", rx.base)),
    ))
    .await;
    let total = ingest_the_wedding(&t).await;
    caught_up(&t, total).await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    // The dietary warnings (every 4th guest event), readable.
    let messages = rx.accepted("/slack");
    assert_eq!(messages.len(), 13);
    let text = messages[0].to_string();
    assert!(text.contains("guest.dietary_restriction.updated"), "{text}");
    assert!(text.contains("https://audit.example/events/"), "{text}");
    assert!(text.contains("coord:ines"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_over_a_routes_rate_limit_arrive_as_one_digest() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let t = TestSinks::start(&format!(
        r#"
        [[sinks]]
        name = "chat"
        kind = "slack"
        webhook_url = {{ file = "{slack}" }}

        [[routes]]
        name = "warnings"
        sinks = ["chat"]
        severities = ["warning"]
        rate_limit = {{ max_events = 2, per_secs = 2 }}
        "#,
        slack = secret_file(secrets.path(), "slack", &format!("{}/slack", rx.base)),
    ))
    .await;
    // guest_event(n) is a warning for every 4th n: 10 warnings.
    t.ingest_guests("acme", 0..40).await;
    eventually("two alerts and one digest arrived", async || {
        rx.accepted("/slack").len() == 3
    })
    .await;
    let messages = rx.accepted("/slack");
    assert!(messages[0]["text"].as_str().unwrap().contains("guest-0"));
    assert!(messages[1]["text"].as_str().unwrap().contains("guest-4"));
    let digest = messages[2].to_string();
    assert!(
        digest.contains("8 events matched routes[0] (warnings)"),
        "{digest}"
    );
    assert!(
        digest.contains("guest-8") && digest.contains("guest-36"),
        "{digest}"
    );
    let status = t.status("chat");
    assert_eq!(status["cursor"], 40);
    assert_eq!(status["dead_letters"], 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.accepted("/slack").len(), 3, "nothing is sent twice");
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_webhook_url_never_shows_in_errors() {
    let secrets = tempfile::tempdir().unwrap();
    // Nothing listens on this port: every attempt fails with a connection error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/services/T000/B000/XXXXSECRETTOKEN");
    let t = TestSinks::start(&format!(
        "[[sinks]]\nname = \"chat\"\nkind = \"slack\"\nwebhook_url = {{ file = \"{}\" }}\n{}\n\n[[routes]]\nsinks = [\"chat\"]\n",
        secret_file(secrets.path(), "slack", &url),
        fast_retries()
    ))
    .await;
    t.ingest_guests("acme", 0..1).await;
    eventually("the failure is reported", async || {
        t.status("chat")["last_error"].is_object()
    })
    .await;
    let text = t.statuses().to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(
        !text.contains("SECRETTOKEN") && !text.contains("/services/"),
        "{text}"
    );
}
