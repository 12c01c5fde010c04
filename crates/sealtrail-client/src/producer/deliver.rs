//! The producer's delivery task: batches off the queue, one request at a time, retries,
//! the spool.
//!
//! Order is kept: while the spool holds batches, new batches are spooled behind them and
//! the spool is drained oldest first; only when it is empty do batches go straight from
//! memory. A batch is sent again until the server acknowledges or refuses it; after
//! `spool_after` of failures it goes to the spool instead (if there is one and it has
//! room), which frees the queue. Without a spool the task keeps retrying and the queue
//! fills: backpressure (or drops, if the producer chose to drop).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::spool::Spool;
use super::{FlushReport, Message, ProducerConfig, Refusal, Shared};
use crate::{Attempt, Client};

/// The first retry delay; doubled per failure up to `max_retry_delay`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Spool files sent per turn before the queue is looked at again.
const SPOOL_FILES_PER_TURN: usize = 4;
/// Events gathered from the queue into one spool file: one fsync for many batches.
const SPOOL_FILE_EVENTS: usize = 5000;

/// What became of one batch.
enum Sent {
    /// Acknowledged by the server (some events perhaps refused one by one): done with.
    Done,
    /// Refused as a whole by the server: done with, never to be sent again.
    Refused,
    /// Still failing when it had to stop (the deadline, or time to spool), with the wait
    /// the backoff asked for next.
    Failing(Duration),
}

pub(super) struct Deliverer {
    client: Client,
    queue: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
    spool: Option<Spool>,
    batch: Vec<Vec<u8>>,
    batch_size: usize,
    linger: Duration,
    spool_after: Duration,
    max_retry_delay: Duration,
    /// Failures in a row, for the backoff.
    failures: u32,
    /// When the spool is next tried after a failure.
    spool_retry_at: Instant,
    /// Events given up on at a shutdown's deadline.
    undelivered: u64,
    /// A flush or shutdown taken off the queue while gathering events for the spool,
    /// handled next.
    deferred: Option<Message>,
}

impl Deliverer {
    pub(super) fn new(
        client: Client,
        queue: mpsc::Receiver<Message>,
        shared: Arc<Shared>,
        spool: Option<Spool>,
        config: &ProducerConfig,
    ) -> Self {
        let deliverer = Self {
            client,
            queue,
            shared,
            spool,
            batch: Vec::with_capacity(config.batch_size),
            batch_size: config.batch_size,
            linger: config.linger,
            spool_after: config.spool_after,
            max_retry_delay: config.max_retry_delay,
            failures: 0,
            spool_retry_at: Instant::now(),
            undelivered: 0,
            deferred: None,
        };
        deliverer.publish_spool();
        deliverer
    }

    pub(super) async fn run(mut self) {
        let mut batch_started = Instant::now();
        loop {
            let spool_waiting = self.spool.as_ref().is_some_and(|s| !s.is_empty());
            let wake_at = match (self.batch.is_empty(), spool_waiting) {
                (false, _) => Some(batch_started + self.linger),
                (true, true) => Some(self.spool_retry_at),
                (true, false) => None,
            };
            let message = match (self.deferred.take(), wake_at) {
                (Some(deferred), _) => Some(deferred),
                (None, None) => self.queue.recv().await,
                (None, Some(at)) => match tokio::time::timeout_at(at, self.queue.recv()).await {
                    Ok(message) => message,
                    Err(_elapsed) => {
                        self.send_batch().await;
                        self.drain_spool(SPOOL_FILES_PER_TURN).await;
                        continue;
                    }
                },
            };
            match message {
                Some(Message::Event(event)) => {
                    if self.batch.is_empty() {
                        batch_started = Instant::now();
                    }
                    self.batch.push(event);
                    if self.batch.len() >= self.batch_size {
                        self.send_batch().await;
                    }
                }
                Some(Message::Flush(done)) => {
                    let report = self.deliver_everything().await;
                    let _ = done.send(report);
                }
                Some(Message::Shutdown(done)) => {
                    // The deadline was set by `shutdown` already, so a retry that was
                    // under way when it was called has stopped at it.
                    self.queue.close();
                    while let Some(message) = self.queue.recv().await {
                        match message {
                            Message::Event(event) => {
                                self.batch.push(event);
                                if self.batch.len() >= self.batch_size {
                                    self.send_batch().await;
                                }
                            }
                            Message::Flush(flushed) | Message::Shutdown(flushed) => {
                                // Answered with the final report's worth below.
                                drop(flushed);
                            }
                        }
                    }
                    let report = self.deliver_everything().await;
                    let _ = done.send(report);
                    return;
                }
                // Every handle dropped without a shutdown: deliver what is left, briefly.
                None => {
                    self.shared
                        .stop_retrying_at(Instant::now() + Duration::from_secs(5));
                    self.deliver_everything().await;
                    return;
                }
            }
            if spool_waiting && Instant::now() >= self.spool_retry_at {
                self.drain_spool(SPOOL_FILES_PER_TURN).await;
            }
        }
    }

