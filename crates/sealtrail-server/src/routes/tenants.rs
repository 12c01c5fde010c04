//! `POST /v1/tenants/{t}/shred` and `.../subjects/{s}/shred`: crypto-shredding (the use
//! case is `app::shred`).

use axum::Json;
use axum::extract::{Path, State};
use sealtrail_core::{FieldError, Scope};
use serde::Serialize;

use crate::app::shred::ShredError;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// What a shredding did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Shredded {
    /// The tenant.
    pub tenant_id: String,
    /// SHA-256 (hex) of the subject id, for a subject's shredding.
    pub subject_sha256: Option<String>,
    /// False if the key had never been used (it is destroyed all the same: it never will).
    pub key_existed: bool,
    /// The event recording the shredding.
    pub event_id: String,
    /// Its seq.
    pub seq: u64,
}

/// Destroys the tenant's data keys (its own and every subject's).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/shred", tag = "tenants", security(("api_key" = [])),
    params(("tenant_id" = String, Path, description = "The tenant")),
    responses((status = 200, description = "Shredded", body = Shredded), (status = 409, description = "Field encryption is not configured")))]
pub async fn shred_tenant(
    auth: Auth,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<Shredded>, ApiError> {
    shred(state, auth, tenant, None).await
}

/// Destroys one subject's data key in the tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/subjects/{subject}/shred", tag = "tenants", security(("api_key" = [])),
    params(("tenant_id" = String, Path, description = "The tenant"), ("subject" = String, Path, description = "The subject's id (the value at encryption.subject)")),
    responses((status = 200, description = "Shredded", body = Shredded), (status = 409, description = "Field encryption is not configured")))]
pub async fn shred_subject(
    auth: Auth,
    State(state): State<AppState>,
    Path((tenant, subject)): Path<(String, String)>,
) -> Result<Json<Shredded>, ApiError> {
    shred(state, auth, tenant, Some(subject)).await
}

async fn shred(
    state: AppState,
    auth: Auth,
    tenant: String,
    subject: Option<String>,
) -> Result<Json<Shredded>, ApiError> {
    auth.require(Scope::Admin)?;
    let tenant = auth
        .confine_tenant(Some(tenant))?
        .expect("a requested tenant stays requested");
    sealtrail_core::event::validate_tenant_id(&tenant, &state.config.limits.event)
        .map_err(|reason| ApiError::invalid_parameter(FieldError::new("tenant_id", reason)))?;
    let done = state
        .shredder
        .shred(&tenant, subject.as_deref(), &auth.0.key_id)
        .await
        .map_err(|e| match e {
            ShredError::NotConfigured => ApiError::conflict(e.to_string()),
            ShredError::Failed(reason) => ApiError::internal(reason),
            ShredError::Unrecorded(_) => ApiError::unavailable(e.to_string()),
        })?;
    Ok(Json(Shredded {
        tenant_id: tenant,
        subject_sha256: done.subject_sha256,
        key_existed: done.key_existed,
        event_id: done.receipt.id.to_string(),
        seq: done.receipt.seq,
    }))
}
