//! The producer: send audit events from application code without ever blocking the
//! request path on Sealtrail, and without losing one when Sealtrail is briefly away.
//!
//! [`Producer::send`] stamps the event (`id`, `occurred_at`, `source`, `source_seq`),
//! serialises it and puts it in a bounded in-memory queue; it returns as soon as the event
//! is queued. One background task takes events off the queue in batches (by size and by
//! time), sends each batch with one request, and retries transient failures with backoff
//! (the ids make every retry idempotent). When Sealtrail stays unreachable and a spool
//! directory is configured, batches go to disk and are delivered, oldest first, when it is
//! back — also by the next process on the same directory. A full queue makes `send` wait
//! ([`Overflow::Block`], the default) or drops the new event and counts it
//! ([`Overflow::DropNewest`]); a dropped event still took its `source_seq`, so the server's
//! `GET /v1/sources` shows the loss.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sealtrail_client::{Client, event::Event, producer::{Producer, ProducerConfig}};
//! let client = Client::new("http://127.0.0.1:7700", "st_...")?;
//! let mut config = ProducerConfig::new("wedding-api");
//! config.spool_dir = Some("/var/lib/wedding-api/audit-spool".into());
//! let audit = Producer::start(client, config)?;
//! audit.send(Event::new("guest.rsvp.updated", "guest").resource_id("4711")).await?;
//! audit.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

mod deliver;
mod spool;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::Client;
use crate::event::Event;

pub use spool::REFUSED_DIR;

/// The server's default `limits.max_batch_events`.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Refusals kept for [`Producer::refusals`].
const KEPT_REFUSALS: usize = 100;

/// What to do when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// `send` waits for room: backpressure on the producer.
    #[default]
    Block,
    /// The new event is dropped and counted (its `source_seq` becomes a hole the server
    /// reports).
    DropNewest,
}

/// How a producer batches, queues, retries and spools.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// A stable name for the application (letters, digits and `. _ - : /`); each producer
    /// stamps `source` as `<name>/<instance>` with an instance id of its own.
    pub source_name: String,
    /// The tenant of events that name none (a key bound to a tenant needs none).
    pub tenant_id: Option<String>,
    /// Events per request (1 to [`MAX_BATCH_EVENTS`]).
    pub batch_size: usize,
    /// How long the first event of a batch waits for others.
    pub linger: Duration,
    /// Events the queue holds.
    pub queue_capacity: usize,
    /// When the queue is full.
    pub overflow: Overflow,
    /// Where batches go while Sealtrail is unreachable (none: they wait in memory).
    pub spool_dir: Option<PathBuf>,
    /// The spool's size bound; beyond it batches wait in memory (backpressure).
    pub max_spool_bytes: u64,
    /// How long failures must last before batches are spooled.
    pub spool_after: Duration,
    /// The longest wait between attempts.
    pub max_retry_delay: Duration,
}

impl ProducerConfig {
    /// Defaults for an application called `source_name`.
    pub fn new(source_name: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            tenant_id: None,
            batch_size: 100,
            linger: Duration::from_millis(50),
            queue_capacity: 10_000,
            overflow: Overflow::Block,
            spool_dir: None,
            max_spool_bytes: 1 << 30,
            spool_after: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(5),
        }
    }
}

/// Why a producer could not start or an event was not queued.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// A setting is out of range.
    #[error("producer setting {field}: {reason}")]
    Config {
        /// Which.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The spool directory cannot be used.
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
    /// The producer was shut down.
    #[error("the producer is shut down")]
    Closed,
    /// The queue is full and the overflow policy drops.
    #[error("the queue is full; the event was dropped")]
    Dropped,
}

/// A refusal by the server: the event will never be stored as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The event's id, when known.
    pub id: Option<String>,
    /// The field, e.g. `ip_address`.
    pub field: String,
    /// Why.
    pub reason: String,
}

