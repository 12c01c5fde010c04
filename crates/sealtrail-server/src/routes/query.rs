//! Reads: `GET /v1/events`, `GET /v1/events/{id}`, `GET /v1/stats`.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use sealtrail_core::query::{EventFilterParams, PageRequest, StatsRequest};
use sealtrail_core::time_format::format_micros;
use sealtrail_core::{FieldError, Scope};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Params, blocking, raw_json};
use crate::access::{self, Requester};
use crate::api::{InclusionProof, StatsResponse, StatsRow};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::integrity::checkpoint_view;
use crate::state::AppState;

/// How long a read waits for an event it found to become durable (normally a millisecond).
const DURABILITY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    request.visible_through = Some(state.sequencer.tree_size());
    request.scope = auth.0.tenant_id.clone();
    let started = Instant::now();
    let reader = state.reader.clone();
    let order = request.order;
    let confined_to = request.filter.tenant_id.clone();
    let resource = access::filtered_resource(&request.filter);
    let page = blocking(move || Ok(reader.query(&request)?)).await?;
    state
        .metrics
        .read("events", started.elapsed().as_secs_f64());
    let mut returned = BTreeMap::new();
    for event in &page.events {
        *returned.entry(event.tenant_id.clone()).or_insert(0) += 1;
    }
    let read = access::Read {
        action: "audit_log.read",
        filter: access::params_object(params.pairs()),
        confined_to: confined_to.as_deref(),
        returned,
        result_count: Some(page.events.len() as u64),
        resource,
        event_id: None,
    };
    access::record(&state, &auth, &requester, read).await?;

    let mut body = Vec::with_capacity(
        page.events
            .iter()
            .map(|e| e.record.len() + 100)
            .sum::<usize>()
            + 64,
    );
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&state.opener.api_json(event));
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    let next = page.next.map(|c| c.encode(order));
    body.extend_from_slice(&serde_json::to_vec(&next).expect("an optional string serialises"));
    body.push(b'}');
    Ok(raw_json(StatusCode::OK, body))
}

/// One event with its inclusion proof against the latest signed checkpoint.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "Event id (UUID)")),
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
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let id = Uuid::try_parse(&id).map_err(|_| {
        ApiError::invalid_parameter(FieldError::new("id", format!("{id:?} is not a UUID")))
    })?;
    let started = Instant::now();
    let reader = state.reader.clone();
    let found = blocking(move || Ok(reader.get(&id)?)).await?;
    // A tenant-bound key must not learn that another tenant's event exists.
    let Some(event) = found.filter(|e| auth.0.may_see(&e.tenant_id)) else {
        return Err(ApiError::not_found(format!("no event {id}")));
    };
    // Committed but not yet fsync'd (a millisecond or two): nothing is shown before it is
    // durable, and proofs are only against durable checkpoints.
    if event.seq > state.sequencer.tree_size() {
        tokio::time::timeout(DURABILITY_WAIT, state.sequencer.wait_durable(event.seq))
            .await
            .map_err(|_| ApiError::not_found(format!("no event {id}")))?;
    }
    let checkpoint = state.sequencer.durable_checkpoint();
    let reader = state.reader.clone();
    let leaf_index = event.seq.checked_sub(1).ok_or_else(|| {
        ApiError::internal(
            "a stored event has seq 0, which the sequencer never writes; run `sealtrail verify`",
        )
    })?;
    let tree_size = checkpoint.tree_size;
    let hashes = blocking(move || Ok(reader.inclusion_proof(leaf_index, tree_size)?)).await?;
    state.metrics.read("event", started.elapsed().as_secs_f64());
    let read = access::Read {
        action: "audit_log.read_event",
        filter: json!({"id": id.to_string()}),
        confined_to: Some(&event.tenant_id),
        returned: BTreeMap::new(),
        result_count: Some(1),
        resource: sealtrail_core::StoredRecord::parse(&event.record)
            .ok()
            .map(|r| (r.resource_type, r.resource_id)),
        event_id: Some(id.to_string()),
    };
    access::record(&state, &auth, &requester, read).await?;
    let proof = InclusionProof {
        leaf_index,
        tree_size: checkpoint.tree_size,
        hashes: hashes.iter().map(hex::encode).collect(),
    };
    let mut body = b"{\"event\":".to_vec();
    body.extend_from_slice(&state.opener.api_json(&event));
    body.extend_from_slice(b",\"proof\":");
    body.extend_from_slice(&serde_json::to_vec(&proof).expect("plain struct"));
    body.extend_from_slice(b",\"checkpoint\":");
    let view = checkpoint_view(state.verifier.origin(), &checkpoint);
    body.extend_from_slice(&serde_json::to_vec(&view).expect("plain struct"));
    body.push(b'}');
    Ok(raw_json(StatusCode::OK, body))
}

