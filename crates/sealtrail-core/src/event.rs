//! What an audit event is, how a producer's JSON becomes one, and the record the log keeps.
//!
//! Validation happens once, here, before anything reaches the sequencer: every rule names
//! the field it failed on, so a producer can fix its request without reading our source.
//! The output, [`PreparedEvent`], carries the canonical record bytes already built (minus
//! the `seq`, which only the sequencer knows) and the values of the indexed columns.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::canonical::ObjectWriter;
use crate::merkle::Hash;
use crate::time_format::{MICROS_PER_SECOND, format_micros, parse_rfc3339_micros};

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

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
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
    const ALL: [ActorType; 3] = [ActorType::User, ActorType::Service, ActorType::System];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::Service => "service",
            ActorType::System => "system",
        }
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
    const ALL: [Outcome; 2] = [Outcome::Success, Outcome::Failure];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
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

/// The fields a producer may send. `seq`, `received_at` and `leaf_hash` are the server's.
const PRODUCER_FIELDS: [&str; 16] = [
    "id",
    "tenant_id",
    "occurred_at",
    "user_id",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "severity",
    "outcome",
    "ip_address",
    "user_agent",
    "request_id",
    "reason",
    "changes",
    "details",
];
const SERVER_FIELDS: [&str; 3] = ["seq", "received_at", "leaf_hash"];

