//! Where the log lives: the traits a storage backend implements, the embedded SQLite
//! backend, the sequencer that is the log's only writer, and `verify`.
//!
//! The split follows DESIGN.md: one [`Sequencer`] thread owns the write side of a backend
//! ([`LogBackend`]) and turns concurrent append requests into group commits; any number of
//! readers use the read side ([`LogReader`]) at the same time. The sequencer's logic — ids,
//! seqs, the Merkle frontier, checkpoints — is written once here and shared by backends,
//! which only provide transactional primitives.
//!
//! Beside the log, the data directory holds small SQLite files of its own ([`sidecar`]):
//! API keys, legal holds ([`holds`]), and the persistence `sealtrail-crypto` asks for through its traits — the
//! wrapped data keys ([`data_keys`]) and the blind index ([`blind_index`]).

pub mod blind_index;
pub mod data_keys;
mod error;
pub mod follow;
pub mod holds;
pub mod identity;
pub mod keys;
pub mod postgres;
pub mod retention;
pub mod sequencer;
pub mod sidecar;
pub mod snapshot;
pub mod sources;
pub mod spool;
pub mod sqlite;
pub mod traits;
pub mod verify;

pub use error::StoreError;
pub use keys::{ApiKeyStore, KeyInfo};
pub use sequencer::{
    AppendError, AppendOutcome, CommitStats, CommittedEvent, DurableSize, Receipt, Sequencer,
    SequencerConfig, SequencerHandle, SequencerHooks,
};
pub use traits::{
    CheckpointRow, EventPage, ExistingEvent, LogBackend, LogReader, LogState, NewLeaf, ReplayPage,
    StatsRow, StoredEvent, Syncer,
};
pub use verify::{Finding, VerifyReport};

/// Merkle nodes are persisted only at levels that are multiples of this (8, 16, 24, …):
/// any other subtree hash is one range read of at most 2^8 stored hashes away, which keeps
/// proofs at O(log n) reads while storing only ~n/255 nodes.
pub const NODE_LEVEL_STRIDE: u32 = 8;
