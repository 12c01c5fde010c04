//! The HTTP routes: one module per concern, small handlers over typed extractors.

pub mod holds;
pub mod ingest;
pub mod integrity;
pub mod keys;
pub mod ops;
pub mod query;
pub mod receipts;
pub mod retention;
pub mod sinks;
pub mod sources;
pub mod tenants;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sealtrail_core::FieldError;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/events", post(ingest::ingest).get(query::list_events))
        .route("/events/search", get(query::search_events))
        .route("/events/{id}", get(query::get_event))
        .route("/stats", get(query::stats))
        .route("/checkpoint", get(integrity::checkpoint))
        .route("/proofs/consistency", get(integrity::consistency_proof))
        .route("/public-key", get(integrity::public_key))
        .route("/integrity", get(integrity::integrity_status))
        .route("/integrity/verify", post(integrity::verify_now))
        .route(
            "/log/signing-key/rotate",
            post(integrity::rotate_signing_key),
        )
        .route("/stream", get(crate::stream::sse::stream))
        .route("/ws", get(crate::stream::ws::ws))
        .route("/keys", get(keys::list_keys).post(keys::create_key))
        .route("/keys/{key_id}", axum::routing::delete(keys::revoke_key))
        .route("/keys/{key_id}/rotate", post(keys::rotate_key))
        .route("/tenants/{tenant_id}/shred", post(tenants::shred_tenant))
        .route(
            "/tenants/{tenant_id}/subjects/{subject}/shred",
            post(tenants::shred_subject),
        )
        .route("/holds", get(holds::list_holds).post(holds::place_hold))
        .route("/holds/{hold_id}/release", post(holds::release_hold))
        .route("/retention/run", post(retention::run_retention))
        .route("/receipts/{id}", get(receipts::receipt))
        .route("/spool/rejected", get(receipts::rejected))
        .route("/sources", get(sources::list_sources))
        .route("/sinks", get(sinks::list_sinks))
        .route("/sinks/{name}/dead-letters", get(sinks::dead_letters))
        .route("/sinks/{name}/dead-letters/replay", post(sinks::replay))
        .route("/openapi.json", get(ops::openapi));
    Router::new()
        .nest("/v1", v1)
        .merge(crate::console::router(&state))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout(),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

/// Query parameters in order, as given; each endpoint decides which it knows.
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::invalid_parameter(FieldError::new("", e.body_text())))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// The pairs as string slices.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A 200/201 response whose JSON body was assembled by hand (stored records are spliced
/// in as they are, never re-serialised).
pub fn raw_json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON body that may be left out (empty or whitespace means the default).
pub fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(e.to_string()))
}

/// Runs blocking store work off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}
