//! Several servers on one PostgreSQL database: each one follows the shared log, so that
//! its live streams deliver every event whichever server stored it, and its reads and
//! proofs move on with the log.
//!
//! Every commit notifies `sealtrail_log`; the follower wakes (or looks anyway once a
//! second, should a notification be lost with a connection), checks the newest signed
//! checkpoint against the log's key, hands the events up to it to the hub in seq order —
//! it is the hub's only publisher on PostgreSQL — and advances the durable tree size.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sealtrail_core::{CheckpointVerifier, EventFilter};
use sealtrail_store::follow::{
    LogConsumer, LogFollower, ReadPlan, Shutdown, Step, StepError, Unbounded,
};
use sealtrail_store::postgres::CommitListener;
use sealtrail_store::{CommittedEvent, LogReader, SequencerHandle, StoreError};
use tokio::sync::Notify;

use crate::stream::Hub;

/// How long the listener waits for a notification before looking anyway; the follower
/// polls as often.
const POLL: Duration = Duration::from_secs(1);
/// Events read from the store per step.
const PAGE_EVENTS: usize = 1000;

/// Follows the shared log until `shutdown`: a [`LogFollower`] woken by a thread that
/// LISTENs for commits. Returns the follower's task and the listener's thread.
pub fn spawn(
    url: String,
    reader: Arc<dyn LogReader>,
    sequencer: SequencerHandle,
    verifier: CheckpointVerifier,
    hub: Arc<Hub>,
    shutdown: Shutdown,
) -> std::io::Result<(tokio::task::JoinHandle<()>, JoinHandle<()>)> {
    let commits = Arc::new(Notify::new());
    let listener = {
        let (commits, shutdown) = (commits.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("sealtrail-listen".into())
            .spawn(move || listen(&url, &commits, &shutdown))?
    };
    let follower = LogFollower::without_reader(Unbounded(commits), shutdown);
    let consumer = SharedLog {
        published: sequencer.tree_size(),
        reader,
        sequencer,
        verifier,
        hub,
    };
    let task = tokio::spawn(async move { follower.run(consumer).await });
    Ok((task, listener))
}

/// Wakes the follower on every commit any server makes, until `shutdown`.
fn listen(url: &str, commits: &Notify, shutdown: &Shutdown) {
    while !shutdown.is_cancelled() {
        if let Err(error) = listen_once(url, commits, shutdown) {
            tracing::warn!(%error, "listening for commits on the shared log failed; retrying");
            std::thread::sleep(POLL);
        }
    }
}

fn listen_once(url: &str, commits: &Notify, shutdown: &Shutdown) -> Result<(), StoreError> {
    let mut listener = CommitListener::connect(url)?;
    while !shutdown.is_cancelled() {
        if listener.wait(POLL)? {
            commits.notify_one();
        }
    }
    Ok(())
}

/// The shared log as this server's consumer: its cursor is how far it has published.
struct SharedLog {
    published: u64,
    reader: Arc<dyn LogReader>,
    sequencer: SequencerHandle,
    verifier: CheckpointVerifier,
    hub: Arc<Hub>,
}

impl LogConsumer for SharedLog {
    fn name(&self) -> &str {
        "shared-log"
    }

    async fn start(&mut self, _through: u64) -> Result<u64, StepError> {
        Ok(self.published)
    }

    fn plan(&self) -> ReadPlan {
        // How far it may read is the newest verified checkpoint, found in the step.
        ReadPlan::Range
    }

    async fn step(&mut self, _step: Step) -> Result<u64, StepError> {
        let (reader, sequencer, verifier, hub) = (
            self.reader.clone(),
            self.sequencer.clone(),
            self.verifier.clone(),
            self.hub.clone(),
        );
        let mut published = self.published;
        let (published, caught_up) = tokio::task::spawn_blocking(move || {
            let result = catch_up(&*reader, &sequencer, &verifier, &hub, &mut published);
            (published, result)
        })
        .await
        .map_err(|e| StepError::Fatal(format!("the follower's task failed: {e}")))?;
        // What was published before a failure stays published.
        self.published = published;
        caught_up?;
        Ok(self.published)
    }
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
    // A checkpoint the chain does not accept may follow a rotation made by another
    // server: follow the stored rotations (each checked against the chain) and try again.
    let mut signed = verifier.verify(&latest.note);
    if signed.is_err() {
        for statement in reader.key_rotations()? {
            verifier.accept_rotation(&statement).map_err(|e| {
                StoreError::Integrity(format!("a stored key rotation does not chain on: {e}"))
            })?;
        }
        signed = verifier.verify(&latest.note);
    }
    let signed = signed.map_err(|e| {
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
