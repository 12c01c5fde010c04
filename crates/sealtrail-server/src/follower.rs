//! Several servers on one PostgreSQL database: each one follows the shared log, so that
//! its live streams deliver every event whichever server stored it, and its reads and
//! proofs move on with the log.
//!
//! Every commit notifies `sealtrail_log`; the follower wakes (or looks anyway once a
//! second, should a notification be lost with a connection), checks the newest signed
//! checkpoint against the log's key, hands the events up to it to the hub in seq order —
//! it is the hub's only publisher on PostgreSQL — and advances the durable tree size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator as _;
use sealtrail_core::{CheckpointVerifier, EventFilter};
use sealtrail_store::{CommittedEvent, LogReader, SequencerHandle, StoreError};

use crate::stream::Hub;

/// How long the follower waits for a notification before looking anyway.
const POLL: Duration = Duration::from_secs(1);
/// Events read from the store per step.
const PAGE_EVENTS: usize = 1000;

/// The running follower; stops when dropped (within [`POLL`]).
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    pub fn spawn(
        url: String,
        reader: Arc<dyn LogReader>,
        sequencer: SequencerHandle,
        verifier: CheckpointVerifier,
        hub: Arc<Hub>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sealtrail-follower".into())
            .spawn(move || {
                let mut published = sequencer.tree_size();
                while !stopping.load(Ordering::Acquire) {
                    if let Err(error) = follow(
                        &url,
                        &*reader,
                        &sequencer,
                        &verifier,
                        &hub,
                        &mut published,
                        &stopping,
                    ) {
                        tracing::warn!(%error, "following the shared log failed; retrying");
                        std::thread::sleep(POLL);
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the follower and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn follow(
    url: &str,
    reader: &dyn LogReader,
    sequencer: &SequencerHandle,
    verifier: &CheckpointVerifier,
    hub: &Hub,
    published: &mut u64,
    stop: &AtomicBool,
) -> Result<(), StoreError> {
    let mut client = sealtrail_store::postgres::connect(url)?;
    client.batch_execute(&format!(
        "LISTEN {}",
        sealtrail_store::postgres::COMMIT_CHANNEL
    ))?;
    while !stop.load(Ordering::Acquire) {
        catch_up(reader, sequencer, verifier, hub, published)?;
        // Wait for the next commit anywhere; drain what else queued up meanwhile.
        let woken = client.notifications().timeout_iter(POLL).next()?.is_some();
        if woken {
            while client.notifications().iter().next()?.is_some() {}
        }
        if client.is_closed() {
            return Err(StoreError::Invalid(
                "the connection to PostgreSQL closed".into(),
            ));
        }
    }
    Ok(())
}

/// Hands every event up to the newest verified checkpoint to the hub, then makes it
/// readable.
fn catch_up(
    reader: &dyn LogReader,
    sequencer: &SequencerHandle,
    verifier: &CheckpointVerifier,
    hub: &Hub,
    published: &mut u64,
) -> Result<(), StoreError> {
    let Some(latest) = reader.latest_checkpoint()? else {
        return Ok(());
    };
    if latest.tree_size <= *published {
        return Ok(());
    }
    let signed = verifier.verify(&latest.note).map_err(|e| {
        StoreError::Integrity(format!(
            "the newest checkpoint in the database (tree size {}) does not verify: {e}",
            latest.tree_size
        ))
    })?;
    if signed.size != latest.tree_size || signed.root != latest.root {
        return Err(StoreError::Integrity(
            "the newest checkpoint row disagrees with its signed note".into(),
        ));
    }
    let everything = EventFilter::default();
    while *published < latest.tree_size {
        let page = reader.events_after(*published, latest.tree_size, &everything, PAGE_EVENTS)?;
        let events: Vec<CommittedEvent> = page
            .events
            .into_iter()
            .map(CommittedEvent::from_stored)
            .collect::<Result<_, _>>()?;
        if !events.is_empty() {
            hub.publish(events.into());
        }
        *published = page.scanned_through;
    }
    sequencer.observe_stored(latest);
    Ok(())
}
