//! The access log: every read made with a key is appended to the log as an `audit_log.*`
//! event, in the tenant it read, and is durable before the read is answered — a read that
//! cannot be recorded is refused. (What each record holds: `crate::access`.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sealtrail_core::{EventLimits, FieldSealer, PreparedEvent};
use serde_json::Value;

use super::system::AccessRecord;
use super::{AppError, DurableLog};
use crate::config::AccessLogSettings;

/// Who reads: the key, and the client's address and user agent.
pub struct Who<'a> {
    /// The API key's id.
    pub key_id: &'a str,
    /// The TCP peer.
    pub address: Option<SocketAddr>,
    /// Its `User-Agent`, bounded.
    pub user_agent: Option<&'a str>,
}

/// One read to record.
pub struct Read<'a> {
    /// `audit_log.read`, `audit_log.stats`, ...
    pub action: &'static str,
    /// The filter or parameters as the client gave them.
    pub filter: Value,
    /// The tenant the read was confined to, if any.
    pub confined_to: Option<&'a str>,
    /// Tenants whose events it returned, with how many of each (for unconfined reads).
    pub returned: BTreeMap<String, u64>,
    /// Events returned in all (None where it has no meaning, e.g. a subscription).
    pub result_count: Option<u64>,
    /// The resource read, when the read was of one resource's events (a filter naming it,
    /// or one event by id): (resource type, resource id). The record then carries it as its
    /// own resource, so "who looked at guest g-17?" is `resource_id=g-17&action=audit_log.*`.
    pub resource: Option<(String, Option<String>)>,
    /// The event read, for a read of one event by id.
    pub event_id: Option<String>,
}

/// Records reads.
#[derive(Clone)]
pub struct AccessLog {
    /// Where records go.
    pub log: DurableLog,
    /// On or off, and the tenant of reads that belong to none.
    pub settings: AccessLogSettings,
    /// Limits of the records.
    pub limits: EventLimits,
    /// The reader's address and user agent are sealed like any event's.
    pub sealer: Option<Arc<dyn FieldSealer + Send + Sync>>,
}

impl AccessLog {
    /// Appends the access events for `read` and waits until they are durable. A read
    /// confined to one tenant is recorded there; an unconfined one in each tenant whose
    /// events it returned, or — when it returned none, or is not about events of any one
    /// tenant — in `access_log.global_tenant`.
    pub async fn record(&self, who: &Who<'_>, read: Read<'_>) -> Result<(), AppError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let tenants: Vec<(String, Option<u64>)> = match (read.confined_to, read.returned.is_empty())
        {
            (Some(tenant), _) => vec![(tenant.to_owned(), read.result_count)],
            (None, false) => read
                .returned
                .iter()
                .map(|(tenant, n)| (tenant.clone(), Some(*n)))
                .collect(),
            (None, true) => vec![(self.settings.global_tenant.clone(), read.result_count)],
        };
        let events = self.prepare(who, &read, &tenants)?;
        self.log.record(events).await.map_err(|e| {
            AppError::Unavailable(format!(
                "the read was not answered because it could not be recorded in the access log: {e}"
            ))
        })?;
        Ok(())
    }

    /// One access event per tenant in `tenants` (with the count returned in it).
    fn prepare(
        &self,
        who: &Who<'_>,
        read: &Read<'_>,
        tenants: &[(String, Option<u64>)],
    ) -> Result<Vec<PreparedEvent>, AppError> {
        let sealer = self.sealer.as_deref().map(|s| s as &dyn FieldSealer);
        let client_ip = who.address.map(|a| a.ip());
        let received_at = sealtrail_core::time_format::now_micros();
        let resource = read
            .resource
            .as_ref()
            .map(|(kind, id)| (kind.as_str(), id.as_deref()));
        tenants
            .iter()
            .map(|(tenant, count)| {
                AccessRecord {
                    tenant,
                    action: read.action,
                    key_id: who.key_id,
                    filter: &read.filter,
                    result_count: *count,
                    event_id: read.event_id.as_deref(),
                    resource,
                    client_ip,
                    user_agent: who.user_agent,
                }
                .prepare(received_at, &self.limits, sealer)
                .map_err(|e| AppError::Internal(format!("an access record is invalid: {e}")))
            })
            .collect()
    }
}