    /// Sends the batch in memory and the whole spool, as far as the server lets it.
    async fn deliver_everything(&mut self) -> FlushReport {
        self.send_batch().await;
        while let Some(spool) = self.spool.as_ref().filter(|s| !s.is_empty()) {
            let before = spool.files();
            self.drain_spool(usize::MAX).await;
            let after = self.spool.as_ref().map_or(0, Spool::files);
            if after == before {
                // Unreachable: the spool keeps them.
                break;
            }
        }
        self.give_up_batch();
        FlushReport {
            spooled: self.spool.as_ref().map_or(0, Spool::events),
            undelivered: self.undelivered,
        }
    }

    /// Whether a shutdown's deadline has passed.
    fn out_of_time(&self) -> bool {
        self.shared.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Counts the batch in memory as undelivered and lets it go.
    fn give_up_batch(&mut self) {
        self.undelivered += self.batch.len() as u64;
        self.batch.clear();
    }

    /// Sends the batch in memory (behind the spool, if it holds anything).
    async fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if self.spool.as_ref().is_some_and(|s| !s.is_empty()) && self.spool_batch().await {
            return;
        }
        if self.out_of_time() && self.failures > 0 {
            // Past the deadline with the server failing: no more attempts.
            if !self.spool_batch().await {
                self.give_up_batch();
            }
            return;
        }
        let started = Instant::now();
        let mut spool_has_room = self.spool.is_some();
        loop {
            let stop_at = match (spool_has_room, self.shared.deadline()) {
                (true, Some(deadline)) => Some(deadline.min(started + self.spool_after)),
                (true, None) => Some(started + self.spool_after),
                (false, deadline) => deadline,
            };
            let batch = std::mem::take(&mut self.batch);
            match self.send(&batch, stop_at).await {
                Sent::Done | Sent::Refused => return,
                Sent::Failing(_) => {
                    self.batch = batch;
                    if spool_has_room && self.spool_batch().await {
                        return;
                    }
                    if self.out_of_time() {
                        // Shutting down and out of time: reported as undelivered.
                        self.give_up_batch();
                        return;
                    }
                    // The spool is full or failing: retry in memory (the queue fills
                    // behind, which is the backpressure).
                    spool_has_room = false;
                }
            }
        }
    }

    /// Moves the batch to the spool, with what else waits in the queue (up to
    /// [`SPOOL_FILE_EVENTS`]); false if it would not fit (or the disk failed), the batch
    /// then still in memory.
    async fn spool_batch(&mut self) -> bool {
        if self.spool.is_none() {
            return false;
        }
        let mut batch = std::mem::take(&mut self.batch);
        while batch.len() < SPOOL_FILE_EVENTS && self.deferred.is_none() {
            match self.queue.try_recv() {
                Ok(Message::Event(event)) => batch.push(event),
                Ok(control) => self.deferred = Some(control),
                Err(_) => break,
            }
        }
        let (written, batch) = self
            .with_spool(move |spool| (spool.push(&batch), batch))
            .await
            .expect("spool present");
        match written {
            Ok(true) => {
                self.shared
                    .spooled
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.publish_spool();
                true
            }
            Ok(false) => {
                self.batch = batch;
                false
            }
            Err(error) => {
                self.shared
                    .failed(format!("cannot write the spool: {error}"));
                self.batch = batch;
                false
            }
        }
    }

