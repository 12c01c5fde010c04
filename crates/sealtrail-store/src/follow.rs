//! Every consumer is a cursor on the log (DESIGN.md): this is the one driver they share.
//!
//! A consumer — the query indexer, the blind index, a sink, the PostgreSQL follower that
//! feeds a server's streams — remembers the last seq it handled. The [`LogFollower`] runs
//! its loop: look how far the log is durable ([`Horizon`]), read the events after the
//! cursor, hand them to the consumer, which persists its new cursor, then wait for the next
//! commit; on a failure back off and try again; stop when the shared [`Shutdown`] is
//! signalled, also in the middle of a read. The consumer only says what one step does.
//!
//! The invariant every consumer relies on is checked here, once: a cursor only moves
//! forward, and never past what the horizon allowed.

use std::sync::Arc;
use std::time::Duration;

use sealtrail_core::EventFilter;
use tokio::sync::Notify;
pub use tokio_util::sync::CancellationToken as Shutdown;

use crate::{DurableSize, LogReader, ReplayPage, StoreError};

/// How far a consumer may read, and a signal that it moved.
pub trait Horizon: Send + Sync + 'static {
    /// The highest seq a consumer may handle now.
    fn through(&self) -> u64;
    /// Resolves once `through` may be above `seq` (waking early is harmless).
    fn moved_beyond(&self, seq: u64) -> impl Future<Output = ()> + Send;
}

/// The local sequencer's durable tree: nothing beyond it is acknowledged yet.
impl Horizon for DurableSize {
    fn through(&self) -> u64 {
        self.get()
    }

    fn moved_beyond(&self, seq: u64) -> impl Future<Output = ()> + Send {
        self.wait_beyond(seq)
    }
}

/// No bound of its own: the consumer finds out in its step how far it can go (the
/// PostgreSQL follower reads the newest signed checkpoint) and is woken by a [`Notify`]
/// or by the follower's poll.
#[derive(Clone, Default)]
pub struct Unbounded(pub Arc<Notify>);

impl Horizon for Unbounded {
    fn through(&self) -> u64 {
        u64::MAX
    }

    fn moved_beyond(&self, _seq: u64) -> impl Future<Output = ()> + Send {
        let notify = self.0.clone();
        async move { notify.notified().await }
    }
}

/// What the follower reads for a consumer before each step.
#[derive(Clone, Debug)]
pub enum ReadPlan {
    /// The events matching `filter` after the cursor, at most `max_events` per step.
    Events {
        /// Which events the consumer wants (it still sees how far the scan got).
        filter: Box<EventFilter>,
        /// Most events per step.
        max_events: usize,
    },
    /// Nothing: the consumer reads the range itself (the indexer copies rows in SQL).
    Range,
}

/// One step's worth of the log for a consumer.
pub struct Step {
    /// Every seq up to here was handled before.
    pub cursor: u64,
    /// The horizon when the step began: the consumer must not go beyond it.
    pub through: u64,
    /// The events read after the cursor ([`ReadPlan::Events`]); their
    /// `scanned_through` is where the consumer's cursor may move.
    pub page: Option<ReplayPage>,
}

/// Why a step did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth trying again after a pause (a database outage, a lock).
    #[error("{0}")]
    Retry(String),
    /// The consumer cannot go on (its own state is broken); it stops, the server runs on.
    #[error("{0}")]
    Fatal(String),
    /// The shutdown was signalled while the step waited.
    #[error("shutting down")]
    Stopped,
}

impl From<StoreError> for StepError {
    fn from(error: StoreError) -> Self {
        Self::Retry(error.to_string())
    }
}

