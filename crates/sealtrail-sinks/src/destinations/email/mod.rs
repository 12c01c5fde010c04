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

mod message;

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::{BatchLimits, Destination, Digest};
use crate::config::{KeyProblems, SecretRef};
use crate::delivery::Delivery;
use crate::event::SinkEvent;

use message::DEFAULT_SUBJECT;
pub use message::MAX_RECIPIENTS;

/// `kind = "email"`: email over SMTP, one message per event (or per digest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server.
    pub host: String,
    /// Its port; by default 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (required, not opportunistic), `tls` (implicit TLS) or `none`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// SMTP AUTH user (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP AUTH password.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// PEM file of a CA to trust besides the public roots (a private mail relay).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// Fixed recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// A JSON pointer into the event whose value (an address or a list of them) adds
    /// recipients, e.g. `/details/notify` — how "tell the relevant vendors" works.
    #[serde(default)]
    pub to_from: Option<String>,
    /// Subject template.
    #[serde(default)]
    pub subject: Option<String>,
    /// Body template (plain text); by default a readable summary of the event.
    #[serde(default)]
    pub body: Option<String>,
}

/// How the email sink secures its SMTP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption (a local relay only).
    None,
}

/// An SMTP relay and the message templates.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Bounds a whole delivery: lettre's own timeout does not cover a server that stops
    /// answering in the middle of a conversation.
    timeout: Duration,
    from: Mailbox,
    to: Vec<Mailbox>,
    to_from: Option<String>,
    subject: String,
    body: Option<String>,
}

impl Destination for Email {
    type Config = EmailConfig;

    /// One message per request.
    const BATCH_LIMITS: BatchLimits = BatchLimits {
        default_events: 1,
        max_events: 1,
    };

    const ALERTING: bool = true;

    fn check(config: &EmailConfig, problems: &mut KeyProblems<'_>) {
        if config.host.is_empty() {
            problems.push("host", "must not be empty");
        }
        if config.username.is_some() != config.password.is_some() {
            problems.push("password", "username and password go together");
        }
        if let Err(e) = config.from.parse::<Mailbox>() {
            problems.push("from", format!("{:?} is not an address: {e}", config.from));
        }
        for address in &config.to {
            if let Err(e) = address.parse::<Mailbox>() {
                problems.push("to", format!("{address:?} is not an address: {e}"));
            }
        }
        match &config.to_from {
            Some(pointer) if !pointer.starts_with('/') => problems.push(
                "to_from",
                format!("{pointer:?} is not a JSON pointer (it starts with '/')"),
            ),
            None if config.to.is_empty() => problems.push(
                "to",
                "give recipients, or to_from (a JSON pointer into the event)",
            ),
            _ => {}
        }
    }

    fn build(config: &EmailConfig, request_timeout: Duration) -> Result<Self, String> {
        let port = config.port.unwrap_or(match config.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(port)
            .timeout(Some(request_timeout));
        if config.security != SmtpSecurity::None {
            // The process-wide provider (ring) must exist before rustls builds a config.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut tls = TlsParameters::builder(config.host.clone());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    format!("ca_file: {} is not a PEM certificate: {e}", path.display())
                })?;
                tls = tls.add_root_certificate(cert);
            }
            let tls = tls.build_rustls().map_err(|e| format!("security: {e}"))?;
            builder = builder.tls(match config.security {
                SmtpSecurity::Starttls => Tls::Required(tls),
                _ => Tls::Wrapper(tls),
            });
        }
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
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
            timeout: request_timeout,
            from: parse("from", &config.from)?,
            to: config
                .to
                .iter()
                .map(|t| parse("to", t))
                .collect::<Result<_, _>>()?,
            to_from: config.to_from.clone(),
            subject: config
                .subject
                .as_deref()
                .unwrap_or(DEFAULT_SUBJECT)
                .to_owned(),
            body: config.body.clone(),
        })
    }

    async fn send(&self, _client: &reqwest::Client, events: &[&SinkEvent]) -> Delivery {
        crate::delivery::one_at_a_time(events, |event| self.send_event(event)).await
    }

    async fn send_digest(&self, _client: &reqwest::Client, digest: Digest<'_>) -> Delivery {
        if self.to.is_empty() {
            return Delivery::Refused {
                reason: "a digest goes to the fixed recipients (to), and there are none".into(),
            };
        }
        match self.digest_message(digest.route, digest.held) {
            Ok(message) => self.deliver(message).await,
            Err(reason) => Delivery::Refused { reason },
        }
    }
}

impl Email {
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
