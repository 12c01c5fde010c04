//! An event as sinks see it: the API's JSON object of a stored event (its record plus
//! `leaf_hash`), parsed once, with the accessors routes and templates need.

use sealtrail_core::Severity;
use sealtrail_store::StoredEvent;
use serde_json::{Map, Value};

/// One event on its way to sinks.
#[derive(Clone, Debug)]
pub struct SinkEvent {
    /// Its position in the log.
    pub seq: u64,
    /// The event as the API returns it.
    pub body: Map<String, Value>,
    /// The same, as the API's JSON bytes (the stored record spliced with `leaf_hash`):
    /// bulk formats copy these rather than serialise `body` again.
    pub json: Vec<u8>,
    /// The texts of the values opened for this event (encrypted fields): they go to the
    /// receiver inside the event and nowhere else ([`SinkEvent::redact`]).
    opened: Vec<String>,
}

/// What stands in an error text for a value that was decrypted for the receiver.
pub const REDACTED: &str = "[redacted]";

impl SinkEvent {
    /// Parses a stored event; `None` if its record is not an object (it always is: the
    /// sequencer wrote it).
    pub fn from_stored(stored: &StoredEvent, opener: &sealtrail_crypto::Opener) -> Option<Self> {
        let (json, opened) = opener.api_json_and_opened(stored);
        match serde_json::from_slice(&json) {
            Ok(Value::Object(body)) => Some(Self {
                seq: stored.seq,
                body,
                json,
                opened: secret_texts(&opened),
            }),
            _ => None,
        }
    }

    /// Builds one from the API's JSON object (tests, replays).
    pub fn from_json(seq: u64, body: Map<String, Value>) -> Self {
        let json = Value::Object(body.clone()).to_string().into_bytes();
        Self {
            seq,
            body,
            json,
            opened: Vec::new(),
        }
    }

    /// `text` (a receiver's answer, an error) with every value decrypted for this event
    /// replaced by [`REDACTED`], as written and as JSON-escaped: a receiver that echoes
    /// what it was sent must not put a decrypted value in a dead letter or a log line.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.opened {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// A top-level string member, or "".
    pub fn str(&self, key: &str) -> &str {
        self.body.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// The event id.
    pub fn id(&self) -> &str {
        self.str("id")
    }

    /// The tenant.
    pub fn tenant_id(&self) -> &str {
        self.str("tenant_id")
    }

    /// The action.
    pub fn action(&self) -> &str {
        self.str("action")
    }

    /// The severity (info if unreadable, which a stored record never is).
    pub fn severity(&self) -> Severity {
        Severity::parse(self.str("severity")).unwrap_or(Severity::Info)
    }

    /// `occurred_at`, RFC 3339.
    pub fn occurred_at(&self) -> &str {
        self.str("occurred_at")
    }

    /// `received_at` in UTC microseconds (0 if unreadable).
    pub fn received_at_micros(&self) -> i64 {
        sealtrail_core::time_format::parse_rfc3339_micros(self.str("received_at")).unwrap_or(0)
    }

    /// The value at a JSON pointer into the whole event (`/details/guest/name`).
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        let (first, rest) = match pointer.strip_prefix('/')?.split_once('/') {
            Some((first, rest)) => (first, Some(rest)),
            None => (pointer.strip_prefix('/')?, None),
        };
        let top = self.body.get(&unescape(first))?;
        match rest {
            Some(rest) => top.pointer(&format!("/{rest}")),
            None => Some(top),
        }
    }

    /// The value at a JSON pointer into `details`.
    pub fn detail(&self, pointer: &str) -> Option<&Value> {
        self.body.get("details")?.pointer(pointer)
    }