/// [`PRODUCER_FIELDS`] as a `match`, which compiles to a length switch: this runs for every
/// field of every event.
fn is_producer_field(name: &str) -> bool {
    let known = matches!(
        name,
        "id" | "tenant_id"
            | "occurred_at"
            | "user_id"
            | "actor_type"
            | "action"
            | "resource_type"
            | "resource_id"
            | "severity"
            | "outcome"
            | "ip_address"
            | "user_agent"
            | "request_id"
            | "reason"
            | "changes"
            | "details"
    );
    debug_assert_eq!(known, PRODUCER_FIELDS.contains(&name));
    known
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

/// Encrypts sensitive field values while a record is written (field encryption lives in
/// the store; this is the seam it plugs into, so sealing costs no second pass over the
/// record).
pub trait FieldSealer {
    /// Fields to seal: top-level names, or JSON pointers into `details` (`/details/...`).
    fn sealed_fields(&self) -> &[String];
    /// A JSON pointer into the event naming its data subject, if keys are per subject.
    fn subject_pointer(&self) -> Option<&str>;
    /// The sealed string standing for `value_json` (a value's JSON text) in `field`.
    fn seal(
        &self,
        tenant: &str,
        subject: Option<&str>,
        field: &str,
        value_json: &str,
    ) -> Result<String, String>;
    /// Keys the content hash (so it cannot be used to guess a sealed value).
    fn key_content_hash(&self, hash: &mut Hash);
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
    let subject = sealer
        .and_then(|s| s.subject_pointer())
        .and_then(|pointer| value.pointer(pointer))
        .and_then(|v| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        });
    let Value::Object(mut fields) = value else {
        return Err(FieldError::new("", "an event must be a JSON object"));
    };
    if let Some(name) = fields.keys().find(|k| !is_producer_field(k)) {
        let reason = if SERVER_FIELDS.contains(&name.as_str()) {
            "is assigned by the server and cannot be sent".to_owned()
        } else {
            format!("unknown field; events have {}", PRODUCER_FIELDS.join(", "))
        };
        return Err(FieldError::new(name.clone(), reason));
    }
    // Producers often send explicit nulls for absent optional fields; treat them as absent.
    fields.retain(|_, v| !v.is_null());

    let producer_id = take_string(&mut fields, "id")?
        .map(|text| parse_event_id(&text))
        .transpose()?;
    let tenant_id = resolve_tenant(take_string(&mut fields, "tenant_id")?, scope, limits)?;
    let occurred_at = take_string(&mut fields, "occurred_at")?
        .map(|text| parse_occurred_at(&text, received_at, limits))
        .transpose()?;
    let user_id = take_identifier(&mut fields, "user_id", limits.max_id_chars)?;
    let actor_type = take_enum(&mut fields, "actor_type", &ActorType::ALL, |a| a.as_str())?
        .unwrap_or(ActorType::User);
    let action = take_name(&mut fields, "action", limits)?;
    let resource_type = take_name(&mut fields, "resource_type", limits)?;
    let resource_id = take_identifier(&mut fields, "resource_id", limits.max_id_chars)?;
    let severity = take_enum(&mut fields, "severity", &Severity::ALL, |s| s.as_str())?
        .unwrap_or(Severity::Info);
    let outcome = take_enum(&mut fields, "outcome", &Outcome::ALL, |o| o.as_str())?
        .unwrap_or(Outcome::Success);
    let ip_address = take_string(&mut fields, "ip_address")?
        .map(|text| {
            text.parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| {
                    FieldError::new(
                        "ip_address",
                        format!("{text:?} is not an IPv4 or IPv6 address"),
                    )
                })
        })
        .transpose()?;
    let user_agent = take_text(
        &mut fields,
        "user_agent",
        limits.max_user_agent_chars,
        false,
    )?;
    let request_id = take_text(
        &mut fields,
        "request_id",
        limits.max_request_id_chars,
        false,
    )?;
    let reason = take_text(&mut fields, "reason", limits.max_reason_chars, true)?;
    let changes = fields
        .remove("changes")
        .map(|v| validate_changes(v, limits))
        .transpose()?
        .flatten();
    let details = fields
        .remove("details")
        .map(|v| validate_details(v, limits))
        .transpose()?
        .flatten();
    debug_assert!(
        fields.is_empty(),
        "every producer field was taken: {fields:?}"
    );

    // Sealing: each sealed value's plaintext goes into the content hash under its field
    // name, then the value is replaced by its sealed string.
    let mut sealed_content = Sha256::new();
    let (mut ip_address, mut user_agent, mut request_id, mut reason) =
        (ip_address, user_agent, request_id, reason);
    let (mut changes, mut details) = (changes, details);
    // Members whose written bytes are random (sealed): left out of the content hash.
    let mut random_members: Vec<&str> = Vec::new();
    if let Some(sealer) = sealer {
        let seal = |field: &str, value_json: &str, content: &mut Sha256| {
            content.update(field.as_bytes());
            content.update(b"\n");
            content.update(value_json.as_bytes());
            content.update(b"\n");
            sealer
                .seal(&tenant_id, subject.as_deref(), field, value_json)
                .map_err(|reason| FieldError::new(field, reason))
        };
        for field in sealer.sealed_fields() {
            let text_slot = match field.as_str() {
                "ip_address" => Some(&mut ip_address),
                "user_agent" => Some(&mut user_agent),
                "request_id" => Some(&mut request_id),
                "reason" => Some(&mut reason),
                _ => None,
            };
            if let Some(slot) = text_slot {
                if let Some(text) = slot.as_ref() {
                    let json = serde_json::to_string(text).expect("a string serialises");
                    *slot = Some(seal(field, &json, &mut sealed_content)?);
                    random_members.push(field);
                }
                continue;
            }
            if field == "changes" {
                if let Some(bytes) = &changes {
                    let json = String::from_utf8(bytes.clone()).expect("canonical JSON is UTF-8");
                    let sealed = seal(field, &json, &mut sealed_content)?;
                    changes = Some(crate::canonical::to_vec(&Value::String(sealed)));
                    random_members.push("changes");
                }
                continue;
            }
            let Some(pointer) = field.strip_prefix("/details") else {
                continue;
            };
            if let Some(bytes) = &details {
                let mut value: Value =
                    serde_json::from_slice(bytes).expect("details were canonicalised just now");
                if let Some(slot) = value.pointer_mut(pointer).filter(|v| !v.is_null()) {
                    if !random_members.contains(&"details") {
                        // The details as sent count once, whole.
                        sealed_content.update(b"details\n");
                        sealed_content.update(bytes);
                        sealed_content.update(b"\n");
                        random_members.push("details");
                    }
                    let json = slot.to_string();
                    *slot = Value::String(seal(field, &json, &mut sealed_content)?);
                    details = Some(crate::canonical::to_vec(&value));
                }
            }
        }
    }

    let id = producer_id.unwrap_or_else(Uuid::now_v7);
    let occurred = occurred_at.unwrap_or(received_at);
    let id_text = id.hyphenated().to_string();
    let occurred_text = format_micros(occurred);
    let received_text = format_micros(received_at);

    // Members in RFC 8785 order (all keys are ASCII, so UTF-16 order is byte order).
    // The content hash covers what the producer determined, so a retry of the same request
    // matches even though `received_at` (and a defaulted `occurred_at`) differ.
    let mut record = ObjectWriter::new(512);
    let mut content = Sha256::new();
    let mut add = |record: &mut ObjectWriter, range: std::ops::Range<usize>, in_content: bool| {
        if in_content {
            content.update(&record.bytes()[range]);
            content.update(b"\n");
        }
    };
    let r = record.member_str("action", &action);
    add(&mut record, r, true);
    let r = record.member_str("actor_type", actor_type.as_str());
    add(&mut record, r, true);
    if let Some(changes) = &changes {
        let r = record.member_raw("changes", changes);
        add(&mut record, r, !random_members.contains(&"changes"));
    }
    if let Some(details) = &details {
        let r = record.member_raw("details", details);
        add(&mut record, r, !random_members.contains(&"details"));
    }
    let r = record.member_str("id", &id_text);
    add(&mut record, r, true);
    if let Some(ip) = &ip_address {
        let r = record.member_str("ip_address", ip);
        add(&mut record, r, !random_members.contains(&"ip_address"));
    }
    let r = record.member_str("occurred_at", &occurred_text);
    add(&mut record, r, occurred_at.is_some());
    let r = record.member_str("outcome", outcome.as_str());
    add(&mut record, r, true);
    if let Some(reason) = &reason {
        let r = record.member_str("reason", reason);
        add(&mut record, r, !random_members.contains(&"reason"));
    }
    record.member_str("received_at", &received_text);
    if let Some(request_id) = &request_id {
        let r = record.member_str("request_id", request_id);
        add(&mut record, r, !random_members.contains(&"request_id"));
    }
    if let Some(resource_id) = &resource_id {
        let r = record.member_str("resource_id", resource_id);
        add(&mut record, r, true);
    }
    let r = record.member_str("resource_type", &resource_type);
    add(&mut record, r, true);
    record.key("seq");
    let record_head = record.split_off();
    let r = record.member_str("severity", severity.as_str());
    add(&mut record, r, true);
    let r = record.member_str("tenant_id", &tenant_id);
    add(&mut record, r, true);
    if let Some(user_agent) = &user_agent {
        let r = record.member_str("user_agent", user_agent);
        add(&mut record, r, !random_members.contains(&"user_agent"));
    }
    if let Some(user_id) = &user_id {
        let r = record.member_str("user_id", user_id);
        add(&mut record, r, true);
    }
    let record_tail = record.finish();

    Ok(PreparedEvent {
        id,
        tenant_id,
        occurred_at: occurred,
        received_at,
        severity,
        action,
        user_id,
        resource_type,
        resource_id,
        record_head,
        record_tail,
        content_hash: producer_id.map(|_| {
            let mut hash: Hash = match sealer {
                // The sealed members' bytes are random: the plaintexts count instead.
                Some(_) => content
                    .chain_update(sealed_content.finalize())
                    .finalize()
                    .into(),
                None => content.finalize().into(),
            };
            if let Some(sealer) = sealer {
                sealer.key_content_hash(&mut hash);
            }
            hash
        }),
    })
}

