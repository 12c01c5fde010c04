//! One module per receiver, each with the same two parts: building the sink from its
//! config (secrets read, URLs fixed) and sending a batch of events in the receiver's
//! documented wire format, answering with a [`Delivery`].

mod datadog;
mod elasticsearch;
mod email;
mod pagerduty;
mod slack;
mod webhook;

use crate::config::SinkKind;
use crate::delivery::Delivery;
use crate::event::SinkEvent;
use crate::store::HeldEvent;

/// A sink ready to send.
pub enum Destination {
    /// See [`webhook`].
    Webhook(webhook::Webhook),
    /// See [`elasticsearch`].
    Elasticsearch(elasticsearch::Elasticsearch),
    /// See [`datadog`].
    Datadog(datadog::Datadog),
    /// See [`slack`].
    Slack(slack::Slack),
    /// See [`pagerduty`].
    Pagerduty(pagerduty::Pagerduty),
    /// See [`email`] (boxed: the SMTP transport is large, and there is one per sink).
    Email(Box<email::Email>),
}

impl Destination {
    /// Builds the sink, reading its secrets; the error names the key.
    pub fn build(kind: &SinkKind, timeout: std::time::Duration) -> Result<Self, String> {
        Ok(match kind {
            SinkKind::Webhook { url, secret } => {
                Destination::Webhook(webhook::Webhook::build(url, secret)?)
            }
            SinkKind::Elasticsearch {
                url,
                index,
                username,
                password,
                api_key,
            } => Destination::Elasticsearch(elasticsearch::Elasticsearch::build(
                url,
                index,
                username.as_deref(),
                password.as_ref(),
                api_key.as_ref(),
            )?),
            SinkKind::Datadog {
                site,
                url,
                api_key,
                service,
                source,
                tags,
            } => Destination::Datadog(datadog::Datadog::build(
                site,
                url.as_deref(),
                api_key,
                service,
                source,
                tags,
            )?),
            SinkKind::Slack {
                webhook_url,
                event_url,
            } => Destination::Slack(slack::Slack::build(webhook_url, event_url.clone())?),
            SinkKind::Pagerduty {
                routing_key,
                url,
                dedup_key,
                summary,
                event_url,
            } => Destination::Pagerduty(pagerduty::Pagerduty::build(
                routing_key,
                url.as_deref(),
                dedup_key.clone(),
                summary.clone(),
                event_url.clone(),
            )?),
            SinkKind::Email {
                host,
                port,
                security,
                username,
                password,
                ca_file,
                from,
                to,
                to_from,
                subject,
                body,
            } => Destination::Email(Box::new(email::Email::build(email::EmailSettings {
                host,
                port: *port,
                security: *security,
                username: username.as_deref(),
                password: password.as_ref(),
                ca_file: ca_file.as_ref(),
                from,
                to,
                to_from: to_from.as_deref(),
                subject: subject.as_deref(),
                body: body.as_deref(),
                timeout,
            })?)),
        })
    }

    /// Sends `events` in one request.
    pub async fn send(&self, client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        match self {
            Destination::Webhook(s) => s.send(client, events).await,
            Destination::Elasticsearch(s) => s.send(client, events).await,
            Destination::Datadog(s) => s.send(client, events).await,
            Destination::Slack(s) => s.send(client, events).await,
            Destination::Pagerduty(s) => s.send(client, events).await,
            Destination::Email(s) => s.send(events).await,
        }
    }
}

/// Most held events listed by name in a digest message.
pub const DIGEST_LISTED_EVENTS: usize = 20;

impl Destination {
    /// Sends one digest of the events a route's rate limit held back (alerting sinks).
    pub async fn send_digest(
        &self,
        client: &reqwest::Client,
        sink: &str,
        route: &str,
        held: &[HeldEvent],
    ) -> Delivery {
        match self {
            Destination::Slack(s) => s.send_digest(client, route, held).await,
            Destination::Pagerduty(s) => s.send_digest(client, sink, route, held).await,
            Destination::Email(s) => s.send_digest(route, held).await,
            _ => Delivery::Refused {
                reason: "only alerting sinks (slack, pagerduty, email) send digests".into(),
            },
        }
    }
}

/// "N events matched ROUTE while its rate limit was reached" and the first few of them.
pub fn digest_lines(route: &str, held: &[HeldEvent]) -> (String, Vec<String>) {
    let title = format!(
        "{} events matched {route} while its rate limit was reached",
        held.len()
    );
    let mut lines: Vec<String> = held
        .iter()
        .take(DIGEST_LISTED_EVENTS)
        .map(|h| format!("seq {}: {}", h.seq, h.headline))
        .collect();
    if held.len() > DIGEST_LISTED_EVENTS {
        lines.push(format!("… and {} more", held.len() - DIGEST_LISTED_EVENTS));
    }
    (title, lines)
}

/// The who/when/where of an event that alerts show, as (label, value) for the members
/// present: tenant, severity, who, when, from where, outcome.
pub fn summary_fields(event: &SinkEvent) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("Tenant", "tenant_id"),
        ("Severity", "severity"),
        ("Who", "user_id"),
        ("When", "occurred_at"),
        ("From", "ip_address"),
        ("Outcome", "outcome"),
    ]
    .into_iter()
    .map(|(label, key)| (label, event.str(key)))
    .filter(|(_, value)| !value.is_empty())
}

/// The one-line description of an event used as a title or summary:
/// "guest.dietary_restriction.updated on guest/g_12 by coordinator_7 (acme)".
pub fn headline(event: &SinkEvent) -> String {
    let mut text = event.action().to_owned();
    let resource_type = event.str("resource_type");
    if !resource_type.is_empty() {
        text.push_str(" on ");
        text.push_str(resource_type);
        let id = event.str("resource_id");
        if !id.is_empty() {
            text.push('/');
            text.push_str(id);
        }
    }
    let user = event.str("user_id");
    if !user.is_empty() {
        text.push_str(" by ");
        text.push_str(user);
    }
    text.push_str(" (");
    text.push_str(event.tenant_id());
    text.push(')');
    text
}
