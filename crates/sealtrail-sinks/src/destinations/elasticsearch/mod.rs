//! Elasticsearch and OpenSearch, through the `_bulk` API: one `create` action per event
//! into a date-named index, with `_id` = the event id. A redelivered event then answers
//! 409 (`version_conflict_engine_exception`), which is taken as delivered: the index never
//! holds an event twice. Per-item results are read one by one: 429, 5xx, and 401/403/404
//! (access or index state, not the event) items are retried, other refused items go to
//! the dead letters, and the rest count as delivered.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BatchLimits, Destination};
use crate::config::{KeyProblems, MAX_BATCH_EVENTS_LIMIT, SecretRef};
use crate::delivery::{self, Delivery};
use crate::event::SinkEvent;

/// `kind = "elasticsearch"`: Elasticsearch or OpenSearch `_bulk`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL of the cluster (`https://es.example:9200`).
    pub url: String,
    /// Index name; `{yyyy}`, `{mm}`, `{dd}` take the event's `occurred_at` date (UTC).
    #[serde(default = "default_index")]
    pub index: String,
    /// Basic auth user (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// `Authorization: ApiKey ...` (the encoded key as Elasticsearch issues it).
    #[serde(default)]
    pub api_key: Option<SecretRef>,
}

fn default_index() -> String {
    "sealtrail-{yyyy}.{mm}.{dd}".into()
}

/// A cluster.
pub struct Elasticsearch {
    bulk_url: String,
    index: String,
    authorization: Option<String>,
}

impl Destination for Elasticsearch {
    type Config = ElasticsearchConfig;

    const BATCH_LIMITS: BatchLimits = BatchLimits {
        default_events: 1000,
        max_events: MAX_BATCH_EVENTS_LIMIT,
    };

    fn check(config: &ElasticsearchConfig, problems: &mut KeyProblems<'_>) {
        problems.http_url("url", &config.url);
        let index = &config.index;
        // Elasticsearch's rules: lowercase, no spaces or \ / * ? " < > | , #, not
        // starting with - _ +. (The {yyyy} placeholders are lowercase already.)
        if index.is_empty()
            || index.starts_with(['-', '_', '+'])
            || index.chars().any(|c| {
                c.is_uppercase()
                    || matches!(
                        c,
                        ' ' | '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#'
                    )
            })
        {
            problems.push(
                "index",
                format!(
                    "{index:?} is not a valid index name (lowercase, none of \\ / * ? \" < > | , # or spaces, not starting with - _ +)"
                ),
            );
        }
        if config.username.is_some() != config.password.is_some() {
            problems.push("password", "username and password go together");
        }
        if config.username.is_some() && config.api_key.is_some() {
            problems.push("api_key", "give either api_key or username and password");
        }
    }

    fn build(config: &ElasticsearchConfig, _request_timeout: Duration) -> Result<Self, String> {
        let authorization = match (&config.username, &config.password, &config.api_key) {
            (Some(user), Some(password), _) => {
                let password = password.resolve().map_err(|e| format!("password: {e}"))?;
                let pair = format!("{user}:{}", password.expose());
                Some(format!("Basic {}", BASE64.encode(pair)))
            }
            (_, _, Some(key)) => {
                let key = key.resolve().map_err(|e| format!("api_key: {e}"))?;
                Some(format!("ApiKey {}", key.expose()))
            }
            _ => None,
        };
        Ok(Self {
            bulk_url: format!("{}/_bulk", config.url.trim_end_matches('/')),
            index: config.index.clone(),
            authorization,
        })
    }