fn parse_event_id(text: &str) -> Result<Uuid, FieldError> {
    let id = Uuid::try_parse(text)
        .map_err(|_| FieldError::new("id", format!("{text:?} is not a UUID")))?;
    if id.is_nil() {
        return Err(FieldError::new("id", "must not be the nil UUID"));
    }
    Ok(id)
}

fn resolve_tenant(
    given: Option<String>,
    scope: &TenantScope,
    limits: &EventLimits,
) -> Result<String, FieldError> {
    match (given, scope) {
        (None, TenantScope::Bound(tenant)) => Ok(tenant.clone()),
        (Some(given), TenantScope::Bound(tenant)) if &given == tenant => Ok(given),
        (Some(given), TenantScope::Bound(tenant)) => Err(FieldError::new(
            "tenant_id",
            format!("this API key is bound to tenant {tenant:?} and cannot write tenant {given:?}"),
        )),
        (None, TenantScope::Any) => Err(FieldError::new(
            "tenant_id",
            "required: this API key is not bound to a tenant, so each event must name one",
        )),
        (Some(given), TenantScope::Any) => {
            validate_tenant_id(&given, limits).map_err(|r| FieldError::new("tenant_id", r))?;
            Ok(given)
        }
    }
}

/// Tenant ids appear in URLs, file names and logs, so they are kept to a safe alphabet.
pub fn validate_tenant_id(tenant: &str, limits: &EventLimits) -> Result<(), String> {
    let chars = tenant.chars().count();
    if chars == 0 || chars > limits.max_tenant_chars {
        return Err(format!(
            "must be 1 to {} characters",
            limits.max_tenant_chars
        ));
    }
    if let Some(bad) = tenant
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@')))
    {
        return Err(format!(
            "contains {bad:?}; tenant ids use letters, digits and . _ - : @"
        ));
    }
    Ok(())
}

