//! The parts of Sealtrail that are pure computation: what an audit event is and how it is
//! validated, the canonical bytes a leaf hash is taken over, the RFC 9162 Merkle tree with
//! its inclusion and consistency proofs, signed checkpoints, and the query vocabulary
//! (filters and page cursors) shared by the store and the API.
//!
//! Nothing here touches a disk or a socket, so every rule can be tested exhaustively.

pub mod api;
pub mod auth;
pub mod canonical;
pub mod checkpoint;
pub mod event;
pub mod holds;
pub mod merkle;
pub mod query;
pub mod retention_policy;
pub mod sources;
pub mod stored;
pub mod time_format;

pub use auth::{Grant, Scope};
pub use checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
pub use event::{
    ActorType, EventLimits, FieldError, FieldSealer, Outcome, PreparedEvent, Severity,
    StoredRecord, TenantScope, prepare_event, prepare_event_sealed, prepare_event_value,
};
pub use merkle::{Frontier, Hash};
pub use query::{
    ActionMatch, EventFilter, Order, PageCursor, PageRequest, StatsGroup, StatsInterval,
    StatsRequest,
};
pub use stored::StoredEvent;
