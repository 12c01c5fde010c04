//! The sequencer: the log's single writer.
//!
//! It runs on its own thread (STYLE.md: plain threads where one writer must own a
//! resource) and owns the backend's write connection. Append requests queue on a bounded
//! channel; each turn of the loop takes every request waiting (up to
//! [`SequencerConfig::max_group_events`]) and commits them as one transaction — group
//! commit — so throughput comes from batching, not from parallel writers.
//!
//! For every group it decides, in order: which producer ids are retries (same content:
//! answer with the original receipt) or conflicts (other content: the whole request is
//! refused, nothing of it stored); the `seq` of each new event (gap-free); its canonical
//! record and leaf hash; the Merkle nodes it completes; and a signed checkpoint of the new
//! tree, written in the same transaction.
//!
//! Durability is a second stage on its own thread, the flusher: the writer hands each
//! committed group (with its answers) to it and goes on to the next group; the flusher
//! fsyncs — one fsync covering every group that arrived meanwhile — and only then answers
//! the producers and moves the durable tree size forward. So every acknowledged event is
//! durable and covered by a signed checkpoint, nothing is reported (checkpoints, tree size)
//! before it is durable, and anything in the store beyond the latest checkpoint was not put
//! there by the sequencer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealtrail_core::merkle::{self, Frontier, Hash, SubtreeHashes};
use sealtrail_core::query::EventColumns;
use sealtrail_core::time_format::now_micros;
use sealtrail_core::{CheckpointSigner, PreparedEvent, Severity};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::traits::{CheckpointRow, LogBackend, NewLeaf, StoredEvent, Syncer};
use crate::{NODE_LEVEL_STRIDE, StoreError};

/// The sequencer's bounds.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most events committed in one transaction. Bigger groups amortise the fsync further
    /// but hold every waiting producer longer.
    pub max_group_events: usize,
    /// Append requests that may wait for the sequencer; producers beyond it wait to enqueue
    /// (backpressure), they are not dropped.
    pub max_queued_requests: usize,
    /// Every commit signs a checkpoint, but only one per this interval is kept as history;
    /// the newest is always kept.
    pub checkpoint_history_interval: Duration,
    /// The data directory holding the signing key. A server sharing its store follows a
    /// rotation made by another one by switching to the next seed waiting there
    /// ([`identity::NEXT_SIGNING_KEY_FILE`](crate::identity::NEXT_SIGNING_KEY_FILE)).
    pub signing_key_dir: Option<std::path::PathBuf>,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            max_group_events: 20_000,
            max_queued_requests: 4096,
            checkpoint_history_interval: Duration::from_secs(60),
            signing_key_dir: None,
        }
    }
}

/// Where one event landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The event id.
    pub id: Uuid,
    /// Its position in the log.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// True when this was a retry of an event already stored (nothing new was written).
    pub duplicate: bool,
}

/// The answer to an accepted append.
#[derive(Clone, Debug)]
pub struct AppendOutcome {
    /// One receipt per submitted event, in submission order.
    pub receipts: Vec<Receipt>,
    /// The signed checkpoint whose tree contains all of them.
    pub checkpoint: Arc<CheckpointRow>,
}

/// Why an append was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// An event reuses a stored id with different content; nothing of the request was stored.
    #[error("event {index} reuses id {id} with different content")]
    Conflict {
        /// Index of the offending event in the request.
        index: usize,
        /// The reused id.
        id: Uuid,
    },
    /// The request is bigger than one group commit may be.
    #[error("{events} events in one request; the sequencer commits at most {max}")]
    TooLarge {
        /// Events submitted.
        events: usize,
        /// The bound.
        max: usize,
    },
    /// The storage failed; nothing of the group was stored.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The sequencer has stopped (shutdown, or a failure it could not recover from).
    #[error("the log is not accepting writes: {0}")]
    Unavailable(String),
}

/// What one commit did, for metrics.
#[derive(Clone, Debug)]
pub struct CommitStats {
    /// Requests answered by it.
    pub requests: usize,
    /// New events written.
    pub events: usize,
    /// From taking the first request to the durable commit.
    pub duration: Duration,
    /// Tree size after it.
    pub tree_size: u64,
}

/// Hook: a group commit's figures.
pub type OnCommit = Box<dyn Fn(&CommitStats) + Send>;
/// Hook: a durable group's new events.
pub type OnDurable = Box<dyn Fn(Arc<[CommittedEvent]>) + Send>;

/// What a running sequencer tells the rest of the server. Both are called on the flusher
/// thread, after durability, in commit order: they must be quick and must not block.
#[derive(Default)]
pub struct SequencerHooks {
    /// Each group commit's figures, for metrics.
    pub on_commit: Option<OnCommit>,
    /// Each durable group's new events, for live streams.
    pub on_durable: Option<OnDurable>,
}

/// A newly durable event, as live streams need it: its indexed columns (for filtering
/// without parsing) and the stored event.
#[derive(Clone, Debug)]
pub struct CommittedEvent {
    /// The event as stored.
    pub stored: StoredEvent,
    /// Its severity.
    pub severity: Severity,
    /// Its action.
    pub action: String,
    /// Its user.
    pub user_id: Option<String>,
    /// Its resource type.
    pub resource_type: String,
    /// Its resource id.
    pub resource_id: Option<String>,
}

