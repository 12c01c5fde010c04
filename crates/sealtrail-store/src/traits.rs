//! The two faces of a storage backend: the write side the sequencer drives inside one
//! transaction per group commit, and the read side every query, proof and stream uses.
//!
//! Both are deliberately narrow: the backend stores and finds rows; deciding seqs, hashes,
//! duplicates and checkpoints is the sequencer's job, the same for every backend.

use std::collections::HashMap;

use sealtrail_core::PreparedEvent;
use sealtrail_core::merkle::Hash;
use sealtrail_core::query::{EventFilter, PageCursor, PageRequest, StatsRequest};
use uuid::Uuid;

use crate::StoreError;

/// What the sequencer needs to resume the log after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogState {
    /// The highest `seq` stored (= tree size); 0 for an empty log.
    pub size: u64,
    /// The newest stored checkpoint, if any.
    pub latest_checkpoint: Option<CheckpointRow>,
}

/// A stored signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    /// Leaves covered.
    pub tree_size: u64,
    /// Root hash over them.
    pub root: Hash,
    /// The signed note.
    pub note: String,
    /// When it was signed, UTC microseconds.
    pub created_at: i64,
}

/// An event already in the log, as far as deduplication needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingEvent {
    /// Its position.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The producer-content hash it was stored with (`None` for server-generated ids).
    pub content_hash: Option<Hash>,
}

/// A leaf the sequencer has placed: the event, its seq, its canonical record and hash.
pub struct NewLeaf<'a> {
    /// Position in the log (leaf index + 1).
    pub seq: u64,
    /// The validated event (indexed column values).
    pub event: &'a PreparedEvent,
    /// Canonical record bytes, seq included.
    pub record: Vec<u8>,
    /// `SHA-256(0x00 || record)`.
    pub leaf_hash: Hash,
}

/// The write side of a backend. Only the sequencer thread calls it, always as
/// `begin → (find_existing | insert_*)* → commit | rollback`.
pub trait LogBackend: Send + 'static {
    /// Size and latest checkpoint of the stored log.
    fn state(&mut self) -> Result<LogState, StoreError>;
    /// The hash of a complete subtree (used to rebuild the frontier at start).
    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, StoreError>;
    /// Opens the group's transaction.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Which of these ids are already stored (committed, or inserted earlier in this
    /// transaction).
    fn find_existing(&mut self, ids: &[Uuid]) -> Result<HashMap<Uuid, ExistingEvent>, StoreError>;
    /// Appends leaves in seq order.
    fn insert_leaves(&mut self, leaves: &[NewLeaf<'_>]) -> Result<(), StoreError>;
    /// Stores completed Merkle nodes `(level, index, hash)` at the kept levels.
    fn insert_nodes(&mut self, nodes: &[(u32, u64, Hash)]) -> Result<(), StoreError>;
    /// Stores a signed checkpoint; `history`: it is kept for good, never superseded.
    fn insert_checkpoint(
        &mut self,
        checkpoint: &CheckpointRow,
        history: bool,
    ) -> Result<(), StoreError>;
    /// Files the key-rotation statement taking effect at tree size `size` (its record is
    /// the leaf at `size`), in the group's transaction.
    fn insert_key_rotation(&mut self, size: u64, note: &str) -> Result<(), StoreError>;
    /// The stored key-rotation statements, oldest first.
    fn key_rotations(&mut self) -> Result<Vec<String>, StoreError>;
    /// Drops the superseded checkpoint (not the newest, and not kept for history). The only
    /// deletion of a checkpoint there is; PostgreSQL refuses any other.
    fn supersede_checkpoint(&mut self, tree_size: u64) -> Result<(), StoreError>;
    /// Ends the transaction. Its writes need not be on stable storage yet: the sequencer
    /// acknowledges them only after a [`Syncer`] from [`LogBackend::syncer`] has run, which
    /// lets it build the next group while the last one is being flushed.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Something another thread can call to make every commit made so far durable.
    fn syncer(&self) -> Result<Box<dyn Syncer>, StoreError>;
    /// Abandons the transaction.
    fn rollback(&mut self) -> Result<(), StoreError>;
    /// Whether other servers may append to the same store. Then [`begin`](Self::begin)
    /// must also take a lock that serialises writers until the transaction ends, and the
    /// sequencer checks, inside each group's transaction, whether the log moved since its
    /// own last commit — and continues from where it stands if so.
    fn shared(&self) -> bool {
        false
    }
}

/// Makes committed writes durable (fsync), from a thread other than the writer's.
pub trait Syncer: Send + 'static {
    /// Returns once everything committed before the call is on stable storage.
    fn sync(&mut self) -> Result<(), StoreError>;
}

/// An event as read back (defined in core, where the opener of sealed fields can use it
/// without depending on a store).
pub use sealtrail_core::StoredEvent;

/// One page of a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventPage {
    /// The events, in the requested order.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts, if this one was full.
    pub next: Option<PageCursor>,
}

/// Events replayed for a stream, in seq order, and how far the scan got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayPage {
    /// Matching events, ascending by seq.
    pub events: Vec<StoredEvent>,
    /// Every seq up to this was looked at: continue after it.
    pub scanned_through: u64,
}

/// One count of a stats query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsRow {
    /// Bucket start (UTC microseconds), when bucketed.
    pub bucket: Option<i64>,
    /// The group value (a severity, action or resource type).
    pub key: String,
    /// Matching events.
    pub count: u64,
}

/// The read side of a backend: safe to call from many threads while the sequencer writes.
pub trait LogReader: Send + Sync + 'static {
    /// One page of filtered events (keyset pagination, never OFFSET).
    fn query(&self, request: &PageRequest) -> Result<EventPage, StoreError>;
    /// Matching events with seq in `(after, through]`, ascending by seq, at most `limit`,
    /// for a stream catching up. Scans a bounded window of seqs per call, so a rare filter
    /// over a long gap costs several calls rather than one long one.
    fn events_after(
        &self,
        after: u64,
        through: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<ReplayPage, StoreError>;
    /// One event by id.
    fn get(&self, id: &Uuid) -> Result<Option<StoredEvent>, StoreError>;
    /// Counts by a dimension, computed by the database.
    fn stats(&self, request: &StatsRequest) -> Result<Vec<StatsRow>, StoreError>;
    /// The newest signed checkpoint.
    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError>;
    /// The log's key-rotation statements, oldest first.
    fn key_rotations(&self) -> Result<Vec<String>, StoreError>;
    /// RFC 9162 inclusion proof of a leaf in the tree of `tree_size` leaves.
    fn inclusion_proof(&self, leaf_index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError>;
    /// RFC 9162 consistency proof between two tree sizes.
    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, StoreError>;
    /// The range proof ([`sealtrail_core::merkle::range_proof`]) of the leaves with seqs
    /// `first_seq..=last_seq` in the tree of `tree_size` leaves: the boundary hashes an
    /// archive segment keeps to be checked against a checkpoint offline.
    fn range_proof(
        &self,
        first_seq: u64,
        last_seq: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, StoreError>;
    /// Bytes the store occupies on disk.
    fn storage_bytes(&self) -> Result<u64, StoreError>;
}
