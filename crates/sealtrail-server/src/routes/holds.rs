//! `/v1/holds`: legal holds — place, list, release (the use case is `app::holds`). Needs
//! an `admin` key; one bound to a tenant holds, lists and releases in that tenant only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sealtrail_core::holds::Hold;
use sealtrail_core::time_format::format_micros;
use sealtrail_core::{FieldError, Scope};
use serde::{Deserialize, Serialize};

use crate::app::holds::{HoldChange, HoldRequest};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::Params;
use crate::state::AppState;

/// A legal hold as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HoldView {
    /// The hold's id (UUIDv7).
    pub id: String,
    /// The tenant it is in.
    pub tenant_id: String,
    /// Only events of this resource type (null: every event of the tenant).
    pub resource_type: Option<String>,
    /// Only events of this resource.
    pub resource_id: Option<String>,
    /// Why it was placed.
    pub reason: String,
    /// The admin key that placed it.
    pub placed_by: String,
    /// RFC 3339.
    pub placed_at: String,
    /// False once released.
    pub active: bool,
    /// RFC 3339, once released.
    pub released_at: Option<String>,
    /// The admin key that released it.
    pub released_by: Option<String>,
    /// Why it was released.
    pub release_reason: Option<String>,
}

impl HoldView {
    fn of(hold: Hold) -> Self {
        let release = hold.release;
        Self {
            active: release.is_none(),
            id: hold.id,
            tenant_id: hold.tenant,
            resource_type: hold.resource_type,
            resource_id: hold.resource_id,
            reason: hold.reason,
            placed_by: hold.placed_by,
            placed_at: format_micros(hold.placed_at),
            released_at: release.as_ref().map(|r| format_micros(r.at)),
            released_by: release.as_ref().map(|r| r.by.clone()),
            release_reason: release.map(|r| r.reason),
        }
    }
}

/// A hold placed or released, and the event in the log recording it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HoldChangeView {
    /// The hold after the change.
    pub hold: HoldView,
    /// The `legal_hold.placed` or `legal_hold.released` event.
    pub event_id: String,
    /// Its seq.
    pub seq: u64,
}

impl HoldChangeView {
    fn of(change: HoldChange) -> Self {
        Self {
            hold: HoldView::of(change.hold),
            event_id: change.receipt.id.to_string(),
            seq: change.receipt.seq,
        }
    }
}

/// What to hold, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    /// The tenant (a tenant-bound key's own when absent; required otherwise).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Hold only events of this resource type.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// Hold only events of this resource (needs `resource_type`).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Why (the matter, the request): 1 to 1024 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a hold ends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldReleaseRequest {
    /// Why: 1 to 1024 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

fn required(field: &str, value: Option<String>) -> Result<String, ApiError> {
    value.ok_or_else(|| ApiError::invalid_parameter(FieldError::new(field, "is required")))
}

/// Places a legal hold: retention and archival delete nothing it covers until it is
/// released. Recorded as a `legal_hold.placed` event in the tenant.
#[utoipa::path(post, path = "/v1/holds", tag = "holds", security(("api_key" = [])),
    request_body = NewHold,
    responses((status = 201, description = "Placed", body = HoldChangeView)))]
pub async fn place_hold(
    auth: Auth,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<HoldChangeView>), ApiError> {
    auth.require(Scope::Admin)?;
    let new: NewHold =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    let tenant = match (&auth.0.tenant_id, new.tenant_id) {
        (Some(bound), Some(asked)) if *bound != asked => {
            return Err(ApiError::forbidden_field(
                "tenant_id",
                format!(
                    "this API key is bound to tenant {bound:?} and cannot place holds in {asked:?}"
                ),
            ));
        }
        (Some(bound), _) => bound.clone(),
        (None, asked) => required("tenant_id", asked)?,
    };
    let request = HoldRequest {
        tenant,
        resource_type: new.resource_type,
        resource_id: new.resource_id,
        reason: required("reason", new.reason)?,
    };
    let placed = state.holds.place(request, &auth.0.key_id).await?;
    Ok((StatusCode::CREATED, Json(HoldChangeView::of(placed))))
}

/// Legal holds of a tenant (a tenant-bound key's own; every tenant's for an unbound key
/// without `tenant_id`), oldest first.
#[utoipa::path(get, path = "/v1/holds", tag = "holds", security(("api_key" = [])),
    params(
        ("tenant_id" = Option<String>, Query, description = "Only this tenant's holds"),
        ("all" = Option<bool>, Query, description = "Released holds too (default false: active only)"),
    ),
    responses((status = 200, description = "Holds", body = Vec<HoldView>)))]
pub async fn list_holds(
    auth: Auth,
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Vec<HoldView>>, ApiError> {
    auth.require(Scope::Admin)?;
    let (mut tenant, mut all) = (None, false);
    for (key, value) in params.pairs() {
        match key {
            "tenant_id" => {
                sealtrail_core::event::validate_tenant_id(value, &state.config.limits.event)
                    .map_err(|r| ApiError::invalid_parameter(FieldError::new("tenant_id", r)))?;
                tenant = Some(value.to_owned());
            }
            "all" => {
                all = value.parse().map_err(|_| {
                    ApiError::invalid_parameter(FieldError::new("all", "must be true or false"))
                })?;
            }
            other => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    other,
                    "unknown parameter; this endpoint takes tenant_id and all",
                )));
            }
        }
    }
    let tenant = auth.confine_tenant(tenant)?;
    let holds = state.holds.list(tenant, all).await?;
    Ok(Json(holds.into_iter().map(HoldView::of).collect()))
}

/// Releases a legal hold: what it covered may be deleted again by retention and archival.
/// Recorded as a `legal_hold.released` event in the tenant before it takes effect.
#[utoipa::path(post, path = "/v1/holds/{hold_id}/release", tag = "holds", security(("api_key" = [])),
    params(("hold_id" = String, Path, description = "The hold")),
    request_body = HoldReleaseRequest,
    responses(
        (status = 200, description = "Released", body = HoldChangeView),
        (status = 409, description = "Released already (the message says when and by whom)"),
    ))]
pub async fn release_hold(
    auth: Auth,
    State(state): State<AppState>,
    Path(hold_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<HoldChangeView>, ApiError> {
    auth.require(Scope::Admin)?;
    let request: HoldReleaseRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    let reason = required("reason", request.reason)?;
    let released = state
        .holds
        .release(
            &hold_id,
            &reason,
            &auth.0.key_id,
            auth.0.tenant_id.as_deref(),
        )
        .await?;
    Ok(Json(HoldChangeView::of(released)))
}
