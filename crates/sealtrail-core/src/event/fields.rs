//! The one table of what a producer may send: each field's name, the kind of value it holds,
//! whether it may be left out, and the limit it is held to.
//!
//! Validation walks [`FIELDS`] in order, so the order is also which error a producer sees
//! first when several fields are wrong, and the order the unknown-field message lists them
//! in. Adding a field is adding a row here and a member to `ValidEvent`.

use super::{ActorType, EventLimits, Outcome, Severity};

/// A field a producer may send and the rule it is held to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    /// The top-level member name.
    pub(crate) name: &'static str,
    /// What its value must be.
    pub(crate) kind: FieldKind,
    /// Whether it may be absent (or `null`, which producers send for "absent").
    pub(crate) presence: Presence,
}

/// Whether a field may be left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Refused when absent.
    Required,
    /// Absent means the server's default: none, a fresh value, or the first choice.
    Optional,
    /// Optional when the API key is bound to a tenant, which then fills it in.
    UnlessKeyBound,
}

/// Reads a field's character limit from the configured limits.
pub(crate) type MaxChars = fn(&EventLimits) -> usize;

/// What a field's value must be. Text is measured in characters, JSON in canonical bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FieldKind {
    /// A UUID other than nil.
    EventId,
    /// A tenant id as [`super::validate_tenant_id`] allows (at most `max_tenant_chars`),
    /// which a bound key's events must repeat exactly.
    Tenant,
    /// RFC 3339, at most `max_future_skew_secs` ahead of the receive time.
    Timestamp,
    /// A dotted name such as `guest.rsvp.updated`: 1 to `max_chars` letters, digits and
    /// `. _ - : /`.
    Name(MaxChars),
    /// A string, or an integer (primary keys sent as numbers): 1 to `max_chars`, no control
    /// characters.
    Identifier(MaxChars),
    /// A string of at most `max_chars` without control characters; `multiline` allows line
    /// breaks and tabs.
    Text {
        /// The limit.
        max_chars: MaxChars,
        /// Whether `\n`, `\r` and `\t` are allowed.
        multiline: bool,
    },
    /// One of these wire names; the first is what an absent field means.
    Choice(&'static [&'static str]),
    /// An IPv4 or IPv6 address, recorded in its shortest spelling.
    IpAddress,
    /// At most `max_changes` `{field, before, after}` objects, `max_details_bytes` of JSON
    /// together (see `freeform`).
    Changes,
    /// A JSON object of at most `max_details_bytes`, `max_json_depth` deep (see `freeform`).
    Details,
    /// A producer's own sequence number: an integer from 1 to [`MAX_SOURCE_SEQ`], sent
    /// together with `source`.
    SourceSeq,
}

/// The largest `source_seq`: 2^53 − 1, so every client (JavaScript's numbers too) can
/// count to it exactly.
pub const MAX_SOURCE_SEQ: u64 = (1 << 53) - 1;

const fn field(name: &'static str, kind: FieldKind, presence: Presence) -> Field {
    Field {
        name,
        kind,
        presence,
    }
}

/// Every field a producer may send, in validation order.
pub(crate) const FIELDS: [Field; 18] = {
    use FieldKind::*;
    use Presence::*;
    [
        field("id", EventId, Optional),
        field("tenant_id", Tenant, UnlessKeyBound),
        field("occurred_at", Timestamp, Optional),
        field("user_id", Identifier(|l| l.max_id_chars), Optional),
        field("actor_type", Choice(&ActorType::WIRE_NAMES), Optional),
        field("action", Name(|l| l.max_name_chars), Required),
        field("resource_type", Name(|l| l.max_name_chars), Required),
        field("resource_id", Identifier(|l| l.max_id_chars), Optional),
        field("severity", Choice(&Severity::WIRE_NAMES), Optional),
        field("outcome", Choice(&Outcome::WIRE_NAMES), Optional),
        field("ip_address", IpAddress, Optional),
        field(
            "user_agent",
            Text {
                max_chars: |l| l.max_user_agent_chars,
                multiline: false,
            },
            Optional,
        ),
        field(
            "request_id",
            Text {
                max_chars: |l| l.max_request_id_chars,
                multiline: false,
            },
            Optional,
        ),
        field(
            "reason",
            Text {
                max_chars: |l| l.max_reason_chars,
                multiline: true,
            },
            Optional,
        ),
        field("changes", Changes, Optional),
        field("details", Details, Optional),
        field("source", Name(|l| l.max_source_chars), Optional),
        field("source_seq", SourceSeq, Optional),
    ]
};

/// Members of a stored record that only the server assigns.
pub(crate) const SERVER_FIELDS: [&str; 3] = ["seq", "received_at", "leaf_hash"];

/// Whether [`FIELDS`] has `name`, as a `match`, which compiles to a length switch: this runs
/// for every member of every event.
pub(crate) fn is_producer_field(name: &str) -> bool {
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
            | "source"
            | "source_seq"
    );
    debug_assert_eq!(known, FIELDS.iter().any(|f| f.name == name));
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_and_the_match_agree() {
        for field in &FIELDS {
            assert!(is_producer_field(field.name), "{}", field.name);
        }
        for name in SERVER_FIELDS
            .iter()
            .chain(&["", "ID", "detail", "changes[0]"])
        {
            assert!(!is_producer_field(name), "{name}");
        }
    }

    #[test]
    fn choices_list_wire_names_in_enum_order_default_first() {
        assert_eq!(ActorType::ALL.map(ActorType::as_str), ActorType::WIRE_NAMES);
        assert_eq!(Severity::ALL.map(Severity::as_str), Severity::WIRE_NAMES);
        assert_eq!(Outcome::ALL.map(Outcome::as_str), Outcome::WIRE_NAMES);
        for (i, severity) in Severity::ALL.into_iter().enumerate() {
            assert_eq!(severity as usize, i);
        }
        let defaults = [ActorType::User.as_str(), "info", Outcome::Success.as_str()];
        let firsts: Vec<&str> = FIELDS
            .iter()
            .filter_map(|f| match f.kind {
                FieldKind::Choice(names) => Some(names[0]),
                _ => None,
            })
            .collect();
        assert_eq!(firsts, defaults);
    }
}
