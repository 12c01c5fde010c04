//! The indexer: a cursor on the log that maintains the query indexes in `index.sqlite`.
//!
//! Secondary indexes keyed by tenant, user or resource put each event's entries on pages
//! scattered over the index; committed with every group commit, SQLite rewrites thousands
//! of such pages per fsync, and durable ingest fell from ~84,000 to ~6,000 events/s in our
//! measurements. So, as DESIGN.md says of every consumer, the indexes follow the log from a
//! cursor instead: the sequencer's commits touch only the append-only log, and the indexer
//! copies newly committed rows into the index database in large batches, where each page
//! collects many entries per write and no fsync is waited for (the index is derived data:
//! after a crash it resumes from the cursor stored in the same transaction).
//!
//! Queries stay exact while the indexer lags: they read the index up to its cursor and the
//! log's few newer rows directly (see reader.rs).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::{INDEX_DB_FILE, log_db_path, schema};

/// `occurred_at` floored to its UTC hour, in SQL (floor division, right before 1970 too).
pub(crate) const HOUR_OF_OCCURRED_AT: &str =
    "occurred_at - (((occurred_at % 3600000000) + 3600000000) % 3600000000)";
use crate::StoreError;
use crate::follow::{
    FollowTiming, Horizon, LogConsumer, LogFollower, ReadPlan, Shutdown, Step, StepError,
};
use crate::sequencer::DurableSize;

/// How the indexer batches.
#[derive(Clone, Debug)]
pub struct IndexerConfig {
    /// Most log rows copied in one index transaction.
    pub max_batch_events: u64,
    /// Index as soon as this many rows wait...
    pub min_batch_events: u64,
    /// ...or once the oldest waiting row has waited this long.
    pub max_delay: Duration,
    /// How often to look at the log's size.
    pub poll_interval: Duration,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 50_000,
            min_batch_events: 10_000,
            max_delay: Duration::from_millis(200),
            poll_interval: Duration::from_millis(20),
        }
    }
}

/// Page cache of the indexer's connection, in KiB: the hot ends of six indexes.
const INDEXER_CACHE_KIB: i64 = 256 * 1024;

/// The index database's writer.
pub struct Indexer {
    conn: Connection,
    config: IndexerConfig,
    /// The durable tree size, when a sequencer is running: rows beyond it are committed but
    /// not yet fsync'd, and an index must never hold what a power cut could take back.
    durable: Option<DurableSize>,
}

impl Indexer {
    /// Opens the index database of the log in `data_dir`, (re)creating it if it is missing
    /// or of another version.
    pub fn open(data_dir: &Path, config: IndexerConfig) -> Result<Self, StoreError> {
        let conn = Connection::open(data_dir.join(INDEX_DB_FILE))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Derived data: a crash may lose the newest batches, never consistency, and the
        // cursor is lost with them, so they are simply indexed again.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -INDEXER_CACHE_KIB)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        schema::prepare_index(&conn)?;
        let log = log_db_path(data_dir);
        conn.execute("ATTACH DATABASE ?1 AS log", params![log.to_string_lossy()])?;
        let indexer = Self {
            conn,
            config,
            durable: None,
        };
        if let Some(reason) = indexer.foreign_reason()? {
            tracing::warn!(%reason, "rebuilding the query index");
            schema::reset_index(&indexer.conn)?;
        }
        Ok(indexer)
    }

    /// Why the index does not belong to the log as it is now, if it does not: it is ahead
    /// of the log (a power cut took back rows it had seen — which the durable bound now
    /// prevents — or rows were deleted), or the last event it indexed is not the log's
    /// (another log, or a restored backup).
    fn foreign_reason(&self) -> Result<Option<String>, StoreError> {
        let through = self.indexed_through()?;
        if through == 0 {
            return Ok(None);
        }
        let indexed_leaf: Vec<u8> = self.conn.query_row(
            "SELECT value FROM main.ix_meta WHERE key = 'indexed_leaf'",
            [],
            |r| r.get(0),
        )?;
        let log_leaf: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT leaf_hash FROM log.events WHERE seq = ?1",
                params![through as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match log_leaf {
            None => Some(format!(
                "the index covers seq {through}, which the log does not have"
            )),
            Some(leaf) if leaf != indexed_leaf => Some(format!(
                "the log's event {through} is not the one the index holds"
            )),
            Some(_) => None,
        })
    }

