//! Retention runs as the server makes them: on a schedule and when an admin asks
//! (`POST /v1/retention/run`, `sealtrail retention run`), one at a time, each recorded in
//! the log — a `retention.run` event in every tenant whose events it changed, and one with
//! the totals in the server's own tenant. The run itself is `retention_run`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sealtrail_core::retention_policy::RetentionConfig;
use sealtrail_core::time_format::now_micros;
use sealtrail_core::{CheckpointVerifier, EventLimits, PreparedEvent};
use sealtrail_store::SequencerHandle;
use sealtrail_store::follow::Shutdown;
use sealtrail_store::holds::HoldStore;
use sealtrail_store::retention::{ActiveHolds, HoldCheck, RetentionLedger};
use sealtrail_store::{LogReader, StoreError};

use super::error::blocking;
use super::retention_run::{RunContext, RunReport, TenantCounts, run};
use super::system::{RetentionRecord, RetentionSegments};
use super::{AppError, DurableLog};
use crate::config::RetentionRunSettings;

/// Runs retention for the server.
pub struct Retention {
    inner: Arc<Inner>,
    /// One run at a time.
    running: tokio::sync::Mutex<()>,
}

struct Inner {
    reader: Arc<dyn LogReader>,
    ledger: Arc<dyn RetentionLedger>,
    holds: Arc<HoldStore>,
    sequencer: SequencerHandle,
    verifier: CheckpointVerifier,
    policies: RetentionConfig,
    settings: RetentionRunSettings,
    /// The embedded store's data directory: its newest commit is fsync'd before a run
    /// proves segments against it. None on PostgreSQL, where a commit is durable.
    sqlite_dir: Option<PathBuf>,
    /// Where segments go.
    archive: Option<Arc<sealtrail_archive::ArchiveLocation>>,
}

/// What the server needs to run retention.
pub struct RetentionParts {
    /// The log's read side.
    pub reader: Arc<dyn LogReader>,
    /// The store's retention ledger.
    pub ledger: Arc<dyn RetentionLedger>,
    /// Legal holds.
    pub holds: Arc<HoldStore>,
    /// The sequencer (its durable checkpoint).
    pub sequencer: SequencerHandle,
    /// The log's verifier.
    pub verifier: CheckpointVerifier,
    /// The policies.
    pub policies: RetentionConfig,
    /// Where to archive, how often to run.
    pub settings: RetentionRunSettings,
    /// The embedded store's data directory (None on PostgreSQL).
    pub sqlite_dir: Option<PathBuf>,
    /// Where segments go (opened from `settings.archive_to`).
    pub archive: Option<Arc<sealtrail_archive::ArchiveLocation>>,
}

impl Retention {
    /// The store's retention ledger (reads that include the archive consult it).
    pub fn ledger(&self) -> Arc<dyn RetentionLedger> {
        self.inner.ledger.clone()
    }

