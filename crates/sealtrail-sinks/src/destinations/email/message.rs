//! The email sink's messages: who receives an event (fixed recipients and those the event
//! names), its subject and body from the templates or the readable default, and a digest.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use serde_json::Value;

use super::Email;
use crate::event::{SinkEvent, render};
use crate::store::HeldEvent;

/// Most recipients one message goes to.
pub const MAX_RECIPIENTS: usize = 100;

/// The subject unless `subject` says otherwise.
pub(super) const DEFAULT_SUBJECT: &str = "[{tenant_id}] {action} on {resource_type} {resource_id}";

impl Email {
    pub(super) fn recipients(&self, event: &SinkEvent) -> Result<Vec<Mailbox>, String> {
        let mut all = self.to.clone();
        if let Some(pointer) = &self.to_from {
            let found: Vec<&str> = match event.pointer(pointer) {
                Some(Value::String(one)) => vec![one.as_str()],
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for text in found {
                let address = text
                    .parse::<Mailbox>()
                    .map_err(|e| format!("{pointer}: {text:?} is not an address: {e}"))?;
                if !all.contains(&address) {
                    all.push(address);
                }
            }
        }
        if all.is_empty() {
            return Err(format!(
                "no recipient: the event has no address at {}",
                self.to_from.as_deref().unwrap_or("to_from")
            ));
        }
        if all.len() > MAX_RECIPIENTS {
            return Err(format!(
                "{} recipients; at most {MAX_RECIPIENTS}",
                all.len()
            ));
        }
        Ok(all)
    }

    pub(super) fn message(
        &self,
        event: &SinkEvent,
        recipients: &[Mailbox],
    ) -> Result<Message, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(render(&self.subject, event).trim().to_owned())
            .message_id(Some(format!("<{}@sealtrail>", event.id())));
        for to in recipients {
            builder = builder.to(to.clone());
        }
        let body = match &self.body {
            Some(template) => render(template, event),
            None => default_body(event),
        };
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    /// The digest of the events a route held back, to the fixed recipients.
    pub(super) fn digest_message(
        &self,
        route: &str,
        held: &[HeldEvent],
    ) -> Result<Message, String> {
        let (title, lines) = crate::destinations::digest_lines(route, held);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(title.clone())
            .message_id(Some(format!(
                "<digest-{}-{}@sealtrail>",
                held.first().map_or(0, |h| h.seq),
                held.len()
            )));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(format!("{title}.\n\n{}\n", lines.join("\n")))
            .map_err(|e| format!("cannot build the digest: {e}"))
    }
}

/// The readable default: what happened, who, when, from where, why, and the changes.
fn default_body(event: &SinkEvent) -> String {
    let mut text = format!("{}\n\n", crate::destinations::headline(event));
    for (label, value) in crate::destinations::summary_fields(event) {
        text.push_str(&format!("{label}: {value}\n"));
    }
    if !event.str("reason").is_empty() {
        text.push_str(&format!("Why: {}\n", event.str("reason")));
    }
    if let Some(Value::Array(changes)) = event.body.get("changes") {
        text.push_str("\nChanges:\n");
        for change in changes {
            text.push_str(&format!(
                "  {}: {} -> {}\n",
                change["field"].as_str().unwrap_or("?"),
                change["before"],
                change["after"]
            ));
        }
    }
    if let Some(details) = event.body.get("details") {
        text.push_str(&format!("\nDetails: {details}\n"));
    }
    text.push_str(&format!("\nEvent {} (seq {})\n", event.id(), event.seq));
    text
}
