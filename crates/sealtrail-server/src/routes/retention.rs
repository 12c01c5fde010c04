//! `/v1/retention/run`: a retention run now, or a dry run that shows what one would do
//! (the use case is `app::retention`). Needs an `admin` key not bound to a tenant: a run
//! spans every tenant.

use axum::Json;
use axum::extract::State;
use sealtrail_core::retention_policy::Fate;
use sealtrail_core::time_format::{now_micros, parse_rfc3339_micros};
use sealtrail_core::{FieldError, Scope};
use serde::{Deserialize, Serialize};

use crate::app::retention_run::{RunReport, TenantCounts};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// What to run.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRunRequest {
    /// Show what a run would do and change nothing (default false).
    #[serde(default)]
    pub dry_run: bool,
    /// Plan as of this moment (RFC 3339) instead of now: dry runs only.
    #[serde(default)]
    pub at: Option<String>,
}

/// Events due, for one tenant and policy.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanRow {
    /// The tenant.
    pub tenant_id: String,
    /// The policy (`severity:info`, or an override's name).
    pub policy: String,
    /// Nothing due.
    pub keep: u64,
    /// To archive (and remove from the hot store).
    pub archive: u64,
    /// To archive, body kept by a legal hold.
    pub archive_held: u64,
    /// To delete.
    pub delete: u64,
    /// Past retention, kept by a legal hold.
    pub held: u64,
}

/// What one tenant's events went through.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantRunCounts {
    /// The tenant.
    pub tenant_id: String,
    /// Records written to archive segments.
    pub archived: u64,
    /// Bodies removed from the hot store.
    pub bodies_removed: u64,
    /// Deleted past retention.
    pub deleted: u64,
    /// Past retention, kept by a legal hold.
    pub held: u64,
    /// Due for archival, kept hot: no archive is configured.
    pub not_archived: u64,
}

/// A run's report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetentionRunView {
    /// The run's label (its segments carry it).
    pub run: String,
    /// The moment the policies were applied at.
    pub at: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The tree size covered.
    pub through_seq: u64,
    /// Events due per tenant and policy, as found.
    pub plan: Vec<PlanRow>,
    /// What was done per tenant (empty for a dry run).
    pub tenants: Vec<TenantRunCounts>,
    /// Segments written.
    pub segments_written: Vec<String>,
    /// Segments a cut-off run had published, now recorded.
    pub segments_adopted: Vec<String>,
    /// Segments removed (every event in them deleted).
    pub segments_removed: Vec<String>,
    /// Segments that did not verify and were left alone.
    pub segments_refused: Vec<String>,
    /// PostgreSQL month partitions dropped: every event in them was deleted.
    pub partitions_dropped: Vec<String>,
}

impl RetentionRunView {
    fn of(report: RunReport) -> Self {
        let plan = report
            .plan
            .rows
            .iter()
            .map(|((tenant, policy), n)| {
                let at = |fate: Fate| n[Fate::ALL.iter().position(|f| *f == fate).expect("listed")];
                PlanRow {
                    tenant_id: tenant.clone(),
                    policy: policy.clone(),
                    keep: at(Fate::Keep),
                    archive: at(Fate::Archive),
                    archive_held: at(Fate::ArchiveHeld),
                    delete: at(Fate::Delete),
                    held: at(Fate::Held),
                }
            })
            .collect();
        let tenants = match report.dry_run {
            true => Vec::new(),
            false => report
                .tenants
                .iter()
                .map(|(tenant, c): (&String, &TenantCounts)| TenantRunCounts {
                    tenant_id: tenant.clone(),
                    archived: c.archived,
                    bodies_removed: c.bodies_removed,
                    deleted: c.deleted,
                    held: c.held,
                    not_archived: c.not_archived,
                })
                .collect(),
        };
        Self {
            run: report.run,
            at: report.at,
            dry_run: report.dry_run,
            through_seq: report.through_seq,
            plan,
            tenants,
            segments_written: report.segments_written,
            segments_adopted: report.segments_adopted,
            segments_removed: report.segments_removed,
            segments_refused: report.segments_refused,
            partitions_dropped: report.partitions_dropped,
        }
    }
}

/// Runs retention now: archives what reached its archive age, removes archived bodies
/// from the hot store, deletes what is past its retention (never what a legal hold
/// covers), and records the run as `retention.run` events. With `dry_run`, only reports.
#[utoipa::path(post, path = "/v1/retention/run", tag = "retention", security(("api_key" = [])),
    request_body = RetentionRunRequest,
    responses((status = 200, description = "The run's report", body = RetentionRunView)))]
pub async fn run_retention(
    auth: Auth,
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<RetentionRunView>, ApiError> {
    auth.require(Scope::Admin)?;
    if let Some(tenant) = &auth.0.tenant_id {
        return Err(ApiError::forbidden_field(
            "tenant_id",
            format!(
                "this API key is bound to tenant {tenant:?}; a retention run spans every \
                 tenant and needs an admin key bound to none"
            ),
        ));
    }
    let request: RetentionRunRequest = match body.is_empty() {
        true => RetentionRunRequest::default(),
        false => {
            serde_json::from_slice(&body).map_err(|e| ApiError::invalid_json(e.to_string()))?
        }
    };
    let now = match &request.at {
        None => now_micros(),
        Some(_) if !request.dry_run => {
            return Err(ApiError::invalid_parameter(FieldError::new(
                "at",
                "only a dry run may be planned at another moment; a run applies the policies now",
            )));
        }
        Some(text) => parse_rfc3339_micros(text)
            .map_err(|r| ApiError::invalid_parameter(FieldError::new("at", r)))?,
    };
    let report = state
        .retention
        .run(
            now,
            request.dry_run,
            &format!("key:{}", auth.0.key_id),
            &state.log,
            &state.config.limits.event,
            &state.config.access_log.global_tenant,
        )
        .await?;
    Ok(Json(RetentionRunView::of(report)))
}
