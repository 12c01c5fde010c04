//! Drains the local spool into the log once the database is back: oldest request first,
//! each as one append, skipping events an earlier attempt already stored, and advancing
//! the spool's cursor only after the log has them.

use std::sync::Arc;
use std::time::Duration;

use sealtrail_store::spool::Spool;
use sealtrail_store::{AppendError, LogReader, SequencerHandle};

use crate::metrics::Metrics;

/// How often the drainer looks at the spool.
const INTERVAL: Duration = Duration::from_millis(250);
/// Requests taken from the spool per look.
const REQUESTS_PER_STEP: usize = 64;

/// Runs until the sequencer stops.
pub async fn run(
    spool: Arc<Spool>,
    sequencer: SequencerHandle,
    reader: Arc<dyn LogReader>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if spool.depth() == 0 {
            continue;
        }
        match step(&spool, &sequencer, &reader).await {
            Ok(drained) if drained > 0 => {
                tracing::info!(
                    drained,
                    left = spool.depth(),
                    "drained spooled events into the log"
                )
            }
            Ok(_) => {}
            Err(Stop::Sequencer) => return,
            Err(Stop::NotYet(reason)) => {
                tracing::debug!(%reason, "the spool waits for the database")
            }
        }
        metrics.spool_events.set(spool.depth() as i64);
    }
}

enum Stop {
    /// The log is not taking writes yet: try again later.
    NotYet(String),
    /// The sequencer has stopped: so does the drainer.
    Sequencer,
}

async fn step(
    spool: &Arc<Spool>,
    sequencer: &SequencerHandle,
    reader: &Arc<dyn LogReader>,
) -> Result<u64, Stop> {
    let pending = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.pending(REQUESTS_PER_STEP))
            .await
            .map_err(|e| Stop::NotYet(e.to_string()))?
            .map_err(|e| Stop::NotYet(e.to_string()))?
    };
    let mut drained = 0;
    for request in pending {
        let count = request.events.len() as u64;
        // Server-chosen ids have no content hash to deduplicate by: an event whose id is
        // already in the log was stored by an earlier attempt (the one that failed on its
        // way back, or a drain cut short).
        let lookup = reader.clone();
        let events = tokio::task::spawn_blocking(move || {
            let mut fresh = Vec::with_capacity(request.events.len());
            for event in request.events {
                if event.content_hash.is_none() && lookup.get(&event.id)?.is_some() {
                    continue;
                }
                fresh.push(event);
            }
            Ok::<_, sealtrail_store::StoreError>(fresh)
        })
        .await
        .map_err(|e| Stop::NotYet(e.to_string()))?
        .map_err(|e| Stop::NotYet(e.to_string()))?;
        if !events.is_empty() {
            match sequencer.append(events).await {
                Ok(_) => {}
                Err(AppendError::Storage(reason)) => return Err(Stop::NotYet(reason)),
                Err(AppendError::Unavailable(_)) => return Err(Stop::Sequencer),
                // A producer reused an id for other content while its first event waited
                // here: the log keeps the first one stored; this request cannot enter.
                Err(refused @ (AppendError::Conflict { .. } | AppendError::TooLarge { .. })) => {
                    tracing::error!(%refused, "a spooled request cannot enter the log; dropping it");
                }
            }
        }
        let end = request.end;
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.drained(end, count))
            .await
            .map_err(|e| Stop::NotYet(e.to_string()))?
            .map_err(|e| Stop::NotYet(e.to_string()))?;
        drained += count;
    }
    Ok(drained)
}
