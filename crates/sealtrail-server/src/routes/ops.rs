//! Operations: liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi as _;

use crate::api::Readiness;
use crate::openapi::ApiDoc;
use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the sequencer takes writes and the store answers reads.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let tree_size = state.sequencer.tree_size();
    let reader = state.reader.clone();
    let readable = tokio::task::spawn_blocking(move || reader.latest_checkpoint().is_ok())
        .await
        .unwrap_or(false);
    let ready = state.sequencer.is_healthy() && readable;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let lag = state.index_lag(tree_size);
    let rejected = state.log.rejected_events().len() as u64;
    let mut warnings = state.witnesses.warnings();
    if rejected > 0 {
        warnings.push(format!(
            "{rejected} acknowledged events were refused by the log when the spool drained; \
             `sealtrail spool rejected` lists them"
        ));
    }
    (
        status,
        Json(Readiness {
            ready,
            tree_size,
            index_lag_events: lag,
            spool_events: state.log.spooled_events(),
            spool_rejected_events: rejected,
            warnings,
        }),
    )
}

/// Prometheus metrics.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let tree_size = state.sequencer.tree_size();
    let m = &state.metrics;
    m.tree_size.set(tree_size as i64);
    m.index_lag_events.set(state.index_lag(tree_size) as i64);
    m.spool_events.set(state.log.spooled_events() as i64);
    m.spool_rejected_events
        .set(state.log.rejected_events().len() as i64);
    // Counted from the store at each scrape: on PostgreSQL other servers advance it too.
    // A store that cannot answer leaves the last counts.
    if let Ok(totals) = state.sources.totals().await {
        m.sources.set(totals.sources as i64);
        m.source_missing_events.set(totals.missing as i64);
    }
    m.verification_failures
        .set(state.integrity.failed_runs() as i64);
    m.verified_tree_size.set(
        state
            .integrity
            .latest()
            .filter(|v| v.ok)
            .map_or(0, |v| v.tree_size as i64),
    );
    for sink in state.sinks.status() {
        let label = crate::metrics::SinkLabel { sink: sink.name };
        let set = |family: &prometheus_client::metrics::family::Family<_, _>, value: i64| {
            let gauge: &prometheus_client::metrics::gauge::Gauge = &family.get_or_create(&label);
            gauge.set(value);
        };
        set(&m.sink_lag_events, sink.lag_events as i64);
        set(&m.sink_lag_ms, (sink.lag_seconds * 1000.0) as i64);
        set(&m.sink_delivered_events, sink.delivered_events as i64);
        set(&m.sink_dead_letters, sink.dead_letters as i64);
        set(
            &m.sink_consecutive_failures,
            i64::from(sink.consecutive_failures),
        );
        set(
            &m.sink_lease_held,
            i64::from(sink.lease.as_deref().is_none_or(|l| l == "held")),
        );
    }
    for witness in state.witnesses.statuses() {
        let label = crate::metrics::WitnessLabel {
            witness: witness.name,
        };
        m.witness_size
            .get_or_create(&label)
            .set(witness.size as i64);
        m.witness_alarm
            .get_or_create(&label)
            .set(i64::from(witness.alarm.is_some()));
        m.witness_push_failures
            .get_or_create(&label)
            .set(witness.failures as i64);
    }
    let reader = state.reader.clone();
    if let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || reader.storage_bytes()).await {
        m.store_bytes.set(bytes as i64);
    }
    let mut response = m.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The OpenAPI document, generated from the handlers and types.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
