//! Webhooks, signed the Standard Webhooks way (standardwebhooks.com): every request carries
//! `webhook-id` (the same on every retry of the same events, so receivers can deduplicate),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,` + base64 of
//! HMAC-SHA256 over `id.timestamp.body` with the secret, whose `whsec_` prefix is dropped
//! and the rest base64-decoded).
//!
//! The body is `{"type", "timestamp", "data"}`: one event is `type = "audit_event.created"`
//! with the event as `data`; a batch is `type = "audit_events.created"` with
//! `data = {"events": [...]}`.
//!
//! Config: `url`, `secret`; answers are judged by status alone ([`delivery::answer`]).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{BatchLimits, Destination};
use crate::config::{KeyProblems, MAX_BATCH_EVENTS_LIMIT, SecretRef};
use crate::delivery::{self, Delivery};
use crate::event::SinkEvent;

/// `kind = "webhook"`: POST JSON, signed the Standard Webhooks way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// `whsec_...` (base64 after the prefix) or any text used as the key as is.
    pub secret: SecretRef,
}

/// A webhook receiver.
pub struct Webhook {
    url: String,
    key: Vec<u8>,
}

impl Destination for Webhook {
    type Config = WebhookConfig;

    const BATCH_LIMITS: BatchLimits = BatchLimits {
        default_events: 100,
        max_events: MAX_BATCH_EVENTS_LIMIT,
    };

    fn check(config: &WebhookConfig, problems: &mut KeyProblems<'_>) {
        problems.http_url("url", &config.url);
    }

    fn build(config: &WebhookConfig, _request_timeout: Duration) -> Result<Self, String> {
        let secret = config
            .secret
            .resolve()
            .map_err(|e| format!("secret: {e}"))?;
        Ok(Self {
            url: config.url.clone(),
            key: signing_key(secret.expose())?,
        })
    }

    async fn send(&self, client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        let (id, body) = message(events);
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(&self.key, &id, timestamp, &body);
        let request = client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        delivery::answer(request).await
    }
}

/// The key bytes: base64 after `whsec_`, or the text itself.
fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64
            .decode(encoded)
            .map_err(|_| "secret: the part after whsec_ is not base64".to_owned()),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// The message id and body for these events. The id depends only on the events, so a
/// retry, even after a restart, carries the same one.
fn message(events: &[&SinkEvent]) -> (String, String) {
    let now = sealtrail_core::time_format::format_micros(sealtrail_core::time_format::now_micros());
    if let [event] = events {
        let body = json!({
            "type": "audit_event.created",
            "timestamp": now,
            "data": Value::Object(event.body.clone()),
        });
        return (format!("msg_{}", event.id()), body.to_string());
    }
    let mut ids = Sha256::new();
    for event in events {
        ids.update(event.id().as_bytes());
        ids.update(b"\n");
    }
    let id = format!("msg_batch_{}", &hex_lower(&ids.finalize())[..32]);
    // The events' own JSON bytes, spliced: no second serialisation of each event.
    let mut body = format!(
        r#"{{"type":"audit_events.created","timestamp":{},"data":{{"events":["#,
        Value::from(now)
    )
    .into_bytes();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&event.json);
    }
    body.extend_from_slice(b"]}}");
    (
        id,
        String::from_utf8(body).expect("JSON text of UTF-8 records is UTF-8"),
    )
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference libraries.
    #[test]
    fn signature_matches_the_specification_example() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_batch_id_depends_on_its_events_only() {
        let e = |id: &str| {
            let Value::Object(body) = json!({"id": id}) else {
                unreachable!()
            };
            SinkEvent::from_json(1, body)
        };
        let (a, b) = (e("a"), e("b"));
        let (id1, _) = message(&[&a, &b]);
        let (id2, _) = message(&[&a, &b]);
        let (id3, _) = message(&[&b, &a]);
        assert_eq!(id1, id2);
        assert_ne!(id1, id3);
        assert_eq!(message(&[&a]).0, "msg_a");
    }
}
