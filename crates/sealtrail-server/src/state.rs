//! What every handler can reach: the sequencer, the reader, the keys, the limits.

use std::sync::Arc;

use sealtrail_core::CheckpointVerifier;
use sealtrail_store::{ApiKeyStore, LogReader, SequencerHandle};

use crate::config::Config;
use crate::metrics::Metrics;

/// Shared state, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    /// The log's writer: its durable tree size and checkpoint (appends go through `log`).
    pub sequencer: SequencerHandle,
    /// Reads go here.
    pub reader: Arc<dyn LogReader>,
    /// API keys.
    pub keys: Arc<ApiKeyStore>,
    /// The log's public key and origin.
    pub verifier: CheckpointVerifier,
    /// The validated configuration.
    pub config: Config,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// How far the embedded store's query indexer has got (for its lag); PostgreSQL
    /// keeps its indexes in the ingest transaction and has none.
    pub indexer: Option<sealtrail_store::sqlite::IndexProgress>,
    /// Live streams.
    pub streams: crate::stream::Streams,
    /// The way into the log (on PostgreSQL with the spool for outages).
    pub log: crate::app::DurableLog,
    /// Validates and appends producers' events.
    pub ingest: crate::app::ingest::Ingest,
    /// Destroys data keys.
    pub shredder: crate::app::shred::Shredder,
    /// Legal holds.
    pub holds: crate::app::holds::LegalHolds,
    /// Rotation of the log's signing key.
    pub signing_keys: std::sync::Arc<crate::app::signing::SigningKeys>,
    /// Reads of the log (each recorded in the access log).
    pub reads: crate::app::reads::Reads,
    /// Records reads (streams' subscriptions; `reads` records its own).
    pub access_log: crate::app::access::AccessLog,
    /// The sinks delivering the log elsewhere.
    pub sinks: Arc<sealtrail_sinks::Sinks>,
    /// Shows events to readers (sealed fields opened when encryption is on).
    pub opener: sealtrail_crypto::Opener,
    /// Requests per API key.
    pub rate_limits: crate::limits::KeyRateLimiter,
    /// Retention runs.
    pub retention: Arc<crate::app::retention::Retention>,
    /// The witnesses the log's checkpoints are pushed to, and what each holds.
    pub witnesses: Arc<crate::witness::WitnessBoard>,
    /// Per-source sequence numbers (`GET /v1/sources`).
    pub sources: crate::app::sources::Sources,
    /// The web console's sign-ins.
    pub console: crate::console::Sessions,
    /// The server's full verifications of the log.
    pub integrity: Arc<crate::app::integrity::IntegrityAudits>,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Events the query indexes do not cover yet.
    pub fn index_lag(&self, tree_size: u64) -> u64 {
        self.0
            .indexer
            .as_ref()
            .map_or(0, |i| tree_size.saturating_sub(i.indexed_through()))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
