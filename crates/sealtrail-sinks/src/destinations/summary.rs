//! How alerts and logs put an event into words, shared by the kinds that show people
//! events: the one-line headline, the who/when/where fields, and a digest's text.

use crate::event::SinkEvent;
use crate::store::HeldEvent;

/// Most held events listed by name in a digest message.
pub const DIGEST_LISTED_EVENTS: usize = 20;

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
