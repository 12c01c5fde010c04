//! Crypto-shredding: destroying a tenant's data key, or one subject's, so the sensitive
//! fields of its events read as `"[shredded]"` forever, while every record and hash stays
//! and `verify` still passes. Each shredding is itself recorded as an event in the tenant.

use axum::Json;
use axum::extract::{Path, State};
use sealtrail_core::{FieldError, Scope, TenantScope};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::blocking;
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
    if state.opener.cipher().is_none() {
        return Err(ApiError::conflict(
            "field encryption is not configured ([encryption] in the config): there are no keys to shred",
        ));
    }
    let subject_sha256 = subject.as_ref().map(|s| hex::encode(Sha256::digest(s)));
    let key_existed = {
        let (state, tenant, subject) = (state.clone(), tenant.clone(), subject.clone());
        blocking(move || {
            let cipher = state.opener.cipher().expect("checked above");
            cipher
                .shred(&tenant, subject.as_deref())
                .map_err(ApiError::internal)
        })
        .await?
    };
    if let Some(index) = state.blind.clone() {
        let (tenant, tag) = (
            tenant.clone(),
            subject
                .as_deref()
                .map(sealtrail_crypto::FieldCipher::subject_tag),
        );
        blocking(move || {
            index
                .forget(&tenant, tag.as_deref())
                .map_err(ApiError::internal)
        })
        .await?;
    }
    let (action, resource_type, resource_id) = match &subject_sha256 {
        Some(hash) => ("subject.shredded", "data_subject", hash.clone()),
        None => ("tenant.shredded", "tenant", tenant.clone()),
    };
    let record = json!({
        "tenant_id": tenant,
        "action": action,
        "actor_type": "service",
        "user_id": format!("key:{}", auth.0.key_id),
        "resource_type": resource_type,
        "resource_id": resource_id,
        "severity": "warning",
        "reason": "crypto-shredding: the data key was destroyed; its fields read as [shredded]",
        "details": {"subject_sha256": subject_sha256, "key_existed": key_existed},
    });
    let event = sealtrail_core::prepare_event_value(
        record,
        &TenantScope::Any,
        sealtrail_core::time_format::now_micros(),
        &state.config.limits.event,
    )
    .map_err(|e| ApiError::internal(format!("the shredding record is invalid: {e}")))?;
    // Not sealed: it holds nothing sensitive, and the tenant's key may be gone.
    let outcome = state.sequencer.append(vec![event]).await.map_err(|e| {
        ApiError::unavailable(format!(
            "the key is destroyed, but recording it failed (retry to record it): {e}"
        ))
    })?;
    let receipt = &outcome.receipts[0];
    Ok(Json(Shredded {
        tenant_id: tenant,
        subject_sha256,
        key_existed,
        event_id: receipt.id.to_string(),
        seq: receipt.seq,
    }))
}
