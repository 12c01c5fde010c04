//! Ingest: producers' events, already split from the request body, validated (sealed
//! where encryption says so) and appended to the durable log, all or nothing unless the
//! producer asked for per-event results.

use std::sync::Arc;

use sealtrail_core::api::EventError;
use sealtrail_core::time_format::now_micros;
use sealtrail_core::{EventLimits, FieldError, FieldSealer, PreparedEvent, TenantScope};
use sealtrail_store::AppendError;
use serde_json::Value;

use super::{Appended, DurableLog};

/// Requests with fewer events than this are validated on the async worker (~15 µs per
/// event, so up to ~4 ms); larger ones on a blocking thread so they do not stall the other
/// requests a worker serves. Measured: moving 100-event batches off the workers added a
/// thread hop and CPU contention that cost a fifth of the ingest throughput.
const INLINE_VALIDATION_MAX_EVENTS: usize = 256;

/// Events to ingest, as split from one request.
pub struct Batch {
    /// Each event as parsed, or why it could not be.
    pub items: Vec<Result<Value, FieldError>>,
    /// For NDJSON, the line each came from.
    pub lines: Option<Vec<usize>>,
    /// Store the valid events and report the invalid ones, instead of refusing them all.
    pub partial: bool,
    /// The tenants the producer's key may write.
    pub scope: TenantScope,
}

/// What became of a batch.
pub struct Ingested {
    /// Where the accepted events went.
    pub appended: Appended,
    /// With `partial`: each accepted event's position in the request, and the refused
    /// events' errors (empty without `partial`).
    pub positions: Vec<usize>,
    /// The refused events (only with `partial`).
    pub errors: Vec<EventError>,
}

/// Why a batch was not ingested.
pub enum IngestError {
    /// Invalid events (every one when not `partial`; all of them when `partial`).
    Invalid(Vec<EventError>),
    /// The log refused or failed; `positions` maps the sequencer's event index to the
    /// request's (an id conflict names the request's event).
    Append {
        /// The sequencer's error.
        error: AppendError,
        /// Accepted event → its index in the request.
        positions: Vec<usize>,
    },
    /// Validation itself failed (its task panicked).
    Internal(String),
}

/// Validates and appends.
pub struct Ingest {
    /// Where events go.
    pub log: DurableLog,
    /// Field limits.
    pub limits: EventLimits,
    /// Seals sensitive fields as each record is written, before anything is stored.
    pub sealer: Option<Arc<dyn FieldSealer + Send + Sync>>,
}

impl Ingest {
    /// Validates every event of `batch` and appends the valid ones (all must be, unless
    /// `partial`).
    pub async fn ingest(&self, batch: Batch) -> Result<Ingested, IngestError> {
        let Batch {
            items,
            lines,
            partial,
            scope,
        } = batch;
        let checked = self.validate(items, scope).await?;
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
            return Err(IngestError::Invalid(errors));
        }
        match self.log.append(accepted).await {
            Ok(appended) => Ok(Ingested {
                appended,
                positions,
                errors,
            }),
            Err(error) => Err(IngestError::Append { error, positions }),
        }
    }

    async fn validate(
        &self,
        items: Vec<Result<Value, FieldError>>,
        scope: TenantScope,
    ) -> Result<Vec<Result<PreparedEvent, FieldError>>, IngestError> {
        let received_at = now_micros();
        let inline = items.len() < INLINE_VALIDATION_MAX_EVENTS;
        let (limits, sealer) = (self.limits.clone(), self.sealer.clone());
        let validate = move || {
            let sealer = sealer.as_deref().map(|s| s as &dyn FieldSealer);
            items
                .into_iter()
                .map(|item| {
                    item.and_then(|value| {
                        sealtrail_core::prepare_event_sealed(
                            value,
                            &scope,
                            received_at,
                            &limits,
                            sealer,
                        )
                    })
                    .and_then(refuse_reserved_action)
                })
                .collect()
        };
        if inline {
            return Ok(validate());
        }
        tokio::task::spawn_blocking(validate)
            .await
            .map_err(|e| IngestError::Internal(e.to_string()))
    }
}

/// The actions of the access log (`audit_log.*`), which only the server writes: a producer's
/// event under them would show a read that never happened.
pub const ACCESS_LOG_PREFIX: &str = "audit_log.";

/// Refuses producer events with an action only the server writes: the record of a
/// signing-key rotation, which `verify` requires to be one the sequencer filed, and the
/// access log's records.
fn refuse_reserved_action(event: PreparedEvent) -> Result<PreparedEvent, FieldError> {
    if event.action.starts_with(ACCESS_LOG_PREFIX) {
        return Err(FieldError::new(
            "action",
            format!(
                "{} is reserved: {ACCESS_LOG_PREFIX}* actions are the server's own access log",
                event.action
            ),
        ));
    }
    if event.action == sealtrail_core::checkpoint::SIGNING_KEY_ROTATED_ACTION {
        return Err(FieldError::new(
            "action",
            format!(
                "{} is reserved for the server's own record of a signing-key rotation",
                event.action
            ),
        ));
    }
    Ok(event)
}
