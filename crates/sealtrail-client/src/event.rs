//! Typed audit events, and the request context a middleware attaches to them.
//!
//! An [`Event`] serialises to exactly the JSON `POST /v1/events` takes; members left unset
//! are left out. The producer stamps `id`, `occurred_at`, `source` and `source_seq` when
//! the event is queued, so a retry or a replay from the spool is the same event.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};

pub use sealtrail_core::event::{ActorType, Outcome, Severity};

/// One `{field, before, after}` entry of an event's `changes`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// What changed, e.g. `dietary_restriction`.
    pub field: String,
    /// The value before (JSON null when it had none).
    pub before: Value,
    /// The value after.
    pub after: Value,
}

/// An audit event. Build one with [`Event::new`] and the setters.
///
/// ```
/// use sealtrail_client::event::{Event, Severity};
/// let event = Event::new("guest.dietary_restriction.updated", "guest")
///     .resource_id("4711")
///     .user("coord:ines.marques")
///     .severity(Severity::Warning)
///     .reason("Guest called: severe peanut allergy")
///     .change("dietary_restriction", "none", "peanut allergy (anaphylaxis)");
/// assert_eq!(event.action, "guest.dietary_restriction.updated");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Event {
    /// The event id; stamped with a UUIDv7 when queued if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// The tenant (unset: the producer's default, or the key's tenant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// RFC 3339; stamped with the time it was queued if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// Who acted: the application's user, never a database role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What kind of actor (`user` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<ActorType>,
    /// What happened, e.g. `guest.rsvp.updated`.
    pub action: String,
    /// What it happened to, e.g. `guest`.
    pub resource_type: String,
    /// Which one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// How bad (`info` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Whether it succeeded (`success` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// From where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddr>,
    /// With what.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Which request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Before and after of each changed field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Anything else, as a JSON object.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
    /// The producer instance; stamped when queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its number for this event; stamped when queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_seq: Option<u64>,
}

impl Event {
    /// An event of `action` on a resource of `resource_type`.
    pub fn new(action: impl Into<String>, resource_type: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource_type: resource_type.into(),
            ..Self::default()
        }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant.into());
        self
    }

    /// Sets the resource id.
    pub fn resource_id(mut self, id: impl Into<String>) -> Self {
        self.resource_id = Some(id.into());
        self
    }

    /// Sets the acting user.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the kind of actor.
    pub fn actor_type(mut self, actor_type: ActorType) -> Self {
        self.actor_type = Some(actor_type);
        self
    }

    /// Sets the severity.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Sets the client's address.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip_address = Some(ip);
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Sets the user agent.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Adds a change of `field` from `before` to `after`.
    pub fn change(
        mut self,
        field: impl Into<String>,
        before: impl Serialize,
        after: impl Serialize,
    ) -> Self {
        self.changes.push(Change {
            field: field.into(),
            before: to_value(before),
            after: to_value(after),
        });
        self
    }

    /// Adds a `details` member.
    pub fn detail(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.details.insert(key.into(), to_value(value));
        self
    }

    /// Fills what the event leaves unset from the request it happened in.
    pub fn in_context(mut self, context: &RequestContext) -> Self {
        fill(&mut self.user_id, &context.user_id);
        fill(&mut self.tenant_id, &context.tenant_id);
        fill(&mut self.ip_address, &context.ip_address);
        fill(&mut self.user_agent, &context.user_agent);
        fill(&mut self.request_id, &context.request_id);
        self
    }
}

fn fill<T: Clone>(slot: &mut Option<T>, from: &Option<T>) {
    if slot.is_none() {
        slot.clone_from(from);
    }
}

fn to_value(value: impl Serialize) -> Value {
    // Only values that cannot be JSON (maps with non-string keys) fail; they become null
    // rather than panicking in the caller's request path.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// What a request tells about the events that happen while it is handled: who, from where,
/// with what, and which request. The `sealtrail-tower` layer puts one in each request's
/// extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The application's user (from the authenticated session).
    pub user_id: Option<String>,
    /// The tenant the request is for.
    pub tenant_id: Option<String>,
    /// The client's address (after the trusted proxies).
    pub ip_address: Option<IpAddr>,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
    /// Its `x-request-id`.
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_members_are_left_out_and_the_context_fills_only_what_is_unset() {
        let event = Event::new("guest.rsvp.updated", "guest");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"action": "guest.rsvp.updated", "resource_type": "guest"})
        );
        let context = RequestContext {
            user_id: Some("coord:ines".into()),
            ip_address: Some("192.0.2.7".parse().unwrap()),
            request_id: Some("r-1".into()),
            ..RequestContext::default()
        };
        let event = Event::new("guest.dietary_restriction.updated", "guest")
            .user("coord:bruno")
            .severity(Severity::Warning)
            .change("dietary_restriction", Value::Null, "vegan")
            .detail("guest_count", 120)
            .in_context(&context);
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({
                "action": "guest.dietary_restriction.updated", "resource_type": "guest",
                "user_id": "coord:bruno", "severity": "warning", "ip_address": "192.0.2.7",
                "request_id": "r-1",
                "changes": [{"field": "dietary_restriction", "before": null, "after": "vegan"}],
                "details": {"guest_count": 120},
            })
        );
    }
}