impl CommittedEvent {
    /// The event read back from the store (for live delivery of events another server
    /// wrote): the filter columns come from its verbatim record.
    pub fn from_stored(stored: StoredEvent) -> Result<Self, StoreError> {
        let record = sealtrail_core::StoredRecord::parse(&stored.record).map_err(|e| {
            StoreError::Integrity(format!(
                "the record at seq {} is unreadable: {e}",
                stored.seq
            ))
        })?;
        Ok(Self {
            severity: record.severity,
            action: record.action,
            user_id: record.user_id,
            resource_type: record.resource_type,
            resource_id: record.resource_id,
            stored,
        })
    }

    /// The columns filters look at.
    pub fn columns(&self) -> EventColumns<'_> {
        EventColumns {
            tenant_id: &self.stored.tenant_id,
            occurred_at: self.stored.occurred_at,
            severity: self.severity,
            action: &self.action,
            user_id: self.user_id.as_deref(),
            resource_type: &self.resource_type,
            resource_id: self.resource_id.as_deref(),
        }
    }
}

struct AppendRequest {
    events: Vec<PreparedEvent>,
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    /// Set for a signing-key rotation, which is committed as a group of its own.
    rotation: Option<RotationAsk>,
}

/// Builds the rotation's record from its statement and the tree size it takes effect at.
pub type RotationRecord =
    Box<dyn FnOnce(&str, u64) -> Result<PreparedEvent, String> + Send + 'static>;

/// A rotation of the log's signing key to the seed `next`.
struct RotationAsk {
    next: [u8; 32],
    record: RotationRecord,
}

/// Committed groups waiting for the flusher; the writer waits when this many are pending.
const MAX_PENDING_FLUSHES: usize = 64;

type Answer = (
    oneshot::Sender<Result<AppendOutcome, AppendError>>,
    Result<AppendOutcome, AppendError>,
);

/// A committed group on its way to durability.
struct Flush {
    answers: Vec<Answer>,
    /// The group's new events, when someone listens for them.
    events: Option<Arc<[CommittedEvent]>>,
    checkpoint: Arc<CheckpointRow>,
    stats: CommitStats,
    started: Instant,
}

struct Shared {
    /// The durable tree size: every event up to it is acknowledged and may be read.
    tree_size: AtomicU64,
    failed: AtomicBool,
    /// The latest durable signed checkpoint.
    durable: std::sync::Mutex<Arc<CheckpointRow>>,
    durable_size: watch::Sender<u64>,
}

impl Shared {
    fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Moves the durable tree forward to `checkpoint` (never back).
    fn advance(&self, checkpoint: Arc<CheckpointRow>) {
        let mut durable = self
            .durable
            .lock()
            .expect("checkpoint lock is never poisoned");
        if checkpoint.tree_size > durable.tree_size {
            let size = checkpoint.tree_size;
            *durable = checkpoint;
            self.tree_size.store(size, Ordering::Release);
            self.durable_size.send_replace(size);
        }
    }
}

/// A cheap, cloneable way to submit appends. The sequencer stops once every handle is dropped.
#[derive(Clone)]
pub struct SequencerHandle {
    tx: mpsc::Sender<AppendRequest>,
    shared: Arc<Shared>,
    max_group_events: usize,
}

impl SequencerHandle {
    /// Appends events and waits until they are durable.
    pub async fn append(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, AppendError> {
        let (reply, answer) = self.request(events)?;
        self.tx
            .send(reply)
            .await
            .map_err(|_| AppendError::Unavailable("the sequencer has stopped".into()))?;
        answer.await.map_err(|_| {
            AppendError::Unavailable("the sequencer stopped before answering".into())
        })?
    }

    /// [`append`](Self::append) for callers outside an async runtime (tools, benchmarks).
    pub fn append_blocking(
        &self,
        events: Vec<PreparedEvent>,
    ) -> Result<AppendOutcome, AppendError> {
        let (reply, answer) = self.request(events)?;
        self.tx
            .blocking_send(reply)
            .map_err(|_| AppendError::Unavailable("the sequencer has stopped".into()))?;
        answer.blocking_recv().map_err(|_| {
            AppendError::Unavailable("the sequencer stopped before answering".into())
        })?
    }

    #[allow(clippy::type_complexity)]
    fn request(
        &self,
        events: Vec<PreparedEvent>,
    ) -> Result<
        (
            AppendRequest,
            oneshot::Receiver<Result<AppendOutcome, AppendError>>,
        ),
        AppendError,
    > {
        if events.len() > self.max_group_events {
            return Err(AppendError::TooLarge {
                events: events.len(),
                max: self.max_group_events,
            });
        }
        let (reply, answer) = oneshot::channel();
        Ok((
            AppendRequest {
                events,
                reply,
                rotation: None,
            },
            answer,
        ))
    }

    /// Hands the log to the signing key `next`: appends the rotation record `record` makes
    /// from the statement (signed by the current and the next key) as the next leaf, signs
    /// the tree that holds it with both keys and every later one with `next` alone, and
    /// files the statement with the log. Answers once that is durable; the caller then
    /// makes `next` the key in the data directory
    /// ([`promote_next_signing_key`](crate::identity::promote_next_signing_key)).
    pub async fn rotate_signing_key(
        &self,
        next: [u8; 32],
        record: RotationRecord,
    ) -> Result<AppendOutcome, AppendError> {
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            events: Vec::new(),
            reply,
            rotation: Some(RotationAsk { next, record }),
        };
        self.tx
            .send(request)
            .await
            .map_err(|_| AppendError::Unavailable("the sequencer has stopped".into()))?;
        answer.await.map_err(|_| {
            AppendError::Unavailable("the sequencer stopped before answering".into())
        })?
    }