    /// Retention over `parts`.
    pub fn new(parts: RetentionParts) -> Self {
        let RetentionParts {
            reader,
            ledger,
            holds,
            sequencer,
            verifier,
            policies,
            settings,
            sqlite_dir,
            archive,
        } = parts;
        Self {
            inner: Arc::new(Inner {
                reader,
                ledger,
                holds,
                sequencer,
                verifier,
                policies,
                settings,
                sqlite_dir,
                archive,
            }),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs retention as of `now` (UTC µs; the clock unless a test or a dry run says
    /// otherwise). A real run is recorded in `log` (events bounded by `limits`, totals in
    /// `own_tenant`), by `by` (`schedule`, `key:<id>`).
    pub async fn run(
        &self,
        now: i64,
        dry_run: bool,
        by: &str,
        log: &DurableLog,
        limits: &EventLimits,
        own_tenant: &str,
    ) -> Result<RunReport, AppError> {
        let _one_at_a_time = self.running.lock().await;
        let inner = self.inner.clone();
        let started = std::time::Instant::now();
        let report = blocking(move || Ok(inner.run(now, dry_run)?)).await?;
        if dry_run {
            return Ok(report);
        }
        let records = records(&report, by, own_tenant, limits)?;
        log.record(records).await.map_err(|e| {
            AppError::Internal(format!(
                "retention run {} is done, but recording it in the log failed: {e}",
                report.run
            ))
        })?;
        let totals = report.totals();
        tracing::info!(
            run = %report.run,
            archived = totals.archived,
            bodies_removed = totals.bodies_removed,
            deleted = totals.deleted,
            held = totals.held,
            segments = report.segments_written.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "retention run"
        );
        Ok(report)
    }

    /// Runs retention every `every_hours` hours (the first run one interval after the
    /// start) until `shutdown`; a failed run is logged and retried at the next interval.
    pub fn spawn_schedule(
        self: Arc<Self>,
        log: DurableLog,
        limits: EventLimits,
        own_tenant: String,
        shutdown: Shutdown,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let hours = self.inner.settings.every_hours;
        if hours == 0 {
            return None;
        }
        let every = Duration::from_secs(u64::from(hours) * 3600);
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let outcome = self
                    .run(now_micros(), false, "schedule", &log, &limits, &own_tenant)
                    .await;
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "scheduled retention run failed; next in {hours} h");
                }
            }
        }))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // An S3 location holds a blocking HTTP client, whose runtime must not be dropped
        // on an async worker: let it go on a thread of its own.
        if let Some(archive) = self.archive.take() {
            let _ = std::thread::Builder::new()
                .name("sealtrail-archive-close".into())
                .spawn(move || drop(archive));
        }
    }
}

impl Inner {
    fn run(&self, now: i64, dry_run: bool) -> Result<RunReport, StoreError> {
        if let Some(dir) = &self.sqlite_dir {
            sealtrail_store::sqlite::sync_committed(dir)?;
        }
        let checkpoint = self.sequencer.durable_checkpoint();
        let holds_store = self.holds.clone();
        let holds = move || -> Result<Box<dyn HoldCheck>, StoreError> {
            Ok(Box::new(ActiveHolds::load(&holds_store)?))
        };
        let cx = RunContext {
            reader: &*self.reader,
            ledger: &*self.ledger,
            policies: &self.policies,
            archive: self.archive.as_deref(),
            zstd_level: self.settings.zstd_level,
            verifier: &self.verifier,
            holds: &holds,
        };
        run(&cx, now, &checkpoint, dry_run, |_, _| {})
    }
}

/// The run's events: each tenant's counts, and the totals in the server's own tenant.
fn records(
    report: &RunReport,
    by: &str,
    own_tenant: &str,
    limits: &EventLimits,
) -> Result<Vec<PreparedEvent>, AppError> {
    let received_at = now_micros();
    let segments = RetentionSegments {
        written: &report.segments_written,
        adopted: &report.segments_adopted,
        removed: &report.segments_removed,
        partitions_dropped: &report.partitions_dropped,
    };
    let totals = report.totals();
    let mut events = Vec::new();
    let changed = |c: &TenantCounts| c.archived + c.bodies_removed + c.deleted + c.held > 0;
    for (tenant, counts) in report.tenants.iter().filter(|(_, c)| changed(c)) {
        if tenant == own_tenant {
            continue;
        }
        events.push(record(
            report,
            tenant,
            by,
            counts,
            None,
            received_at,
            limits,
        )?);
    }
    events.push(record(
        report,
        own_tenant,
        by,
        &totals,
        Some(segments),
        received_at,
        limits,
    )?);
    Ok(events)
}

fn record(
    report: &RunReport,
    tenant: &str,
    by: &str,
    counts: &TenantCounts,
    segments: Option<RetentionSegments<'_>>,
    received_at: i64,
    limits: &EventLimits,
) -> Result<PreparedEvent, AppError> {
    RetentionRecord {
        tenant,
        by,
        run: &report.run,
        at: &report.at,
        through_seq: report.through_seq,
        counts,
        segments,
    }
    .prepare(received_at, limits)
    .map_err(AppError::Invalid)
}
