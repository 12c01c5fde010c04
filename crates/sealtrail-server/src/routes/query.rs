//! Reads: `GET /v1/events`, `GET /v1/events/{id}`, `GET /v1/stats`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use sealtrail_core::query::{EventFilterParams, PageRequest, StatsRequest};
use sealtrail_core::time_format::format_micros;
use sealtrail_core::{FieldError, Scope};
use uuid::Uuid;

use super::{Params, raw_json};
use crate::access::{self, Requester};
use crate::api::{InclusionProof, StatsResponse, StatsRow};
use crate::app::reads::{MAX_SEARCH_LIMIT, Search};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::integrity::checkpoint_view;
use crate::state::AppState;

/// Query events.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        EventFilterParams,
        ("order" = Option<String>, Query, description = "desc (newest first, default) or asc"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("include_archived" = Option<bool>, Query, description = "Also read the archive segments, for events whose bodies retention moved there (slower: every segment is read and verified)"),
    ),
    responses(
        (status = 200, description = "A page of events", body = crate::api::EventPage),
        (status = 400, description = "A parameter is invalid", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Key lacks the read scope, or asks for another tenant", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_events(
    State(state): State<AppState>,
    auth: Auth,
    requester: Requester,
    params: Params,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let mut request =
        PageRequest::from_params(params.pairs()).map_err(ApiError::invalid_parameter)?;
    request.filter.tenant_id = auth.confine_tenant(request.filter.tenant_id.take())?;
    request.scope = auth.0.tenant_id.clone();
    let order = request.order;
    let recorded = access::params_object(params.pairs());
    let page = state
        .reads
        .events(&requester.who(&auth), request, recorded)
        .await?;
    let next = page.next.map(|c| c.encode(order));
    Ok(events_body(&state, &page.events, next))
}

/// `{"events": [...], "next_cursor": ...}`, each event's stored JSON spliced in (opened).
fn events_body(
    state: &AppState,
    events: &[sealtrail_core::StoredEvent],
    next: Option<String>,
) -> Response {
    let mut body =
        Vec::with_capacity(events.iter().map(|e| e.record.len() + 100).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&state.opener.api_json(event));
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    body.extend_from_slice(&serde_json::to_vec(&next).expect("an optional string serialises"));
    body.push(b'}');
    raw_json(StatusCode::OK, body)
}

/// One event with its inclusion proof against the latest signed checkpoint (or, with
/// `tree_size`, against the tree of that size), and (with `record=true`) the verbatim stored
/// record the leaf hash covers.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    params(
        ("id" = String, Path, description = "Event id (UUID)"),
        ("tree_size" = Option<u64>, Query, description = "Prove against the tree of this size (from the event's seq to the latest checkpoint's size), a checkpoint the client already holds; default the latest checkpoint"),
        ("record" = Option<bool>, Query, description = "true: also return `record`, the verbatim stored record (with field encryption, sealed values stay sealed)"),
        ("include_archived" = Option<bool>, Query, description = "Also look in the archive for an event whose body retention moved there (slower)"),
    ),
    responses(
        (status = 200, description = "The event and its proof", body = crate::api::EventWithProof),
        (status = 400, description = "Not a UUID", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Key lacks the read scope", body = crate::error::ErrorBody),
        (status = 404, description = "No such event (or not the key's tenant)", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_event(
    State(state): State<AppState>,
    auth: Auth,
    requester: Requester,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let id = Uuid::try_parse(&id).map_err(|_| {
        ApiError::invalid_parameter(FieldError::new("id", format!("{id:?} is not a UUID")))
    })?;
    let EventParams {
        tree_size,
        with_record,
        include_archived,
    } = event_params(&params)?;
    let proven = state
        .reads
        .event(
            &requester.who(&auth),
            id,
            tree_size,
            include_archived,
            |tenant| auth.0.may_see(tenant),
        )
        .await?;
    let proof = InclusionProof {
        leaf_index: proven.leaf_index,
        tree_size: proven.tree_size,
        hashes: proven.hashes.iter().map(hex::encode).collect(),
    };
    let mut body = b"{\"event\":".to_vec();
    body.extend_from_slice(&state.opener.api_json(&proven.event));
    if with_record {
        // Canonical JSON is UTF-8; as a JSON string it decodes back to the exact bytes.
        let record = std::str::from_utf8(&proven.event.record).map_err(|_| {
            ApiError::internal(format!(
                "the stored record of event {id} is not UTF-8; run `sealtrail verify`"
            ))
        })?;
        body.extend_from_slice(b",\"record\":");
        body.extend_from_slice(&serde_json::to_vec(record).expect("a string serialises"));
    }
    body.extend_from_slice(b",\"proof\":");
    body.extend_from_slice(&serde_json::to_vec(&proof).expect("plain struct"));
    body.extend_from_slice(b",\"checkpoint\":");
    let view = checkpoint_view(state.verifier.origin(), &proven.checkpoint);
    body.extend_from_slice(&serde_json::to_vec(&view).expect("plain struct"));
    body.push(b'}');
    Ok(raw_json(StatusCode::OK, body))
}

/// `GET /v1/events/{id}`'s `tree_size` and `record`, as given.
/// `GET /v1/events/{id}`'s parameters.
struct EventParams {
    tree_size: Option<u64>,
    with_record: bool,
    include_archived: bool,
}

fn event_params(params: &Params) -> Result<EventParams, ApiError> {
    let (mut tree_size, mut record, mut include_archived) = (None, false, false);
    for (key, value) in params.pairs() {
        match key {
            "include_archived" => {
                include_archived = value.parse::<bool>().map_err(|_| {
                    ApiError::invalid_parameter(FieldError::new(
                        "include_archived",
                        format!("{value:?} is not true or false"),
                    ))
                })?;
            }
            "tree_size" => {
                tree_size = Some(value.parse::<u64>().ok().filter(|&n| n >= 1).ok_or_else(
                    || {
                        ApiError::invalid_parameter(FieldError::new(
                            "tree_size",
                            format!("{value:?} is not a tree size (a number from 1)"),
                        ))
                    },
                )?);
            }
            "record" => {
                record = value.parse::<bool>().map_err(|_| {
                    ApiError::invalid_parameter(FieldError::new(
                        "record",
                        format!("{value:?} is not true or false"),
                    ))
                })?;
            }
            other => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    other,
                    "unknown parameter; known are tree_size, record, include_archived",
                )));
            }
        }
    }
    Ok(EventParams {
        tree_size,
        with_record: record,
        include_archived,
    })
}

