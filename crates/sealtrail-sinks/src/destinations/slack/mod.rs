//! Slack incoming webhooks: one message per event (or per digest), with `text` as the
//! notification fallback and Block Kit `blocks` for the readable form: a header, the
//! who/what/where fields, the reason, and a button linking to the event. Slack answers
//! 200 `ok`, or an error such as 400 `invalid_payload`, 404 `no_service`, 410
//! `channel_is_archived`, 429 with `Retry-After`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{BatchLimits, Destination, Digest};
use crate::config::{KeyProblems, Secret, SecretRef};
use crate::delivery::{self, Delivery};
use crate::event::{SinkEvent, render};

/// `kind = "slack"`: Slack incoming webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The webhook URL (it is the credential, so it is a secret).
    pub webhook_url: SecretRef,
    /// Link to an event in the message; `{id}`, `{seq}`, `{tenant_id}` are filled in.
    #[serde(default)]
    pub event_url: Option<String>,
}

/// A Slack webhook.
pub struct Slack {
    webhook_url: Secret,
    event_url: Option<String>,
}

impl Destination for Slack {
    type Config = SlackConfig;

    /// One message per request.
    const BATCH_LIMITS: BatchLimits = BatchLimits {
        default_events: 1,
        max_events: 1,
    };

    const ALERTING: bool = true;

    /// The webhook URL is a secret, so it can only be checked once read (in `build`).
    fn check(_config: &SlackConfig, _problems: &mut KeyProblems<'_>) {}

    fn build(config: &SlackConfig, _request_timeout: Duration) -> Result<Self, String> {
        let webhook_url = config
            .webhook_url
            .resolve()
            .map_err(|e| format!("webhook_url: {e}"))?;
        if !webhook_url.expose().starts_with("https://")
            && !webhook_url.expose().starts_with("http://")
        {
            return Err("webhook_url: the secret is not an http(s) URL".into());
        }
        Ok(Self {
            webhook_url,
            event_url: config.event_url.clone(),
        })
    }

    async fn send(&self, client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        delivery::one_at_a_time(events, |event| {
            let request = client
                .post(self.webhook_url.expose())
                .header("content-type", "application/json")
                .body(self.message(event).to_string());
            delivery::answer(request)
        })
        .await
    }

    async fn send_digest(&self, client: &reqwest::Client, digest: Digest<'_>) -> Delivery {
        let (route, held) = (digest.route, digest.held);
        let (title, lines) = super::digest_lines(route, held);
        let list: Vec<String> = lines.iter().map(|l| format!("• {}", escape(l))).collect();
        let message = json!({
            "text": escape(&title),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("Digest: {} events", held.len()), 150)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("{}\n{}", escape(&title), list.join("\n")), 3000)}},
            ],
        });
        let request = client
            .post(self.webhook_url.expose())
            .header("content-type", "application/json")
            .body(message.to_string());
        delivery::answer(request).await
    }
}

impl Slack {
    fn message(&self, event: &SinkEvent) -> Value {
        let headline = super::headline(event);
        let emoji = match event.severity() {
            sealtrail_core::Severity::Critical => ":rotating_light:",
            sealtrail_core::Severity::Warning => ":warning:",
            sealtrail_core::Severity::Info => ":information_source:",
        };
        let mut fields: Vec<Value> = super::summary_fields(event)
            .map(|(label, value)| {
                json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", escape(value))})
            })
            .collect();
        let resource = match event.str("resource_id") {
            "" => event.str("resource_type").to_owned(),
            id => format!("{}/{id}", event.str("resource_type")),
        };
        fields
            .push(json!({"type": "mrkdwn", "text": format!("*Resource*\n{}", escape(&resource))}));
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("{} {}", emoji_text(event), event.action()), 150), "emoji": true}}),
            json!({"type": "section", "fields": fields}),
        ];
        let reason = event.str("reason");
        if !reason.is_empty() {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("*Why*\n{}", escape(reason)), 3000)}}));
        }
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("seq {} · id `{}`", event.seq, escape(event.id()))}]}));
        if let Some(url) = &self.event_url {
            blocks.push(json!({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "View event"}, "url": render(url, event)}]}));
        }
        json!({"text": format!("{emoji} {}", escape(&headline)), "blocks": blocks})
    }
}

fn emoji_text(event: &SinkEvent) -> &'static str {
    match event.severity() {
        sealtrail_core::Severity::Critical => "🚨",
        sealtrail_core::Severity::Warning => "⚠️",
        sealtrail_core::Severity::Info => "ℹ️",
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