    /// The tree size after the latest durable commit: everything up to it is acknowledged,
    /// and reads should see nothing beyond it.
    pub fn tree_size(&self) -> u64 {
        self.shared.tree_size.load(Ordering::Acquire)
    }

    /// The latest signed checkpoint that is on stable storage.
    pub fn durable_checkpoint(&self) -> Arc<CheckpointRow> {
        self.shared
            .durable
            .lock()
            .expect("checkpoint lock is never poisoned")
            .clone()
    }

    /// Waits until the durable tree holds at least `size` leaves (or the sequencer stops).
    pub async fn wait_durable(&self, size: u64) {
        let mut durable = self.shared.durable_size.subscribe();
        let _ = durable.wait_for(|&d| d >= size).await;
    }

    /// Another server sharing the store appended up to `checkpoint` (which the caller has
    /// verified): reads and proofs may now use it. This sequencer catches up with the
    /// events themselves at its next commit.
    pub fn observe_stored(&self, checkpoint: CheckpointRow) {
        self.shared.advance(Arc::new(checkpoint));
    }

    /// A cheap view of the durable tree size for other threads (the indexer).
    pub fn durable_size(&self) -> DurableSize {
        DurableSize(self.shared.clone())
    }

    /// False once the sequencer has stopped or failed: the server is then not ready.
    pub fn is_healthy(&self) -> bool {
        !self.shared.failed.load(Ordering::Acquire) && !self.tx.is_closed()
    }
}

/// The durable tree size, readable from any thread.
#[derive(Clone)]
pub struct DurableSize(Arc<Shared>);

impl DurableSize {
    /// The durable tree size now.
    pub fn get(&self) -> u64 {
        self.0.tree_size.load(Ordering::Acquire)
    }

    /// Waits until the durable tree holds more than `size` leaves (or the sequencer stops,
    /// when it returns at once: callers re-check).
    pub async fn wait_beyond(&self, size: u64) {
        let mut durable = self.0.durable_size.subscribe();
        let _ = durable.wait_for(|&d| d > size).await;
    }
}

/// Starts sequencers.
pub struct Sequencer;

impl Sequencer {
    /// Checks the stored log against its latest signed checkpoint and starts the writer
    /// thread. Refuses to start on a log whose stored tree does not match what was signed:
    /// appending to it would sign over whatever was changed.
    pub fn spawn<B: LogBackend>(
        mut backend: B,
        signer: CheckpointSigner,
        config: SequencerConfig,
        hooks: SequencerHooks,
    ) -> Result<(SequencerHandle, JoinHandle<()>), StoreError> {
        let mut syncer = backend.syncer()?;
        let frontier = open_log(&mut backend, &signer, syncer.as_mut())?;
        let latest = Arc::new(
            backend
                .state()?
                .latest_checkpoint
                .expect("open_log leaves a checkpoint of the current tree"),
        );
        let (durable_size, _) = watch::channel(frontier.size());
        let shared = Arc::new(Shared {
            tree_size: AtomicU64::new(frontier.size()),
            failed: AtomicBool::new(false),
            durable: std::sync::Mutex::new(latest.clone()),
            durable_size,
        });
        let (tx, rx) = mpsc::channel(config.max_queued_requests);
        let handle = SequencerHandle {
            tx,
            shared: shared.clone(),
            max_group_events: config.max_group_events,
        };
        let (flush_tx, flush_rx) = std::sync::mpsc::sync_channel(MAX_PENDING_FLUSHES);
        let hooks_publish = hooks.on_durable.is_some();
        let flusher_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("sealtrail-flusher".into())
            .spawn(move || run_flusher(flush_rx, syncer, &flusher_shared, hooks))
            .map_err(|e| StoreError::io("starting the flusher thread", e))?;
        let writer = Writer {
            publish: hooks_publish,
            unverified: false,
            waiting: None,
            rotating: None,
            backend,
            signer,
            frontier,
            latest,
            latest_is_history: true,
            last_history_at: now_micros(),
            config,
            shared,
            flush: flush_tx,
        };
        let thread = std::thread::Builder::new()
            .name("sealtrail-sequencer".into())
            .spawn(move || {
                writer.run(rx);
                // The writer dropped its end of the flush channel: the flusher answers
                // what is pending and stops.
                let _ = flusher.join();
            })
            .map_err(|e| StoreError::io("starting the sequencer thread", e))?;
        Ok((handle, thread))
    }
}