/// Counts since the producer started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerMetrics {
    /// Events in the in-memory queue now.
    pub queued: u64,
    /// Events the server acknowledged.
    pub delivered: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// Events dropped because the queue was full ([`Overflow::DropNewest`] only).
    pub dropped: u64,
    /// Events the server refused.
    pub refused: u64,
    /// Events written to the spool.
    pub spooled: u64,
    /// Events waiting in the spool now.
    pub spool_events: u64,
    /// Spool files now.
    pub spool_files: u64,
    /// Bytes in the spool now.
    pub spool_bytes: u64,
    /// The latest failure.
    pub last_error: Option<String>,
}

/// What a flush or a shutdown came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Events still in the spool (Sealtrail unreachable): safe on disk, not yet delivered.
    pub spooled: u64,
    /// Events neither delivered nor spooled (a shutdown's deadline passed with Sealtrail
    /// unreachable and no spool): lost.
    pub undelivered: u64,
}

impl FlushReport {
    /// Whether everything was delivered.
    pub fn all_delivered(&self) -> bool {
        self.spooled == 0 && self.undelivered == 0
    }
}

enum Message {
    Event(Vec<u8>),
    Flush(oneshot::Sender<FlushReport>),
    Shutdown(oneshot::Sender<FlushReport>),
}

/// Counters the delivery task and the senders share.
#[derive(Debug, Default)]
struct Shared {
    delivered: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    spooled: AtomicU64,
    spool_events: AtomicU64,
    spool_files: AtomicU64,
    spool_bytes: AtomicU64,
    last_error: Mutex<Option<String>>,
    refusals: Mutex<VecDeque<Refusal>>,
    /// Set by a shutdown: no retry goes on past it.
    deadline: Mutex<Option<tokio::time::Instant>>,
}

impl Shared {
    fn deadline(&self) -> Option<tokio::time::Instant> {
        *self.deadline.lock().expect("never poisoned")
    }

    fn stop_retrying_at(&self, at: tokio::time::Instant) {
        let mut deadline = self.deadline.lock().expect("never poisoned");
        *deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }

    fn failed(&self, reason: String) {
        *self.last_error.lock().expect("never poisoned") = Some(reason);
    }

    fn refused(&self, refusal: Refusal) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.refusals.lock().expect("never poisoned");
        if kept.len() == KEPT_REFUSALS {
            kept.pop_front();
        }
        kept.push_back(refusal);
    }
}