fn parse_occurred_at(
    text: &str,
    received_at: i64,
    limits: &EventLimits,
) -> Result<i64, FieldError> {
    let micros = parse_rfc3339_micros(text).map_err(|r| FieldError::new("occurred_at", r))?;
    if micros > received_at + limits.max_future_skew_secs * MICROS_PER_SECOND {
        return Err(FieldError::new(
            "occurred_at",
            format!(
                "{text} is more than {} seconds in the future; check the producer's clock",
                limits.max_future_skew_secs
            ),
        ));
    }
    Ok(micros)
}

fn take_string(fields: &mut Map<String, Value>, name: &str) -> Result<Option<String>, FieldError> {
    match fields.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(FieldError::new(
            name,
            format!("must be a string, not {}", kind(&other)),
        )),
    }
}

/// `action` and `resource_type`: required dotted names such as `guest.dietary.updated`.
fn take_name(
    fields: &mut Map<String, Value>,
    name: &str,
    limits: &EventLimits,
) -> Result<String, FieldError> {
    let Some(text) = take_string(fields, name)? else {
        return Err(FieldError::new(name, "required"));
    };
    let chars = text.chars().count();
    if chars == 0 || chars > limits.max_name_chars {
        return Err(FieldError::new(
            name,
            format!(
                "must be 1 to {} characters, not {chars}",
                limits.max_name_chars
            ),
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')))
    {
        return Err(FieldError::new(
            name,
            format!(
                "contains {bad:?}; use letters, digits and . _ - : / (e.g. guest.rsvp.updated)"
            ),
        ));
    }
    Ok(text)
}

/// `user_id` and `resource_id`: strings, or integers (primary keys sent as numbers).
fn take_identifier(
    fields: &mut Map<String, Value>,
    name: &str,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    let text = match fields.remove(name) {
        None => return Ok(None),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(other) => {
            return Err(FieldError::new(
                name,
                format!("must be a string or an integer, not {}", kind(&other)),
            ));
        }
    };
    check_text(name, &text, max_chars, false)?;
    if text.is_empty() {
        return Err(FieldError::new(name, "must not be empty (omit it instead)"));
    }
    Ok(Some(text))
}

fn take_text(
    fields: &mut Map<String, Value>,
    name: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<Option<String>, FieldError> {
    let Some(text) = take_string(fields, name)? else {
        return Ok(None);
    };
    check_text(name, &text, max_chars, multiline)?;
    Ok(Some(text))
}

fn check_text(name: &str, text: &str, max_chars: usize, multiline: bool) -> Result<(), FieldError> {
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(FieldError::new(
            name,
            format!("is {chars} characters; the limit is {max_chars}"),
        ));
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\t' | '\r');
    if let Some(bad) = text.chars().find(|&c| c.is_control() && !allowed(c)) {
        return Err(FieldError::new(
            name,
            format!("contains the control character {bad:?}"),
        ));
    }
    Ok(())
}

fn take_enum<T: Copy>(
    fields: &mut Map<String, Value>,
    name: &str,
    all: &[T],
    wire: impl Fn(T) -> &'static str,
) -> Result<Option<T>, FieldError> {
    let Some(text) = take_string(fields, name)? else {
        return Ok(None);
    };
    all.iter()
        .copied()
        .find(|v| wire(*v) == text)
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| wire(*v)).collect();
            FieldError::new(name, format!("{text:?} is not one of {}", names.join(", ")))
        })
}

/// Validates `changes` and returns its canonical JSON (`None` for an empty list): a list of
/// `{after?, before?, field}` objects, keys in canonical order.
fn validate_changes(value: Value, limits: &EventLimits) -> Result<Option<Vec<u8>>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError::new(
            "changes",
            format!(
                "must be a list of {{field, before, after}}, not {}",
                kind(&value)
            ),
        ));
    };
    if items.len() > limits.max_changes {
        return Err(FieldError::new(
            "changes",
            format!(
                "has {} entries; the limit is {}",
                items.len(),
                limits.max_changes
            ),
        ));
    }
    if items.is_empty() {
        return Ok(None);
    }
    let mut canonical = Vec::with_capacity(64 * items.len());
    canonical.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        let at = |e: FieldError| e.within(&format!("changes[{i}]"));
        let Value::Object(entry) = item else {
            return Err(at(FieldError::new(
                "",
                "must be an object {field, before, after}",
            )));
        };
        if let Some(name) = entry
            .keys()
            .find(|k| !["field", "before", "after"].contains(&k.as_str()))
        {
            return Err(at(FieldError::new(
                name.clone(),
                "unknown field; a change has field, before, after",
            )));
        }
        let field = match entry.get("field") {
            Some(Value::String(f)) if !f.is_empty() => f,
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(at(FieldError::new("field", "required")));
            }
            Some(other) => {
                return Err(at(FieldError::new(
                    "field",
                    format!("must be a string, not {}", kind(other)),
                )));
            }
        };
        check_text("field", field, limits.max_change_field_chars, false).map_err(at)?;
        for side in ["before", "after"] {
            if let Some(v) = entry.get(side) {
                check_json_value(v, 1, limits).map_err(|r| at(FieldError::new(side, r)))?;
            }
        }
        if i > 0 {
            canonical.push(b',');
        }
        // The keys are ASCII and already in canonical order in the map.
        crate::canonical::write_object(&mut canonical, &entry);
    }
    canonical.push(b']');
    if canonical.len() > limits.max_details_bytes {
        return Err(FieldError::new(
            "changes",
            format!(
                "is {} bytes of JSON; the limit is {}",
                canonical.len(),
                limits.max_details_bytes
            ),
        ));
    }
    Ok(Some(canonical))
}

