//! API keys over the API: create, list (never secrets), rotate and revoke. Needs an
//! `admin` key; one bound to a tenant manages that tenant's keys only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sealtrail_core::time_format::{format_micros, now_micros, parse_rfc3339_micros};
use sealtrail_core::{FieldError, Scope};
use sealtrail_store::keys::KeyInfo;
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::blocking;
use crate::state::AppState;

/// Longest lifetime or rotation grace a request may ask for: ten years.
pub const MAX_KEY_SECONDS: u64 = 10 * 365 * 86_400;

/// A key as listed: everything but its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// Public id (the part after `st_` in the key text).
    pub key_id: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// The tenant it is bound to, if any.
    pub tenant_id: Option<String>,
    /// Its creator's note.
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once revoked.
    pub revoked_at: Option<String>,
    /// RFC 3339, if it expires.
    pub expires_at: Option<String>,
    /// `active`, `active until …`, `revoked …` or `expired …`.
    pub state: String,
}

impl KeyView {
    fn of(key: KeyInfo) -> Self {
        Self {
            state: key.state(now_micros()),
            key_id: key.key_id,
            scopes: key.scopes.iter().map(|s| s.to_string()).collect(),
            tenant_id: key.tenant_id,
            description: key.description,
            created_at: format_micros(key.created_at),
            revoked_at: key.revoked_at.map(format_micros),
            expires_at: key.expires_at.map(format_micros),
        }
    }
}

/// A new key: shown once, with its listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key text to present as `Authorization: Bearer …`. It is not stored and cannot be
    /// shown again.
    pub key: String,
    /// Its listing.
    #[serde(flatten)]
    pub info: KeyView,
}

impl CreatedKey {
    /// The 201 answer for a key just made.
    fn answer(info: KeyInfo, key: String) -> (StatusCode, Json<Self>) {
        (
            StatusCode::CREATED,
            Json(Self {
                key,
                info: KeyView::of(info),
            }),
        )
    }
}

/// What a new key may do.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Scopes: `ingest`, `read`, `stream`, `admin`.
    pub scopes: Vec<String>,
    /// Bind it to this tenant (a tenant-bound admin's keys are always bound to its tenant).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// A note on what it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Refuse it from this time (RFC 3339) on.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Or: refuse it this many seconds from now.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// How to rotate.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Keep the old key working this many seconds more (default: refuse it at once).
    #[serde(default)]
    pub grace_secs: Option<u64>,
}

/// The key, if the caller may manage it; 404 otherwise (another tenant's keys do not exist
/// for a tenant-bound admin).
fn managed(state: &AppState, auth: &Auth, key_id: &str) -> Result<KeyInfo, ApiError> {
    let key = state
        .keys
        .get(key_id)
        .map_err(|e| ApiError::invalid_parameter(FieldError::new("key_id", e.to_string())))?
        .filter(|k| auth.0.tenant_id.is_none() || k.tenant_id == auth.0.tenant_id)
        .ok_or_else(|| ApiError::not_found(format!("no API key {key_id}")))?;
    Ok(key)
}

fn seconds(field: &str, value: u64) -> Result<i64, ApiError> {
    if value == 0 || value > MAX_KEY_SECONDS {
        return Err(ApiError::invalid_parameter(FieldError::new(
            field,
            format!("must be from 1 to {MAX_KEY_SECONDS} seconds"),
        )));
    }
    Ok(value as i64 * 1_000_000)
}

/// Every key the caller may manage, newest first.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("api_key" = [])),
    responses((status = 200, description = "Keys (never their secrets)", body = Vec<KeyView>)))]
pub async fn list_keys(
    auth: Auth,
    State(state): State<AppState>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    auth.require(Scope::Admin)?;
    blocking(move || {
        let keys = state.keys.list().map_err(ApiError::internal)?;
        Ok(Json(
            keys.into_iter()
                .filter(|k| auth.0.tenant_id.is_none() || k.tenant_id == auth.0.tenant_id)
                .map(KeyView::of)
                .collect(),
        ))
    })
    .await
}

/// Creates a key; its text is in the answer and nowhere else.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", security(("api_key" = [])),
    request_body = NewKey,
    responses((status = 201, description = "Created", body = CreatedKey), (status = 400, description = "Invalid")))]
pub async fn create_key(
    auth: Auth,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    auth.require(Scope::Admin)?;
    let new: NewKey =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    let scopes = Scope::parse_list(&new.scopes.join(","))
        .map_err(|e| ApiError::invalid_parameter(FieldError::new("scopes", e)))?;
    let tenant = match (&auth.0.tenant_id, new.tenant_id) {
        (Some(bound), Some(asked)) if *bound != asked => {
            return Err(ApiError::forbidden_field(
                "tenant_id",
                format!(
                    "this API key is bound to tenant {bound:?} and cannot create keys for {asked:?}"
                ),
            ));
        }
        (Some(bound), _) => Some(bound.clone()),
        (None, asked) => asked,
    };
    let expires_at = match (new.expires_at, new.expires_in_secs) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_parameter(FieldError::new(
                "expires_in_secs",
                "give expires_at or expires_in_secs, not both",
            )));
        }
        (Some(at), None) => Some(
            parse_rfc3339_micros(&at)
                .map_err(|e| ApiError::invalid_parameter(FieldError::new("expires_at", e)))?,
        ),
        (None, Some(secs)) => Some(now_micros() + seconds("expires_in_secs", secs)?),
        (None, None) => None,
    };
    let description = new.description;
    blocking(move || {
        let (info, key) = state
            .keys
            .create_expiring(
                &scopes,
                tenant.as_deref(),
                description.as_deref(),
                expires_at,
            )
            .map_err(|e| match e {
                sealtrail_store::StoreError::Invalid(reason) => {
                    ApiError::invalid_parameter(FieldError::new("", reason))
                }
                other => ApiError::internal(other),
            })?;
        Ok(CreatedKey::answer(info, key))
    })
    .await
}

/// Replaces a key with a new one of the same scopes and tenant; the old one is refused at
/// once, or after `grace_secs`.
#[utoipa::path(post, path = "/v1/keys/{key_id}/rotate", tag = "keys", security(("api_key" = [])),
    params(("key_id" = String, Path, description = "The key to replace")),
    request_body(content = Rotation, description = "Grace period (optional)"),
    responses((status = 201, description = "The new key", body = CreatedKey), (status = 404, description = "No such live key")))]
pub async fn rotate_key(
    auth: Auth,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    auth.require(Scope::Admin)?;
    let rotation: Rotation = crate::routes::optional_json(&body)?;
    let grace = rotation
        .grace_secs
        .map(|s| seconds("grace_secs", s))
        .transpose()?;
    blocking(move || {
        managed(&state, &auth, &key_id)?;
        let (info, key) = state
            .keys
            .rotate(&key_id, grace)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("no live API key {key_id}")))?;
        Ok(CreatedKey::answer(info, key))
    })
    .await
}

/// Revokes a key: it is refused from the next request on.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "keys", security(("api_key" = [])),
    params(("key_id" = String, Path, description = "The key to revoke")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such live key")))]
pub async fn revoke_key(
    auth: Auth,
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    blocking(move || {
        managed(&state, &auth, &key_id)?;
        match state.keys.revoke(&key_id).map_err(ApiError::internal)? {
            true => Ok(StatusCode::NO_CONTENT),
            false => Err(ApiError::not_found(format!("no live API key {key_id}"))),
        }
    })
    .await
}
