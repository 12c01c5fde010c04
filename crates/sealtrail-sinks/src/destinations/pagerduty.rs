//! PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`): a `trigger`
//! per event with the integration's `routing_key`, a `dedup_key` (the event id, or a
//! template such as `{tenant_id}/{resource_id}`, so redelivery never opens a second
//! incident), and `payload.summary`, `source`, `severity` (critical, warning, info map to
//! PagerDuty's same-named levels), `timestamp`, `component`, `group`, `class` and
//! `custom_details`. PagerDuty answers 202, or 400 (invalid event), 429, 5xx.

use serde_json::{Value, json};

use crate::config::{Secret, SecretRef};
use crate::delivery::{self, Delivery};
use crate::event::{SinkEvent, render};

/// PagerDuty's limit on `summary`.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Length of a PagerDuty integration (routing) key.
pub const ROUTING_KEY_CHARS: usize = 32;
/// PagerDuty's limit on `dedup_key`.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;

/// A PagerDuty service integration.
pub struct Pagerduty {
    url: String,
    routing_key: Secret,
    dedup_key: Option<String>,
    summary: Option<String>,
    event_url: Option<String>,
}

impl Pagerduty {
    pub(super) fn build(
        routing_key: &SecretRef,
        url: Option<&str>,
        dedup_key: Option<String>,
        summary: Option<String>,
        event_url: Option<String>,
    ) -> Result<Self, String> {
        Ok(Self {
            url: url
                .unwrap_or("https://events.pagerduty.com/v2/enqueue")
                .to_owned(),
            routing_key: {
                let key = routing_key
                    .resolve()
                    .map_err(|e| format!("routing_key: {e}"))?;
                // An integration key is 32 characters; any other is refused per event.
                if key.expose().len() != ROUTING_KEY_CHARS {
                    return Err(format!(
                        "routing_key: the secret is {} characters; a PagerDuty integration key has {ROUTING_KEY_CHARS}",
                        key.expose().len()
                    ));
                }
                key
            },
            dedup_key,
            summary,
            event_url,
        })
    }

    pub(super) async fn send(&self, client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        delivery::one_at_a_time(events, |event| {
            let request = client
                .post(&self.url)
                .header("content-type", "application/json")
                .body(self.trigger(event).to_string());
            delivery::answer(request)
        })
        .await
    }

    pub(super) async fn send_digest(
        &self,
        client: &reqwest::Client,
        sink: &str,
        route: &str,
        held: &[crate::store::HeldEvent],
    ) -> Delivery {
        let (title, lines) = super::digest_lines(route, held);
        let first = held.first().map_or(0, |h| h.seq);
        let trigger = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            // The same held events always make the same key: a resent digest is one alert.
            "dedup_key": format!("sealtrail-digest/{sink}/{first}").chars().take(MAX_DEDUP_KEY_CHARS).collect::<String>(),
            "client": "Sealtrail",
            "payload": {
                "summary": title.chars().take(MAX_SUMMARY_CHARS).collect::<String>(),
                "source": format!("sealtrail/{sink}"),
                "severity": "warning",
                "custom_details": {"events": lines, "route": route},
            },
        });
        let request = client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(trigger.to_string());
        delivery::answer(request).await
    }

    fn trigger(&self, event: &SinkEvent) -> Value {
        let dedup_key = match &self.dedup_key {
            Some(template) => render(template, event),
            None => event.id().to_owned(),
        };
        let summary = match &self.summary {
            Some(template) => render(template, event),
            None => super::headline(event),
        };
        let mut trigger = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": dedup_key.chars().take(MAX_DEDUP_KEY_CHARS).collect::<String>(),
            "client": "Sealtrail",
            "payload": {
                "summary": summary.chars().take(MAX_SUMMARY_CHARS).collect::<String>(),
                "source": format!("sealtrail/{}", event.tenant_id()),
                "severity": event.severity().as_str(),
                "timestamp": event.occurred_at(),
                "component": event.str("resource_type"),
                "group": event.tenant_id(),
                "class": event.action(),
                "custom_details": Value::Object(event.body.clone()),
            },
        });
        if let Some(url) = &self.event_url {
            trigger["links"] = json!([{"href": render(url, event), "text": "The audit event"}]);
        }
        trigger
    }
}
