//! `POST /v1/events`: one event, a batch, or NDJSON, answered only once durable.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use sealtrail_core::{FieldError, Scope};
use sealtrail_store::AppendError;
use serde_json::Value;

use super::{Params, raw_json};
use crate::api::{IngestResponse, IngestResult};
use crate::app::Appended;
use crate::app::ingest::{Batch, IngestError, Ingested};
use crate::auth::Auth;
use crate::error::{ApiError, EventError};
use crate::state::AppState;

/// Append events.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(
        description = "One event, `{\"events\": [...]}`, or NDJSON (`Content-Type: application/x-ndjson`)",
        content(
            (crate::api::EventInput = "application/json"),
            (crate::api::EventBatch = "application/json"),
            (String = "application/x-ndjson"),
        ),
    ),
    params(("partial" = Option<bool>, Query, description = "Store the valid events of a batch and report the invalid ones, instead of refusing the whole batch")),
    responses(
        (status = 201, description = "Stored and durable", body = IngestResponse),
        (status = 202, description = "PostgreSQL is unreachable: kept durably in the server's local spool (`spooled: true`, receipts without seq); they enter the log in order when it is back", body = IngestResponse),
        (status = 200, description = "With partial=true: per-event results", body = IngestResponse),
        (status = 400, description = "Malformed or invalid; nothing stored", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Key lacks the ingest scope, or writes another tenant", body = crate::error::ErrorBody),
        (status = 409, description = "An id was reused with different content; nothing stored", body = crate::error::ErrorBody),
        (status = 413, description = "Body or batch too large", body = crate::error::ErrorBody),
        (status = 415, description = "Unsupported content type", body = crate::error::ErrorBody),
        (status = 503, description = "The log cannot take writes now; retry", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = ingest_inner(&state, auth, params, headers, body).await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(e) => match e.status() {
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "denied",
            s if s.is_client_error() => "invalid",
            _ => "failed",
        },
    };
    state.metrics.ingest_outcome(outcome);
    state
        .metrics
        .ingest_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn ingest_inner(
    state: &AppState,
    auth: Auth,
    params: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth.require(Scope::Ingest)?;
    let partial = partial_param(&params)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(state.config.limits.max_body_bytes)
        } else {
            ApiError::invalid_json(rejection.body_text())
        }
    })?;
    let split = split_body(&body, is_ndjson(&headers)?)?;
    check_count(split.items.len(), state.config.limits.max_batch_events)?;
    refuse_other_tenants(&auth, &split.items, split.batch)?;
    let batch = Batch {
        items: split.items,
        lines: split.lines,
        partial,
        scope: auth.0.tenant_scope(),
    };
    let ingested = state
        .ingest
        .ingest(batch)
        .await
        .map_err(|e| ingest_error(e, split.batch))?;
    if let Appended::Stored(outcome) = &ingested.appended {
        let new_events = outcome.receipts.iter().filter(|r| !r.duplicate).count();
        state.metrics.ingest_events.inc_by(new_events as u64);
        tracing::debug!(events = outcome.receipts.len(), new_events, "ingested");
    }
    Ok(respond(ingested, partial))
}

/// `?partial=true|false`, the only parameter.
fn partial_param(params: &Params) -> Result<bool, ApiError> {
    let mut partial = false;
    for (key, value) in params.pairs() {
        partial = match (key, value) {
            ("partial", "true") => true,
            ("partial", "false") => false,
            ("partial", other) => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    "partial",
                    format!("{other:?} is not true or false"),
                )));
            }
            (other, _) => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    other,
                    "unknown parameter; POST /v1/events takes partial",
                )));
            }
        };
    }
    Ok(partial)
}

/// Whether the body is NDJSON (by its content type; JSON when none is given).
fn is_ndjson(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"))
    else {
        return Ok(false);
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(false),
        "application/x-ndjson" | "application/jsonl" => Ok(true),
        _ => Err(ApiError::unsupported_media_type(ct)),
    }
}

/// A request holds at least one event and at most `max`.
fn check_count(count: usize, max: usize) -> Result<(), ApiError> {
    if count > max {
        return Err(ApiError::batch_too_large(count, max));
    }
    if count == 0 {
        return Err(ApiError::invalid_events(
            vec![EventError {
                line: None,
                index: 0,
                field: String::new(),
                reason: "the request holds no events".into(),
            }],
            false,
        ));
    }
    Ok(())
}

fn ingest_error(error: IngestError, batch: bool) -> ApiError {
    let (error, positions) = match error {
        IngestError::Invalid(errors) => return ApiError::invalid_events(errors, batch),
        IngestError::Internal(reason) => return ApiError::internal(reason),
        IngestError::Append { error, positions } => (error, positions),
    };
    match error {
        AppendError::Conflict { index, id } => {
            let field = if batch {
                format!("events[{}].id", positions[index])
            } else {
                "id".into()
            };
            ApiError::id_conflict(field, id)
        }
        AppendError::TooLarge { events, max } => ApiError::batch_too_large(events, max),
        // The events may or may not have reached the disk: a retry with the same ids is
        // safe (it stores nothing twice), a retry without ids may store them again.
        AppendError::Storage(reason) => ApiError::unavailable(format!(
            "storing the events failed and they are not acknowledged; they may or may not \
                 have been stored, so retry with the same event ids: {reason}"
        )),
        AppendError::Unavailable(reason) => ApiError::unavailable(format!(
            "the log is not taking writes; events are not acknowledged (retry with the same \
                 event ids): {reason}"
        )),
    }
}

