//! The durable log as the rest of the server sees it: append, and be told whether the
//! events are in the log or, on PostgreSQL while the database is unreachable, in the
//! local fsync'd spool that the drainer moves into the log once it is back.
//!
//! Either way the answer comes only once the events are durable (DESIGN.md: ack means
//! durable). While the spool holds events, new ones queue behind them, so the log keeps
//! the order producers were answered in.

use std::sync::Arc;

use sealtrail_core::PreparedEvent;
use sealtrail_store::follow::Shutdown;
use sealtrail_store::spool::Spool;
use sealtrail_store::{AppendError, AppendOutcome, CheckpointRow, LogReader, SequencerHandle};

use crate::metrics::Metrics;

/// Where appended events went.
pub enum Appended {
    /// Into the log: each event's receipt, and the checkpoint covering them.
    Stored(AppendOutcome),
    /// Into the spool (the database is unreachable): the events' ids, in order, and the
    /// newest checkpoint this server knows.
    Spooled {
        /// The ids, in the order appended.
        ids: Vec<uuid::Uuid>,
        /// The newest durable checkpoint.
        checkpoint: Arc<CheckpointRow>,
    },
}

/// The way into the log: the sequencer and, on PostgreSQL, the spool.
#[derive(Clone)]
pub struct DurableLog {
    sequencer: SequencerHandle,
    spool: Option<Arc<Spool>>,
    metrics: Arc<Metrics>,
}

impl DurableLog {
    /// The log written by `sequencer`, falling back to `spool` when there is one.
    pub fn new(
        sequencer: SequencerHandle,
        spool: Option<Arc<Spool>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            sequencer,
            spool,
            metrics,
        }
    }

    /// The sequencer (for the durable tree size and checkpoint).
    pub fn sequencer(&self) -> &SequencerHandle {
        &self.sequencer
    }

    /// The spooled events the log refused while draining (none without a spool).
    pub fn rejected_events(&self) -> Vec<sealtrail_store::spool::RejectedEvent> {
        self.spool
            .as_ref()
            .map_or_else(Vec::new, |spool| spool.rejected())
    }

    /// The tenant of the event `id` if it waits in the spool. Reads the spool file: call
    /// it off the async workers.
    pub fn spooled_event(
        &self,
        id: &uuid::Uuid,
    ) -> Result<Option<String>, sealtrail_store::StoreError> {
        match &self.spool {
            Some(spool) => spool.pending_event(id),
            None => Ok(None),
        }
    }

    /// Events waiting in the spool (0 without one).
    pub fn spooled_events(&self) -> u64 {
        self.spool.as_ref().map_or(0, |spool| spool.depth())
    }

    /// Appends producers' events: into the log, or into the spool while it holds events
    /// or when the database cannot be reached. Refusals (an id reused with other content,
    /// too many events) and other failures come back as the sequencer's errors.
    pub async fn append(&self, events: Vec<PreparedEvent>) -> Result<Appended, AppendError> {
        let Some(spool) = &self.spool else {
            return self.sequencer.append(events).await.map(Appended::Stored);
        };
        if spool.depth() > 0 {
            return self.spool(spool, events).await;
        }
        // Kept for the spool, should the database be unreachable.
        let spare = events.clone();
        match self.sequencer.append(events).await {
            Err(AppendError::Storage(reason)) => {
                tracing::warn!(%reason, "the database is unreachable; spooling");
                self.spool(spool, spare).await
            }
            stored => stored.map(Appended::Stored),
        }
    }

    /// Appends events the server writes itself (access records, shreddings): straight
    /// into the log, never the spool — a read is answered only once its record is in the
    /// log itself.
    pub async fn record(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, AppendError> {
        self.sequencer.append(events).await
    }

    async fn spool(
        &self,
        spool: &Arc<Spool>,
        events: Vec<PreparedEvent>,
    ) -> Result<Appended, AppendError> {
        let ids = events.iter().map(|e| e.id).collect();
        let writer = spool.clone();
        tokio::task::spawn_blocking(move || writer.append(&events))
            .await
            .map_err(|e| AppendError::Unavailable(format!("the spool task failed: {e}")))?
            .map_err(|e| {
                AppendError::Unavailable(format!(
                    "the database is unreachable and the local spool failed: {e}"
                ))
            })?;
        self.metrics.spool_events.set(spool.depth() as i64);
        Ok(Appended::Spooled {
            ids,
            checkpoint: self.sequencer.durable_checkpoint(),
        })
    }

    /// Starts the drainer, when there is a spool: it moves spooled requests into the log
    /// once the database is back, until `shutdown`. A drain cut short is finished at the
    /// next start (it skips what reached the log).
    pub fn spawn_drainer(
        &self,
        reader: Arc<dyn LogReader>,
        shutdown: Shutdown,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let spool = self.spool.clone()?;
        let drainer =
            super::drain::run(spool, self.sequencer.clone(), reader, self.metrics.clone());
        Some(tokio::spawn(async move {
            tokio::select! {
                () = drainer => {}
                () = shutdown.cancelled() => {}
            }
        }))
    }
}

/// On PostgreSQL, ingest keeps acknowledging from a local spool while the database is
/// unreachable, and a drainer moves the spool into the log when it is back.
pub(crate) async fn open_spool(
    config: &crate::config::Config,
) -> Result<Option<Arc<Spool>>, crate::ServerError> {
    if config.database_url.is_none() {
        return Ok(None);
    }
    let dir = config.data_dir.clone();
    let spool = crate::blocking_store(move || Spool::open(&dir)).await?;
    if spool.depth() > 0 {
        tracing::info!(
            events = spool.depth(),
            "the spool holds events; draining them"
        );
    }
    Ok(Some(Arc::new(spool)))
}
