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

use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;

use crate::app::access::Who;
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

pub use crate::app::access::Read;
pub use crate::app::reads::filtered_resource;

impl Requester {
    /// The reader as the access log names them.
    pub fn who<'a>(&'a self, auth: &'a Auth) -> Who<'a> {
        Who {
            key_id: &auth.0.key_id,
            address: self.address,
            user_agent: self.user_agent.as_deref(),
        }
    }
}

/// Appends the access events for `read` and waits until they are durable.
pub async fn record(
    state: &AppState,
    auth: &Auth,
    requester: &Requester,
    read: Read<'_>,
) -> Result<(), ApiError> {
    Ok(state.access_log.record(&requester.who(auth), read).await?)
}

/// Records a stream subscription (`audit_log.subscribe`) with the filter it follows.
pub async fn record_subscription(
    state: &AppState,
    auth: &Auth,
    requester: &Requester,
    recorded: Value,
    filter: &sealtrail_core::EventFilter,
) -> Result<(), ApiError> {
    let read = Read {
        action: "audit_log.subscribe",
        filter: recorded,
        confined_to: filter.tenant_id.as_deref(),
        returned: Default::default(),
        result_count: None,
        resource: filtered_resource(filter),
        event_id: None,
    };
    record(state, auth, requester, read).await
}

/// The query parameters as a JSON object (repeated keys keep the last value).
pub fn params_object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let map: serde_json::Map<String, Value> =
        pairs.map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
    Value::Object(map)
}