/// Writing another tenant is an authorisation failure (403), not a malformed event; the
/// check is repeated in validation, which never lets such an event through either.
fn refuse_other_tenants(
    auth: &Auth,
    items: &[Result<Value, FieldError>],
    batch: bool,
) -> Result<(), ApiError> {
    let Some(bound) = &auth.0.tenant_id else {
        return Ok(());
    };
    for (index, item) in items.iter().enumerate() {
        let Ok(Value::Object(event)) = item else {
            continue;
        };
        if let Some(Value::String(tenant)) = event.get("tenant_id")
            && tenant != bound
        {
            let field = if batch {
                format!("events[{index}].tenant_id")
            } else {
                "tenant_id".into()
            };
            return Err(ApiError::forbidden_field(
                &field,
                format!(
                    "this API key is bound to tenant {bound:?} and cannot write tenant {tenant:?}"
                ),
            ));
        }
    }
    Ok(())
}

/// Splits a body into events: `(events, is_batch)`. A malformed NDJSON line is that
/// event's error; malformed JSON otherwise fails the request.
/// Events split from a body: each parsed (or why not), whether it was a batch, and for
/// NDJSON the line each came from.
struct SplitBody {
    items: Vec<Result<Value, FieldError>>,
    batch: bool,
    lines: Option<Vec<usize>>,
}

fn split_body(body: &[u8], ndjson: bool) -> Result<SplitBody, ApiError> {
    if ndjson {
        let (lines, items) = body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| line.iter().any(|b| !b.is_ascii_whitespace()))
            .map(|(number, line)| {
                let item = serde_json::from_slice::<Value>(line)
                    .map_err(|e| FieldError::new("", format!("malformed JSON: {e}")));
                (number + 1, item)
            })
            .unzip();
        return Ok(SplitBody {
            items,
            batch: true,
            lines: Some(lines),
        });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    match value {
        Value::Object(mut map) if map.contains_key("events") => {
            if let Some(other) = map.keys().find(|k| *k != "events") {
                return Err(ApiError::invalid_events(
                    vec![EventError {
                        line: None,
                        index: 0,
                        field: other.clone(),
                        reason: "unknown field; a batch is {\"events\": [...]} and nothing else"
                            .into(),
                    }],
                    false,
                ));
            }
            match map.remove("events") {
                Some(Value::Array(events)) => Ok(SplitBody {
                    items: events.into_iter().map(Ok).collect(),
                    batch: true,
                    lines: None,
                }),
                _ => Err(ApiError::invalid_events(
                    vec![EventError {
                        line: None,
                        index: 0,
                        field: "events".into(),
                        reason: "must be a list of events".into(),
                    }],
                    false,
                )),
            }
        }
        single => Ok(SplitBody {
            items: vec![Ok(single)],
            batch: false,
            lines: None,
        }),
    }
}

/// 201 with receipts (200 and per-event results with `partial`), or 202 when spooled.
fn respond(ingested: Ingested, partial: bool) -> Response {
    let Ingested {
        appended,
        positions,
        errors,
    } = ingested;
    let (status, mut events, checkpoint, spooled) = match appended {
        Appended::Stored(outcome) => (
            if partial {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            outcome
                .receipts
                .iter()
                .map(stored_receipt)
                .collect::<Vec<_>>(),
            outcome.checkpoint,
            false,
        ),
        Appended::Spooled { ids, checkpoint } => (
            StatusCode::ACCEPTED,
            ids.iter().map(spooled_receipt).collect(),
            checkpoint,
            true,
        ),
    };
    if partial {
        for (result, &index) in events.iter_mut().zip(&positions) {
            result.index = Some(index);
        }
        events.extend(errors.into_iter().map(|e| IngestResult {
            index: Some(e.index),
            id: None,
            seq: None,
            leaf_hash: None,
            error: Some(e),
        }));
        events.sort_by_key(|r| r.index);
    }
    let body = IngestResponse {
        events,
        tree_size: checkpoint.tree_size,
        checkpoint: checkpoint.note.clone(),
        spooled,
    };
    raw_json(
        status,
        serde_json::to_vec(&body).expect("serialising plain structs cannot fail"),
    )
}

fn stored_receipt(r: &sealtrail_store::Receipt) -> IngestResult {
    IngestResult {
        index: None,
        id: Some(r.id.to_string()),
        seq: Some(r.seq),
        leaf_hash: Some(hex::encode(r.leaf_hash)),
        error: None,
    }
}

fn spooled_receipt(id: &uuid::Uuid) -> IngestResult {
    IngestResult {
        index: None,
        id: Some(id.to_string()),
        seq: None,
        leaf_hash: None,
        error: None,
    }
}
