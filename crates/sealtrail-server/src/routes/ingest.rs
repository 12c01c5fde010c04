//! `POST /v1/events`: one event, a batch, or NDJSON, answered only once durable.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use sealtrail_core::time_format::now_micros;
use sealtrail_core::{FieldError, PreparedEvent, Scope, TenantScope};
use sealtrail_store::{AppendError, AppendOutcome};
use serde_json::Value;

use super::{Params, raw_json};
use crate::api::{IngestResponse, IngestResult};
use crate::auth::Auth;
use crate::error::{ApiError, EventError};
use crate::state::AppState;

/// Requests with fewer events than this are validated on the async worker (~15 µs per
/// event, so up to ~4 ms); larger ones on a blocking thread so they do not stall the other
/// requests a worker serves. Measured: moving 100-event batches off the workers added a
/// thread hop and CPU contention that cost a fifth of the ingest throughput.
const INLINE_VALIDATION_MAX_EVENTS: usize = 256;

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
    let mut partial = false;
    for (key, value) in params.pairs() {
        match (key, value) {
            ("partial", "true") => partial = true,
            ("partial", "false") => partial = false,
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
        }
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(state.config.limits.max_body_bytes)
        } else {
            ApiError::invalid_json(rejection.body_text())
        }
    })?;
    let ndjson = match headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None => false,
        Some(ct) => {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match essence.as_str() {
                "application/json" => false,
                "application/x-ndjson" | "application/jsonl" => true,
                _ => return Err(ApiError::unsupported_media_type(ct)),
            }
        }
    };

    let SplitBody {
        items,
        batch,
        lines,
    } = split_body(&body, ndjson)?;
    let max = state.config.limits.max_batch_events;
    if items.len() > max {
        return Err(ApiError::batch_too_large(items.len(), max));
    }
    if items.is_empty() {
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

    refuse_other_tenants(&auth, &items, batch)?;
    let scope = auth.0.tenant_scope();
    let limits = state.config.limits.event.clone();
    let received_at = now_micros();
    let inline = items.len() < INLINE_VALIDATION_MAX_EVENTS;
    // Sensitive fields are sealed as each record is written, before anything is stored.
    let cipher = state.opener.shared_cipher();
    let validate = move || validate_all(items, &scope, received_at, &limits, cipher.as_deref());
    let checked = if inline {
        validate()
    } else {
        super::blocking(move || Ok(validate())).await?
    };

    let mut accepted = Vec::with_capacity(checked.len());
    let mut errors = Vec::new();
    let mut positions = Vec::with_capacity(checked.len());
    for (index, result) in checked.into_iter().enumerate() {
        match result {
            Ok(event) => {
                positions.push(index);
                accepted.push(event);
            }
            Err(e) => errors.push(EventError {
                line: lines.as_ref().map(|l| l[index]),
                index,
                field: e.field,
                reason: e.reason,
            }),
        }
    }
    if !errors.is_empty() && (!partial || accepted.is_empty()) {
        return Err(ApiError::invalid_events(errors, batch));
    }

    // While the spool holds events, new ones queue behind them: the log keeps their order.
    if let Some(spool) = &state.spool
        && spool.depth() > 0
    {
        return spool_events(state, spool, accepted, &positions, partial, errors).await;
    }
    // Kept for the spool, should the database be unreachable.
    let spare = state.spool.as_ref().map(|_| accepted.clone());
    let appended = state.sequencer.append(accepted).await;
    if let (Some(spool), Some(events), Err(AppendError::Storage(reason))) =
        (&state.spool, spare, &appended)
    {
        tracing::warn!(%reason, "the database is unreachable; spooling");
        return spool_events(state, spool, events, &positions, partial, errors).await;
    }
    let outcome = appended.map_err(|e| match e {
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
    })?;
    let new_events = outcome.receipts.iter().filter(|r| !r.duplicate).count();
    state.metrics.ingest_events.inc_by(new_events as u64);
    tracing::debug!(events = outcome.receipts.len(), new_events, "ingested");
    Ok(respond(outcome, partial.then_some((positions, errors))))
}

/// Keeps the events in the local spool (fsync'd) and answers 202 with their ids.
async fn spool_events(
    state: &AppState,
    spool: &std::sync::Arc<sealtrail_store::spool::Spool>,
    events: Vec<sealtrail_core::PreparedEvent>,
    positions: &[usize],
    partial: bool,
    errors: Vec<EventError>,
) -> Result<Response, ApiError> {
    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    let writer = spool.clone();
    super::blocking(move || Ok(writer.append(&events)?)).await?;
    state.metrics.spool_events.set(spool.depth() as i64);
    let receipt = |index: Option<usize>, id: &String| IngestResult {
        index,
        id: Some(id.clone()),
        seq: None,
        leaf_hash: None,
        error: None,
    };
    let mut results: Vec<IngestResult> = if partial {
        positions
            .iter()
            .zip(&ids)
            .map(|(&i, id)| receipt(Some(i), id))
            .collect()
    } else {
        ids.iter().map(|id| receipt(None, id)).collect()
    };
    results.extend(errors.into_iter().map(|e| IngestResult {
        index: Some(e.index),
        id: None,
        seq: None,
        leaf_hash: None,
        error: Some(e),
    }));
    results.sort_by_key(|r| r.index);
    let checkpoint = state.sequencer.durable_checkpoint();
    let body = IngestResponse {
        events: results,
        tree_size: checkpoint.tree_size,
        checkpoint: checkpoint.note.clone(),
        spooled: true,
    };
    Ok(raw_json(
        StatusCode::ACCEPTED,
        serde_json::to_vec(&body).expect("serialising plain structs cannot fail"),
    ))
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

type Checked = Vec<Result<PreparedEvent, FieldError>>;

fn validate_all(
    items: Vec<Result<Value, FieldError>>,
    scope: &TenantScope,
    received_at: i64,
    limits: &sealtrail_core::EventLimits,
    sealer: Option<&sealtrail_crypto::FieldCipher>,
) -> Checked {
    let sealer = sealer.map(|c| c as &dyn sealtrail_core::FieldSealer);
    items
        .into_iter()
        .map(|item| {
            item.and_then(|value| {
                sealtrail_core::prepare_event_sealed(value, scope, received_at, limits, sealer)
            })
        })
        .collect()
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

fn respond(outcome: AppendOutcome, partial: Option<(Vec<usize>, Vec<EventError>)>) -> Response {
    let receipt = |index: Option<usize>, r: &sealtrail_store::Receipt| IngestResult {
        index,
        id: Some(r.id.to_string()),
        seq: Some(r.seq),
        leaf_hash: Some(hex::encode(r.leaf_hash)),
        error: None,
    };
    let (status, events) = match partial {
        None => (
            StatusCode::CREATED,
            outcome.receipts.iter().map(|r| receipt(None, r)).collect(),
        ),
        Some((positions, errors)) => {
            let mut results: Vec<IngestResult> = positions
                .iter()
                .zip(&outcome.receipts)
                .map(|(&i, r)| receipt(Some(i), r))
                .collect();
            results.extend(errors.into_iter().map(|e| IngestResult {
                index: Some(e.index),
                id: None,
                seq: None,
                leaf_hash: None,
                error: Some(e),
            }));
            results.sort_by_key(|r| r.index);
            (StatusCode::OK, results)
        }
    };
    let body = IngestResponse {
        events,
        tree_size: outcome.checkpoint.tree_size,
        checkpoint: outcome.checkpoint.note.clone(),
        spooled: false,
    };
    raw_json(
        status,
        serde_json::to_vec(&body).expect("serialising plain structs cannot fail"),
    )
}
