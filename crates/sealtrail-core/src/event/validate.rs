//! Validation: a producer's JSON becomes a typed [`ValidEvent`] by walking the field table
//! ([`super::fields::FIELDS`]); every refusal names the field it is about.
//!
//! Values move out of the parsed JSON into the event without copies; the free-form members
//! come out already as canonical JSON, because their byte limits are on that form.

use std::net::IpAddr;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::fields::{
    FIELDS, Field, FieldKind, MAX_SOURCE_SEQ, Presence, SERVER_FIELDS, is_producer_field,
};
use super::freeform::{validate_changes, validate_details};
use super::{ActorType, EventLimits, FieldError, Outcome, Severity, TenantScope};
use crate::time_format::{MICROS_PER_SECOND, parse_rfc3339_micros};

/// An event that passed validation, its fields typed but not yet sealed or written.
#[derive(Debug)]
pub(crate) struct ValidEvent {
    /// The producer's id; `None` means the server assigns one.
    pub(crate) producer_id: Option<Uuid>,
    pub(crate) tenant_id: String,
    /// UTC microseconds; `None` means "when received".
    pub(crate) occurred_at: Option<i64>,
    /// UTC microseconds.
    pub(crate) received_at: i64,
    pub(crate) user_id: Option<String>,
    pub(crate) actor_type: ActorType,
    pub(crate) action: String,
    pub(crate) resource_type: String,
    pub(crate) resource_id: Option<String>,
    pub(crate) severity: Severity,
    pub(crate) outcome: Outcome,
    /// In its shortest spelling.
    pub(crate) ip_address: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) reason: Option<String>,
    /// Canonical JSON; `None` when absent or empty, which the record leaves out.
    pub(crate) changes: Option<Vec<u8>>,
    /// Canonical JSON; `None` when absent or empty, which the record leaves out.
    pub(crate) details: Option<Vec<u8>>,
    /// The producer instance and its sequence number for this event, always both or neither.
    pub(crate) source: Option<(String, u64)>,
}

/// Validates a producer's event against [`FIELDS`].
pub(crate) fn validate(
    value: Value,
    scope: &TenantScope,
    received_at: i64,
    limits: &EventLimits,
) -> Result<ValidEvent, FieldError> {
    let Value::Object(mut members) = value else {
        return Err(FieldError::new("", "an event must be a JSON object"));
    };
    reject_unknown_fields(&members)?;
    let rules = Rules {
        scope,
        received_at,
        limits,
    };
    let mut checked: [Option<Checked>; FIELDS.len()] = Default::default();
    for (slot, field) in checked.iter_mut().zip(&FIELDS) {
        // Producers often send explicit nulls for absent optional fields; treat them as absent.
        let value = members.remove(field.name).filter(|v| !v.is_null());
        *slot = rules.check(field, value)?;
    }
    debug_assert!(
        members.is_empty(),
        "every producer field was taken: {members:?}"
    );
    ValidEvent::from_checked(checked, received_at)
}

fn reject_unknown_fields(members: &Map<String, Value>) -> Result<(), FieldError> {
    let Some(name) = members.keys().find(|k| !is_producer_field(k)) else {
        return Ok(());
    };
    let reason = if SERVER_FIELDS.contains(&name.as_str()) {
        "is assigned by the server and cannot be sent".to_owned()
    } else {
        let names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        format!("unknown field; events have {}", names.join(", "))
    };
    Err(FieldError::new(name.clone(), reason))
}

/// A field's value once its rule passed, on its way to its place in a [`ValidEvent`].
#[derive(Debug)]
enum Checked {
    Id(Uuid),
    Micros(i64),
    Text(String),
    /// An index into the field's choices, which is also the index into the enum's `ALL`.
    Choice(usize),
    /// Canonical JSON.
    Json(Vec<u8>),
    /// A positive integer.
    Count(u64),
}

/// What every rule may consult besides the value itself.
struct Rules<'a> {
    scope: &'a TenantScope,
    received_at: i64,
    limits: &'a EventLimits,
}