/// A cursor on the log: what one consumer does with each step.
pub trait LogConsumer: Send {
    /// Named in logs.
    fn name(&self) -> &str;
    /// Where it resumes (its persisted cursor), given the horizon now.
    fn start(&mut self, through: u64) -> impl Future<Output = Result<u64, StepError>> + Send;
    /// What the follower reads before each step.
    fn plan(&self) -> ReadPlan;
    /// Handles a step and persists its new cursor, which it returns. Returning the
    /// cursor unchanged means "nothing to do yet": the follower then waits for the next
    /// commit (or its poll) before the next step.
    fn step(&mut self, step: Step) -> impl Future<Output = Result<u64, StepError>> + Send;
    /// Work a consumer does once per round, before it looks at the log (a sink's dead
    /// letters to replay and digests that are due).
    fn tend(&mut self) -> impl Future<Output = Result<(), StepError>> + Send {
        async { Ok(()) }
    }
    /// Told the cursor and horizon whenever the consumer is about to wait (status).
    fn waiting(&mut self, _cursor: u64, _through: u64) {}
    /// Wakes the consumer while it waits, besides commits and the poll (a replay request).
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// A consumer lent to a follower, to be run again afterwards (a sink that runs once per
/// lease it holds).
impl<C: LogConsumer> LogConsumer for &mut C {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn start(&mut self, through: u64) -> impl Future<Output = Result<u64, StepError>> + Send {
        (**self).start(through)
    }
    fn plan(&self) -> ReadPlan {
        (**self).plan()
    }
    fn step(&mut self, step: Step) -> impl Future<Output = Result<u64, StepError>> + Send {
        (**self).step(step)
    }
    fn tend(&mut self) -> impl Future<Output = Result<(), StepError>> + Send {
        (**self).tend()
    }
    fn waiting(&mut self, cursor: u64, through: u64) {
        (**self).waiting(cursor, through);
    }
    fn wake(&self) -> Option<Arc<Notify>> {
        (**self).wake()
    }
}

/// How a follower waits and retries.
#[derive(Clone, Copy, Debug)]
pub struct FollowTiming {
    /// Looks at the log this often even without a commit signal (a signal lost with a
    /// connection, or a horizon that has none).
    pub poll: Duration,
    /// Waits this long after a failed step.
    pub retry_after: Duration,
}

impl Default for FollowTiming {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// What one round of a follower did.
enum Round {
    /// Nothing was new: it waited for a commit, a wake-up or the poll.
    Waited,
    /// The consumer stepped from its cursor to `next` with the horizon at `through`.
    Stepped { next: u64, through: u64 },
}

/// Drives consumers: read after the cursor, step, persist, wait, stop.
#[derive(Clone)]
pub struct LogFollower<H> {
    /// None for followers whose consumers read the range themselves ([`ReadPlan::Range`]).
    reader: Option<Arc<dyn LogReader>>,
    horizon: H,
    shutdown: Shutdown,
    timing: FollowTiming,
}

impl<H: Horizon + Clone> LogFollower<H> {
    /// A follower reading `reader` up to `horizon` until `shutdown`.
    pub fn new(reader: Arc<dyn LogReader>, horizon: H, shutdown: Shutdown) -> Self {
        Self {
            reader: Some(reader),
            horizon,
            shutdown,
            timing: FollowTiming::default(),
        }
    }

    /// A follower for consumers that read their range themselves ([`ReadPlan::Range`]).
    pub fn without_reader(horizon: H, shutdown: Shutdown) -> Self {
        Self {
            reader: None,
            horizon,
            shutdown,
            timing: FollowTiming::default(),
        }
    }

    /// With other poll and retry intervals.
    pub fn with_timing(mut self, timing: FollowTiming) -> Self {
        self.timing = timing;
        self
    }

    /// The shutdown this follower stops on.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Runs `consumer` until the shutdown (or until it fails for good).
    pub async fn run<C: LogConsumer>(&self, mut consumer: C) {
        let name = consumer.name().to_owned();
        let mut cursor = match self
            .until_stopped(consumer.start(self.horizon.through()))
            .await
        {
            Ok(cursor) => cursor,
            Err(StepError::Stopped) => return,
            Err(error) => {
                tracing::error!(consumer = %name, %error, "cannot resume from its cursor; it stops");
                return;
            }
        };
        tracing::debug!(consumer = %name, cursor, "following the log");
        let mut idle_at = None;
        while !self.shutdown.is_cancelled() {
            match self.round(&mut consumer, cursor, idle_at).await {
                Ok(Round::Waited) => idle_at = None,
                Ok(Round::Stepped { next, through }) => {
                    assert!(next >= cursor, "{name}: a cursor never moves back");
                    idle_at = (next == cursor).then_some(through);
                    cursor = next;
                }
                Err(StepError::Stopped) => break,
                Err(StepError::Retry(error)) => {
                    tracing::warn!(consumer = %name, cursor, %error, "step failed; retrying");
                    if self.pause(self.timing.retry_after).await.is_err() {
                        break;
                    }
                }
                Err(StepError::Fatal(error)) => {
                    tracing::error!(consumer = %name, cursor, %error, "it stops");
                    return;
                }
            }
        }
        tracing::debug!(consumer = %name, cursor, "stopped following the log");
    }

