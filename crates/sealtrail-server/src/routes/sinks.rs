//! Sinks: their state, their dead letters, and replaying them. Sinks see every tenant's
//! events, so these need an `admin` key bound to no tenant.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sealtrail_core::FieldError;
use sealtrail_sinks::{DeadLetter, SinkError, SinkStatus};
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::Params;
use crate::state::AppState;

/// Most dead letters listed at once.
pub const MAX_DEAD_LETTERS_LISTED: usize = 1000;

fn require_global_admin(auth: &Auth) -> Result<(), ApiError> {
    auth.require_unbound_admin("sinks carry every tenant's events")
}

fn sink_error(error: SinkError) -> ApiError {
    match error {
        SinkError::UnknownSink(_) => ApiError::not_found(error.to_string()),
        other => ApiError::internal(other),
    }
}

/// Every sink's state: cursor, lag, last success and error, retry and circuit state.
#[utoipa::path(
    get,
    path = "/v1/sinks",
    tag = "sinks",
    security(("api_key" = [])),
    responses((status = 200, description = "Every sink", body = Vec<SinkStatus>))
)]
pub async fn list_sinks(
    auth: Auth,
    State(state): State<AppState>,
) -> Result<Json<Vec<SinkStatus>>, ApiError> {
    require_global_admin(&auth)?;
    Ok(Json(state.sinks.status()))
}

/// A sink's dead letters (events its receiver refused), oldest first.
#[utoipa::path(
    get,
    path = "/v1/sinks/{name}/dead-letters",
    tag = "sinks",
    security(("api_key" = [])),
    params(
        ("name" = String, Path, description = "The sink"),
        ("limit" = Option<usize>, Query, description = "At most this many (default and maximum 1000)"),
    ),
    responses(
        (status = 200, description = "Dead letters", body = Vec<DeadLetter>),
        (status = 404, description = "No such sink"),
    )
)]
pub async fn dead_letters(
    auth: Auth,
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    require_global_admin(&auth)?;
    let mut limit = MAX_DEAD_LETTERS_LISTED;
    for (key, value) in params.pairs() {
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_DEAD_LETTERS_LISTED).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_parameter(FieldError::new(
                            "limit",
                            format!("must be a number from 1 to {MAX_DEAD_LETTERS_LISTED}"),
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    other,
                    "unknown parameter; this endpoint takes limit",
                )));
            }
        }
    }
    let sinks = state.sinks.clone();
    crate::routes::blocking(move || sinks.dead_letters(&name, limit).map_err(sink_error))
        .await
        .map(Json)
}

/// Which dead letters to send again.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// These seqs only; all of the sink's dead letters when absent.
    #[serde(default)]
    pub seqs: Option<Vec<u64>>,
}

/// How many dead letters were queued for replay.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayAnswer {
    /// Dead letters marked for replay.
    pub queued: usize,
}

/// Sends dead letters again: accepted ones leave the list, refused ones stay with the new
/// answer.
#[utoipa::path(
    post,
    path = "/v1/sinks/{name}/dead-letters/replay",
    tag = "sinks",
    security(("api_key" = [])),
    params(("name" = String, Path, description = "The sink")),
    request_body(content = ReplayRequest, description = "Which ones (all when empty)"),
    responses(
        (status = 202, description = "Queued", body = ReplayAnswer),
        (status = 404, description = "No such sink"),
    )
)]
pub async fn replay(
    auth: Auth,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ReplayAnswer>), ApiError> {
    require_global_admin(&auth)?;
    let request: ReplayRequest = crate::routes::optional_json(&body)?;
    let sinks = state.sinks.clone();
    let queued = crate::routes::blocking(move || {
        sinks
            .replay(&name, request.seqs.as_deref())
            .map_err(sink_error)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayAnswer { queued })))
}
