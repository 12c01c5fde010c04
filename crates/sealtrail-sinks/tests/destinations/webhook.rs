//! The webhook sink: Standard Webhooks signatures, one message per event with a stable id.

use crate::common::receiver::{self, Receiver};
use crate::common::{TestSinks, caught_up, ingest_the_wedding, secret_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_in_log_order_signed_with_a_stable_id() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let t = TestSinks::start(&format!(
        r#"
        [[sinks]]
        name = "hook"
        kind = "webhook"
        url = "{base}/hook"
        secret = {{ file = "{hook}" }}
        max_batch_events = 1

        [[routes]]
        name = "everything"
        sinks = ["hook"]
        "#,
        base = rx.base,
        hook = secret_file(secrets.path(), "hook", receiver::WEBHOOK_SECRET),
    ))
    .await;
    let total = ingest_the_wedding(&t).await;
    caught_up(&t, total).await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    let ids = t.ids_in_log_order();
    assert_eq!(ids.len(), total as usize);
    let hooks = rx.accepted("/hook");
    let hook_ids: Vec<String> = hooks
        .iter()
        .map(|h| h["message"]["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hook_ids, ids);
    assert_eq!(hooks[0]["message"]["type"], "audit_event.created");
    assert_eq!(hooks[0]["id"], format!("msg_{}", ids[0]));
    let shown = t.statuses().to_string();
    assert!(
        !shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{shown}"
    );
}
