//! Datadog's Logs intake API v2 (`POST https://http-intake.logs.<site>/api/v2/logs`): a
//! JSON array of logs, gzip-compressed, authenticated by `DD-API-KEY`. Datadog's documented
//! limits: at most 1,000 logs per request, 5 MB per request before compression, 1 MB per
//! log (longer ones are truncated), `timestamp` at most 18 hours old (older logs are
//! dropped although the answer is 202). A batch over 5 MB is sent in halves; a single
//! event over 1 MB is refused here rather than truncated; an old event is sent without
//! `timestamp`.
//!
//! Each log carries `ddsource`, `service`, `ddtags` (the configured tags plus tenant,
//! action and resource type), `status` (the event's severity), `message` (one readable
//! line), `timestamp` (when it happened) and the whole event under `sealtrail`.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{BatchLimits, Destination};
use crate::config::{KeyProblems, Secret, SecretRef};
use crate::delivery::{self, Delivery};
use crate::event::SinkEvent;

/// Datadog's limit on one request's uncompressed size.
pub const MAX_PAYLOAD_BYTES: usize = 5_000_000;
/// Datadog's limit on one log's size: it truncates longer ones, which for an audit event
/// would be a misleading record, so such an event is dead-lettered instead.
pub const MAX_LOG_BYTES: usize = 1_000_000;
/// How old a log's `timestamp` may be: Datadog's 18 hours, less an hour of margin.
const MAX_TIMESTAMP_AGE_MICROS: i64 = 17 * 3600 * 1_000_000;

/// Datadog's limit on logs per request.
pub const MAX_LOGS_PER_REQUEST: usize = 1000;

/// `kind = "datadog"`: Datadog Logs intake API v2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    /// The Datadog site (`datadoghq.com`, `datadoghq.eu`, `us3.datadoghq.com`, ...).
    #[serde(default = "default_site")]
    pub site: String,
    /// Overrides the intake URL derived from `site` (a proxy, or a test receiver).
    #[serde(default)]
    pub url: Option<String>,
    /// `DD-API-KEY`.
    pub api_key: SecretRef,
    /// `service` of every log.
    #[serde(default = "default_service")]
    pub service: String,
    /// `ddsource` of every log.
    #[serde(default = "default_service")]
    pub source: String,
    /// Extra `ddtags` (`env:prod`); tenant, action and resource type are added.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_site() -> String {
    "datadoghq.com".into()
}
fn default_service() -> String {
    "sealtrail".into()
}

/// A Datadog site.
pub struct Datadog {
    url: String,
    api_key: Secret,
    service: String,
    source: String,
    tags: Vec<String>,
}

impl Destination for Datadog {
    type Config = DatadogConfig;

    const BATCH_LIMITS: BatchLimits = BatchLimits {
        default_events: MAX_LOGS_PER_REQUEST,
        max_events: MAX_LOGS_PER_REQUEST,
    };

    fn check(config: &DatadogConfig, problems: &mut KeyProblems<'_>) {
        if let Some(url) = &config.url {
            problems.http_url("url", url);
        }
        if config.site.is_empty() || config.site.contains('/') {
            problems.push("site", "give the site's domain, such as datadoghq.com");
        }
    }

    fn build(config: &DatadogConfig, _request_timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            url: config
                .url
                .clone()
                .unwrap_or_else(|| format!("https://http-intake.logs.{}/api/v2/logs", config.site)),
            api_key: config
                .api_key
                .resolve()
                .map_err(|e| format!("api_key: {e}"))?,
            service: config.service.clone(),
            source: config.source.clone(),
            tags: config.tags.clone(),
        })
    }

    async fn send(&self, client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        let mut logs = Vec::with_capacity(events.len());
        let mut refused = Vec::new();
        let mut size = 2;
        for (i, event) in events.iter().enumerate() {
            let log = self.log(event).to_string();
            if log.len() > MAX_LOG_BYTES {
                refused.push((
                    i,
                    format!(
                        "the event is {} bytes as a Datadog log; Datadog takes at most {MAX_LOG_BYTES}",
                        log.len()
                    ),
                ));
                continue;
            }
            size += log.len() + 1;
            logs.push(log);
        }
        if size > MAX_PAYLOAD_BYTES && events.len() > 1 {
            return Delivery::Split {
                reason: format!("{size} bytes is over Datadog's {MAX_PAYLOAD_BYTES} per request"),
            };
        }
        if logs.is_empty() {
            return Delivery::Partial {
                retry: Vec::new(),
                refused,
                reason: String::new(),
            };
        }
        let body = match gzip(&format!("[{}]", logs.join(","))) {
            Ok(body) => body,
            Err(e) => {
                return Delivery::Retry {
                    reason: format!("cannot compress: {e}"),
                    retry_after: None,
                };
            }
        };
        let request = client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .header("dd-api-key", self.api_key.expose())
            .body(body);
        let outcome = delivery::answer(request).await;
        match (outcome, refused.is_empty()) {
            (outcome, true) => outcome,
            (Delivery::Accepted, false) => Delivery::Partial {
                retry: Vec::new(),
                refused,
                reason: String::new(),
            },
            // Retry the whole request; the oversized events are refused again next time.
            (outcome, false) => outcome,
        }
    }
}

impl Datadog {
    fn log(&self, event: &SinkEvent) -> Value {
        let mut tags = self.tags.clone();
        tags.push(format!("tenant:{}", event.tenant_id()));
        tags.push(format!("action:{}", event.action()));
        tags.push(format!("resource_type:{}", event.str("resource_type")));
        let mut log = json!({
            "ddsource": self.source,
            "service": self.service,
            "ddtags": tags.join(","),
            "status": event.severity().as_str(),
            "message": super::headline(event),
            "sealtrail": Value::Object(event.body.clone()),
        });
        // Datadog accepts (202) but drops logs dated more than 18 hours back: an older
        // event (a backlog after an outage, a backdated event, a new sink reading history)
        // goes without `timestamp` and is dated on arrival; `sealtrail.occurred_at` keeps
        // the real time.
        let occurred = sealtrail_core::time_format::parse_rfc3339_micros(event.occurred_at());
        let age_micros = sealtrail_core::time_format::now_micros() - occurred.unwrap_or(0);
        if age_micros < MAX_TIMESTAMP_AGE_MICROS {
            log["timestamp"] = Value::from(event.occurred_at());
        }
        log
    }
}

fn gzip(text: &str) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::fast());
    encoder.write_all(text.as_bytes())?;
    encoder.finish()
}