    /// The event's JSON with one more string member before the closing brace.
    pub fn json_with(&self, key: &str, value: &str) -> Vec<u8> {
        debug_assert_eq!(self.json.last(), Some(&b'}'), "an event is a JSON object");
        let mut out = Vec::with_capacity(self.json.len() + key.len() + value.len() + 8);
        out.extend_from_slice(&self.json[..self.json.len() - 1]);
        out.push(b',');
        out.extend_from_slice(Value::from(key).to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(Value::from(value).to_string().as_bytes());
        out.push(b'}');
        out
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Fills `{name}` placeholders: a top-level member (`{id}`, `{action}`, `{tenant_id}`,
/// `{seq}`) or a JSON pointer into the event (`{/details/guest/name}`). Unknown or absent
/// ones become "". `{{` and `}}` are literal braces.
pub fn render(template: &str, event: &SinkEvent) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        let Some(end) = tail.find('}') else {
            out.push_str(tail);
            return out;
        };
        let name = &tail[1..end];
        let value = if name == "seq" {
            Some(Value::from(event.seq))
        } else if name.starts_with('/') {
            event.pointer(name).cloned()
        } else {
            event.body.get(name).cloned()
        };
        match value {
            Some(Value::String(s)) => out.push_str(&s),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The texts an opened value can show up as: each string and number in it, the whole JSON,
/// and each string JSON-escaped; longest first, so that a value containing another is
/// replaced whole.
fn secret_texts(opened: &[Vec<u8>]) -> Vec<String> {
    fn leaves(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => {
                out.push(s.clone());
                let escaped = Value::String(s.clone()).to_string();
                out.push(escaped[1..escaped.len() - 1].to_owned());
            }
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::Object(members) => members.values().for_each(|v| leaves(v, out)),
            Value::Bool(_) | Value::Null => {}
        }
    }
    let mut out = Vec::new();
    for json in opened {
        if let Ok(value) = serde_json::from_slice::<Value>(json) {
            if !value.is_string() {
                out.push(String::from_utf8_lossy(json).into_owned());
            }
            leaves(&value, &mut out);
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// [`SinkEvent::redact`] for every event of a request.
pub fn redact_for<'a>(events: impl IntoIterator<Item = &'a SinkEvent>, text: &str) -> String {
    events
        .into_iter()
        .fold(text.to_owned(), |text, event| event.redact(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> SinkEvent {
        let body = serde_json::json!({
            "id": "0190f5e2-0000-7000-8000-000000000001",
            "tenant_id": "acme",
            "action": "guest.dietary_restriction.updated",
            "severity": "warning",
            "details": {"guest": {"name": "Ada", "a/b": 1}, "vendors": ["x@example.com"]},
        });
        let Value::Object(body) = body else {
            unreachable!()
        };
        SinkEvent::from_json(42, body)
    }

    #[test]
    fn templates_fill_members_pointers_and_seq() {
        let e = event();
        assert_eq!(
            render("{tenant_id}/{action}#{seq} {/details/guest/name}", &e),
            "acme/guest.dietary_restriction.updated#42 Ada"
        );
        assert_eq!(render("{/details/guest/a~1b}", &e), "1");
        assert_eq!(render("{missing}|{/details/nope}", &e), "|");
        assert_eq!(render("{{literal}} {id", &e), "{literal} {id");
    }

    #[test]
    fn pointers_reach_into_details() {
        let e = event();
        assert_eq!(e.detail("/guest/name"), Some(&Value::from("Ada")));
        assert_eq!(
            e.pointer("/details/vendors/0"),
            Some(&Value::from("x@example.com"))
        );
        assert_eq!(e.pointer("/tenant_id"), Some(&Value::from("acme")));
        assert_eq!(e.severity(), Severity::Warning);
    }

    #[test]
    fn decrypted_values_are_redacted_whole_and_json_escaped() {
        let mut e = event();
        e.opened = secret_texts(&[
            br#""peanut \"severe\" allergy""#.to_vec(),
            br#"{"phone":"+33 6 12","floor":42}"#.to_vec(),
        ]);
        let echo = r#"refused: notes 'peanut "severe" allergy' ({"notes":"peanut \"severe\" allergy"}), contact {"phone":"+33 6 12","floor":42}, floor 42"#;
        let shown = redact_for([&e], echo);
        assert_eq!(
            shown,
            "refused: notes '[redacted]' ({\"notes\":\"[redacted]\"}), contact [redacted], floor [redacted]"
        );
        assert_eq!(e.redact("nothing secret"), "nothing secret");
    }
}
