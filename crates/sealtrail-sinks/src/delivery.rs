//! What a receiver's answer means for the events sent: accepted, try again (when), split
//! the request, or refused for good. Shared by every destination, so the rules are one:
//!
//! - 2xx: accepted.
//! - 408, 425, 429, 5xx, a timeout or a broken connection: try again later, after
//!   `Retry-After` if the receiver gave one.
//! - 401, 403, 404, 410: the sink is misconfigured (key, URL, archived channel), not the
//!   event: try again later, so fixing the config delivers everything.
//! - 413: the request is too large: split it.
//! - any other 4xx: these events are refused; one event alone goes to the dead letters.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::event::SinkEvent;

/// Longest receiver answer kept in an error message.
pub const MAX_ERROR_CHARS: usize = 500;
/// A `Retry-After` longer than this is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How a request went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Every event was accepted.
    Accepted,
    /// Some events were accepted: the others (indexes into the request's events) are to be
    /// retried or were refused.
    Partial {
        /// Retry these.
        retry: Vec<usize>,
        /// These were refused, with the receiver's reason.
        refused: Vec<(usize, String)>,
        /// Why the retried ones failed.
        reason: String,
    },
    /// Nothing was accepted; try again.
    Retry {
        /// What happened.
        reason: String,
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The request is too large for the receiver: send fewer events at once.
    Split {
        /// What the receiver said.
        reason: String,
    },
    /// The receiver refuses these events for good.
    Refused {
        /// What the receiver said.
        reason: String,
    },
}

impl Delivery {
    /// The same outcome with every decrypted value of `events` taken out of its reasons
    /// ([`SinkEvent::redact`]): they are kept in dead letters, status and logs.
    pub fn redacted(self, events: &[&SinkEvent]) -> Self {
        let redact = |text: String| crate::event::redact_for(events.iter().copied(), &text);
        match self {
            Self::Accepted => Self::Accepted,
            Self::Partial {
                retry,
                refused,
                reason,
            } => Self::Partial {
                retry,
                refused: refused
                    .into_iter()
                    .map(|(i, why)| (i, redact(why)))
                    .collect(),
                reason: redact(reason),
            },
            Self::Retry {
                reason,
                retry_after,
            } => Self::Retry {
                reason: redact(reason),
                retry_after,
            },
            Self::Split { reason } => Self::Split {
                reason: redact(reason),
            },
            Self::Refused { reason } => Self::Refused {
                reason: redact(reason),
            },
        }
    }

    /// The outcome of a whole-request answer (for receivers without per-item results).
    pub fn from_status(status: StatusCode, headers: &HeaderMap, body: &str) -> Self {
        if status.is_success() {
            return Delivery::Accepted;
        }
        let reason = describe(status, body);
        if status.is_redirection() {
            let to = headers
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(|l| l.split('?').next().unwrap_or(l).to_owned())
                .unwrap_or_default();
            return Delivery::Retry {
                reason: format!(
                    "HTTP {status}: redirected (to {to:?}); configure the URL it redirects to"
                ),
                retry_after: None,
            };
        }
        match status.as_u16() {
            413 => Delivery::Split { reason },
            408 | 425 | 429 | 401 | 403 | 404 | 410 => Delivery::Retry {
                reason,
                retry_after: retry_after(headers),
            },
            400..=499 => Delivery::Refused { reason },
            _ => Delivery::Retry {
                reason,
                retry_after: retry_after(headers),
            },
        }
    }

    /// A request that got no answer.
    pub fn from_error(error: reqwest::Error) -> Self {
        // Never the URL: a Slack webhook URL is a credential.
        let error = error.without_url();
        let what = if error.is_timeout() {
            "timed out".to_owned()
        } else if error.is_connect() {
            format!("cannot connect: {}", source_chain(&error))
        } else {
            format!("request failed: {}", source_chain(&error))
        };
        Delivery::Retry {
            reason: what,
            retry_after: None,
        }
    }
}

/// Longest answer body read; the rest is not read (a bulk answer for 10,000 items is
/// about 1.5 MB).
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Sends a request and reads the answer's body (at most [`MAX_ANSWER_BYTES`]), mapping a
/// transport failure to `Err(Delivery::Retry)`.
pub async fn send(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, HeaderMap, String), Delivery> {
    let mut response = request.send().await.map_err(Delivery::from_error)?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Delivery::from_error)? {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends a request whose answer is judged by its status alone.
pub async fn answer(request: reqwest::RequestBuilder) -> Delivery {
    match send(request).await {
        Ok((status, headers, body)) => Delivery::from_status(status, &headers, &body),
        Err(failed) => failed,
    }
}

/// Sends events one per request, as receivers that take one message each do (Slack,
/// PagerDuty, email; their batches are of one, so this loops only if that changes): stops
/// at the first that is not accepted, asking for it and the rest to be retried.
pub async fn one_at_a_time<'a, F, Fut>(events: &[&'a SinkEvent], mut send_one: F) -> Delivery
where
    F: FnMut(&'a SinkEvent) -> Fut,
    Fut: std::future::Future<Output = Delivery>,
{
    for (i, event) in events.iter().enumerate() {
        let outcome = send_one(event).await;
        if outcome != Delivery::Accepted {
            if i == 0 {
                return outcome;
            }
            return Delivery::Partial {
                retry: (i..events.len()).collect(),
                refused: Vec::new(),
                reason: format!("{outcome:?}"),
            };
        }
    }
    Delivery::Accepted
}

/// "HTTP 400 Bad Request: <body>" with the body cut to [`MAX_ERROR_CHARS`].
pub fn describe(status: StatusCode, body: &str) -> String {
    let body = body.trim();
    let mut text = format!("HTTP {status}");
    if !body.is_empty() {
        text.push_str(": ");
        text.extend(body.chars().take(MAX_ERROR_CHARS));
        if body.chars().count() > MAX_ERROR_CHARS {
            text.push('…');
        }
    }
    text
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let format = time::format_description::well_known::Rfc2822;
        let at = time::OffsetDateTime::parse(value, &format).ok()?;
        let left = at - time::OffsetDateTime::now_utc();
        Duration::try_from(left).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn status(code: u16, retry: Option<&str>) -> Delivery {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(r).expect("header"));
        }
        Delivery::from_status(StatusCode::from_u16(code).expect("code"), &headers, "no")
    }

    #[test]
    fn answers_map_to_what_to_do() {
        assert_eq!(status(202, None), Delivery::Accepted);
        assert!(matches!(status(400, None), Delivery::Refused { .. }));
        assert!(matches!(status(422, None), Delivery::Refused { .. }));
        assert!(matches!(status(413, None), Delivery::Split { .. }));
        assert!(matches!(status(403, None), Delivery::Retry { .. }));
        assert!(matches!(status(503, None), Delivery::Retry { .. }));
        assert_eq!(
            status(429, Some("7")),
            Delivery::Retry {
                reason: "HTTP 429 Too Many Requests: no".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let Delivery::Retry { retry_after, .. } =
            status(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"))
        else {
            panic!("503 is retried")
        };
        assert_eq!(retry_after, Some(Duration::ZERO), "a date in the past: now");
        let Delivery::Retry { retry_after, .. } = status(429, Some("999999")) else {
            panic!("429 is retried")
        };
        assert_eq!(retry_after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn long_answers_are_cut() {
        let text = describe(StatusCode::BAD_REQUEST, &"x".repeat(2000));
        assert!(text.chars().count() < MAX_ERROR_CHARS + 40);
        assert!(text.ends_with('…'));
    }
}
