//! Legal holds: what a hold is and what it covers, with no storage, so that retention and
//! archival can decide what they may delete from the holds alone.
//!
//! A hold names a tenant and, optionally, a resource type and a resource of that type. It
//! covers every event of the tenant, every event of that resource type, or the events of
//! that one resource — until it is released. A released hold covers nothing.

use crate::event::{EventLimits, FieldError, validate_tenant_id};

/// Longest reason for placing or releasing a hold, in characters.
pub const MAX_HOLD_REASON_CHARS: usize = 1024;

/// How a hold ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRelease {
    /// UTC microseconds.
    pub at: i64,
    /// The key that released it.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// A legal hold: deletion of what it covers is refused while it is active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// UUIDv7, as text.
    pub id: String,
    /// The tenant it is in.
    pub tenant: String,
    /// Only events of this resource type (`None`: every event of the tenant).
    pub resource_type: Option<String>,
    /// Only events of this resource (needs `resource_type`).
    pub resource_id: Option<String>,
    /// Why it was placed (the matter, the request).
    pub reason: String,
    /// The key that placed it.
    pub placed_by: String,
    /// UTC microseconds.
    pub placed_at: i64,
    /// Set once released.
    pub release: Option<HoldRelease>,
}

impl Hold {
    /// Not released.
    pub fn is_active(&self) -> bool {
        self.release.is_none()
    }

    /// Whether this hold forbids deleting an event of `tenant` about the resource
    /// (`resource_type`, `resource_id`). A released hold covers nothing.
    ///
    /// ```
    /// # use sealtrail_core::holds::Hold;
    /// let hold = Hold {
    ///     id: "h".into(), tenant: "acme".into(),
    ///     resource_type: Some("guest".into()), resource_id: None,
    ///     reason: "litigation".into(), placed_by: "k".into(), placed_at: 0, release: None,
    /// };
    /// assert!(hold.covers("acme", "guest", Some("guest-7")));
    /// assert!(!hold.covers("acme", "vendor", Some("guest-7")));
    /// ```
    pub fn covers(&self, tenant: &str, resource_type: &str, resource_id: Option<&str>) -> bool {
        if !self.is_active() || self.tenant != tenant {
            return false;
        }
        match (self.resource_type.as_deref(), self.resource_id.as_deref()) {
            (None, _) => true,
            (Some(held_type), None) => held_type == resource_type,
            (Some(held_type), Some(held_id)) => {
                held_type == resource_type && resource_id == Some(held_id)
            }
        }
    }
}

/// Checks what a hold request names, each refusal naming its field: the tenant id (as
/// events' are checked), `resource_id` only with `resource_type`, and the reason.
pub fn validate_hold(
    tenant: &str,
    resource_type: Option<&str>,
    resource_id: Option<&str>,
    reason: &str,
    limits: &EventLimits,
) -> Result<(), FieldError> {
    validate_tenant_id(tenant, limits).map_err(|r| FieldError::new("tenant_id", r))?;
    if resource_id.is_some() && resource_type.is_none() {
        return Err(FieldError::new(
            "resource_id",
            "needs resource_type: a resource is named by its type and id",
        ));
    }
    for (field, value) in [
        ("resource_type", resource_type),
        ("resource_id", resource_id),
    ] {
        if value.is_some_and(|v| v.trim().is_empty()) {
            return Err(FieldError::new(field, "must not be empty"));
        }
    }
    validate_hold_reason("reason", reason)
}

/// Checks a reason for placing or releasing a hold: 1 to [`MAX_HOLD_REASON_CHARS`]
/// characters, not only whitespace.
pub fn validate_hold_reason(field: &str, reason: &str) -> Result<(), FieldError> {
    let chars = reason.chars().count();
    if reason.trim().is_empty() || chars > MAX_HOLD_REASON_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_HOLD_REASON_CHARS} characters (and not only spaces)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(resource_type: Option<&str>, resource_id: Option<&str>) -> Hold {
        Hold {
            id: "0190-hold".into(),
            tenant: "acme".into(),
            resource_type: resource_type.map(str::to_owned),
            resource_id: resource_id.map(str::to_owned),
            reason: "litigation 2024-17".into(),
            placed_by: "k1".into(),
            placed_at: 1,
            release: None,
        }
    }

    #[test]
    fn covers_follows_the_scope_of_the_hold() {
        let tenant_wide = hold(None, None);
        let of_type = hold(Some("guest"), None);
        let of_resource = hold(Some("guest"), Some("g-1"));
        // (hold, tenant, resource_type, resource_id, covered)
        let table: [(&Hold, &str, &str, Option<&str>, bool); 14] = [
            (&tenant_wide, "acme", "guest", Some("g-1"), true),
            (&tenant_wide, "acme", "vendor", None, true),
            (&tenant_wide, "globex", "guest", Some("g-1"), false),
            (&of_type, "acme", "guest", Some("g-1"), true),
            (&of_type, "acme", "guest", Some("g-2"), true),
            (&of_type, "acme", "guest", None, true),
            (&of_type, "acme", "vendor", Some("g-1"), false),
            (&of_type, "globex", "guest", Some("g-1"), false),
            (&of_resource, "acme", "guest", Some("g-1"), true),
            (&of_resource, "acme", "guest", Some("g-2"), false),
            (&of_resource, "acme", "guest", None, false),
            (&of_resource, "acme", "vendor", Some("g-1"), false),
            (&of_resource, "globex", "guest", Some("g-1"), false),
            // Case matters, as it does in every other comparison of ids.
            (&of_resource, "acme", "Guest", Some("g-1"), false),
        ];
        for (h, tenant, rtype, rid, covered) in table {
            assert_eq!(
                h.covers(tenant, rtype, rid),
                covered,
                "{h:?} on ({tenant}, {rtype}, {rid:?})"
            );
        }
    }

    #[test]
    fn a_released_hold_covers_nothing() {
        for mut h in [
            hold(None, None),
            hold(Some("guest"), None),
            hold(Some("guest"), Some("g-1")),
        ] {
            assert!(h.covers("acme", "guest", Some("g-1")));
            h.release = Some(HoldRelease {
                at: 2,
                by: "k2".into(),
                reason: "matter closed".into(),
            });
            assert!(!h.covers("acme", "guest", Some("g-1")), "{h:?}");
        }
    }

    #[test]
    fn bad_hold_requests_name_their_field() {
        let limits = EventLimits::default();
        let long = "x".repeat(MAX_HOLD_REASON_CHARS + 1);
        let edge = "é".repeat(MAX_HOLD_REASON_CHARS);
        // (tenant, resource_type, resource_id, reason, refused field)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
        );
        let table: [Case; 9] = [
            ("acme", None, None, "litigation", None),
            ("acme", Some("guest"), Some("g-1"), "litigation", None),
            ("acme", Some("guest"), None, &edge, None),
            ("", None, None, "litigation", Some("tenant_id")),
            ("ac me", None, None, "litigation", Some("tenant_id")),
            ("acme", None, Some("g-1"), "litigation", Some("resource_id")),
            ("acme", Some(" "), None, "litigation", Some("resource_type")),
            ("acme", None, None, "  ", Some("reason")),
            ("acme", None, None, &long, Some("reason")),
        ];
        for (tenant, rtype, rid, reason, refused) in table {
            let result = validate_hold(tenant, rtype, rid, reason, &limits);
            assert_eq!(
                result.as_ref().err().map(|e| e.field.as_str()),
                refused,
                "({tenant:?}, {rtype:?}, {rid:?}, {} chars): {result:?}",
                reason.chars().count()
            );
        }
    }
}