/// Makes committed groups durable, then answers them (see the module documentation).
fn run_flusher(
    rx: std::sync::mpsc::Receiver<Flush>,
    mut syncer: Box<dyn Syncer>,
    shared: &Shared,
    hooks: SequencerHooks,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let synced = if shared.failed.load(Ordering::Acquire) {
            Err(StoreError::Integrity(
                "the log stopped after a storage failure".into(),
            ))
        } else {
            syncer.sync()
        };
        match synced {
            Ok(()) => {
                let last = batch.last().expect("the batch has a first flush");
                shared.advance(last.checkpoint.clone());
                for flush in batch {
                    // Published before answered: once a producer has its answer, every live
                    // stream has been handed the event.
                    if let (Some(publish), Some(events)) = (&hooks.on_durable, flush.events) {
                        publish(events);
                    }
                    for (reply, answer) in flush.answers {
                        // A producer that gave up waiting is no reason to stop: its events
                        // are stored and a retry will be answered from the store.
                        let _ = reply.send(answer);
                    }
                    if let Some(observer) = &hooks.on_commit {
                        observer(&CommitStats {
                            duration: flush.started.elapsed(),
                            ..flush.stats
                        });
                    }
                }
            }
            Err(error) => {
                // After a failed fsync nothing is known about what reached the disk: stop
                // taking writes (fail-stop) and acknowledge none of these.
                tracing::error!(%error, "fsync of the log failed; refusing further writes");
                shared.fail();
                for flush in batch {
                    for (reply, _) in flush.answers {
                        let _ = reply.send(Err(AppendError::Storage(error.to_string())));
                    }
                }
            }
        }
    }
}

struct BackendSubtrees<'a, B: LogBackend>(&'a mut B);

impl<B: LogBackend> SubtreeHashes for BackendSubtrees<'_, B> {
    type Error = StoreError;
    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        self.0.subtree_hash(level, index)
    }
}

/// Rebuilds the frontier and checks it against the latest checkpoint; signs the first
/// checkpoint (of the empty tree) for a new log.
fn open_log<B: LogBackend>(
    backend: &mut B,
    signer: &CheckpointSigner,
    syncer: &mut dyn Syncer,
) -> Result<Frontier, StoreError> {
    let state = backend.state()?;
    let frontier = Frontier::load(&mut BackendSubtrees(backend), state.size)?;
    match state.latest_checkpoint {
        None if state.size == 0 => {
            let signed = signer.sign(0, frontier.root());
            backend.begin()?;
            backend.insert_checkpoint(
                &CheckpointRow {
                    tree_size: 0,
                    root: signed.checkpoint.root,
                    note: signed.note,
                    created_at: now_micros(),
                },
                true,
            )?;
            backend.commit()?;
            syncer.sync()?;
        }
        None => {
            return Err(StoreError::Integrity(format!(
                "the log holds {} events but no signed checkpoint; run `sealtrail verify`",
                state.size
            )));
        }
        Some(latest) => {
            let signed = signer.verifier().verify(&latest.note).map_err(|e| {
                StoreError::Integrity(format!(
                    "the latest checkpoint (tree size {}) does not verify: {e}; run `sealtrail verify`",
                    latest.tree_size
                ))
            })?;
            if signed.size != state.size || latest.tree_size != state.size {
                return Err(StoreError::Integrity(format!(
                    "the log holds {} events but its latest signed checkpoint covers {}; \
                     events were added or removed outside Sealtrail; run `sealtrail verify`",
                    state.size, signed.size
                )));
            }
            if signed.root != frontier.root() {
                return Err(StoreError::Integrity(format!(
                    "the stored tree of {} events does not match its signed root; \
                     stored history was changed; run `sealtrail verify`",
                    state.size
                )));
            }
        }
    }
    Ok(frontier)
}

struct Writer<B: LogBackend> {
    backend: B,
    signer: CheckpointSigner,
    frontier: Frontier,
    latest: Arc<CheckpointRow>,
    /// Whether `latest` is kept as history once superseded.
    latest_is_history: bool,
    last_history_at: i64,
    config: SequencerConfig,
    shared: Arc<Shared>,
    flush: std::sync::mpsc::SyncSender<Flush>,
    /// Whether to keep each group's events for the `on_durable` hook.
    publish: bool,
    /// A commit failed and the stored log could not be read since (the database is
    /// unreachable): it must be found unchanged before anything more is written.
    unverified: bool,
    /// A rotation that arrived while a group was being gathered: it goes next, alone.
    waiting: Option<AppendRequest>,
    /// The rotation being committed: its next seed and statement.
    rotating: Option<([u8; 32], String)>,
}

/// A committed group: each request's resolution, the leaf hash of every new seq, and the
/// new events when they are to be published.
type GroupWritten = (
    Vec<Resolution>,
    HashMap<u64, Hash>,
    Option<Arc<[CommittedEvent]>>,
);

/// How one request of a group resolved before anything was written.
enum Resolution {
    Accepted(Vec<Slot>),
    Refused(AppendError),
}

/// Where each event of an accepted request goes.
enum Slot {
    /// Already stored: answer with this.
    Existing(Receipt),
    /// New: appended at this seq.
    New(u64),
    /// A repeat, within the group, of the event at this earlier (request, index).
    SameAs(usize, usize),
}

