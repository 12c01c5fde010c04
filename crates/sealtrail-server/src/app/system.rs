//! The events the server writes about itself, typed: the access record of a read, the
//! record of a crypto-shredding, and the placing and release of a legal hold. Each becomes an ordinary producer event (validated
//! and hashed like any other), so it is queried, streamed and verified like any other.

use std::net::IpAddr;

use sealtrail_core::{EventLimits, FieldError, FieldSealer, PreparedEvent, TenantScope};
use serde::Serialize;
use serde_json::Value;

/// The producer-event shape of a system event (fields absent when `None`).
#[derive(Serialize)]
struct Input<'a, D: Serialize> {
    tenant_id: &'a str,
    action: &'a str,
    actor_type: &'static str,
    user_id: String,
    resource_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<&'a str>,
    severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    details: D,
}

impl<D: Serialize> Input<'_, D> {
    /// Validated (and, with `sealer`, sealed) like a producer's event.
    fn prepare(
        &self,
        received_at: i64,
        limits: &EventLimits,
        sealer: Option<&dyn FieldSealer>,
    ) -> Result<PreparedEvent, FieldError> {
        let value = serde_json::to_value(self).expect("system events serialise to JSON");
        sealtrail_core::prepare_event_sealed(value, &TenantScope::Any, received_at, limits, sealer)
    }
}

/// The record of one read made with an API key (`audit_log.*`), in one tenant.
pub struct AccessRecord<'a> {
    /// Where it is recorded.
    pub tenant: &'a str,
    /// `audit_log.read`, `audit_log.stats`, ...
    pub action: &'a str,
    /// The key that read.
    pub key_id: &'a str,
    /// The filter or parameters as the client gave them.
    pub filter: &'a Value,
    /// Events returned (in this tenant), where that has a meaning.
    pub result_count: Option<u64>,
    /// The event read, for a read of one event by id.
    pub event_id: Option<&'a str>,
    /// The resource read, when the read was of one resource: (type, id).
    pub resource: Option<(&'a str, Option<&'a str>)>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The client's user agent.
    pub user_agent: Option<&'a str>,
}

#[derive(Serialize)]
struct AccessDetails<'a> {
    key_id: &'a str,
    filter: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
}

impl AccessRecord<'_> {
    /// The event, received at `received_at` (UTC µs); the reader's address and user agent
    /// are sealed like any event's.
    pub fn prepare(
        &self,
        received_at: i64,
        limits: &EventLimits,
        sealer: Option<&dyn FieldSealer>,
    ) -> Result<PreparedEvent, FieldError> {
        let (resource_type, resource_id) = self.resource.unwrap_or(("audit_log", None));
        Input {
            tenant_id: self.tenant,
            action: self.action,
            actor_type: "service",
            user_id: format!("key:{}", self.key_id),
            resource_type,
            resource_id,
            severity: "info",
            outcome: Some("success"),
            ip_address: self.client_ip.map(|ip| ip.to_string()),
            user_agent: self.user_agent,
            reason: None,
            details: AccessDetails {
                key_id: self.key_id,
                filter: self.filter,
                result_count: self.result_count,
                event_id: self.event_id,
            },
        }
        .prepare(received_at, limits, sealer)
    }
}

/// The record of a crypto-shredding: a tenant's data keys, or one subject's, destroyed.
pub struct ShreddingRecord<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The admin key that asked.
    pub key_id: &'a str,
    /// SHA-256 (hex) of the subject id, for a subject's shredding.
    pub subject_sha256: Option<&'a str>,
    /// Whether the key had ever been used.
    pub key_existed: bool,
}

#[derive(Serialize)]
struct ShreddingDetails<'a> {
    subject_sha256: Option<&'a str>,
    key_existed: bool,
}

impl ShreddingRecord<'_> {
    /// The event. Not sealed: it holds nothing sensitive, and the tenant's key may be gone.
    pub fn prepare(
        &self,
        received_at: i64,
        limits: &EventLimits,
    ) -> Result<PreparedEvent, FieldError> {
        let (action, resource_type, resource_id) = match self.subject_sha256 {
            Some(hash) => ("subject.shredded", "data_subject", hash),
            None => ("tenant.shredded", "tenant", self.tenant),
        };
        Input {
            tenant_id: self.tenant,
            action,
            actor_type: "service",
            user_id: format!("key:{}", self.key_id),
            resource_type,
            resource_id: Some(resource_id),
            severity: "warning",
            outcome: None,
            ip_address: None,
            user_agent: None,
            reason: Some(
                "crypto-shredding: the data key was destroyed; its fields read as [shredded]",
            ),
            details: ShreddingDetails {
                subject_sha256: self.subject_sha256,
                key_existed: self.key_existed,
            },
        }
        .prepare(received_at, limits, None)
    }
}

/// A legal hold placed or released (`legal_hold.placed` / `legal_hold.released`), in the
/// hold's tenant.
pub struct HoldRecord<'a> {
    /// The hold, as it is after the change.
    pub hold: &'a sealtrail_core::holds::Hold,
    /// True for the release, false for the placing.
    pub released: bool,
    /// Why: the hold's reason when placed, the release's when released.
    pub reason: &'a str,
    /// The admin key that asked.
    pub key_id: &'a str,
}

