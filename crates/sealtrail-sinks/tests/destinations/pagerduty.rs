//! The PagerDuty sink: Events API v2 triggers with a templated `dedup_key`.

use crate::common::receiver::{self, Receiver};
use crate::common::{TestSinks, caught_up, ingest_the_wedding, secret_file};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_critical_event_triggers_one_alert_with_its_dedup_key() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let t = TestSinks::start(&format!(
        r#"
        [[sinks]]
        name = "pager"
        kind = "pagerduty"
        url = "{base}/v2/enqueue"
        routing_key = {{ file = "{pd}" }}
        dedup_key = "{{tenant_id}}/{{resource_type}}/{{resource_id}}"

        [[routes]]
        name = "pages"
        sinks = ["pager"]
        severities = ["critical"]
        details = {{ "/page" = true }}
        "#,
        base = rx.base,
        pd = secret_file(secrets.path(), "pd", receiver::PD_ROUTING_KEY),
    ))
    .await;
    let total = ingest_the_wedding(&t).await;
    caught_up(&t, total).await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    // The one critical event whose details ask for a page.
    let pages = rx.accepted("/v2/enqueue");
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0]["dedup_key"], "acme/venue/v1");
    assert_eq!(pages[0]["payload"]["severity"], "critical");
    assert_eq!(pages[0]["event_action"], "trigger");
    let shown = t.statuses().to_string();
    assert!(!shown.contains(receiver::PD_ROUTING_KEY), "{shown}");
}
