//! What an audit event is, how a producer's JSON becomes one, and the record the log keeps.
//!
//! Validation happens once, here, before anything reaches the sequencer: every rule names
//! the field it failed on, so a producer can fix its request without reading our source.
//! The output, [`PreparedEvent`], carries the canonical record bytes already built (minus
//! the `seq`, which only the sequencer knows) and the values of the indexed columns.
//!
//! Preparation runs in three stages, each in its own module, each handing the next an owned
//! value so nothing is copied or serialised twice:
//!
//! 1. `validate`: producer JSON → a typed `ValidEvent`, walking the table of fields and
//!    their limits in `fields` (the free-form `changes` and `details` in `freeform`);
//! 2. `seal`: the values a [`FieldSealer`] names replaced by sealed strings;
//! 3. `record`: the RFC 8785 record bytes the leaf hash covers, and the content hash.

mod fields;
mod freeform;
mod record;
mod seal;
mod validate;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::merkle::Hash;

pub use fields::MAX_SOURCE_SEQ;
pub use record::StoredRecord;
pub use seal::FieldSealer;
pub use validate::validate_tenant_id;

/// How bad an event is. Ordered: `info < warning < critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Routine change.
    Info,
    /// Worth a look.
    Warning,
    /// Someone must act.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// The wire names, in the order of [`Severity::ALL`].
    pub(crate) const WIRE_NAMES: [&'static str; 3] = ["info", "warning", "critical"];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        Self::WIRE_NAMES[self as usize]
    }

    /// The small integer stored in the indexed column.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The severity a stored column code stands for.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Who acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    /// A person.
    User,
    /// Another program acting on its own account.
    Service,
    /// Sealtrail itself (retention, shredding, access logging).
    System,
}

impl ActorType {
    pub(crate) const ALL: [ActorType; 3] = [ActorType::User, ActorType::Service, ActorType::System];
    /// The wire names, in the order of [`ActorType::ALL`].
    pub(crate) const WIRE_NAMES: [&'static str; 3] = ["user", "service", "system"];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        Self::WIRE_NAMES[self as usize]
    }
}

/// Whether the audited action succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed or was denied.
    Failure,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 2] = [Outcome::Success, Outcome::Failure];
    /// The wire names, in the order of [`Outcome::ALL`].
    pub(crate) const WIRE_NAMES: [&'static str; 2] = ["success", "failure"];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        Self::WIRE_NAMES[self as usize]
    }
}

/// Every bound validation enforces. Defaults are what DESIGN.md documents; the server
/// takes overrides from its configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimits {
    /// `action` and `resource_type`: characters.
    pub max_name_chars: usize,
    /// `tenant_id`: characters.
    pub max_tenant_chars: usize,
    /// `user_id` and `resource_id`: characters.
    pub max_id_chars: usize,
    /// `user_agent`: characters.
    pub max_user_agent_chars: usize,
    /// `request_id`: characters.
    pub max_request_id_chars: usize,
    /// `reason`: characters.
    pub max_reason_chars: usize,
    /// `changes`: entries.
    pub max_changes: usize,
    /// `changes[].field`: characters.
    pub max_change_field_chars: usize,
    /// `details`, and all of `changes` together: bytes of canonical JSON.
    pub max_details_bytes: usize,
    /// Nesting depth of `details` and of each change value.
    pub max_json_depth: usize,
    /// How far in the future `occurred_at` may be, for producers with skewed clocks.
    pub max_future_skew_secs: i64,
    /// `source`: characters.
    pub max_source_chars: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_name_chars: 128,
            max_tenant_chars: 128,
            max_id_chars: 256,
            max_user_agent_chars: 1024,
            max_request_id_chars: 128,
            max_reason_chars: 4096,
            max_changes: 256,
            max_change_field_chars: 256,
            max_details_bytes: 64 * 1024,
            max_json_depth: 32,
            max_future_skew_secs: 24 * 3600,
            max_source_chars: 200,
        }
    }
}

/// One reason an input was refused: the field (a JSON path such as `changes[2].field`, or
/// empty for the whole event) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}{reason}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct FieldError {
    /// Where: a field name or JSON path; empty when the whole input is wrong.
    pub field: String,
    /// Why, in words a producer can act on.
    pub reason: String,
}

impl FieldError {
    /// An error on one field.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error one level deeper, e.g. `ip_address` inside `events[3]`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// Which tenant a request may write: the one its key is bound to, or any it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantScope {
    /// The key is bound to this tenant; events may omit `tenant_id` or repeat it.
    Bound(String),
    /// The key may write any tenant; each event must name one.
    Any,
}

/// An event that passed validation, ready for the sequencer.
///
/// Its canonical record is `record_head ++ decimal(seq) ++ record_tail`: the head ends with
/// `"seq":`, so the sequencer's only serialisation work is writing one integer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedEvent {
    /// The event id (the producer's, or a fresh UUIDv7).
    pub id: Uuid,
    /// The owning tenant.
    pub tenant_id: String,
    /// When it happened, UTC microseconds.
    pub occurred_at: i64,
    /// When Sealtrail received it, UTC microseconds.
    pub received_at: i64,
    /// Indexed column.
    pub severity: Severity,
    /// Indexed column.
    pub action: String,
    /// Indexed column.
    pub user_id: Option<String>,
    /// Indexed column.
    pub resource_type: String,
    /// Indexed column.
    pub resource_id: Option<String>,
    /// Canonical record bytes up to and including `"seq":`.
    pub record_head: Vec<u8>,
    /// Canonical record bytes after the `seq` value, through the closing brace.
    pub record_tail: Vec<u8>,
    /// For producer-chosen ids: a hash of what the producer sent (server-assigned values
    /// excluded), so a retry can be told from a conflicting reuse of the id.
    pub content_hash: Option<Hash>,
}

impl PreparedEvent {
    /// The canonical record bytes once `seq` is known.
    pub fn record(&self, seq: u64) -> Vec<u8> {
        use std::io::Write as _;
        let mut record = Vec::with_capacity(self.record_head.len() + 20 + self.record_tail.len());
        record.extend_from_slice(&self.record_head);
        write!(record, "{seq}").expect("writing to a Vec cannot fail");
        record.extend_from_slice(&self.record_tail);
        record
    }
}

/// Parses and validates one event from JSON bytes.
pub fn prepare_event(
    json: &[u8],
    scope: &TenantScope,
    received_at: i64,
    limits: &EventLimits,
) -> Result<PreparedEvent, FieldError> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| FieldError::new("", format!("malformed JSON: {e}")))?;
    prepare_event_value(value, scope, received_at, limits)
}

/// Validates one event already parsed as JSON.
pub fn prepare_event_value(
    value: Value,
    scope: &TenantScope,
    received_at: i64,
    limits: &EventLimits,
) -> Result<PreparedEvent, FieldError> {
    prepare_event_sealed(value, scope, received_at, limits, None)
}

/// [`prepare_event_value`], sealing the fields `sealer` names as the record is written.
/// The content hash then covers the values as sent (so a retry still matches), keyed by the
/// sealer.
pub fn prepare_event_sealed(
    value: Value,
    scope: &TenantScope,
    received_at: i64,
    limits: &EventLimits,
    sealer: Option<&dyn FieldSealer>,
) -> Result<PreparedEvent, FieldError> {
    // The subject pointer may name any member as sent, so it is read before validation
    // takes the event apart.
    let subject = sealer.and_then(|sealer| seal::data_subject(sealer, &value));
    let event = validate::validate(value, scope, received_at, limits)?;
    let event = seal::seal(event, sealer, subject.as_deref())?;
    Ok(record::write_record(event))
}