    /// Indexes only up to the sequencer's durable tree size.
    pub fn bounded_by(mut self, durable: DurableSize) -> Self {
        self.durable = Some(durable);
        self
    }

    /// The highest seq the index holds.
    pub fn indexed_through(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT value FROM main.ix_meta WHERE key = 'indexed_through'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    fn log_size(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM log.events", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Indexes the next batch of committed rows; returns how many.
    pub fn step(&mut self) -> Result<u64, StoreError> {
        let bound = self.durable.as_ref().map_or(u64::MAX, DurableSize::get);
        self.step_within(bound)
    }

    /// Indexes the next batch of committed rows up to seq `bound`; returns how many.
    fn step_within(&mut self, bound: u64) -> Result<u64, StoreError> {
        let from = self.indexed_through()?;
        let upto = self
            .log_size()?
            .min(from + self.config.max_batch_events)
            .min(bound);
        if upto <= from {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let copied = tx.execute(
            "INSERT INTO main.ev (seq, tenant_id, occurred_at, severity, action, user_id,
                                  resource_type, resource_id)
             SELECT seq, tenant_id, occurred_at, severity, action, user_id, resource_type, resource_id
             FROM log.events WHERE seq > ?1 AND seq <= ?2 AND length(record) > 0 ORDER BY seq",
            params![from as i64, upto as i64],
        )?;
        // Rows whose bodies retention removed stay out of the query index (they are in the
        // archive), as retention takes them out of it; they still count as present.
        let emptied: i64 = tx.query_row(
            "SELECT COUNT(*) FROM log.events WHERE seq > ?1 AND seq <= ?2 AND length(record) = 0",
            params![from as i64, upto as i64],
            |row| row.get(0),
        )?;
        let copied = copied + emptied as usize;
        tx.execute(
            &format!(
                "INSERT INTO main.rollup (tenant_id, hour, severity, action, resource_type, n)
                 SELECT tenant_id, {HOUR_OF_OCCURRED_AT}, severity, action, resource_type, COUNT(*)
                 FROM log.events WHERE seq > ?1 AND seq <= ?2
                 GROUP BY 1, 2, 3, 4, 5
                 ON CONFLICT (tenant_id, hour, severity, action, resource_type)
                 DO UPDATE SET n = n + excluded.n"
            ),
            params![from as i64, upto as i64],
        )?;
        if copied as u64 != upto - from {
            return Err(StoreError::Integrity(format!(
                "the log lacks {} of seqs {}..={upto}; run `sealtrail verify`",
                upto - from - copied as u64,
                from + 1
            )));
        }
        tx.execute(
            "UPDATE main.ix_meta SET value = ?1 WHERE key = 'indexed_through'",
            params![upto as i64],
        )?;
        tx.execute(
            "UPDATE main.ix_meta SET value = (SELECT leaf_hash FROM log.events WHERE seq = ?1)
             WHERE key = 'indexed_leaf'",
            params![upto as i64],
        )?;
        tx.commit()?;
        Ok(upto - from)
    }

    /// Indexes everything committed so far.
    pub fn catch_up(&mut self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self.step()?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Runs the indexer on its own thread until the handle is stopped or dropped: a
    /// [`LogFollower`] on a single-threaded runtime of its own, so that the thread's
    /// scheduling priority (see [`Priority`]) applies to the indexing alone.
    pub fn spawn(self) -> Result<IndexerHandle, StoreError> {
        let shutdown = Shutdown::new();
        let indexed = Arc::new(AtomicU64::new(self.indexed_through()?));
        let timing = FollowTiming {
            poll: self.config.poll_interval,
            retry_after: self.config.poll_interval * 10,
        };
        let horizon = IndexHorizon(self.durable.clone());
        let follower = LogFollower::without_reader(horizon, shutdown.clone()).with_timing(timing);
        let consumer = IndexConsumer {
            indexer: self,
            indexed: indexed.clone(),
            priority: Priority::Normal,
            waiting_since: None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StoreError::io("starting the indexer's runtime", e))?;
        let thread = std::thread::Builder::new()
            .name("sealtrail-indexer".into())
            .spawn(move || runtime.block_on(follower.run(consumer)))
            .map_err(|e| StoreError::io("starting the indexer thread", e))?;
        Ok(IndexerHandle {
            shutdown,
            indexed,
            thread: Some(thread),
        })
    }
}

/// The indexer's bound: the durable tree when a sequencer runs, else whatever the log
/// holds. It is polled (every `poll_interval`) rather than woken by each commit: batches
/// are what make indexing cheap.
#[derive(Clone)]
struct IndexHorizon(Option<DurableSize>);

impl Horizon for IndexHorizon {
    fn through(&self) -> u64 {
        self.0.as_ref().map_or(u64::MAX, DurableSize::get)
    }

    fn moved_beyond(&self, _seq: u64) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// The indexer as a consumer of the log: it copies rows in SQL, so it reads nothing
/// through the follower, and it waits for a batch to fill (or to age) before a step.
struct IndexConsumer {
    indexer: Indexer,
    indexed: Arc<AtomicU64>,
    priority: Priority,
    /// When the oldest unindexed row was first seen waiting.
    waiting_since: Option<Instant>,
}

impl IndexConsumer {
    fn pending(&self, through: u64) -> Result<u64, StoreError> {
        let size = self.indexer.log_size()?.min(through);
        Ok(size.saturating_sub(self.indexer.indexed_through()?))
    }

    fn adjust_priority(&mut self, pending: u64) {
        let wanted = if pending > MAX_YIELDING_LAG_EVENTS {
            Priority::Normal
        } else {
            Priority::Idle
        };
        if wanted != self.priority {
            self.priority = wanted;
            set_priority(wanted);
        }
    }

    /// A batch is due once it is large, or once its oldest row has waited long enough.
    fn due(&mut self, pending: u64) -> bool {
        let config = &self.indexer.config;
        let due = match self.waiting_since {
            _ if pending >= config.min_batch_events => true,
            Some(since) => pending > 0 && since.elapsed() >= config.max_delay,
            None => false,
        };
        if pending > 0 && self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
        }
        due
    }
}

impl LogConsumer for IndexConsumer {
    fn name(&self) -> &str {
        "indexer"
    }

    async fn start(&mut self, _through: u64) -> Result<u64, StepError> {
        self.adjust_priority(0);
        Ok(self.indexer.indexed_through()?)
    }

    fn plan(&self) -> ReadPlan {
        ReadPlan::Range
    }

    async fn step(&mut self, step: Step) -> Result<u64, StepError> {
        let pending = self.pending(step.through)?;
        self.adjust_priority(pending);
        if !self.due(pending) {
            return Ok(step.cursor);
        }
        self.indexer.step_within(step.through)?;
        let through = self.indexer.indexed_through()?;
        self.indexed.store(through, Ordering::Release);
        self.waiting_since = None;
        Ok(through)
    }
}

/// Unindexed events beyond which the indexer stops yielding the CPU (see
/// [`Priority`]): queries read that many log rows directly, so the lag is kept bounded.
const MAX_YIELDING_LAG_EVENTS: u64 = 200_000;

/// Acknowledging writes comes first. While the lag is small the indexer runs as an idle
/// task (Linux `SCHED_IDLE`): under a burst that saturates the CPU it gives way to the
/// request handlers and the sequencer and catches up when the burst ends; queries stay
/// exact meanwhile, reading the unindexed rows from the log. Past
/// [`MAX_YIELDING_LAG_EVENTS`] it competes normally again, so a sustained overload slows
/// ingest rather than letting the lag, and the cost of queries, grow without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Priority {
    Idle,
    Normal,
}

fn set_priority(priority: Priority) {
    #[cfg(target_os = "linux")]
    {
        let policy = match priority {
            Priority::Idle => libc::SCHED_IDLE,
            Priority::Normal => libc::SCHED_OTHER,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: 0 names the calling thread; the parameter struct outlives the call.
        let result = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if result != 0 {
            tracing::debug!(
                ?priority,
                "could not change the indexer's scheduling policy"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = priority;
}

/// How far the indexer has got: a cheap, cloneable view for health and metrics.
#[derive(Clone, Debug)]
pub struct IndexProgress(Arc<AtomicU64>);

impl IndexProgress {
    /// The highest seq indexed so far.
    pub fn indexed_through(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The running indexer.
pub struct IndexerHandle {
    shutdown: Shutdown,
    indexed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl IndexerHandle {
    /// The highest seq indexed so far.
    pub fn indexed_through(&self) -> u64 {
        self.indexed.load(Ordering::Acquire)
    }

    /// A view of the progress that outlives nothing.
    pub fn progress(&self) -> IndexProgress {
        IndexProgress(self.indexed.clone())
    }

    /// Stops the thread after its current batch.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for IndexerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
