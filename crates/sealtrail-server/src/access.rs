//! Access logging: every read made with a key — a query, an event by id with its proof, a
//! stats query, a consistency proof, a stream subscription — is itself appended to the log
//! as an event, in the tenant it read, before the answer is sent. So "who looked at this
//! guest's records?" is an ordinary query (`action=audit_log.*`).
//!
//! The event: `action` `audit_log.read` (events listed), `audit_log.read_event` (one event
//! and its proof), `audit_log.stats`, `audit_log.proof`, `audit_log.subscribe`;
//! `actor_type` `service`, `user_id` `key:<key id>`; as resource the one resource read
//! (when a filter named it, or one event was read by id), otherwise `audit_log`; the
//! client's address and user agent; and in `details` the key id, the filter as given, the
//! result count and the event id of a read by id. A read confined to one tenant is
//! recorded there; an unconfined one in each tenant whose events it returned, or — when it
//! returned none, or is not about events of any one tenant (stats over all tenants,
//! consistency proofs, unconfined subscriptions) — in `access_log.global_tenant`.
//!
//! If the record cannot be made durable, the read is refused (503): no read leaves no trace.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;

use crate::app::system::AccessRecord;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// The client's address, put on every request by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Longest user agent kept (the event limit's default).
const MAX_USER_AGENT_CHARS: usize = 512;

/// Who is asking, as the access record names them: address and user agent.
#[derive(Clone, Debug, Default)]
pub struct Requester {
    /// The client's address (the TCP peer).
    pub address: Option<SocketAddr>,
    /// Its `User-Agent`, cut to a bound.
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Requester {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            address: parts.extensions.get::<ClientAddr>().map(|c| c.0),
            user_agent: parts
                .headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        })
    }
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

/// Appends the access events for `read` and waits until they are durable.
pub async fn record(
    state: &AppState,
    auth: &Auth,
    requester: &Requester,
    read: Read<'_>,
) -> Result<(), ApiError> {
    let settings = &state.config.access_log;
    if !settings.enabled {
        return Ok(());
    }
    let tenants: Vec<(String, Option<u64>)> = match (read.confined_to, read.returned.is_empty()) {
        (Some(tenant), _) => vec![(tenant.to_owned(), read.result_count)],
        (None, false) => read
            .returned
            .iter()
            .map(|(tenant, n)| (tenant.clone(), Some(*n)))
            .collect(),
        (None, true) => vec![(settings.global_tenant.clone(), read.result_count)],
    };
    let events = prepare_records(state, auth, requester, &read, &tenants)?;
    state.log.record(events).await.map_err(|e| {
        ApiError::unavailable(format!(
            "the read was not answered because it could not be recorded in the access log: {e}"
        ))
    })?;
    Ok(())
}

/// One access event per tenant in `tenants` (with the count returned in it).
fn prepare_records(
    state: &AppState,
    auth: &Auth,
    requester: &Requester,
    read: &Read<'_>,
    tenants: &[(String, Option<u64>)],
) -> Result<Vec<sealtrail_core::PreparedEvent>, ApiError> {
    let sealer = state
        .opener
        .cipher()
        .map(|c| c as &dyn sealtrail_core::FieldSealer);
    let client_ip = requester.address.map(|a| a.ip());
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
                key_id: &auth.0.key_id,
                filter: &read.filter,
                result_count: *count,
                event_id: read.event_id.as_deref(),
                resource,
                client_ip,
                user_agent: requester.user_agent.as_deref(),
            }
            .prepare(received_at, &state.config.limits.event, sealer)
            .map_err(|e| ApiError::internal(format!("an access record is invalid: {e}")))
        })
        .collect()
}

/// The resource a filter names, if it names one (`resource_type`, and `resource_id`).
pub fn filtered_resource(filter: &sealtrail_core::EventFilter) -> Option<(String, Option<String>)> {
    match (&filter.resource_type, &filter.resource_id) {
        (Some(kind), id) => Some((kind.clone(), id.clone())),
        (None, Some(id)) => Some(("unknown".into(), Some(id.clone()))),
        (None, None) => None,
    }
}

/// The query parameters as a JSON object (repeated keys keep the last value).
pub fn params_object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let map: serde_json::Map<String, Value> =
        pairs.map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
    Value::Object(map)
}
