//! The log's evidence: the latest signed checkpoint, consistency proofs between tree
//! sizes, and the public key that checks the signatures.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use sealtrail_core::time_format::format_micros;
use sealtrail_core::{FieldError, Scope};
use sealtrail_store::CheckpointRow;

use super::Params;
use crate::api::{CheckpointView, ConsistencyProof, PublicKey};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Scopes that may read the log's evidence: it names no tenant's data, and producers keep
/// checkpoints too.
const EVIDENCE_SCOPES: [Scope; 2] = [Scope::Read, Scope::Ingest];

pub(crate) fn checkpoint_view(origin: &str, row: &CheckpointRow) -> CheckpointView {
    CheckpointView {
        origin: origin.to_owned(),
        tree_size: row.tree_size,
        root_hash: hex::encode(row.root),
        signed_at: format_micros(row.created_at),
        note: row.note.clone(),
    }
}

/// The latest signed checkpoint.
#[utoipa::path(
    get,
    path = "/v1/checkpoint",
    tag = "integrity",
    responses(
        (status = 200, description = "The latest signed checkpoint", body = CheckpointView),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<CheckpointView>, ApiError> {
    auth.require_any(&EVIDENCE_SCOPES)?;
    // The durable checkpoint, never one whose commit might still be lost.
    let row = state.sequencer.durable_checkpoint();
    Ok(Json(checkpoint_view(state.verifier.origin(), &row)))
}

/// An RFC 9162 consistency proof between two tree sizes.
#[utoipa::path(
    get,
    path = "/v1/proofs/consistency",
    tag = "integrity",
    params(
        ("from" = u64, Query, description = "The older tree size (≥ 1)"),
        ("to" = u64, Query, description = "The newer tree size (≤ the current size)"),
    ),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "Sizes out of range", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn consistency_proof(
    State(state): State<AppState>,
    auth: Auth,
    requester: crate::access::Requester,
    params: Params,
) -> Result<Json<ConsistencyProof>, ApiError> {
    auth.require_any(&EVIDENCE_SCOPES)?;
    let (mut from, mut to) = (None, None);
    for (key, value) in params.pairs() {
        let parsed = || {
            value.parse::<u64>().map_err(|_| {
                ApiError::invalid_parameter(FieldError::new(
                    key,
                    format!("{value:?} is not a tree size"),
                ))
            })
        };
        match key {
            "from" => from = Some(parsed()?),
            "to" => to = Some(parsed()?),
            other => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    other,
                    "unknown parameter; known are from, to",
                )));
            }
        }
    }
    let from =
        from.ok_or_else(|| ApiError::invalid_parameter(FieldError::new("from", "required")))?;
    let to = to.ok_or_else(|| ApiError::invalid_parameter(FieldError::new("to", "required")))?;
    let hashes = state
        .reads
        .consistency_proof(
            &requester.who(&auth),
            (from, to),
            auth.0.tenant_id.as_deref(),
            crate::access::params_object(params.pairs()),
        )
        .await?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        hashes: hashes.iter().map(hex::encode).collect(),
    }))
}

/// The public key checkpoints are signed with.
#[utoipa::path(
    get,
    path = "/v1/public-key",
    tag = "integrity",
    responses(
        (status = 200, description = "The log's public key", body = PublicKey),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn public_key(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<PublicKey>, ApiError> {
    auth.require_any(&[Scope::Read, Scope::Ingest])?;
    Ok(Json(PublicKey {
        origin: state.verifier.origin().to_owned(),
        algorithm: "ed25519".into(),
        public_key: base64::engine::general_purpose::STANDARD.encode(state.verifier.public_key()),
        vkey: state.verifier.vkey(),
        rotations: state.verifier.rotations(),
    }))
}

/// Why the signing key is rotated.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSigningKeyRequest {
    /// Why: 1 to 1024 characters, recorded in the log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A signing-key rotation done.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SigningKeyRotation {
    /// The `log.signing_key_rotated` event, in the server's own tenant.
    pub event_id: String,
    /// Its seq: the tree of this size is signed by both keys, later ones by the new key.
    pub from_size: u64,
    /// The retired key.
    pub old_vkey: String,
    /// The key signing from now on.
    pub new_vkey: String,
    /// The statement handing the log over, signed by both keys.
    pub statement: String,
}

/// Rotates the log's signing key (admin): the log is handed to a new Ed25519 key by a
/// statement signed by the old and the new key, recorded in the log. The new key is the
/// one in `log-signing.next` of the data directory when there is one (copy it to every
/// server of a shared database first), else a new one.
#[utoipa::path(post, path = "/v1/log/signing-key/rotate", tag = "integrity", security(("api_key" = [])),
    request_body = RotateSigningKeyRequest,
    responses(
        (status = 200, description = "Rotated", body = SigningKeyRotation),
        (status = 409, description = "log-signing.next holds a key the log has used"),
    ))]