struct Inner {
    queue: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    source: String,
    next_seq: AtomicU64,
    tenant_id: Option<String>,
    overflow: Overflow,
    closed: AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A handle on the producer; clones share one queue and one delivery task.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Starts the delivery task on the current tokio runtime.
    pub fn start(client: Client, config: ProducerConfig) -> Result<Self, ProducerError> {
        check(&config)?;
        let spool = config
            .spool_dir
            .as_deref()
            .map(|dir| spool::Spool::open(dir, config.max_spool_bytes))
            .transpose()?;
        let shared = Arc::new(Shared::default());
        let (queue, receiver) = mpsc::channel(config.queue_capacity);
        let source = format!("{}/{}", config.source_name, instance_id());
        let deliverer = deliver::Deliverer::new(client, receiver, shared.clone(), spool, &config);
        let task = tokio::spawn(deliverer.run());
        Ok(Self {
            inner: Arc::new(Inner {
                queue,
                shared,
                source,
                next_seq: AtomicU64::new(1),
                tenant_id: config.tenant_id,
                overflow: config.overflow,
                closed: AtomicBool::new(false),
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The `source` this producer stamps: `<name>/<instance>`.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Queues `event`; returns once it is queued (waiting for room with
    /// [`Overflow::Block`]), never waiting for delivery.
    pub async fn send(&self, event: Event) -> Result<(), ProducerError> {
        let message = self.stamp(event)?;
        match self.inner.overflow {
            Overflow::Block => self
                .inner
                .queue
                .send(message)
                .await
                .map_err(|_| ProducerError::Closed),
            Overflow::DropNewest => self.offer(message),
        }
    }

    /// Queues `event` if there is room now, never waiting (a full queue drops it and
    /// counts it, whatever the overflow policy).
    pub fn try_send(&self, event: Event) -> Result<(), ProducerError> {
        let message = self.stamp(event)?;
        self.offer(message)
    }

    /// Resolves once every event queued before the call is delivered, or safe in the spool
    /// while Sealtrail is unreachable (the report counts those). Without a spool it waits
    /// as long as Sealtrail is away.
    pub async fn flush(&self) -> Result<FlushReport, ProducerError> {
        let (done, report) = oneshot::channel();
        self.inner
            .queue
            .send(Message::Flush(done))
            .await
            .map_err(|_| ProducerError::Closed)?;
        report.await.map_err(|_| ProducerError::Closed)
    }

    /// Stops taking events and delivers what is queued, giving up retries after `timeout`
    /// (what is left then goes to the spool, if there is one, or is reported undelivered).
    /// Later sends fail with [`ProducerError::Closed`].
    pub async fn shutdown(&self, timeout: Duration) -> FlushReport {
        self.inner.closed.store(true, Ordering::SeqCst);
        let (done, report) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + timeout;
        self.inner.shared.stop_retrying_at(deadline);
        let report = match self.inner.queue.send(Message::Shutdown(done)).await {
            Ok(()) => report.await.unwrap_or_default(),
            Err(_) => FlushReport::default(),
        };
        let task = self.inner.task.lock().expect("never poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        report
    }

    /// Counts since the start.
    pub fn metrics(&self) -> ProducerMetrics {
        let s = &self.inner.shared;
        let queue = &self.inner.queue;
        ProducerMetrics {
            queued: (queue.max_capacity() - queue.capacity()) as u64,
            delivered: s.delivered.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            spooled: s.spooled.load(Ordering::Relaxed),
            spool_events: s.spool_events.load(Ordering::Relaxed),
            spool_files: s.spool_files.load(Ordering::Relaxed),
            spool_bytes: s.spool_bytes.load(Ordering::Relaxed),
            last_error: s.last_error.lock().expect("never poisoned").clone(),
        }
    }

    /// The latest refusals by the server (at most 100), oldest first.
    pub fn refusals(&self) -> Vec<Refusal> {
        let kept = self.inner.shared.refusals.lock().expect("never poisoned");
        kept.iter().cloned().collect()
    }

    /// Stamps and serialises: the event's number is taken here, before any drop, so a
    /// dropped event is a hole the server sees.
    fn stamp(&self, mut event: Event) -> Result<Message, ProducerError> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(ProducerError::Closed);
        }
        if event.id.is_none() {
            event.id = Some(crate::ids::new_v7());
        }
        if event.occurred_at.is_none() {
            event.occurred_at = Some(sealtrail_core::time_format::format_micros(
                sealtrail_core::time_format::now_micros(),
            ));
        }
        if event.tenant_id.is_none() {
            event.tenant_id.clone_from(&self.inner.tenant_id);
        }
        event.source = Some(self.inner.source.clone());
        event.source_seq = Some(self.inner.next_seq.fetch_add(1, Ordering::Relaxed));
        // Room for a typical event, so serialising rarely grows the buffer.
        let mut bytes = Vec::with_capacity(512);
        serde_json::to_writer(&mut bytes, &event).expect("an event serialises");
        Ok(Message::Event(bytes))
    }

    fn offer(&self, message: Message) -> Result<(), ProducerError> {
        match self.inner.queue.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
                Err(ProducerError::Dropped)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ProducerError::Closed),
        }
    }
}

fn check(config: &ProducerConfig) -> Result<(), ProducerError> {
    let invalid = |field, reason: &str| {
        Err(ProducerError::Config {
            field,
            reason: reason.to_owned(),
        })
    };
    let name = &config.source_name;
    if name.is_empty()
        || name.len() > 150
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
    {
        return invalid(
            "source_name",
            "1 to 150 letters, digits and . _ - : / (e.g. wedding-api)",
        );
    }
    if !(1..=MAX_BATCH_EVENTS).contains(&config.batch_size) {
        return invalid("batch_size", "must be 1 to 1000");
    }
    if config.queue_capacity == 0 {
        return invalid("queue_capacity", "must be at least 1");
    }
    if config.max_retry_delay.is_zero() {
        return invalid("max_retry_delay", "must be more than zero");
    }
    Ok(())
}

/// A per-process instance id: a UUIDv7's 32 hex digits, so instances sort by start time.
fn instance_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