    /// One round: tend, then wait if there is nothing new, else read and step.
    /// `idle_at` is the horizon the last step found nothing to do at.
    async fn round<C: LogConsumer>(
        &self,
        consumer: &mut C,
        cursor: u64,
        idle_at: Option<u64>,
    ) -> Result<Round, StepError> {
        self.until_stopped(consumer.tend()).await?;
        let through = self.horizon.through();
        let nothing_new = match idle_at {
            Some(seen) => through <= seen,
            None => through <= cursor,
        };
        if nothing_new {
            consumer.waiting(cursor, through);
            self.wait(consumer, through.max(cursor)).await?;
            return Ok(Round::Waited);
        }
        let page = match consumer.plan() {
            ReadPlan::Events { filter, max_events } => {
                Some(self.read_page(cursor, through, *filter, max_events).await?)
            }
            ReadPlan::Range => None,
        };
        let next = self
            .until_stopped(consumer.step(Step {
                cursor,
                through,
                page,
            }))
            .await?;
        assert!(
            next <= through,
            "{}: a cursor never passes the horizon ({next} > {through})",
            consumer.name()
        );
        Ok(Round::Stepped { next, through })
    }

    async fn read_page(
        &self,
        cursor: u64,
        through: u64,
        filter: EventFilter,
        limit: usize,
    ) -> Result<ReplayPage, StepError> {
        let reader = self.reader.clone().ok_or_else(|| {
            StepError::Fatal("this follower has no reader: its consumers read themselves".into())
        })?;
        read_after(reader, cursor, through, filter, limit, &self.shutdown).await
    }

    async fn wait<C: LogConsumer>(&self, consumer: &C, beyond: u64) -> Result<(), StepError> {
        let wake = consumer.wake();
        let woken = async {
            match wake {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.horizon.moved_beyond(beyond) => Ok(()),
            () = woken => Ok(()),
            () = tokio::time::sleep(self.timing.poll) => Ok(()),
            () = self.shutdown.cancelled() => Err(StepError::Stopped),
        }
    }

    async fn pause(&self, wait: Duration) -> Result<(), StepError> {
        self.until_stopped(async {
            tokio::time::sleep(wait).await;
            Ok(())
        })
        .await
    }

    async fn until_stopped<T>(
        &self,
        work: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        tokio::select! {
            result = work => result,
            () = self.shutdown.cancelled() => Err(StepError::Stopped),
        }
    }
}

/// Reads the events matching `filter` in (cursor, through], at most `limit`, off the async
/// workers: the read step of every follower and of every stream's catch-up. A read stuck
/// on an unreachable database does not hold up a shutdown.
pub async fn read_after(
    reader: Arc<dyn LogReader>,
    cursor: u64,
    through: u64,
    filter: EventFilter,
    limit: usize,
    shutdown: &Shutdown,
) -> Result<ReplayPage, StepError> {
    let read =
        tokio::task::spawn_blocking(move || reader.events_after(cursor, through, &filter, limit));
    let page = tokio::select! {
        read = read => read.map_err(|e| StepError::Fatal(format!("the log read task failed: {e}")))??,
        () = shutdown.cancelled() => return Err(StepError::Stopped),
    };
    debug_assert!(
        page.scanned_through > cursor || through <= cursor,
        "a read after the cursor always advances the scan"
    );
    Ok(page)
}
