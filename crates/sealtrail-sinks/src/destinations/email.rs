//! Email over SMTP (lettre): one plain-text message per event, or one per digest. The
//! connection is STARTTLS (required, never silently plaintext), implicit TLS, or plain for
//! a local relay; SMTP AUTH when a user is configured. Recipients are fixed (`to`), taken
//! from the event (`to_from`, a JSON pointer to an address or a list of them), or both.
//! The `Message-ID` is derived from the event id, so a redelivered message can be told
//! from a new one.
//!
//! SMTP answers map like HTTP ones: 4xx replies, timeouts and broken connections are
//! retried; a 5xx reply to the message (e.g. 550 mailbox unavailable) refuses the event
//! (dead letter); a 5xx to authentication (530, 534, 535) is the sink's configuration and
//! is retried, so fixing the password delivers everything.

use std::path::PathBuf;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use crate::config::{SecretRef, SmtpSecurity};
use crate::delivery::Delivery;
use crate::event::{SinkEvent, render};
use crate::store::HeldEvent;

/// Most recipients one message goes to.
pub const MAX_RECIPIENTS: usize = 100;

/// What the email sink is told.
pub struct EmailSettings<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    pub username: Option<&'a str>,
    pub password: Option<&'a SecretRef>,
    pub ca_file: Option<&'a PathBuf>,
    pub from: &'a str,
    pub to: &'a [String],
    pub to_from: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub body: Option<&'a str>,
    pub timeout: std::time::Duration,
}

/// An SMTP relay and the message templates.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Bounds a whole delivery: lettre's own timeout does not cover a server that stops
    /// answering in the middle of a conversation.
    timeout: std::time::Duration,
    from: Mailbox,
    to: Vec<Mailbox>,
    to_from: Option<String>,
    subject: String,
    body: Option<String>,
}

const DEFAULT_SUBJECT: &str = "[{tenant_id}] {action} on {resource_type} {resource_id}";

impl Email {
    pub(super) fn build(s: EmailSettings<'_>) -> Result<Self, String> {
        let port = s.port.unwrap_or(match s.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host)
            .port(port)
            .timeout(Some(s.timeout));
        if s.security != SmtpSecurity::None {
            // The process-wide provider (ring) must exist before rustls builds a config.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut tls = TlsParameters::builder(s.host.to_owned());
            if let Some(path) = s.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    format!("ca_file: {} is not a PEM certificate: {e}", path.display())
                })?;
                tls = tls.add_root_certificate(cert);
            }
            let tls = tls.build_rustls().map_err(|e| format!("security: {e}"))?;
            builder = builder.tls(match s.security {
                SmtpSecurity::Starttls => Tls::Required(tls),
                _ => Tls::Wrapper(tls),
            });
        }
        if let (Some(user), Some(password)) = (s.username, s.password) {
            let password = password.resolve().map_err(|e| format!("password: {e}"))?;
            builder = builder.credentials(Credentials::new(
                user.to_owned(),
                password.expose().to_owned(),
            ));
        }
        let parse = |key: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| format!("{key}: {text:?} is not an address: {e}"))
        };
        Ok(Self {
            transport: builder.build(),
            timeout: s.timeout,
            from: parse("from", s.from)?,
            to: s
                .to
                .iter()
                .map(|t| parse("to", t))
                .collect::<Result<_, _>>()?,
            to_from: s.to_from.map(str::to_owned),
            subject: s.subject.unwrap_or(DEFAULT_SUBJECT).to_owned(),
            body: s.body.map(str::to_owned),
        })
    }

    pub(super) async fn send(&self, events: &[&SinkEvent]) -> Delivery {
        crate::delivery::one_at_a_time(events, |event| self.send_event(event)).await
    }

    pub(super) async fn send_digest(&self, route: &str, held: &[HeldEvent]) -> Delivery {
        if self.to.is_empty() {
            return Delivery::Refused {
                reason: "a digest goes to the fixed recipients (to), and there are none".into(),
            };
        }
        let (title, lines) = super::digest_lines(route, held);
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
        match builder
            .header(ContentType::TEXT_PLAIN)
            .body(format!("{title}.\n\n{}\n", lines.join("\n")))
        {
            Ok(message) => self.deliver(message).await,
            Err(e) => Delivery::Refused {
                reason: format!("cannot build the digest: {e}"),
            },
        }
    }

    /// One event's message. If the server refuses it and the event named recipients of
    /// its own, the fixed recipients still get it, and the event is refused with the
    /// reason (its replay sends to everyone again).
    async fn send_event(&self, event: &SinkEvent) -> Delivery {
        let recipients = match self.recipients(event) {
            Ok(r) => r,
            Err(reason) => {
                if self.to.is_empty() {
                    return Delivery::Refused { reason };
                }
                return self.fixed_only(event, reason).await;
            }
        };
        let message = match self.message(event, &recipients) {
            Ok(m) => m,
            Err(reason) => return Delivery::Refused { reason },
        };
        match self.deliver(message).await {
            Delivery::Refused { reason }
                if recipients.len() > self.to.len() && !self.to.is_empty() =>
            {
                self.fixed_only(event, reason).await
            }
            other => other,
        }
    }

    /// Sends to the fixed recipients alone after the event's own were refused.
    async fn fixed_only(&self, event: &SinkEvent, reason: String) -> Delivery {
        let message = match self.message(event, &self.to) {
            Ok(m) => m,
            Err(reason) => return Delivery::Refused { reason },
        };
        match self.deliver(message).await {
            Delivery::Accepted => Delivery::Refused {
                reason: format!("sent to the fixed recipients only; {reason}"),
            },
            other => other,
        }
    }

    fn recipients(&self, event: &SinkEvent) -> Result<Vec<Mailbox>, String> {
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

    fn message(&self, event: &SinkEvent, recipients: &[Mailbox]) -> Result<Message, String> {
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

    async fn deliver(&self, message: Message) -> Delivery {
        let Ok(sent) = tokio::time::timeout(self.timeout, self.transport.send(message)).await
        else {
            return Delivery::Retry {
                reason: format!("SMTP: no answer within {:?}", self.timeout),
                retry_after: None,
            };
        };
        match sent {
            Ok(_) => Delivery::Accepted,
            Err(e) => {
                let code = e.status().map(|c| c.to_string()).unwrap_or_default();
                let reason = if code.is_empty() {
                    format!("SMTP: {e}")
                } else {
                    format!("SMTP {code}: {e}")
                };
                // Authentication (530, 534, 535, 538) and policy refusals such as
                // "5.7.1 relaying denied" are about the sink's account, not the event.
                let sink_level = matches!(code.as_str(), "530" | "534" | "535" | "538")
                    || reason.contains(" 5.7.");
                if e.is_permanent() && !sink_level {
                    Delivery::Refused { reason }
                } else {
                    Delivery::Retry {
                        reason,
                        retry_after: None,
                    }
                }
            }
        }
    }
}

/// The readable default: what happened, who, when, from where, why, and the changes.
fn default_body(event: &SinkEvent) -> String {
    let mut text = format!("{}\n\n", super::headline(event));
    for (label, value) in super::summary_fields(event) {
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
