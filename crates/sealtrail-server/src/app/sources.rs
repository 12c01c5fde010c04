//! Per-source sequence numbers: which events producers numbered never reached the log.
//!
//! Clients stamp each event with `source` (an instance of a producer) and `source_seq`
//! (1, 2, 3… per instance). [`SourceTracker`] is a cursor on the log, like every consumer:
//! each step reads the stamps of the durable events after its cursor and advances each
//! source's [`SourceProgress`](sealtrail_core::sources::SourceProgress) in the store (see
//! `sealtrail_store::sources`), with the cursor, in one transaction. [`Sources`] answers
//! `GET /v1/sources` and the metrics' totals from the store.

use std::sync::Arc;

use sealtrail_core::sources::Hole;
use sealtrail_core::time_format::parse_rfc3339_micros;
use sealtrail_store::StoreError;
use sealtrail_store::follow::{LogConsumer, ReadPlan, Step, StepError};
use sealtrail_store::sources::{SourceQuery, SourceRow, SourceStamp, SourceStore, SourceTotals};

/// Events read from the log per step.
const STEP_EVENTS: usize = 5000;
/// How far the cursor may run ahead of the stored one over events without stamps before it
/// is written: a log without stamps costs no write per step, and what a restart reads again
/// changes nothing (each row applies only events after its `through`).
const CURSOR_WRITE_EVERY: u64 = 100_000;

/// The stamp members of a stored record; the rest is skipped.
#[derive(serde::Deserialize)]
struct Stamped {
    source: Option<String>,
    source_seq: Option<u64>,
    received_at: String,
}

/// The stamp of a stored event, if it carries one.
fn stamp_of(event: &sealtrail_core::StoredEvent) -> Option<SourceStamp> {
    // Most records carry none: a substring search is far cheaper than a parse.
    memchr::memmem::find(&event.record, b"\"source_seq\":")?;
    let stamped: Stamped = serde_json::from_slice(&event.record).ok()?;
    Some(SourceStamp {
        tenant: event.tenant_id.clone(),
        source: stamped.source?,
        source_seq: stamped.source_seq?,
        log_seq: event.seq,
        received_at: parse_rfc3339_micros(&stamped.received_at).ok()?,
    })
}

/// The tracker as a consumer of the log.
pub struct SourceTracker {
    /// Where progress is kept.
    pub store: Arc<dyn SourceStore>,
    /// The cursor as last stored.
    pub stored_cursor: u64,
}

impl LogConsumer for SourceTracker {
    fn name(&self) -> &str {
        "sources"
    }

    async fn start(&mut self, through: u64) -> Result<u64, StepError> {
        let store = self.store.clone();
        let cursor = tokio::task::spawn_blocking(move || store.cursor())
            .await
            .map_err(|e| StepError::Fatal(e.to_string()))?
            .map_err(|e| StepError::Fatal(format!("cannot read its cursor: {e}")))?;
        self.stored_cursor = cursor;
        // A database restored from a dump holds no progress; a data directory's is never
        // ahead of its log (backups take it first). Should it be, it waits for the log.
        Ok(cursor.min(through))
    }

    fn plan(&self) -> ReadPlan {
        ReadPlan::Events {
            filter: Box::default(),
            max_events: STEP_EVENTS,
        }
    }

    async fn step(&mut self, step: Step) -> Result<u64, StepError> {
        let page = step.page.expect("the plan reads events");
        let stored_cursor = self.stored_cursor;
        let store = self.store.clone();
        let (scanned, written) = tokio::task::spawn_blocking(move || {
            let stamps: Vec<SourceStamp> = page.events.iter().filter_map(stamp_of).collect();
            let scanned = page.scanned_through.max(step.cursor);
            let due = scanned >= stored_cursor + CURSOR_WRITE_EVERY;
            if !stamps.is_empty() || due {
                store.apply(&stamps, scanned)?;
                return Ok::<_, StoreError>((scanned, true));
            }
            Ok((scanned, false))
        })
        .await
        .map_err(|e| StepError::Fatal(format!("the sources task failed: {e}")))?
        .map_err(|e| StepError::Retry(e.to_string()))?;
        if written {
            self.stored_cursor = scanned;
        }
        Ok(scanned)
    }
}

/// Holes listed per source in an answer.
pub const MAX_LISTED_HOLES: usize = 100;

/// One source as `GET /v1/sources` shows it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SourceView {
    /// The tenant its events are in.
    pub tenant_id: String,
    /// The instance, as stamped (`<name>/<instance>` by Sealtrail's clients).
    pub source: String,
    /// Its highest `source_seq` seen.
    pub highest_seq: u64,
    /// How many distinct numbers arrived.
    pub received: u64,
    /// How many numbers up to the highest never arrived.
    pub missing: u64,
    /// The first holes, oldest first (at most 100; all are counted in `missing`).
    #[schema(value_type = Vec<Object>)]
    pub holes: Vec<Hole>,
    /// When its first event seen arrived (RFC 3339).
    pub first_seen_at: String,
    /// When its latest event seen arrived (RFC 3339).
    pub last_seen_at: String,
}

impl SourceView {
    fn of(row: SourceRow) -> Self {
        use sealtrail_core::time_format::format_micros;
        Self {
            highest_seq: row.progress.highest(),
            received: row.progress.received(),
            missing: row.progress.missing(),
            holes: row.progress.holes(MAX_LISTED_HOLES),
            first_seen_at: format_micros(row.first_seen_at),
            last_seen_at: format_micros(row.last_seen_at),
            tenant_id: row.tenant,
            source: row.source,
        }
    }
}

/// What `GET /v1/sources` reads.
#[derive(Clone)]
pub struct Sources {
    store: Arc<dyn SourceStore>,
}

impl Sources {
    /// Sources answered from `store`.
    pub fn new(store: Arc<dyn SourceStore>) -> Self {
        Self { store }
    }

    /// One page of sources in `(tenant, source)` order.
    pub async fn list(&self, query: SourceQuery) -> Result<Vec<SourceView>, StoreError> {
        let store = self.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.list(&query))
            .await
            .map_err(|e| StoreError::Invalid(format!("the sources task failed: {e}")))??;
        Ok(rows.into_iter().map(SourceView::of).collect())
    }

    /// Counts over every source, for the metrics.
    pub async fn totals(&self) -> Result<SourceTotals, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.totals())
            .await
            .map_err(|e| StoreError::Invalid(format!("the sources task failed: {e}")))?
    }
}