    async fn send(&self, client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        let mut body = Vec::with_capacity(events.len() * 800);
        for event in events {
            let action = serde_json::json!({"create": {
                "_index": index_name(&self.index, event.occurred_at()),
                "_id": event.id(),
            }});
            body.extend_from_slice(action.to_string().as_bytes());
            body.push(b'\n');
            // A record never has `@timestamp` (unknown fields are refused at ingest).
            body.extend_from_slice(&event.json_with("@timestamp", event.occurred_at()));
            body.push(b'\n');
        }
        let mut request = client
            .post(&self.bulk_url)
            .header("content-type", "application/x-ndjson")
            .body(body);
        if let Some(auth) = &self.authorization {
            request = request.header("authorization", auth);
        }
        let (status, headers, body) = match delivery::send(request).await {
            Ok(answer) => answer,
            Err(failed) => return failed,
        };
        if !status.is_success() {
            return Delivery::from_status(status, &headers, &body);
        }
        items_outcome(&body, events.len())
    }
}

/// The index for an event: `{yyyy}`, `{mm}`, `{dd}` from its `occurred_at` (canonical
/// RFC 3339 in UTC, so the first ten characters are the date).
fn index_name(pattern: &str, occurred_at: &str) -> String {
    let date = occurred_at.get(..10).unwrap_or("0000-00-00");
    pattern
        .replace("{yyyy}", &date[..4])
        .replace("{mm}", &date[5..7])
        .replace("{dd}", &date[8..10])
}

/// Reads a 2xx bulk answer: `errors` false means every item was stored; otherwise each
/// item's `status` says what happened to it.
fn items_outcome(body: &str, sent: usize) -> Delivery {
    let answer: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return Delivery::Retry {
                reason: format!("the bulk answer is not JSON ({e})"),
                retry_after: None,
            };
        }
    };
    if answer.get("errors") == Some(&Value::Bool(false)) {
        return Delivery::Accepted;
    }
    let Some(items) = answer.get("items").and_then(Value::as_array) else {
        return Delivery::Retry {
            reason: "the bulk answer has errors but no items".into(),
            retry_after: None,
        };
    };
    if items.len() != sent {
        return Delivery::Retry {
            reason: format!("the bulk answer has {} items for {sent} sent", items.len()),
            retry_after: None,
        };
    }
    let (mut retry, mut refused, mut reason) = (Vec::new(), Vec::new(), String::new());
    for (i, item) in items.iter().enumerate() {
        let result = item
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        let error = result
            .get("error")
            .map(describe_item_error)
            .unwrap_or_default();
        match status {
            200..=299 | 409 => {}
            // 401/403/404 on an item is the sink's access or the index's state (a key
            // without rights on a new index, auto-creation off), not the event.
            401 | 403 | 404 | 429 | 500..=599 | 0 => {
                reason = format!("item status {status}: {error}");
                retry.push(i);
            }
            _ => refused.push((i, format!("item status {status}: {error}"))),
        }
    }
    if retry.is_empty() && refused.is_empty() {
        return Delivery::Accepted;
    }
    Delivery::Partial {
        retry,
        refused,
        reason,
    }
}

fn describe_item_error(error: &Value) -> String {
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
    let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
    let text = format!("{kind}: {reason}");
    text.chars().take(delivery::MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_take_the_event_date() {
        assert_eq!(
            index_name("audit-{yyyy}.{mm}.{dd}", "2026-12-01T21:31:56.123456Z"),
            "audit-2026.12.01"
        );
        assert_eq!(
            index_name("audit-{yyyy}-{mm}", "2026-02-03T00:00:00Z"),
            "audit-2026-02"
        );
        assert_eq!(index_name("audit", "2026-02-03T00:00:00Z"), "audit");
    }

    #[test]
    fn per_item_results_are_sorted_out() {
        let body = r#"{"took":3,"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_id":"d","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}}
        ]}"#;
        let Delivery::Partial { retry, refused, .. } = items_outcome(body, 4) else {
            panic!("mixed items are a partial delivery")
        };
        assert_eq!(retry, vec![2]);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 3);
        assert!(refused[0].1.contains("mapper_parsing_exception: bad field"));
        assert_eq!(
            items_outcome(r#"{"errors":false,"items":[]}"#, 0),
            Delivery::Accepted
        );
        assert!(matches!(items_outcome("<html>", 1), Delivery::Retry { .. }));
    }
}
