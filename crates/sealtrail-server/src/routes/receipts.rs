//! `/v1/receipts/{id}` (what became of an acknowledged event: stored, spooled, or refused
//! when the spool drained) and `/v1/spool/rejected` (every spooled event the log refused,
//! for the operator). The use case is `app::receipts`.

use axum::Json;
use axum::extract::{Path, State};
use sealtrail_core::{FieldError, Scope};
use serde::Serialize;
use uuid::Uuid;

use crate::app::receipts::Receipt;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/receipts/{id}", tag = "events", security(("api_key" = [])),
    params(("id" = String, Path, description = "The event id a 201 or 202 answer named")),
    responses((status = 200, description = "Where the event is", body = Receipt)))]
pub async fn receipt(
    auth: Auth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Receipt>, ApiError> {
    auth.require_any(&[Scope::Ingest, Scope::Read])?;
    let id = Uuid::try_parse(&id).map_err(|_| {
        ApiError::invalid_parameter(FieldError::new("id", format!("{id:?} is not a UUID")))
    })?;
    let receipt = crate::app::receipts::receipt(state.reader.clone(), &state.log, id, |tenant| {
        auth.0.may_see(tenant)
    })
    .await?;
    Ok(Json(receipt))
}

/// A spooled event the log refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedView {
    /// The event id.
    pub id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its action.
    pub action: String,
    /// Its resource type.
    pub resource_type: String,
    /// When it happened (RFC 3339).
    pub occurred_at: String,
    /// When it was acknowledged into the spool (RFC 3339).
    pub received_at: String,
    /// Why the log refused it.
    pub reason: String,
    /// When (RFC 3339).
    pub refused_at: String,
}

/// The rejected list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedList {
    /// Oldest first. The whole events are kept in `spool-rejected.ndjson` in the data
    /// directory.
    pub rejected: Vec<RejectedView>,
}

#[utoipa::path(get, path = "/v1/spool/rejected", tag = "operations", security(("api_key" = [])),
    responses((status = 200, description = "Spooled events the log refused", body = RejectedList)))]
pub async fn rejected(
    auth: Auth,
    State(state): State<AppState>,
) -> Result<Json<RejectedList>, ApiError> {
    auth.require(Scope::Admin)?;
    if let Some(tenant) = &auth.0.tenant_id {
        return Err(ApiError::forbidden_field(
            "tenant_id",
            format!(
                "this API key is bound to tenant {tenant:?}; the spool serves every tenant \
                 and needs an admin key bound to none"
            ),
        ));
    }
    let at = sealtrail_core::time_format::format_micros;
    Ok(Json(RejectedList {
        rejected: state
            .log
            .rejected_events()
            .into_iter()
            .map(|r| RejectedView {
                id: r.id.to_string(),
                tenant_id: r.tenant_id,
                action: r.action,
                resource_type: r.resource_type,
                occurred_at: at(r.occurred_at),
                received_at: at(r.received_at),
                reason: r.reason,
                refused_at: at(r.refused_at),
            })
            .collect(),
    }))
}