/// Counts of events by severity, action or resource type, optionally per hour or day.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "events",
    params(
        ("top" = Option<u32>, Query, description = "Only the N largest counts (1 to 1000), largest first; total still counts every group; not with interval"),
        ("group_by" = Option<String>, Query, description = "severity (default), action, resource_type or user_id (the most active actors; an empty key counts events without a user)"),
        ("interval" = Option<String>, Query, description = "hour or day buckets"),
        EventFilterParams,
    ),
    responses(
        (status = 200, description = "Counts", body = StatsResponse),
        (status = 400, description = "A parameter is invalid", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Key lacks the read scope, or asks for another tenant", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    auth: Auth,
    requester: Requester,
    params: Params,
) -> Result<axum::Json<StatsResponse>, ApiError> {
    auth.require(Scope::Read)?;
    let mut request =
        StatsRequest::from_params(params.pairs()).map_err(ApiError::invalid_parameter)?;
    request.filter.tenant_id = auth.confine_tenant(request.filter.tenant_id.take())?;
    request.scope = auth.0.tenant_id.clone();
    let (group_by, interval, top) = (request.group_by, request.interval, request.top);
    let recorded = access::params_object(params.pairs());
    let mut rows = state
        .reads
        .stats(&requester.who(&auth), request, recorded)
        .await?;
    let total = rows.iter().map(|r| r.count).sum();
    if let Some(top) = top {
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        rows.truncate(top);
    }
    Ok(axum::Json(StatsResponse {
        group_by: group_by.as_str().to_owned(),
        interval: interval.map(|i| i.as_str().to_owned()),
        total,
        rows: rows
            .into_iter()
            .map(|r| StatsRow {
                bucket: r.bucket.map(format_micros),
                key: r.key,
                count: r.count,
            })
            .collect(),
    }))
}

/// Events of one tenant whose encrypted field equals a value, found through the blind index
/// (newest first). The index follows the log a moment behind ingest.
#[utoipa::path(
    get,
    path = "/v1/events/search",
    tag = "events",
    params(
        ("tenant_id" = Option<String>, Query, description = "The tenant (a tenant-bound key's own by default)"),
        ("field" = String, Query, description = "A blind-indexed encrypted field (encryption.blind_index)"),
        ("equals" = String, Query, description = "The value, compared as a JSON string"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)"),
    ),
    responses(
        (status = 200, description = "Matching events, opened (next_cursor is always null)", body = crate::api::EventPage),
        (status = 409, description = "No blind index is configured", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn search_events(
    State(state): State<AppState>,
    auth: Auth,
    requester: Requester,
    params: Params,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let (tenant, field, equals, limit) = search_params(&params)?;
    let required = |name: &str| ApiError::invalid_parameter(FieldError::new(name, "required"));
    let search = Search {
        tenant: auth
            .confine_tenant(tenant)?
            .ok_or_else(|| required("tenant_id"))?,
        field: field.ok_or_else(|| required("field"))?,
        equals: equals.ok_or_else(|| required("equals"))?,
        limit,
    };
    let events = state.reads.search(&requester.who(&auth), search).await?;
    Ok(events_body(&state, &events, None))
}

/// `tenant_id`, `field`, `equals` and `limit` (default 100) as given.
#[allow(clippy::type_complexity)]
fn search_params(
    params: &Params,
) -> Result<(Option<String>, Option<String>, Option<String>, usize), ApiError> {
    let (mut tenant, mut field, mut equals, mut limit) = (None, None, None, 100usize);
    for (key, value) in params.pairs() {
        match key {
            "tenant_id" => tenant = Some(value.to_owned()),
            "field" => field = Some(value.to_owned()),
            "equals" => equals = Some(value.to_owned()),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_SEARCH_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(FieldError::new(
                            "limit",
                            format!("must be a number from 1 to {MAX_SEARCH_LIMIT}"),
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    other,
                    "unknown parameter; search takes tenant_id, field, equals, limit",
                )));
            }
        }
    }
    Ok((tenant, field, equals, limit))
}