    /// Runs `work` on the spool off the async workers (fsyncs block), handing the spool
    /// to a blocking thread and back; `None` without a spool.
    async fn with_spool<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let mut spool = self.spool.take()?;
        let (spool, out) = tokio::task::spawn_blocking(move || {
            let out = work(&mut spool);
            (spool, out)
        })
        .await
        .expect("spool work does not panic");
        self.spool = Some(spool);
        Some(out)
    }

    /// Sends up to `files` spool files, oldest first, each in batches of `batch_size`,
    /// stopping at the first failure (and trying again after a backoff; batches of the
    /// file sent already are sent again then, which their ids make harmless).
    async fn drain_spool(&mut self, files: usize) {
        for _ in 0..files {
            if self.spool.as_ref().is_none_or(Spool::is_empty) {
                return;
            }
            let oldest = self
                .with_spool(|spool| spool.oldest().expect("not empty"))
                .await
                .expect("spool present");
            let events = match oldest {
                Ok(events) => events,
                Err(error) => {
                    self.shared
                        .failed(format!("cannot read the spool: {error}"));
                    return;
                }
            };
            let mut refused = false;
            for batch in events.chunks(self.batch_size) {
                // One attempt: a failure leaves the file for the next turn.
                match self.send(batch, Some(Instant::now())).await {
                    Sent::Done => {}
                    Sent::Refused => refused = true,
                    Sent::Failing(wait) => {
                        self.spool_retry_at = Instant::now() + wait;
                        return;
                    }
                }
            }
            let (done, what) = if refused {
                (
                    self.with_spool(Spool::refuse_oldest).await,
                    "move a refused",
                )
            } else {
                (
                    self.with_spool(Spool::remove_oldest).await,
                    "remove a delivered",
                )
            };
            if let Some(Err(error)) = done {
                self.shared
                    .failed(format!("cannot {what} spool file: {error}"));
                return;
            }
            self.publish_spool();
        }
    }

    /// Sends one batch until it is acknowledged or refused, or until `stop_at`.
    async fn send(&mut self, batch: &[Vec<u8>], stop_at: Option<Instant>) -> Sent {
        loop {
            match self.client.send_events_once(request_body(batch)).await {
                Attempt::Accepted(answer) => {
                    self.failures = 0;
                    let mut stored = 0;
                    for (i, result) in answer.events.iter().enumerate() {
                        match &result.error {
                            None => stored += 1,
                            Some(error) => self.shared.refused(Refusal {
                                id: event_id(&batch[result.index.unwrap_or(i)]),
                                field: error.field.clone(),
                                reason: error.reason.clone(),
                            }),
                        }
                    }
                    self.shared.delivered.fetch_add(stored, Ordering::Relaxed);
                    return Sent::Done;
                }
                Attempt::Refused { status: 413, .. } if batch.len() > 1 => {
                    // Too big for the server's limits: each half on its own.
                    let (first, second) = batch.split_at(batch.len() / 2);
                    for half in [first, second] {
                        if let Sent::Failing(wait) = Box::pin(self.send(half, stop_at)).await {
                            return Sent::Failing(wait);
                        }
                    }
                    // Whatever either half came to is counted; the batch is done with.
                    return Sent::Done;
                }
                Attempt::Refused { status, body } => {
                    self.failures = 0;
                    for event in batch {
                        self.shared.refused(Refusal {
                            id: event_id(event),
                            field: body.field.clone().unwrap_or_default(),
                            reason: format!("{status}: {}", body.message),
                        });
                    }
                    return Sent::Refused;
                }
                Attempt::Transient {
                    reason,
                    retry_after,
                } => {
                    self.shared.failed(reason);
                    self.shared.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = self.backoff(retry_after);
                    // A shutdown called meanwhile stops the retries too.
                    let stop_at = match (stop_at, self.shared.deadline()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if stop_at.is_some_and(|at| Instant::now() + wait > at) {
                        return Sent::Failing(wait);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The next wait: `Retry-After` if the server gave one, otherwise exponential with
    /// jitter (between half and all of it, so producers that failed together spread
    /// out), both capped.
    fn backoff(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_delay);
        }
        let ceiling = FIRST_RETRY_DELAY
            .saturating_mul(2u32.saturating_pow(self.failures.min(16) - 1))
            .min(self.max_retry_delay);
        let millis = ceiling.as_millis().max(2) as u64;
        // A v4 UUID is 122 bits from the OS's generator: jitter without another crate.
        let random = uuid::Uuid::new_v4().as_u128() as u64;
        Duration::from_millis(millis / 2 + random % (millis / 2 + 1))
    }

    fn publish_spool(&self) {
        let (files, events, bytes) = self
            .spool
            .as_ref()
            .map_or((0, 0, 0), |s| (s.files() as u64, s.events(), s.bytes()));
        self.shared.spool_files.store(files, Ordering::Relaxed);
        self.shared.spool_events.store(events, Ordering::Relaxed);
        self.shared.spool_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// `{"events":[…]}` from events serialised already.
fn request_body(batch: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = batch.iter().map(|e| e.len() + 1).sum();
    let mut body = Vec::with_capacity(size + 16);
    body.extend_from_slice(b"{\"events\":[");
    for (i, event) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    body
}

/// The `id` of a serialised event.
fn event_id(event: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<String>,
    }
    serde_json::from_slice::<Id>(event).ok()?.id
}