impl<B: LogBackend> Writer<B> {
    fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) {
        while let Some(first) = self.waiting.take().or_else(|| rx.blocking_recv()) {
            let started = Instant::now();
            let mut group = vec![first];
            let mut events = group[0].events.len();
            while events < self.config.max_group_events && group[0].rotation.is_none() {
                match rx.try_recv() {
                    Ok(next) if next.rotation.is_some() => {
                        self.waiting = Some(next);
                        break;
                    }
                    Ok(next) => {
                        events += next.events.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            if self.shared.failed.load(Ordering::Acquire) {
                for request in group {
                    let _ = request.reply.send(Err(AppendError::Unavailable(
                        "the log stopped after a storage failure; see the server log".into(),
                    )));
                }
                continue;
            }
            if self.unverified && !self.stored_log_is_ours() {
                for request in group {
                    let _ = request.reply.send(Err(AppendError::Storage(
                        "the store is unreachable; nothing was stored".into(),
                    )));
                }
                continue;
            }
            self.commit_group(group, started);
        }
        tracing::info!(tree_size = self.frontier.size(), "sequencer stopped");
    }

    fn commit_group(&mut self, mut group: Vec<AppendRequest>, started: Instant) {
        let before = self.frontier.clone();
        let written = match group[0].rotation.take() {
            Some(rotation) => self.write_rotation(&mut group[0], rotation),
            None => self.write_group(&group),
        };
        self.rotating = None;
        match written {
            Ok((resolutions, leaf_hashes, events)) => {
                let stats = CommitStats {
                    requests: group.len(),
                    events: leaf_hashes.len(),
                    duration: started.elapsed(),
                    tree_size: self.frontier.size(),
                };
                let answers = self.answers(group, resolutions, &leaf_hashes);
                let flush = Flush {
                    answers,
                    events,
                    checkpoint: self.latest.clone(),
                    stats,
                    started,
                };
                if self.flush.send(flush).is_err() {
                    tracing::error!("the flusher has stopped; refusing further writes");
                    self.shared.fail();
                }
            }
            Err(error) => {
                tracing::error!(%error, "group commit failed; nothing of it was acknowledged");
                let _ = self.backend.rollback();
                self.frontier = before;
                // A failed commit may still have reached the disk; continue only once the
                // stored log is found to be exactly what we believe it is.
                self.unverified = true;
                self.stored_log_is_ours();
                for request in group {
                    let _ = request
                        .reply
                        .send(Err(AppendError::Storage(error.to_string())));
                }
            }
        }
    }

    /// Whether the stored log is exactly the one this sequencer believes in. Stops the log
    /// (fail-stop) if it is not; if it cannot be read (the database is unreachable), says
    /// no and leaves the question open for the next group.
    fn stored_log_is_ours(&mut self) -> bool {
        match self.backend.state() {
            Ok(state) if state.size > self.frontier.size() => self.adopt_stored_tail(state),
            // Other servers append too: whatever it holds now is checked at the next group.
            Ok(_) if self.backend.shared() => {
                self.unverified = false;
                true
            }
            Ok(state) => {
                let ours = state.size == self.frontier.size()
                    && state
                        .latest_checkpoint
                        .as_ref()
                        .is_some_and(|c| c.tree_size == self.frontier.size());
                if ours {
                    self.unverified = false;
                    tracing::info!(
                        tree_size = state.size,
                        "the store is reachable again; writing resumes"
                    );
                } else {
                    tracing::error!(
                        stored = state.size,
                        believed = self.frontier.size(),
                        "the stored log diverged from the sequencer; refusing further writes"
                    );
                    self.shared.fail();
                }
                ours
            }
            Err(error) => {
                tracing::warn!(%error, "the store is still unreachable");
                false
            }
        }
    }

    /// The store holds more than this sequencer believes: another server sharing the store
    /// appended, or a commit reported as failed (its answer lost with the connection) had
    /// reached it. If the stored tail is this log's own — its newest checkpoint covers it,
    /// is signed with our key and matches the tree rebuilt from the store — continue from
    /// it (producers told a write failed have their retries answered from the store).
    /// Anything else stops the log.
    fn adopt_stored_tail(&mut self, state: crate::traits::LogState) -> bool {
        let believed = self.frontier.size();
        let signed = state
            .latest_checkpoint
            .as_ref()
            .filter(|c| c.tree_size == state.size)
            .and_then(|c| self.verify_stored(&c.note));
        let loaded = Frontier::load(&mut BackendSubtrees(&mut self.backend), state.size).and_then(
            |frontier| {
                // The stored tree must extend ours, not replace it.
                let prefix = Frontier::load(&mut BackendSubtrees(&mut self.backend), believed)?;
                Ok((frontier, prefix.root()))
            },
        );
        let (frontier, prefix_root) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::warn!(%error, "the store is still unreachable");
                return false;
            }
        };
        match (signed, state.latest_checkpoint) {
            (Some(signed), Some(latest))
                if state.size > believed
                    && signed.size == state.size
                    && signed.root == frontier.root()
                    && prefix_root == self.frontier.root() =>
            {
                if self.backend.shared() {
                    tracing::debug!(
                        believed,
                        stored = state.size,
                        "caught up with the shared log"
                    );
                } else {
                    tracing::warn!(
                        believed,
                        stored = state.size,
                        "a commit whose answer was lost had reached the store; continuing from it"
                    );
                }
                self.frontier = frontier;
                self.latest = Arc::new(latest);
                self.latest_is_history = true;
                self.unverified = false;
                // Through the flusher, so the durable size and checkpoint move on in order.
                let recovered = Flush {
                    answers: Vec::new(),
                    events: None,
                    checkpoint: self.latest.clone(),
                    stats: CommitStats {
                        requests: 0,
                        events: 0,
                        duration: Duration::ZERO,
                        tree_size: state.size,
                    },
                    started: Instant::now(),
                };
                if self.flush.send(recovered).is_err() {
                    self.shared.fail();
                    return false;
                }
                true
            }
            _ => {
                tracing::error!(
                    stored = state.size,
                    believed,
                    "the stored log diverged from the sequencer; refusing further writes"
                );
                self.shared.fail();
                false
            }
        }
    }

    /// Verifies a checkpoint another server (or a lost commit) stored. One this server's
    /// key chain does not accept, or one also signed by a key it does not know (the tree of
    /// a rotation, which the retired key signs too), comes after a rotation made
    /// elsewhere: the stored rotations are followed first.
    fn verify_stored(&mut self, note: &str) -> Option<sealtrail_core::Checkpoint> {
        let first = self.signer.verifier().verify(note);
        if first.is_ok() && !self.signer.verifier().signed_by_unknown_key(note) {
            return first.ok();
        }
        if let Err(error) = self.follow_stored_rotations() {
            tracing::error!(%error, "the log's stored key rotations cannot be followed");
            return None;
        }
        self.signer.verifier().verify(note).ok()
    }

    /// Follows the rotations filed in the store (by another server) that this server's
    /// chain lacks. When the chain then ends at a key other than the signer's, switches to
    /// the next seed waiting in the data directory (promoted there); without it the chain
    /// is still followed (reads verify) but this server must not sign again with a
    /// retired key, so writing stops.
    fn follow_stored_rotations(&mut self) -> Result<(), StoreError> {
        let stored = self.backend.key_rotations()?;
        let chain = self.signer.verifier().clone();
        for statement in &stored {
            chain
                .accept_rotation(statement)
                .map_err(|e| StoreError::Integrity(format!("a stored key rotation: {e}")))?;
        }
        let current = chain.public_key();
        if current == self.signer.signing_public_key() {
            return Ok(());
        }
        let dir = self.config.signing_key_dir.clone();
        let next = match &dir {
            Some(dir) => crate::identity::read_next_signing_key(dir)?,
            None => None,
        }
        .filter(|seed| {
            CheckpointSigner::new(chain.origin(), seed)
                .is_ok_and(|s| s.verifier().public_key() == current)
        });
        match (next, dir, stored.last()) {
            (Some(seed), Some(dir), Some(statement)) => {
                self.signer
                    .switch_to(&seed, statement)
                    .map_err(|e| StoreError::Integrity(format!("a stored key rotation: {e}")))?;
                crate::identity::promote_next_signing_key(&dir)?;
                tracing::warn!(
                    key = %chain.vkey(),
                    "followed a signing-key rotation made by another server"
                );
            }
            _ => {
                tracing::error!(
                    key = %chain.vkey(),
                    "the log's signing key was rotated (by another server) and this data \
                     directory has no log-signing.next with the new key: refusing further \
                     writes (copy the key in and restart)"
                );
                self.shared.fail();
            }
        }
        Ok(())
    }

    /// Resolves, writes and commits one group; returns each request's resolution and the
    /// leaf hash of every new seq.
    fn write_group(&mut self, group: &[AppendRequest]) -> Result<GroupWritten, StoreError> {
        self.begin_group()?;
        self.write_resolved(group)
    }

    /// Opens the group's transaction; on a shared store, holding the writers' lock now,
    /// catches up with what other servers appended.
    fn begin_group(&mut self) -> Result<(), StoreError> {
        self.backend.begin()?;
        if self.backend.shared() {
            self.catch_up_with_shared_log()?;
        }
        if self.signer.signing_public_key() != self.signer.verifier().public_key() {
            // The chain moved on (a rotation this server's reader followed first).
            self.follow_stored_rotations()?;
            if self.signer.signing_public_key() != self.signer.verifier().public_key() {
                return Err(StoreError::Integrity(
                    "this server's signing key was retired by a rotation; see the server log"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// A rotation as a group of one: its record is made at the size it will have, then
    /// written like any event; [`commit_leaves`](Self::commit_leaves) files the statement
    /// and co-signs the checkpoint, and the signer switches once the commit is through.
    fn write_rotation(
        &mut self,
        request: &mut AppendRequest,
        rotation: RotationAsk,
    ) -> Result<GroupWritten, StoreError> {
        self.begin_group()?;
        // Checked here, holding the writers' lock: a rotation another server made with
        // the same copied key may have been followed just now.
        let next_key = CheckpointSigner::new(self.signer.verifier().origin(), &rotation.next)
            .map_err(|e| StoreError::Invalid(e.to_string()))?
            .verifier()
            .public_key();
        if self.signer.verifier().has_key(&next_key) {
            return Err(StoreError::Invalid(
                "the next signing key is one this log already has".into(),
            ));
        }
        let size = self.frontier.size() + 1;
        let statement = self
            .signer
            .rotation_note(&rotation.next, size)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let event = (rotation.record)(&statement, size).map_err(StoreError::Invalid)?;
        if event.content_hash.is_some() {
            return Err(StoreError::Invalid(
                "a rotation record takes a server-generated id".into(),
            ));
        }
        request.events = vec![event];
        self.rotating = Some((rotation.next, statement));
        let written = self.write_resolved(std::slice::from_ref(request))?;
        if let Some((next, statement)) = self.rotating.take() {
            self.signer
                .switch_to(&next, &statement)
                .map_err(|e| StoreError::Integrity(format!("switching signing keys: {e}")))?;
            tracing::warn!(
                tree_size = size,
                key = %self.signer.verifier().vkey(),
                "the log's signing key was rotated"
            );
        }
        Ok(written)
    }

    /// The rest of [`write_group`](Self::write_group), inside the open transaction.
    fn write_resolved(&mut self, group: &[AppendRequest]) -> Result<GroupWritten, StoreError> {
        let stored = self.find_stored_producer_ids(group)?;
        let (resolutions, next_seq) = resolve_group(group, &stored, self.frontier.size() + 1);
        let (leaves, nodes) = self.place_new_events(group, &resolutions, next_seq);
        if leaves.is_empty() {
            // Only retries and refusals: nothing to write, the latest checkpoint stands.
            self.backend.rollback()?;
            return Ok((resolutions, HashMap::new(), None));
        }
        self.commit_leaves(&leaves, &nodes)?;
        let hashes = leaves.iter().map(|l| (l.seq, l.leaf_hash)).collect();
        let events = self.publish.then(|| committed_events(leaves));
        Ok((resolutions, hashes, events))
    }

    /// Under the writers' lock of a shared store, adopts what other servers appended since
    /// this one last wrote; refuses the group when the stored log is not one it can extend.
    fn catch_up_with_shared_log(&mut self) -> Result<(), StoreError> {
        let state = self.backend.state()?;
        if state.size != self.frontier.size() && !self.adopt_stored_tail(state) {
            return Err(StoreError::Integrity(
                "the log in the store is not one this server can extend; see the server log".into(),
            ));
        }
        Ok(())
    }

    /// The already stored events among the group's producer-chosen ids (the only ones that
    /// can be retries or conflicts); no query when the group has none.
    fn find_stored_producer_ids(
        &mut self,
        group: &[AppendRequest],
    ) -> Result<HashMap<Uuid, crate::traits::ExistingEvent>, StoreError> {
        let producer_ids: Vec<Uuid> = group
            .iter()
            .flat_map(|r| r.events.iter())
            .filter(|e| e.content_hash.is_some())
            .map(|e| e.id)
            .collect();
        if producer_ids.is_empty() {
            Ok(HashMap::new())
        } else {
            self.backend.find_existing(&producer_ids)
        }
    }

    /// Gives each new event of the accepted requests its record and leaf hash, pushes it
    /// onto the frontier, and collects the leaves to insert and the completed Merkle nodes
    /// at the kept levels. `next_seq` is the seq after the group's last new event.
    fn place_new_events<'a>(
        &mut self,
        group: &'a [AppendRequest],
        resolutions: &[Resolution],
        next_seq: u64,
    ) -> (Vec<NewLeaf<'a>>, Vec<(u32, u64, Hash)>) {
        let mut leaves = Vec::with_capacity((next_seq - 1 - self.frontier.size()) as usize);
        let mut nodes = Vec::new();
        for (request, resolution) in group.iter().zip(resolutions) {
            let Resolution::Accepted(slots) = resolution else {
                continue;
            };
            for (event, slot) in request.events.iter().zip(slots) {
                let Slot::New(seq) = *slot else { continue };
                debug_assert_eq!(seq, self.frontier.size() + 1, "seqs are gap-free");
                let record = event.record(seq);
                let leaf_hash = merkle::leaf_hash(&record);
                self.frontier.push(leaf_hash, |level, index, hash| {
                    if level % NODE_LEVEL_STRIDE == 0 {
                        nodes.push((level, index, *hash));
                    }
                });
                leaves.push(NewLeaf {
                    seq,
                    event,
                    record,
                    leaf_hash,
                });
            }
        }
        (leaves, nodes)
    }

    /// Writes the group's leaves, nodes and a signed checkpoint of the new tree (dropping
    /// the superseded one unless it is kept as history), commits, and only then makes that
    /// checkpoint the latest.
    fn commit_leaves(
        &mut self,
        leaves: &[NewLeaf<'_>],
        nodes: &[(u32, u64, Hash)],
    ) -> Result<(), StoreError> {
        self.backend.insert_leaves(leaves)?;
        if !nodes.is_empty() {
            self.backend.insert_nodes(nodes)?;
        }
        let (checkpoint, is_history) = match &self.rotating {
            Some((next, statement)) => {
                // The tree holding the rotation record: signed by the next key and the
                // current one, so verifiers that know either accept it. Kept as history.
                let size = self.frontier.size();
                if sealtrail_core::checkpoint::rotation_size(statement).ok() != Some(size) {
                    return Err(StoreError::Integrity(
                        "the rotation record did not land at the size its statement names".into(),
                    ));
                }
                self.backend.insert_key_rotation(size, statement)?;
                let next = CheckpointSigner::new(self.signer.verifier().origin(), next)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let signed = self.signer.cosign(&next.sign(size, self.frontier.root()));
                let row = CheckpointRow {
                    tree_size: size,
                    root: signed.checkpoint.root,
                    note: signed.note,
                    created_at: now_micros(),
                };
                (row, true)
            }
            None => self.next_checkpoint(),
        };
        self.backend.insert_checkpoint(&checkpoint, is_history)?;
        if !self.latest_is_history {
            self.backend.supersede_checkpoint(self.latest.tree_size)?;
        }
        self.backend.commit()?;
        if is_history {
            self.last_history_at = checkpoint.created_at;
        }
        self.latest = Arc::new(checkpoint);
        self.latest_is_history = is_history;
        Ok(())
    }

    fn next_checkpoint(&self) -> (CheckpointRow, bool) {
        let now = now_micros();
        let interval = self.config.checkpoint_history_interval.as_micros() as i64;
        let is_history = now - self.last_history_at >= interval;
        let signed = self.signer.sign(self.frontier.size(), self.frontier.root());
        let row = CheckpointRow {
            tree_size: signed.checkpoint.size,
            root: signed.checkpoint.root,
            note: signed.note,
            created_at: now,
        };
        (row, is_history)
    }

    /// The answer to every request of a committed group, to be sent once it is durable.
    fn answers(
        &self,
        group: Vec<AppendRequest>,
        resolutions: Vec<Resolution>,
        leaf_hashes: &HashMap<u64, Hash>,
    ) -> Vec<Answer> {
        let mut seq_of: HashMap<(usize, usize), u64> = HashMap::new();
        for (r, resolution) in resolutions.iter().enumerate() {
            if let Resolution::Accepted(slots) = resolution {
                for (i, slot) in slots.iter().enumerate() {
                    if let Slot::New(seq) = slot {
                        seq_of.insert((r, i), *seq);
                    }
                }
            }
        }
        let placed = |seq: u64, id: Uuid, duplicate: bool| Receipt {
            id,
            seq,
            leaf_hash: leaf_hashes[&seq],
            duplicate,
        };
        let mut answers = Vec::with_capacity(group.len());
        for (request, resolution) in group.into_iter().zip(resolutions) {
            let answer = match resolution {
                Resolution::Refused(error) => Err(error),
                Resolution::Accepted(slots) => Ok(AppendOutcome {
                    receipts: request
                        .events
                        .iter()
                        .zip(slots)
                        .map(|(event, slot)| match slot {
                            Slot::Existing(receipt) => receipt,
                            Slot::New(seq) => placed(seq, event.id, false),
                            Slot::SameAs(r, j) => placed(seq_of[&(r, j)], event.id, true),
                        })
                        .collect(),
                    checkpoint: self.latest.clone(),
                }),
            };
            answers.push((request.reply, answer));
        }
        answers
    }
}

/// Resolves every request of a group in order, each seeing the ids placed by the accepted
/// requests before it; returns the resolutions and the seq after the last new event.
fn resolve_group(
    group: &[AppendRequest],
    stored: &HashMap<Uuid, crate::traits::ExistingEvent>,
    first_seq: u64,
) -> (Vec<Resolution>, u64) {
    // Ids placed earlier in this group: (request, index, content hash).
    let mut placed: HashMap<Uuid, (usize, usize, Option<Hash>)> = HashMap::new();
    let mut resolutions = Vec::with_capacity(group.len());
    let mut next_seq = first_seq;
    for (r, request) in group.iter().enumerate() {
        match resolve(r, &request.events, stored, &placed, next_seq) {
            Resolution::Accepted(slots) => {
                for (i, slot) in slots.iter().enumerate() {
                    if let Slot::New(seq) = slot {
                        let event = &request.events[i];
                        placed.insert(event.id, (r, i, event.content_hash));
                        next_seq = seq + 1;
                    }
                }
                resolutions.push(Resolution::Accepted(slots));
            }
            refused => resolutions.push(refused),
        }
    }
    (resolutions, next_seq)
}

/// The committed leaves as live streams need them (for the `on_durable` hook).
fn committed_events(leaves: Vec<NewLeaf<'_>>) -> Arc<[CommittedEvent]> {
    leaves
        .into_iter()
        .map(|leaf| CommittedEvent {
            stored: StoredEvent {
                seq: leaf.seq,
                tenant_id: leaf.event.tenant_id.clone(),
                occurred_at: leaf.event.occurred_at,
                leaf_hash: leaf.leaf_hash,
                record: leaf.record,
            },
            severity: leaf.event.severity,
            action: leaf.event.action.clone(),
            user_id: leaf.event.user_id.clone(),
            resource_type: leaf.event.resource_type.clone(),
            resource_id: leaf.event.resource_id.clone(),
        })
        .collect()
}

/// Resolves one request against the stored events and the ids placed earlier in the
/// group: a retry answers with the original, a conflict refuses the whole request.
fn resolve(
    request_index: usize,
    events: &[PreparedEvent],
    stored: &HashMap<Uuid, crate::traits::ExistingEvent>,
    placed: &HashMap<Uuid, (usize, usize, Option<Hash>)>,
    first_seq: u64,
) -> Resolution {
    let mut slots = Vec::with_capacity(events.len());
    let mut here: HashMap<Uuid, (usize, Option<Hash>)> = HashMap::new();
    let mut next_seq = first_seq;
    for (i, event) in events.iter().enumerate() {
        let conflict = || {
            Resolution::Refused(AppendError::Conflict {
                index: i,
                id: event.id,
            })
        };
        if let Some(existing) = stored.get(&event.id) {
            if existing.content_hash.is_none() || existing.content_hash != event.content_hash {
                return conflict();
            }
            slots.push(Slot::Existing(Receipt {
                id: event.id,
                seq: existing.seq,
                leaf_hash: existing.leaf_hash,
                duplicate: true,
            }));
        } else if let Some(&(r, j, hash)) = placed.get(&event.id) {
            if hash != event.content_hash {
                return conflict();
            }
            slots.push(Slot::SameAs(r, j));
        } else if let Some(&(j, hash)) = here.get(&event.id) {
            if hash != event.content_hash {
                return conflict();
            }
            slots.push(Slot::SameAs(request_index, j));
        } else {
            here.insert(event.id, (i, event.content_hash));
            slots.push(Slot::New(next_seq));
            next_seq += 1;
        }
    }
    Resolution::Accepted(slots)
}