#[derive(Serialize)]
struct HoldDetails<'a> {
    hold_id: &'a str,
    resource_type: Option<&'a str>,
    resource_id: Option<&'a str>,
}

impl HoldRecord<'_> {
    /// The event: about the held resource, or about the tenant for a tenant-wide hold. Not
    /// sealed: it holds the admin's reason, no producer data.
    pub fn prepare(
        &self,
        received_at: i64,
        limits: &EventLimits,
    ) -> Result<PreparedEvent, FieldError> {
        let hold = self.hold;
        let (resource_type, resource_id) = match hold.resource_type.as_deref() {
            Some(rtype) => (rtype, hold.resource_id.as_deref()),
            None => ("tenant", Some(hold.tenant.as_str())),
        };
        Input {
            tenant_id: &hold.tenant,
            action: if self.released {
                "legal_hold.released"
            } else {
                "legal_hold.placed"
            },
            actor_type: "service",
            user_id: format!("key:{}", self.key_id),
            resource_type,
            resource_id,
            severity: "warning",
            outcome: None,
            ip_address: None,
            user_agent: None,
            reason: Some(self.reason),
            details: HoldDetails {
                hold_id: &hold.id,
                resource_type: hold.resource_type.as_deref(),
                resource_id: hold.resource_id.as_deref(),
            },
        }
        .prepare(received_at, limits, None)
    }
}

/// The record of a signing-key rotation (`log.signing_key_rotated`), in the server's own
/// tenant: the statement handing the log to the new key, signed by both keys.
pub struct RotationRecord<'a> {
    /// The server's own tenant.
    pub tenant: &'a str,
    /// Who asked: `key:<id>`.
    pub by: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The signed statement (a signed note).
    pub statement: &'a str,
    /// The tree size from which the new key signs: this record's seq.
    pub from_size: u64,
    /// The retired key.
    pub old_vkey: &'a str,
    /// The new key.
    pub new_vkey: &'a str,
}

#[derive(Serialize)]
struct RotationDetails<'a> {
    statement: &'a str,
    from_size: u64,
    old_vkey: &'a str,
    new_vkey: &'a str,
}

impl RotationRecord<'_> {
    /// The event. Not sealed: it holds public keys only.
    pub fn prepare(
        &self,
        received_at: i64,
        limits: &EventLimits,
    ) -> Result<PreparedEvent, FieldError> {
        Input {
            tenant_id: self.tenant,
            action: sealtrail_core::checkpoint::SIGNING_KEY_ROTATED_ACTION,
            actor_type: "service",
            user_id: self.by.to_owned(),
            resource_type: "log",
            resource_id: None,
            severity: "warning",
            outcome: Some("success"),
            ip_address: None,
            user_agent: None,
            reason: Some(self.reason),
            details: RotationDetails {
                statement: self.statement,
                from_size: self.from_size,
                old_vkey: self.old_vkey,
                new_vkey: self.new_vkey,
            },
        }
        .prepare(received_at, limits, None)
    }
}

/// The record of a retention run (`retention.run`): in each tenant whose events it
/// changed, that tenant's counts; in the server's own tenant, the totals.
pub struct RetentionRecord<'a> {
    /// Where it is recorded.
    pub tenant: &'a str,
    /// Who ran it: `schedule`, or `key:<id>`.
    pub by: &'a str,
    /// The run's label (segments written carry it).
    pub run: &'a str,
    /// The moment the policies were applied at (RFC 3339).
    pub at: &'a str,
    /// The tree size the run covered.
    pub through_seq: u64,
    /// What was done to the tenant's events (the totals in the server's tenant).
    pub counts: &'a crate::app::retention_run::TenantCounts,
    /// Segments written, adopted and removed (in the server's tenant only).
    pub segments: Option<RetentionSegments<'a>>,
}

/// The segments of a run.
#[derive(Serialize)]
pub struct RetentionSegments<'a> {
    /// Written.
    pub written: &'a [String],
    /// Found published but unrecorded, and recorded.
    pub adopted: &'a [String],
    /// Removed.
    pub removed: &'a [String],
    /// PostgreSQL month partitions dropped (every event in them deleted).
    pub partitions_dropped: &'a [String],
}

#[derive(Serialize)]
struct RetentionDetails<'a> {
    run: &'a str,
    at: &'a str,
    through_seq: u64,
    #[serde(flatten)]
    counts: &'a crate::app::retention_run::TenantCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<&'a RetentionSegments<'a>>,
}

impl RetentionRecord<'_> {
    /// The event. Not sealed: counts and names, no producer data.
    pub fn prepare(
        &self,
        received_at: i64,
        limits: &EventLimits,
    ) -> Result<PreparedEvent, FieldError> {
        Input {
            tenant_id: self.tenant,
            action: "retention.run",
            actor_type: "service",
            user_id: self.by.to_owned(),
            resource_type: "retention_run",
            resource_id: Some(self.run),
            severity: if self.counts.deleted > 0 {
                "warning"
            } else {
                "info"
            },
            outcome: Some("success"),
            ip_address: None,
            user_agent: None,
            reason: None,
            details: RetentionDetails {
                run: self.run,
                at: self.at,
                through_seq: self.through_seq,
                counts: self.counts,
                segments: self.segments.as_ref(),
            },
        }
        .prepare(received_at, limits, None)
    }
}
