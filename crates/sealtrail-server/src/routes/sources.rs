//! `GET /v1/sources`: per producer instance, how many of the events it numbered
//! (`source_seq`) reached the log and which did not (the use case is `app::sources`).
//! Needs `read`; a tenant-bound key sees its tenant's sources only.

use axum::Json;
use axum::extract::State;
use sealtrail_core::{FieldError, Scope};
use sealtrail_store::sources::SourceQuery;

use crate::app::sources::SourceView;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::Params;
use crate::state::AppState;

/// Most sources per page.
pub const MAX_SOURCES_LIMIT: usize = 1000;
/// Sources per page when `limit` is not given.
const DEFAULT_SOURCES_LIMIT: usize = 100;

/// A page of sources.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SourcePage {
    /// In `(tenant_id, source)` order.
    pub sources: Vec<SourceView>,
    /// Pass as `after` for the next page (absent on the last).
    pub next: Option<String>,
}

/// Each producer instance's `source_seq` numbers: the highest seen, how many arrived, how
/// many below the highest never did, and the first holes.
#[utoipa::path(get, path = "/v1/sources", tag = "sources", security(("api_key" = [])),
    params(
        ("tenant_id" = Option<String>, Query, description = "Only this tenant's sources"),
        ("missing" = Option<bool>, Query, description = "Only sources with events missing"),
        ("after" = Option<String>, Query, description = "The `next` of the previous page"),
        ("limit" = Option<usize>, Query, description = "At most this many (1 to 1000, default 100)"),
    ),
    responses((status = 200, description = "Sources", body = SourcePage)))]
pub async fn list_sources(
    auth: Auth,
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<SourcePage>, ApiError> {
    auth.require(Scope::Read)?;
    let invalid =
        |field: &str, reason: String| ApiError::invalid_parameter(FieldError::new(field, reason));
    let mut query = SourceQuery {
        limit: DEFAULT_SOURCES_LIMIT,
        ..SourceQuery::default()
    };
    let mut tenant = None;
    for (key, value) in params.pairs() {
        match key {
            "tenant_id" => {
                sealtrail_core::event::validate_tenant_id(value, &state.config.limits.event)
                    .map_err(|r| invalid("tenant_id", r))?;
                tenant = Some(value.to_owned());
            }
            "missing" => {
                query.with_holes = value
                    .parse()
                    .map_err(|_| invalid("missing", "must be true or false".into()))?;
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_SOURCES_LIMIT).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "limit",
                            format!("must be an integer from 1 to {MAX_SOURCES_LIMIT}"),
                        )
                    })?;
            }
            "after" => {
                query.after = Some(parse_after(value).ok_or_else(|| {
                    invalid("after", "is not a `next` value this endpoint gave".into())
                })?);
            }
            other => {
                return Err(invalid(
                    other,
                    "unknown parameter; this endpoint takes tenant_id, missing, after and limit"
                        .into(),
                ));
            }
        }
    }
    query.tenant = auth.confine_tenant(tenant)?;
    let limit = query.limit;
    let sources = state.sources.list(query).await?;
    let next = (sources.len() == limit)
        .then(|| {
            sources
                .last()
                .map(|s| format_after(&s.tenant_id, &s.source))
        })
        .flatten();
    Ok(Json(SourcePage { sources, next }))
}

/// `after` is the last `(tenant, source)` of a page; tenant ids never hold a space.
fn format_after(tenant: &str, source: &str) -> String {
    format!("{tenant} {source}")
}

fn parse_after(text: &str) -> Option<(String, String)> {
    let (tenant, source) = text.split_once(' ')?;
    Some((tenant.to_owned(), source.to_owned()))
}
