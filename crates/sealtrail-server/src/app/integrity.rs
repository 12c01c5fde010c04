//! Full verifications of the log while it serves: every record rehashed, every column
//! checked against its record, the tree rebuilt and every signed checkpoint reproduced —
//! what `sealtrail verify` does, run by the server on a schedule (and on demand), so the
//! console can say when the whole log was last found intact.
//!
//! A run reads one snapshot of the store on a thread of its own (never an async worker,
//! and never one the runtime waits for at shutdown: a run over a large log may take
//! minutes, and the next start runs again). Runs do not overlap, even when the caller
//! that asked for one gives up: the thread holds the lock and records the result.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sealtrail_core::CheckpointVerifier;
use sealtrail_core::time_format::{format_micros, now_micros};
use sealtrail_store::follow::Shutdown;
use sealtrail_store::verify::VerifyReport;
use serde::Serialize;
use tokio::sync::watch;

use super::AppError;

/// Which store a run reads.
#[derive(Clone, Debug)]
pub enum Target {
    /// The embedded store in this data directory.
    Embedded(PathBuf),
    /// The PostgreSQL database at this URL.
    Postgres(String),
}

/// The outcome of one full verification, as `GET /v1/integrity` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// When it began (RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: String,
    /// The tree size it rebuilt (up to the first problem).
    pub tree_size: u64,
    /// Events it checked.
    pub events: u64,
    /// Of them, events whose body retention removed (checked by their leaf hash only).
    pub bodies_removed: u64,
    /// Signed checkpoints it reproduced.
    pub checkpoints: u64,
    /// Whether the whole log was intact.
    pub ok: bool,
    /// The first problem found (an edited record, a missing event, a bad signature, ...),
    /// or why the run could not read the store.
    pub problem: Option<String>,
}

/// Runs verifications and keeps the latest result.
pub struct IntegrityAudits {
    target: Target,
    verifier: CheckpointVerifier,
    /// The latest finished run; `None` until the first ends.
    latest: watch::Sender<Option<Verification>>,
    /// Held while a run is under way, by the thread doing it (so a caller that gives up
    /// does not let a second scan start beside the first).
    running: Arc<tokio::sync::Mutex<()>>,
    /// Runs that ended without the log intact (for the metric).
    failed_runs: AtomicU64,
}

impl IntegrityAudits {
    /// Audits of the log at `target`, checked with `verifier` (the server's own key chain).
    pub fn new(target: Target, verifier: CheckpointVerifier) -> Arc<Self> {
        Arc::new(Self {
            target,
            verifier,
            latest: watch::channel(None).0,
            running: Arc::new(tokio::sync::Mutex::new(())),
            failed_runs: AtomicU64::new(0),
        })
    }

    /// The latest finished run.
    pub fn latest(&self) -> Option<Verification> {
        self.latest.borrow().clone()
    }

    /// Runs a full verification now and returns its result. Runs do not overlap: one under
    /// way is waited for first (it may have begun before events this caller wants covered).
    /// The thread doing it records the result, so a caller that gives up loses nothing.
    pub async fn run(self: &Arc<Self>) -> Result<Verification, AppError> {
        let running = self.running.clone().lock_owned().await;
        let (done, result) = tokio::sync::oneshot::channel();
        let audits = self.clone();
        std::thread::Builder::new()
            .name("sealtrail-verify".into())
            .spawn(move || {
                let started_at = now_micros();
                let verification = summary(started_at, verify(&audits.target, &audits.verifier));
                audits.record(&verification);
                drop(running);
                let _ = done.send(verification);
            })
            .map_err(|e| AppError::Internal(format!("cannot start a verification: {e}")))?;
        result
            .await
            .map_err(|_| AppError::Internal("the verification thread panicked".into()))
    }

    fn record(&self, verification: &Verification) {
        if verification.ok {
            tracing::info!(
                events = verification.events,
                tree_size = verification.tree_size,
                "full verification of the log: intact"
            );
        } else {
            self.failed_runs.fetch_add(1, Ordering::Relaxed);
            tracing::error!(problem = ?verification.problem, "full verification of the log FAILED");
        }
        self.latest.send_replace(Some(verification.clone()));
    }

    /// Runs that found the log not intact, since the server started.
    pub fn failed_runs(&self) -> u64 {
        self.failed_runs.load(Ordering::Relaxed)
    }

    /// Verifies once now and then every `every` until `shutdown`; nothing when `every` is zero.
    pub fn spawn_schedule(
        self: Arc<Self>,
        every: Duration,
        shutdown: Shutdown,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if every.is_zero() {
            return None;
        }
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    outcome = self.run() => if let Err(e) = outcome {
                        tracing::error!(error = %e, "scheduled verification could not run");
                    },
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        }))
    }
}

fn verify(target: &Target, verifier: &CheckpointVerifier) -> Result<VerifyReport, String> {
    let report = match target {
        Target::Embedded(dir) => {
            sealtrail_store::verify::verify_sqlite(dir, verifier, None, |_, _| {})
        }
        Target::Postgres(url) => {
            sealtrail_store::postgres::verify_postgres(url, verifier, None, |_, _| {})
        }
    };
    report.map_err(|e| format!("the store could not be read: {e}"))
}

fn summary(started_at: i64, outcome: Result<VerifyReport, String>) -> Verification {
    let finished_at = format_micros(now_micros());
    let started_at = format_micros(started_at);
    match outcome {
        Ok(report) => Verification {
            started_at,
            finished_at,
            tree_size: report.tree_size,
            events: report.events,
            bodies_removed: report.bodies_removed,
            checkpoints: report.checkpoints,
            ok: report.problem.is_none(),
            problem: report.problem.map(|p| p.to_string()),
        },
        Err(reason) => Verification {
            started_at,
            finished_at,
            tree_size: 0,
            events: 0,
            bodies_removed: 0,
            checkpoints: 0,
            ok: false,
            problem: Some(reason),
        },
    }
}
