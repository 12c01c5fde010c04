//! PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`): a `trigger`
//! per event with the integration's `routing_key`, a `dedup_key` (the event id, or a
//! template such as `{tenant_id}/{resource_id}`, so redelivery never opens a second
//! incident), and `payload.summary`, `source`, `severity` (critical, warning, info map to
//! PagerDuty's same-named levels), `timestamp`, `component`, `group`, `class` and
//! `custom_details`. PagerDuty answers 202, or 400 (invalid event), 429, 5xx.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{BatchLimits, Destination, Digest};
use crate::config::{KeyProblems, Secret, SecretRef};
use crate::delivery::{self, Delivery};
use crate::event::{SinkEvent, render};

/// PagerDuty's limit on `summary`.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Length of a PagerDuty integration (routing) key.
pub const ROUTING_KEY_CHARS: usize = 32;
/// PagerDuty's limit on `dedup_key`.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;

/// Where events go unless `url` says otherwise.
const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `kind = "pagerduty"`: PagerDuty Events API v2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyConfig {
    /// The integration's routing key.
    pub routing_key: SecretRef,
    /// Overrides `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default)]
    pub url: Option<String>,
    /// Template of the `dedup_key`; by default the event id.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// Template of the summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// Link to the event; `{id}`, `{seq}`, `{tenant_id}` are filled in.
    #[serde(default)]
    pub event_url: Option<String>,
}

/// A PagerDuty service integration.
pub struct Pagerduty {
    url: String,
    routing_key: Secret,
    dedup_key: Option<String>,
    summary: Option<String>,
    event_url: Option<String>,
}

impl Destination for Pagerduty {
    type Config = PagerdutyConfig;

    /// One alert per request.
    const BATCH_LIMITS: BatchLimits = BatchLimits {
        default_events: 1,
        max_events: 1,
    };

    const ALERTING: bool = true;

    fn check(config: &PagerdutyConfig, problems: &mut KeyProblems<'_>) {
        if let Some(url) = &config.url {
            problems.http_url("url", url);
        }
    }

    fn build(config: &PagerdutyConfig, _request_timeout: Duration) -> Result<Self, String> {
        let key = config
            .routing_key
            .resolve()
            .map_err(|e| format!("routing_key: {e}"))?;
        // An integration key is 32 characters; any other is refused per event.
        if key.expose().len() != ROUTING_KEY_CHARS {
            return Err(format!(
                "routing_key: the secret is {} characters; a PagerDuty integration key has {ROUTING_KEY_CHARS}",
                key.expose().len()
            ));
        }
        Ok(Self {
            url: config.url.as_deref().unwrap_or(DEFAULT_URL).to_owned(),
            routing_key: key,
            dedup_key: config.dedup_key.clone(),
            summary: config.summary.clone(),
            event_url: config.event_url.clone(),
        })
    }

    async fn send(&self, client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        delivery::one_at_a_time(events, |event| {
            let request = client
                .post(&self.url)
                .header("content-type", "application/json")
                .body(self.trigger(event).to_string());
            delivery::answer(request)
        })
        .await
    }

    async fn send_digest(&self, client: &reqwest::Client, digest: Digest<'_>) -> Delivery {
        let (sink, route, held) = (digest.sink, digest.route, digest.held);
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
}

impl Pagerduty {
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