pub async fn rotate_signing_key(
    auth: Auth,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<SigningKeyRotation>, ApiError> {
    auth.require_unbound_admin("the signing key is the whole log's")?;
    let request: RotateSigningKeyRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    let reason = request
        .reason
        .ok_or_else(|| ApiError::invalid_parameter(FieldError::new("reason", "is required")))?;
    let rotated = state.signing_keys.rotate(&auth.0.key_id, &reason).await?;
    Ok(Json(SigningKeyRotation {
        event_id: rotated.receipt.id.to_string(),
        from_size: rotated.from_size,
        old_vkey: rotated.old_vkey,
        new_vkey: rotated.new_vkey,
        statement: rotated.statement,
    }))
}

/// The log's integrity at a glance: the latest signed checkpoint and the server's last full
/// verification.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IntegrityStatus {
    /// The latest durable signed checkpoint.
    pub checkpoint: CheckpointView,
    /// The last full verification (`null` until the first has ended).
    pub verification: Option<crate::app::integrity::Verification>,
    /// Seconds between scheduled verifications (0: only on request).
    pub verify_every_secs: u64,
}

/// The latest checkpoint and the last full verification of the log by this server (every
/// record rehashed, the tree rebuilt, every signed checkpoint reproduced; `[integrity]`).
#[utoipa::path(get, path = "/v1/integrity", tag = "integrity", security(("api_key" = [])),
    responses(
        (status = 200, description = "The log's integrity", body = IntegrityStatus),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
    ))]
pub async fn integrity_status(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<IntegrityStatus>, ApiError> {
    auth.require_any(&EVIDENCE_SCOPES)?;
    let mut latest = state.integrity.latest();
    // The finding may quote another tenant's record (a column against its record): a
    // tenant-bound key learns whether the log is intact, not what was found where.
    if auth.0.tenant_id.is_some()
        && let Some(verification) = latest.as_mut()
        && verification.problem.is_some()
    {
        verification.problem =
            Some("the log is not intact; the finding is shown to keys bound to no tenant".into());
    }
    Ok(Json(status(&state, latest)))
}

/// Verifies the whole log now (admin) and answers with the result; a verification already
/// under way is waited for first.
#[utoipa::path(post, path = "/v1/integrity/verify", tag = "integrity", security(("api_key" = [])),
    responses(
        (status = 200, description = "The verification's result (ok false: the log is not intact)", body = IntegrityStatus),
        (status = 403, description = "Not an admin key bound to no tenant", body = crate::error::ErrorBody),
    ))]
pub async fn verify_now(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<IntegrityStatus>, ApiError> {
    auth.require_unbound_admin("a verification reads every tenant's records")?;
    let verification = state.integrity.run().await?;
    Ok(Json(status(&state, Some(verification))))
}

fn status(
    state: &AppState,
    verification: Option<crate::app::integrity::Verification>,
) -> IntegrityStatus {
    IntegrityStatus {
        checkpoint: checkpoint_view(
            state.verifier.origin(),
            &state.sequencer.durable_checkpoint(),
        ),
        verification,
        verify_every_secs: state.config.integrity.verify_every_secs,
    }
}
