//! Test fixtures shared by the store's integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sealtrail_core::time_format::parse_rfc3339_micros;
use sealtrail_core::{
    CheckpointVerifier, EventLimits, PreparedEvent, TenantScope, prepare_event_value,
};
use sealtrail_store::sqlite::{Indexer, IndexerConfig, SqliteReader, open_log};
use sealtrail_store::{CommitStats, Sequencer, SequencerConfig, SequencerHandle, SequencerHooks};
use serde_json::{Value, json};

/// A log in a temporary directory, with its sequencer running.
pub struct TestLog {
    pub dir: Option<tempfile::TempDir>,
    pub handle: Option<SequencerHandle>,
    pub thread: Option<JoinHandle<()>>,
    pub reader: SqliteReader,
    pub verifier: CheckpointVerifier,
    pub commits: Arc<Mutex<Vec<CommitStats>>>,
    /// Seqs handed to the `on_durable` hook, in the order it saw them.
    pub published: Arc<Mutex<Vec<u64>>>,
    /// Driven by hand (`index_*`), so tests choose how far the index lags the log.
    pub indexer: Option<Indexer>,
}

impl TestLog {
    pub fn new() -> Self {
        Self::open_in(tempfile::tempdir().unwrap())
    }

    pub fn open_in(dir: tempfile::TempDir) -> Self {
        let config = SequencerConfig {
            checkpoint_history_interval: std::time::Duration::from_millis(0),
            ..SequencerConfig::default()
        };
        Self::open_with(dir, config)
    }

    pub fn open_with(dir: tempfile::TempDir, config: SequencerConfig) -> Self {
        let (backend, signer) = open_log(dir.path(), Some("sealtrail.test/log")).unwrap();
        let verifier = signer.verifier().clone();
        let commits = Arc::new(Mutex::new(Vec::new()));
        let seen = commits.clone();
        let published = Arc::new(Mutex::new(Vec::new()));
        let heard = published.clone();
        let hooks = SequencerHooks {
            on_commit: Some(Box::new(move |s: &CommitStats| {
                seen.lock().unwrap().push(s.clone())
            })),
            on_durable: Some(Box::new(
                move |events: Arc<[sealtrail_store::CommittedEvent]>| {
                    heard
                        .lock()
                        .unwrap()
                        .extend(events.iter().map(|e| e.stored.seq))
                },
            )),
        };
        let (handle, thread) = Sequencer::spawn(backend, signer, config, hooks).unwrap();
        let reader = SqliteReader::open(dir.path()).unwrap();
        let indexer = Indexer::open(
            dir.path(),
            IndexerConfig {
                max_batch_events: 100,
                ..IndexerConfig::default()
            },
        )
        .unwrap();
        Self {
            indexer: Some(indexer),
            dir: Some(dir),
            handle: Some(handle),
            thread: Some(thread),
            reader,
            verifier,
            commits,
            published,
        }
    }

    pub fn handle(&self) -> &SequencerHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn db_path(&self) -> PathBuf {
        sealtrail_store::sqlite::log_db_path(self.path())
    }

    /// Stops the sequencer and returns the directory, for a restart.
    pub fn stop(mut self) -> tempfile::TempDir {
        drop(self.indexer.take());
        drop(self.handle.take());
        self.thread.take().unwrap().join().unwrap();
        self.dir.take().unwrap()
    }

    /// Indexes one batch (at most 100 events).
    pub fn index_step(&mut self) -> u64 {
        self.indexer.as_mut().unwrap().step().unwrap()
    }

    /// Indexes everything committed.
    pub fn index_all(&mut self) {
        self.indexer.as_mut().unwrap().catch_up().unwrap();
    }

    pub fn append(&self, events: Vec<Value>) -> sealtrail_store::AppendOutcome {
        self.handle()
            .append_blocking(events.into_iter().map(prepare).collect())
            .unwrap()
    }
}

impl Drop for TestLog {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn prepare(value: Value) -> PreparedEvent {
    prepare_event_value(
        value,
        &TenantScope::Any,
        parse_rfc3339_micros("2026-11-20T12:00:00Z").unwrap(),
        &EventLimits::default(),
    )
    .unwrap()
}

pub fn at(text: &str) -> i64 {
    parse_rfc3339_micros(text).unwrap()
}

/// A varied event: tenant, severity, action, user and time all depend on `n`.
pub fn event(n: u64) -> Value {
    let tenants = ["bloom", "golden-hour", "lakeside"];
    let severities = ["info", "info", "info", "warning", "critical"];
    let actions = [
        "guest.dietary_restriction.updated",
        "guest.rsvp.updated",
        "seating.changed",
        "vendor.added",
    ];
    json!({
        "tenant_id": tenants[(n % 3) as usize],
        "severity": severities[(n % 5) as usize],
        "action": actions[(n % 4) as usize],
        "resource_type": if n % 4 == 3 { "vendor" } else { "guest" },
        "resource_id": (n % 17).to_string(),
        "user_id": format!("coord-{}", n % 7),
        "occurred_at": format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + (n / 1440) % 28, (n / 60) % 24, n % 60),
        "details": {"n": n},
    })
}

pub fn sqlite(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}