/// Validates `details` and returns its canonical JSON (`None` for an empty object).
fn validate_details(value: Value, limits: &EventLimits) -> Result<Option<Vec<u8>>, FieldError> {
    let Value::Object(details) = value else {
        return Err(FieldError::new(
            "details",
            format!("must be a JSON object, not {}", kind(&value)),
        ));
    };
    for (key, v) in &details {
        check_json_value(v, 2, limits)
            .map_err(|r| FieldError::new(member_path("details", key), r))?;
    }
    if details.is_empty() {
        return Ok(None);
    }
    let mut canonical = Vec::with_capacity(128);
    crate::canonical::write_object(&mut canonical, &details);
    if canonical.len() > limits.max_details_bytes {
        return Err(FieldError::new(
            "details",
            format!(
                "is {} bytes of JSON; the limit is {}",
                canonical.len(),
                limits.max_details_bytes
            ),
        ));
    }
    Ok(Some(canonical))
}

/// `parent.key`, or `parent["key"]` when the key is not a plain name (so `details["a.b"]`
/// is not mistaken for `details.a.b`).
fn member_path(parent: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", serde_json::Value::String(key.to_owned()))
    }
}

/// The largest integer every JSON implementation represents exactly (I-JSON, RFC 7493).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Bounds the depth of free-form JSON and keeps its numbers within what RFC 8785 (which
/// reads every number as an IEEE double) reproduces exactly.
fn check_json_value(value: &Value, depth: usize, limits: &EventLimits) -> Result<(), String> {
    if depth > limits.max_json_depth {
        return Err(format!(
            "nested deeper than {} levels",
            limits.max_json_depth
        ));
    }
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let as_float = n.as_f64().unwrap_or(f64::INFINITY);
            if as_float.abs() > MAX_EXACT_INTEGER {
                return Err(format!(
                    "the integer {n} is beyond ±2^53 and would lose precision; send it as a string"
                ));
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_json_value(v, depth + 1, limits)),
        Value::Object(map) => map
            .values()
            .try_for_each(|v| check_json_value(v, depth + 1, limits)),
        _ => Ok(()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The indexed fields of a stored record, read back from its canonical bytes. `verify`
/// compares these with the columns beside the record.
#[derive(Clone, Debug, Deserialize)]
pub struct StoredRecord {
    /// Leaf position + 1.
    pub seq: u64,
    /// Event id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// RFC 3339, canonical spelling.
    pub occurred_at: String,
    /// RFC 3339, canonical spelling.
    pub received_at: String,
    /// Severity.
    pub severity: Severity,
    /// Action name.
    pub action: String,
    /// Acting user, if any.
    pub user_id: Option<String>,
    /// Resource type.
    pub resource_type: String,
    /// Resource id, if any.
    pub resource_id: Option<String>,
}

impl StoredRecord {
    /// Parses a record's canonical bytes.
    pub fn parse(record: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(record).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_795_000_000_000_000;

    fn bound() -> TenantScope {
        TenantScope::Bound("bloom-weddings".into())
    }

    fn prepare(value: Value) -> Result<PreparedEvent, FieldError> {
        prepare_event_value(value, &bound(), NOW, &EventLimits::default())
    }

    fn minimal() -> Value {
        json!({"action": "guest.dietary_restriction.updated", "resource_type": "guest"})
    }

    #[test]
    fn the_record_is_canonical_json_with_the_seq_spliced_in() {
        let event = prepare(json!({
            "id": "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d",
            "action": "guest.dietary_restriction.updated",
            "resource_type": "guest",
            "resource_id": 4711,
            "user_id": "coord-17",
            "ip_address": "2001:0db8:0000:0000:0000:0000:0000:0001",
            "details": {"z": 1, "a": {"y": true, "b": null}},
            "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
            "reason": "guest called",
        }))
        .unwrap();
        let record = String::from_utf8(event.record(42)).unwrap();
        assert_eq!(
            record,
            concat!(
                r#"{"action":"guest.dietary_restriction.updated","actor_type":"user","#,
                r#""changes":[{"after":"vegan","before":"none","field":"dietary_restriction"}],"#,
                r#""details":{"a":{"b":null,"y":true},"z":1},"#,
                r#""id":"0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d","ip_address":"2001:db8::1","#,
                r#""occurred_at":"2026-11-18T11:06:40.000000Z","outcome":"success","#,
                r#""reason":"guest called","received_at":"2026-11-18T11:06:40.000000Z","#,
                r#""resource_id":"4711","resource_type":"guest","seq":42,"severity":"info","#,
                r#""tenant_id":"bloom-weddings","user_id":"coord-17"}"#
            )
        );
        let value: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(
            crate::canonical::to_vec(&value),
            record.as_bytes(),
            "canonical fixed point"
        );
        let stored = StoredRecord::parse(record.as_bytes()).unwrap();
        assert_eq!(stored.seq, 42);
        assert_eq!(stored.resource_id.as_deref(), Some("4711"));
    }

    #[test]
    fn a_retry_has_the_same_content_hash_and_any_change_gives_another() {
        let sent = json!({"id": "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d", "action": "a.b",
                          "resource_type": "guest"});
        let first = prepare(sent.clone()).unwrap();
        let retry = prepare_event_value(
            sent.clone(),
            &bound(),
            NOW + 5_000_000,
            &EventLimits::default(),
        )
        .unwrap();
        assert_eq!(first.content_hash, retry.content_hash);
        assert_ne!(first.record(1), retry.record(1), "received_at differs");
        let mut other = sent;
        other["severity"] = json!("critical");
        assert_ne!(prepare(other).unwrap().content_hash, first.content_hash);
        assert_eq!(
            prepare(minimal()).unwrap().content_hash,
            None,
            "server ids need no hash"
        );
    }

    #[test]
    fn defaults_and_nulls() {
        let mut event = minimal();
        event["user_id"] = Value::Null;
        event["details"] = json!({});
        let e = prepare(event).unwrap();
        assert_eq!(e.severity, Severity::Info);
        assert_eq!(e.user_id, None);
        assert_eq!(e.occurred_at, NOW);
        assert_eq!(e.id.get_version_num(), 7);
        let record = String::from_utf8(e.record(1)).unwrap();
        assert!(
            !record.contains("details") && !record.contains("user_id"),
            "{record}"
        );
    }

    #[test]
    fn every_rule_names_its_field() {
        let long = "x".repeat(129);
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([1]), "", "must be a JSON object"),
            (json!({"resource_type": "guest"}), "action", "required"),
            (json!({"action": "a"}), "resource_type", "required"),
            (
                json!({"action": 5, "resource_type": "g"}),
                "action",
                "must be a string",
            ),
            (
                json!({"action": long, "resource_type": "g"}),
                "action",
                "1 to 128",
            ),
            (
                json!({"action": "has space", "resource_type": "g"}),
                "action",
                "contains ' '",
            ),
            (
                json!({"action": "a", "resource_type": "g", "colour": 1}),
                "colour",
                "unknown field",
            ),
            (
                json!({"action": "a", "resource_type": "g", "seq": 1}),
                "seq",
                "assigned by the server",
            ),
            (
                json!({"action": "a", "resource_type": "g", "id": "nope"}),
                "id",
                "not a UUID",
            ),
            (
                json!({"action": "a", "resource_type": "g", "ip_address": "300.1.1.1"}),
                "ip_address",
                "not an IPv4",
            ),
            (
                json!({"action": "a", "resource_type": "g", "severity": "fatal"}),
                "severity",
                "not one of info, warning, critical",
            ),
            (
                json!({"action": "a", "resource_type": "g", "outcome": "maybe"}),
                "outcome",
                "not one of",
            ),
            (
                json!({"action": "a", "resource_type": "g", "actor_type": "robot"}),
                "actor_type",
                "not one of",
            ),
            (
                json!({"action": "a", "resource_type": "g", "occurred_at": "yesterday"}),
                "occurred_at",
                "RFC 3339",
            ),
            (
                json!({"action": "a", "resource_type": "g", "occurred_at": "2099-01-01T00:00:00Z"}),
                "occurred_at",
                "in the future",
            ),
            (
                json!({"action": "a", "resource_type": "g", "tenant_id": "other"}),
                "tenant_id",
                "bound to tenant",
            ),
            (
                json!({"action": "a", "resource_type": "g", "details": [1]}),
                "details",
                "must be a JSON object",
            ),
            (
                json!({"action": "a", "resource_type": "g", "details": {"n": 9007199254740993u64}}),
                "details.n",
                "beyond",
            ),
            (
                json!({"action": "a", "resource_type": "g", "details": {"a.b": 9007199254740993u64}}),
                "details[\"a.b\"]",
                "beyond",
            ),
            (
                json!({"action": "a", "resource_type": "g", "changes": {}}),
                "changes",
                "must be a list",
            ),
            (
                json!({"action": "a", "resource_type": "g", "changes": [{"before": 1}]}),
                "changes[0].field",
                "required",
            ),
            (
                json!({"action": "a", "resource_type": "g", "changes": [{"field": "x", "diff": 1}]}),
                "changes[0].diff",
                "unknown field",
            ),
            (
                json!({"action": "a", "resource_type": "g", "user_id": 1.5}),
                "user_id",
                "string or an integer",
            ),
            (
                json!({"action": "a", "resource_type": "g", "user_agent": "a\u{0}b"}),
                "user_agent",
                "control character",
            ),
            (
                json!({"action": "a", "resource_type": "g", "reason": "x".repeat(4097)}),
                "reason",
                "limit is 4096",
            ),
        ];
        for (input, field, reason) in cases {
            let err = prepare(input.clone()).expect_err(&input.to_string());
            assert_eq!(err.field, field, "{input}: {err}");
            assert!(err.reason.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn deep_and_large_details_are_refused() {
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "n": deep });
        }
        let err = prepare(json!({"action": "a", "resource_type": "g", "details": {"d": deep}}))
            .unwrap_err();
        assert!(err.reason.contains("nested deeper than 32"), "{err}");
        let big = "x".repeat(70_000);
        let err = prepare(json!({"action": "a", "resource_type": "g", "details": {"d": big}}))
            .unwrap_err();
        assert_eq!(err.field, "details");
        assert!(err.reason.contains("limit is 65536"), "{err}");
    }

    #[test]
    fn unbound_keys_must_name_a_valid_tenant() {
        let limits = EventLimits::default();
        let err = prepare_event_value(minimal(), &TenantScope::Any, NOW, &limits).unwrap_err();
        assert_eq!(err.field, "tenant_id");
        let mut event = minimal();
        event["tenant_id"] = json!("acme corp");
        let err = prepare_event_value(event, &TenantScope::Any, NOW, &limits).unwrap_err();
        assert!(err.reason.contains("contains ' '"), "{err}");
    }

    /// Seals deterministically, so sealed records can be pinned byte for byte.
    struct TestSealer {
        fields: Vec<String>,
        subject: Option<&'static str>,
    }

    impl FieldSealer for TestSealer {
        fn sealed_fields(&self) -> &[String] {
            &self.fields
        }

        fn subject_pointer(&self) -> Option<&str> {
            self.subject
        }

        fn seal(
            &self,
            tenant: &str,
            subject: Option<&str>,
            field: &str,
            value_json: &str,
        ) -> Result<String, String> {
            let digest = hex::encode(Sha256::digest(value_json.as_bytes()));
            Ok(format!(
                "sealed:{tenant}:{}:{field}:{digest}",
                subject.unwrap_or("-")
            ))
        }

        fn key_content_hash(&self, hash: &mut Hash) {
            *hash = Sha256::new()
                .chain_update(b"key")
                .chain_update(*hash)
                .finalize()
                .into();
        }
    }

    fn full_event() -> Value {
        json!({
            "id": "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d",
            "occurred_at": "2026-11-18T12:06:40.5+01:00",
            "action": "guest.dietary_restriction.updated",
            "resource_type": "guest",
            "resource_id": 4711,
            "user_id": "coord-17",
            "actor_type": "service",
            "severity": "warning",
            "outcome": "failure",
            "ip_address": "2001:0db8:0000:0000:0000:0000:0000:0001",
            "user_agent": "Mozilla/5.0 (X11)",
            "request_id": "req-1",
            "details": {"z": 1.5, "a": {"y": true, "b": null}, "\u{e000}k": [1, "x"], "k": 2},
            "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
            "reason": "guest called\nat noon",
        })
    }

    fn minimal_with_id() -> Value {
        let mut event = minimal();
        event["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d");
        event
    }

    /// SHA-256 of `record(7)` and the content hash, as hex, as the single-function
    /// preparation produced them before it was split into stages.
    #[test]
    fn records_and_content_hashes_are_pinned() {
        let all_sealable = [
            "ip_address",
            "user_agent",
            "request_id",
            "reason",
            "changes",
            "/details/a/y",
            "/details/z",
            "user_id",
            "/details/missing",
            "/details/a/b",
        ];
        let cases: Vec<(&str, Value, Option<TestSealer>)> = vec![
            ("plain", full_event(), None),
            ("minimal", minimal_with_id(), None),
            (
                "id without occurred_at",
                {
                    let mut e = full_event();
                    e.as_object_mut().unwrap().remove("occurred_at");
                    e
                },
                None,
            ),
            (
                "sealer sealing nothing present",
                minimal_with_id(),
                Some(TestSealer {
                    fields: vec!["ip_address".into(), "/details/x".into()],
                    subject: None,
                }),
            ),
            (
                "sealed, per subject",
                full_event(),
                Some(TestSealer {
                    fields: all_sealable.iter().map(|f| f.to_string()).collect(),
                    subject: Some("/resource_id"),
                }),
            ),
            (
                "whole details and a field twice",
                full_event(),
                Some(TestSealer {
                    fields: vec![
                        "/details".into(),
                        "ip_address".into(),
                        "ip_address".into(),
                        "/details/k".into(),
                    ],
                    subject: Some("/user_id"),
                }),
            ),
        ];
        let mut got = Vec::new();
        for (name, event, sealer) in cases {
            let prepared = prepare_event_sealed(
                event,
                &bound(),
                NOW,
                &EventLimits::default(),
                sealer.as_ref().map(|s| s as &dyn FieldSealer),
            )
            .unwrap();
            let record = prepared.record(7);
            let value: Value = serde_json::from_slice(&record).unwrap();
            assert_eq!(
                crate::canonical::to_vec(&value),
                record,
                "{name}: canonical"
            );
            got.push(format!(
                "{name}: {} {}",
                hex::encode(Sha256::digest(&record)),
                prepared.content_hash.map(hex::encode).unwrap_or_default()
            ));
        }
        let expected: Vec<String> = PINNED.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, expected);
    }

    const PINNED: [&str; 6] = [
        "plain: 15c223a2877605c2ad0f5cff35850a44e59326ea7020d91fbefba6e5633c3279 2eef1cd8c976ea7ce7ea7f97517feb41e2bbf2d0d90c71be0816258938cdc3b6",
        "minimal: ff7b6a1f5ccbbc45ee8bdd4f17ba918097ec82fb056acc9ff7e2bb21e5c1444d 9cc3781143d2cef8e7126107f6a11628f483a0c43fb8bb2df043fb04ff1d2310",
        "id without occurred_at: 14e40c2582394c2968fa260d90172077d5542b8c5fe213dddab6e95dab1ecc3b 13672b751ec2fdfc34cda51a10c1203527bc8824bb739decf24e5a177fd1e08d",
        "sealer sealing nothing present: ff7b6a1f5ccbbc45ee8bdd4f17ba918097ec82fb056acc9ff7e2bb21e5c1444d 4fdbdb2c186392c5dd642efa46e0012c1381a61c303372707c6870d2811d31e3",
        "sealed, per subject: 11e0dcf2bc895549a41b2268edd3c1b3bf2e135aa216d53a9f54223c8af872e1 8cafc7b0c2f33561bdf51b759cc316f1bc455e902c57c267c63884e94b468928",
        "whole details and a field twice: 3e341b38c7b1f9861664b6d5495e3d690e40a0be03e8e783d247b98955b67f5f 07d390f0f9cfa6f9382fdcd08b33edd2a12c7a31d9e51a6eb1b26d9c41a8a7ee",
    ];

    #[test]
    fn malformed_json_is_reported_with_its_position() {
        let err =
            prepare_event(b"{\"action\": ", &bound(), NOW, &EventLimits::default()).unwrap_err();
        assert!(err.reason.starts_with("malformed JSON"), "{err}");
        let err = prepare_event(
            b"{\"action\": \"\xff\"}",
            &bound(),
            NOW,
            &EventLimits::default(),
        )
        .unwrap_err();
        assert!(err.reason.contains("malformed JSON"), "{err}");
    }
}
