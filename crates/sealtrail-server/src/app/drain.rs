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
/// Requests taken from the spool per step.
const REQUESTS_PER_STEP: usize = 256;
/// Events appended together: consecutive spooled requests share one append (each was
/// acknowledged on its own, so they need not be atomic apart), which keeps their order.
const EVENTS_PER_APPEND: usize = 2000;

/// Runs until the sequencer stops.
pub async fn run(
    spool: Arc<Spool>,
    sequencer: SequencerHandle,
    reader: Arc<dyn LogReader>,
    metrics: Arc<Metrics>,
) {
    loop {
        if spool.depth() == 0 {
            tokio::time::sleep(INTERVAL).await;
            continue;
        }
        let result = step(&spool, &sequencer, &reader, &metrics).await;
        metrics.spool_events.set(spool.depth() as i64);
        match result {
            // Straight on while it makes progress: new requests queue behind the spool
            // until it is empty, so it must drain faster than they arrive.
            Ok(drained) if drained > 0 => {
                tracing::info!(
                    drained,
                    left = spool.depth(),
                    "drained spooled events into the log"
                );
            }
            Ok(_) => tokio::time::sleep(INTERVAL).await,
            Err(Stop::Sequencer) => return,
            Err(Stop::NotYet(reason)) => {
                tracing::debug!(%reason, "the spool waits for the database");
                tokio::time::sleep(INTERVAL).await;
            }
        }
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
    metrics: &Metrics,
) -> Result<u64, Stop> {
    let pending = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.pending(REQUESTS_PER_STEP))
            .await
            .map_err(|e| Stop::NotYet(e.to_string()))?
            .map_err(|e| Stop::NotYet(e.to_string()))?
    };
    let mut drained = 0;
    let mut requests = pending.into_iter().peekable();
    while requests.peek().is_some() {
        // Consecutive requests, up to EVENTS_PER_APPEND events (at least one request).
        let mut chunk = Vec::new();
        let mut events_in_chunk = 0;
        while let Some(next) = requests.peek() {
            if !chunk.is_empty() && events_in_chunk + next.events.len() > EVENTS_PER_APPEND {
                break;
            }
            events_in_chunk += next.events.len();
            chunk.push(requests.next().expect("peeked"));
        }
        let end = chunk.last().expect("at least one request").end;
        let count = events_in_chunk as u64;
        let merged: Vec<_> = chunk.iter().flat_map(|r| r.events.clone()).collect();
        match append_fresh(reader, sequencer, merged).await? {
            Ok(()) => {}
            // One request of the chunk cannot enter (an id reused for other content while
            // its first event waited here, or a chunk above the group limit): take the
            // requests one by one, and a refused request's events one by one, so only the
            // event refused is left out of the log — and kept in the rejected list, with
            // its reason, before the cursor moves past it. It was acknowledged (202).
            Err(_) => {
                for request in chunk {
                    if append_fresh(reader, sequencer, request.events.clone())
                        .await?
                        .is_ok()
                    {
                        continue;
                    }
                    for event in request.events {
                        if let Err(refused) =
                            append_fresh(reader, sequencer, vec![event.clone()]).await?
                        {
                            let reason = match refused {
                                AppendError::Conflict { id, .. } => format!(
                                    "id {id} is in the log with other content (reused while \
                                     this event waited in the spool)"
                                ),
                                other => other.to_string(),
                            };
                            tracing::error!(id = %event.id, %reason, "a spooled event cannot enter the log; kept in the spool's rejected list");
                            reject(spool, event, reason, metrics).await?;
                        }
                    }
                }
            }
        }
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.drained(end, count))
            .await
            .map_err(|e| Stop::NotYet(e.to_string()))?
            .map_err(|e| Stop::NotYet(e.to_string()))?;
        drained += count;
    }
    Ok(drained)
}

/// Keeps a refused event in the spool's rejected list.
async fn reject(
    spool: &Arc<Spool>,
    event: sealtrail_core::PreparedEvent,
    reason: String,
    metrics: &Metrics,
) -> Result<(), Stop> {
    let spool = spool.clone();
    let listed = tokio::task::spawn_blocking(move || {
        spool.reject(&event, &reason, sealtrail_core::time_format::now_micros())?;
        Ok::<_, sealtrail_store::StoreError>(spool.rejected().len())
    })
    .await
    .map_err(|e| Stop::NotYet(e.to_string()))?
    .map_err(|e| Stop::NotYet(e.to_string()))?;
    metrics.spool_rejected_events.set(listed as i64);
    Ok(())
}

/// Appends the events not yet in the log. `Err` stops the step; `Ok(Err)` is a refusal of
/// these events by the sequencer (a conflict, or too many at once).
async fn append_fresh(
    reader: &Arc<dyn LogReader>,
    sequencer: &SequencerHandle,
    events: Vec<sealtrail_core::PreparedEvent>,
) -> Result<Result<(), AppendError>, Stop> {
    // Server-chosen ids have no content hash to deduplicate by: an event whose id is
    // already in the log was stored by an earlier attempt (the one that failed on its way
    // back, or a drain cut short).
    let lookup = reader.clone();
    let fresh = tokio::task::spawn_blocking(move || {
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
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
    if fresh.is_empty() {
        return Ok(Ok(()));
    }
    match sequencer.append(fresh).await {
        Ok(_) => Ok(Ok(())),
        Err(AppendError::Storage(reason)) => Err(Stop::NotYet(reason)),
        Err(AppendError::Unavailable(_)) => Err(Stop::Sequencer),
        Err(refused) => Ok(Err(refused)),
    }
}