/// Counts of events by severity, action or resource type, optionally per hour or day.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "events",
    params(
        ("group_by" = Option<String>, Query, description = "severity (default), action or resource_type"),
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
    request.visible_through = Some(state.sequencer.tree_size());
    request.scope = auth.0.tenant_id.clone();
    let (group_by, interval) = (request.group_by, request.interval);
    let started = Instant::now();
    let reader = state.reader.clone();
    let confined_to = request.filter.tenant_id.clone();
    let resource = access::filtered_resource(&request.filter);
    let rows = blocking(move || Ok(reader.stats(&request)?)).await?;
    state.metrics.read("stats", started.elapsed().as_secs_f64());
    let read = access::Read {
        action: "audit_log.stats",
        filter: access::params_object(params.pairs()),
        confined_to: confined_to.as_deref(),
        returned: BTreeMap::new(),
        result_count: Some(rows.iter().map(|r| r.count).sum()),
        resource,
        event_id: None,
    };
    access::record(&state, &auth, &requester, read).await?;
    Ok(axum::Json(StatsResponse {
        group_by: group_by.as_str().to_owned(),
        interval: interval.map(|i| i.as_str().to_owned()),
        total: rows.iter().map(|r| r.count).sum(),
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

/// Most events a blind-index search returns.
pub const MAX_SEARCH_LIMIT: usize = 1000;

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
    let required = |name: &str| ApiError::invalid_parameter(FieldError::new(name, "required"));
    let tenant = auth
        .confine_tenant(tenant)?
        .ok_or_else(|| required("tenant_id"))?;
    let field = field.ok_or_else(|| required("field"))?;
    let equals = equals.ok_or_else(|| required("equals"))?;
    let (Some(cipher), Some(index)) = (state.opener.cipher(), state.blind.clone()) else {
        return Err(ApiError::conflict(
            "no blind index is configured (encryption.blind_index)",
        ));
    };
    if !cipher.has_blind_index(&field) {
        return Err(ApiError::invalid_parameter(FieldError::new(
            "field",
            format!("{field:?} has no blind index (encryption.blind_index)"),
        )));
    }
    let token = cipher.blind_token(&tenant, &field, Value::from(equals).to_string().as_bytes());
    // The access record names the field and the token, never the value searched for: it
    // is as sensitive as the field.
    let recorded_filter =
        json!({"tenant_id": tenant, "field": field, "equals_token": token, "limit": limit});
    let (reader, through) = (state.reader.clone(), state.sequencer.tree_size());
    let search_tenant = tenant.clone();
    let events = blocking(move || {
        let seqs = index.find(&search_tenant, &field, &token, limit)?;
        let filter = sealtrail_core::EventFilter {
            tenant_id: Some(search_tenant),
            ..Default::default()
        };
        let mut events = Vec::with_capacity(seqs.len());
        for seq in seqs.into_iter().filter(|&s| s >= 1 && s <= through) {
            events.extend(reader.events_after(seq - 1, seq, &filter, 1)?.events);
        }
        Ok(events)
    })
    .await?;
    let read = access::Read {
        action: "audit_log.search",
        filter: recorded_filter,
        confined_to: Some(&tenant),
        returned: BTreeMap::new(),
        result_count: Some(events.len() as u64),
        resource: None,
        event_id: None,
    };
    access::record(&state, &auth, &requester, read).await?;
    let mut body = b"{\"events\":[".to_vec();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&state.opener.api_json(event));
    }
    body.extend_from_slice(b"],\"next_cursor\":null}");
    Ok(raw_json(StatusCode::OK, body))
}
