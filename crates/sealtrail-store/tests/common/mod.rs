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
use sealtrail_store::{
    CommitStats, LogBackend, LogReader, Sequencer, SequencerConfig, SequencerHandle, SequencerHooks,
};
use serde_json::{Value, json};

/// Which store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Defines `mod sqlite` and `mod postgres`, each with a `#[test]` per named function
/// (taking a [`Kind`]): the shared store suite runs unchanged on both backends.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name($crate::common::Kind::Sqlite) })+
        }
        mod postgres {
            $(#[test] fn $name() { super::$name($crate::common::Kind::Postgres) })+
        }
    };
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDatabase(sealtrail_testkit::pg::TestDatabase);

impl std::ops::Deref for TestDatabase {
    type Target = sealtrail_testkit::pg::TestDatabase;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl TestDatabase {
    /// With the log's schema.
    pub fn create() -> Self {
        let db = Self::create_empty();
        let mut client = db.client();
        sealtrail_store::postgres::migrate(&mut client).unwrap();
        db
    }

    /// A database of its own with no schema at all (what a restore goes into).
    pub fn create_empty() -> Self {
        Self(sealtrail_testkit::pg::TestDatabase::create())
    }
}

/// A log in a temporary directory (and, on PostgreSQL, a database of its own), with its
/// sequencer running.
pub struct TestLog {
    pub kind: Kind,
    pub dir: Option<tempfile::TempDir>,
    pub database: Option<TestDatabase>,
    pub handle: Option<SequencerHandle>,
    pub thread: Option<JoinHandle<()>>,
    pub reader: Box<dyn LogReader>,
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
        Self::open_with(dir, default_config())
    }

    pub fn open_with(dir: tempfile::TempDir, config: SequencerConfig) -> Self {
        Self::open_on(Kind::Sqlite, dir, None, config)
    }

    /// A new, empty log on the given store.
    pub fn on(kind: Kind) -> Self {
        Self::on_with(kind, default_config())
    }

    pub fn on_with(kind: Kind, config: SequencerConfig) -> Self {
        let database = (kind == Kind::Postgres).then(TestDatabase::create);
        Self::open_on(kind, tempfile::tempdir().unwrap(), database, config)
    }

    /// Stops the sequencer and starts a new one on the same store.
    pub fn restart(mut self) -> Self {
        let kind = self.kind;
        let database = self.database.take();
        let dir = self.stop();
        Self::open_on(kind, dir, database, default_config())
    }

    fn open_on(
        kind: Kind,
        dir: tempfile::TempDir,
        database: Option<TestDatabase>,
        config: SequencerConfig,
    ) -> Self {
        match &database {
            None => {
                let (backend, signer) = open_log(dir.path(), Some("sealtrail.test/log")).unwrap();
                let reader = SqliteReader::open(dir.path()).unwrap();
                let indexer = Indexer::open(
                    dir.path(),
                    IndexerConfig {
                        max_batch_events: 100,
                        ..IndexerConfig::default()
                    },
                )
                .unwrap();
                Self::run(
                    kind,
                    dir,
                    None,
                    backend,
                    signer,
                    Box::new(reader),
                    Some(indexer),
                    config,
                )
            }
            Some(db) => {
                let (backend, signer) = sealtrail_store::postgres::open_log(
                    &db.url,
                    dir.path(),
                    Some("sealtrail.test/log"),
                )
                .unwrap();
                let reader = sealtrail_store::postgres::PgReader::open(&db.url).unwrap();
                Self::run(
                    kind,
                    dir,
                    database,
                    backend,
                    signer,
                    Box::new(reader),
                    None,
                    config,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        kind: Kind,
        dir: tempfile::TempDir,
        database: Option<TestDatabase>,
        backend: impl LogBackend,
        signer: sealtrail_core::CheckpointSigner,
        reader: Box<dyn LogReader>,
        indexer: Option<Indexer>,
        config: SequencerConfig,
    ) -> Self {
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
        Self {
            kind,
            indexer,
            database,
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

    /// Indexes one batch (at most 100 events). PostgreSQL keeps its indexes in the
    /// ingest transaction: nothing to do there.
    pub fn index_step(&mut self) -> u64 {
        match self.indexer.as_mut() {
            Some(indexer) => indexer.step().unwrap(),
            None => 0,
        }
    }

    /// Indexes everything committed.
    pub fn index_all(&mut self) {
        if let Some(indexer) = self.indexer.as_mut() {
            indexer.catch_up().unwrap();
        }
    }

    /// Tree sizes of the stored checkpoints, ascending.
    pub fn checkpoint_sizes(&self) -> Vec<i64> {
        let sql = "SELECT tree_size FROM checkpoints ORDER BY tree_size";
        match &self.database {
            None => sqlite(&self.db_path())
                .prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            Some(db) => db
                .client()
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
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

/// Every commit's checkpoint kept, so tests can look at any of them.
fn default_config() -> SequencerConfig {
    SequencerConfig {
        checkpoint_history_interval: std::time::Duration::from_millis(0),
        ..SequencerConfig::default()
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