impl Rules<'_> {
    /// Applies `field`'s rule to its value; `Ok(None)` when it is absent and may be, or when
    /// it is free-form JSON with nothing in it.
    fn check(&self, field: &Field, value: Option<Value>) -> Result<Option<Checked>, FieldError> {
        let Some(value) = value else {
            return self.absent(field);
        };
        let name = field.name;
        let checked = match field.kind {
            FieldKind::EventId => Checked::Id(parse_event_id(&string(name, value)?)?),
            FieldKind::Tenant => Checked::Text(self.tenant(string(name, value)?)?),
            FieldKind::Timestamp => Checked::Micros(self.occurred_at(&string(name, value)?)?),
            FieldKind::Name(max_chars) => {
                Checked::Text(check_name(name, value, max_chars(self.limits))?)
            }
            FieldKind::Identifier(max_chars) => {
                Checked::Text(check_identifier(name, value, max_chars(self.limits))?)
            }
            FieldKind::Text {
                max_chars,
                multiline,
            } => Checked::Text(check_free_text(
                name,
                value,
                max_chars(self.limits),
                multiline,
            )?),
            FieldKind::Choice(names) => Checked::Choice(check_choice(name, value, names)?),
            FieldKind::IpAddress => Checked::Text(check_ip_address(name, value)?),
            FieldKind::Changes => {
                return Ok(validate_changes(value, self.limits)?.map(Checked::Json));
            }
            FieldKind::Details => {
                return Ok(validate_details(value, self.limits)?.map(Checked::Json));
            }
            FieldKind::SourceSeq => Checked::Count(check_source_seq(name, value)?),
        };
        Ok(Some(checked))
    }

    fn absent(&self, field: &Field) -> Result<Option<Checked>, FieldError> {
        match (field.presence, self.scope) {
            (Presence::Optional, _) => Ok(None),
            (Presence::Required, _) => Err(FieldError::new(field.name, "required")),
            (Presence::UnlessKeyBound, TenantScope::Bound(tenant)) => {
                Ok(Some(Checked::Text(tenant.clone())))
            }
            (Presence::UnlessKeyBound, TenantScope::Any) => Err(FieldError::new(
                field.name,
                "required: this API key is not bound to a tenant, so each event must name one",
            )),
        }
    }

    fn tenant(&self, given: String) -> Result<String, FieldError> {
        match self.scope {
            TenantScope::Bound(tenant) if &given == tenant => Ok(given),
            TenantScope::Bound(tenant) => Err(FieldError::new(
                "tenant_id",
                format!(
                    "this API key is bound to tenant {tenant:?} and cannot write tenant {given:?}"
                ),
            )),
            TenantScope::Any => {
                validate_tenant_id(&given, self.limits)
                    .map_err(|r| FieldError::new("tenant_id", r))?;
                Ok(given)
            }
        }
    }

    fn occurred_at(&self, text: &str) -> Result<i64, FieldError> {
        let limits = self.limits;
        let micros = parse_rfc3339_micros(text).map_err(|r| FieldError::new("occurred_at", r))?;
        if micros > self.received_at + limits.max_future_skew_secs * MICROS_PER_SECOND {
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
}

impl ValidEvent {
    /// Puts each checked value in its place; `checked` is in [`FIELDS`] order. Refuses a
    /// `source` without its `source_seq` and the other way round.
    fn from_checked(
        checked: [Option<Checked>; FIELDS.len()],
        received_at: i64,
    ) -> Result<Self, FieldError> {
        let [
            id,
            tenant_id,
            occurred_at,
            user_id,
            actor_type,
            action,
            resource_type,
            resource_id,
            severity,
            outcome,
            ip_address,
            user_agent,
            request_id,
            reason,
            changes,
            details,
            source,
            source_seq,
        ] = checked;
        let source = match (source, source_seq) {
            (Some(source), Some(seq)) => Some((source.into_text(), seq.into_count())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(FieldError::new(
                    "source_seq",
                    "required with source: the producer's sequence number of this event",
                ));
            }
            (None, Some(_)) => {
                return Err(FieldError::new(
                    "source",
                    "required with source_seq: the producer instance the number counts for",
                ));
            }
        };
        Ok(Self {
            producer_id: id.map(Checked::into_id),
            tenant_id: present(tenant_id).into_text(),
            occurred_at: occurred_at.map(Checked::into_micros),
            received_at,
            user_id: user_id.map(Checked::into_text),
            actor_type: ActorType::ALL[choice(actor_type)],
            action: present(action).into_text(),
            resource_type: present(resource_type).into_text(),
            resource_id: resource_id.map(Checked::into_text),
            severity: Severity::ALL[choice(severity)],
            outcome: Outcome::ALL[choice(outcome)],
            ip_address: ip_address.map(Checked::into_text),
            user_agent: user_agent.map(Checked::into_text),
            request_id: request_id.map(Checked::into_text),
            reason: reason.map(Checked::into_text),
            changes: changes.map(Checked::into_json),
            details: details.map(Checked::into_json),
            source,
        })
    }
}

fn present(checked: Option<Checked>) -> Checked {
    checked.expect("a field that may not be absent was refused when absent")
}

/// An absent choice is the first one.
fn choice(checked: Option<Checked>) -> usize {
    checked.map_or(0, |checked| match checked {
        Checked::Choice(index) => index,
        other => unreachable!("a choice field checks to a choice, not {other:?}"),
    })
}

impl Checked {
    fn into_id(self) -> Uuid {
        match self {
            Checked::Id(id) => id,
            other => unreachable!("the table's kind for this field gives an id, not {other:?}"),
        }
    }

    fn into_micros(self) -> i64 {
        match self {
            Checked::Micros(micros) => micros,
            other => unreachable!("the table's kind for this field gives a time, not {other:?}"),
        }
    }

    fn into_text(self) -> String {
        match self {
            Checked::Text(text) => text,
            other => unreachable!("the table's kind for this field gives text, not {other:?}"),
        }
    }

    fn into_count(self) -> u64 {
        match self {
            Checked::Count(count) => count,
            other => unreachable!("the table's kind for this field gives a count, not {other:?}"),
        }
    }

    fn into_json(self) -> Vec<u8> {
        match self {
            Checked::Json(json) => json,
            other => unreachable!("the table's kind for this field gives JSON, not {other:?}"),
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

fn string(name: &str, value: Value) -> Result<String, FieldError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(FieldError::new(
            name,
            format!("must be a string, not {}", json_kind(&other)),
        )),
    }
}

fn parse_event_id(text: &str) -> Result<Uuid, FieldError> {
    let id = Uuid::try_parse(text)
        .map_err(|_| FieldError::new("id", format!("{text:?} is not a UUID")))?;
    if id.is_nil() {
        return Err(FieldError::new("id", "must not be the nil UUID"));
    }
    Ok(id)
}

fn check_name(name: &str, value: Value, max_chars: usize) -> Result<String, FieldError> {
    let text = string(name, value)?;
    let chars = text.chars().count();
    if chars == 0 || chars > max_chars {
        return Err(FieldError::new(
            name,
            format!("must be 1 to {max_chars} characters, not {chars}"),
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

fn check_identifier(name: &str, value: Value, max_chars: usize) -> Result<String, FieldError> {
    let text = match value {
        Value::String(s) => s,
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => {
            return Err(FieldError::new(
                name,
                format!("must be a string or an integer, not {}", json_kind(&other)),
            ));
        }
    };
    check_text(name, &text, max_chars, false)?;
    if text.is_empty() {
        return Err(FieldError::new(name, "must not be empty (omit it instead)"));
    }
    Ok(text)
}

fn check_free_text(
    name: &str,
    value: Value,
    max_chars: usize,
    multiline: bool,
) -> Result<String, FieldError> {
    let text = string(name, value)?;
    check_text(name, &text, max_chars, multiline)?;
    Ok(text)
}

/// The rule every producer string shares: a length and no control characters (tabs and
/// line breaks too, unless `multiline`), which would garble the logs and terminals it reaches.
pub(crate) fn check_text(
    name: &str,
    text: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<(), FieldError> {
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

fn check_source_seq(name: &str, value: Value) -> Result<u64, FieldError> {
    let out_of_range = || format!("must be an integer from 1 to {MAX_SOURCE_SEQ}");
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(seq @ 1..=MAX_SOURCE_SEQ) => Ok(seq),
            _ => Err(FieldError::new(
                name,
                format!("{n} is out of range: {}", out_of_range()),
            )),
        },
        other => Err(FieldError::new(
            name,
            format!("{}, not {}", out_of_range(), json_kind(&other)),
        )),
    }
}

fn check_choice(name: &str, value: Value, names: &[&str]) -> Result<usize, FieldError> {
    let text = string(name, value)?;
    names.iter().position(|n| *n == text).ok_or_else(|| {
        FieldError::new(name, format!("{text:?} is not one of {}", names.join(", ")))
    })
}

fn check_ip_address(name: &str, value: Value) -> Result<String, FieldError> {
    let text = string(name, value)?;
    text.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| FieldError::new(name, format!("{text:?} is not an IPv4 or IPv6 address")))
}

/// A JSON value's kind in words, for messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
