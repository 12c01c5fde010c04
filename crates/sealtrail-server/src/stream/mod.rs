//! Live streams: `GET /v1/stream` (Server-Sent Events) and `GET /v1/ws` (WebSocket).
//!
//! Both run the same [`follow`] loop per subscription: replay matching events from the
//! store after the subscriber's cursor, then take live events from the [`hub`]; whenever the
//! hub drops the subscriber from live delivery (it fell behind), catch up from the store
//! again. The cursor only moves forward and an event is sent only if its seq is above it,
//! so a subscriber never sees a gap or a duplicate, however often it falls behind or
//! reconnects (with the last seq it saw).

pub mod hub;
pub mod sse;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sealtrail_core::{EventFilter, FieldError};
use sealtrail_store::LogReader;
use sealtrail_store::follow::{Shutdown, StepError, read_after};

use crate::config::StreamSettings;
use crate::error::ApiError;
use crate::metrics::Metrics;
pub use hub::{Hub, LiveFrame};

/// Why a subscription ended.
#[derive(Debug)]
pub enum Closed {
    /// The client left, or was too slow to accept data within the write timeout.
    Client,
    /// Reading the store failed.
    Store(String),
    /// The server is shutting down; the client resumes elsewhere or later.
    ShuttingDown,
}

/// One message a subscription sends: a live event (serialised once, shared) or one
/// replayed from the store.
pub enum Outgoing<'a> {
    /// From the hub.
    Live(&'a Arc<LiveFrame>),
    /// From the store: its seq and its JSON as the API shows it.
    Replayed(u64, Vec<u8>),
}

impl Outgoing<'_> {
    /// The event's seq.
    pub fn seq(&self) -> u64 {
        match self {
            Outgoing::Live(frame) => frame.seq(),
            Outgoing::Replayed(seq, _) => *seq,
        }
    }
}

/// Where a subscription's messages go: an SSE body or a WebSocket connection.
pub trait Outbox: Send {
    /// Sends one event.
    fn event(&mut self, event: Outgoing<'_>) -> impl Future<Output = Result<(), Closed>> + Send;
    /// Tells the client that replay has ended at `seq` and live delivery begins.
    fn caught_up(&mut self, seq: u64) -> impl Future<Output = Result<(), Closed>> + Send;
    /// Keeps an idle connection alive.
    fn heartbeat(&mut self) -> impl Future<Output = Result<(), Closed>> + Send;
    /// Resolves when the client has gone, so an idle subscription ends at once rather than
    /// at its next write.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

/// What every subscription needs.
#[derive(Clone)]
pub struct Streams {
    /// Live delivery.
    pub hub: Arc<Hub>,
    /// Catch-up reads.
    pub reader: Arc<dyn LogReader>,
    /// Bounds.
    pub settings: StreamSettings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Shows replayed events with their sealed fields opened.
    pub opener: sealtrail_crypto::Opener,
    active: Arc<AtomicUsize>,
    /// The server's shutdown: every subscription ends when it begins.
    shutdown: Shutdown,
}

/// A subscription counted against `stream.max_subscribers` while it lives.
pub struct SubscriberSlot {
    active: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        let now = self.active.fetch_sub(1, Ordering::AcqRel) - 1;
        self.metrics.stream_subscribers.set(now as i64);
    }
}

impl Streams {
    /// The streams of a server. When `shutdown` is signalled every subscription stops
    /// with [`Closed::ShuttingDown`], so that endless responses finish and the server can
    /// close.
    pub fn new(
        hub: Arc<Hub>,
        reader: Arc<dyn LogReader>,
        settings: StreamSettings,
        metrics: Arc<Metrics>,
        opener: sealtrail_crypto::Opener,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            hub,
            reader,
            settings,
            metrics,
            opener,
            active: Arc::default(),
            shutdown,
        }
    }

    /// Resolves once the server begins to shut down.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shutdown.clone().cancelled_owned()
    }

    /// Takes a subscriber slot, or refuses with 503 at the limit.
    pub fn admit(&self) -> Result<SubscriberSlot, ApiError> {
        let now = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = SubscriberSlot {
            active: self.active.clone(),
            metrics: self.metrics.clone(),
        };
        self.metrics.stream_subscribers.set(now as i64);
        if now > self.settings.max_subscribers {
            return Err(ApiError::unavailable(format!(
                "the server already serves {} stream subscriptions (stream.max_subscribers)",
                self.settings.max_subscribers
            )));
        }
        Ok(slot)
    }

    /// How long a client may take to accept data.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.write_timeout_secs)
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.settings.heartbeat_secs)
    }
}

/// Checks a resume position: a seq the log does not have yet cannot be resumed from.
pub fn check_since(since: u64, tree_size: u64, field: &str) -> Result<u64, ApiError> {
    if since > tree_size {
        return Err(ApiError::invalid_parameter(FieldError::new(
            field,
            format!("the log holds {tree_size} events; there is no seq {since} to resume after"),
        )));
    }
    Ok(since)
}

/// Runs one subscription until the client leaves or is too slow: every event matching
/// `filter` with a seq above `cursor`, in seq order, each once.
pub async fn follow<O: Outbox>(
    streams: &Streams,
    filter: EventFilter,
    mut cursor: u64,
    out: &mut O,
) -> Result<(), Closed> {
    let mut announced = false;
    let mut shutdown = std::pin::pin!(streams.shutdown_signal());
    let mut heartbeat = tokio::time::interval(streams.heartbeat());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        let mut registration = streams.hub.register(filter.clone());
        while cursor < registration.live_from {
            let page = read_after(
                streams.reader.clone(),
                cursor,
                registration.live_from,
                filter.clone(),
                streams.settings.replay_batch_events,
                &streams.shutdown,
            )
            .await
            .map_err(|e| match e {
                StepError::Stopped => Closed::ShuttingDown,
                other => Closed::Store(other.to_string()),
            })?;
            for event in &page.events {
                let json = streams.opener.api_json(event);
                out.event(Outgoing::Replayed(event.seq, json)).await?;
            }
            cursor = page.scanned_through;
        }
        if !announced {
            out.caught_up(cursor).await?;
            announced = true;
        }
        loop {
            tokio::select! {
                frame = registration.queue.recv() => match frame {
                    Some(frame) if frame.seq() > cursor => {
                        out.event(Outgoing::Live(&frame)).await?;
                        cursor = frame.seq();
                    }
                    Some(_) => {}
                    // Dropped from live delivery: catch up from the store, then rejoin.
                    None => break,
                },
                _ = heartbeat.tick() => out.heartbeat().await?,
                () = out.closed() => return Err(Closed::Client),
                () = &mut shutdown => return Err(Closed::ShuttingDown),
            }
        }
    }
}

/// A stream's filter and the other parameters it was given.
pub struct StreamParams<'a> {
    /// The query API's filters.
    pub filter: EventFilter,
    /// The parameters named in `extra`, as given.
    pub extra: Vec<(&'a str, &'a str)>,
}

/// Applies stream filter parameters (the query API's filters); `extra` names the other
/// parameters allowed.
pub fn parse_filter<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    extra: &[&str],
) -> Result<StreamParams<'a>, ApiError> {
    let mut filter = EventFilter::default();
    let mut rest = Vec::new();
    for (key, value) in params {
        if filter
            .apply_param(key, value)
            .map_err(ApiError::invalid_parameter)?
        {
            continue;
        }
        if extra.contains(&key) {
            rest.push((key, value));
        } else {
            return Err(ApiError::invalid_parameter(
                sealtrail_core::query::unknown_param(key, extra),
            ));
        }
    }
    filter.check().map_err(ApiError::invalid_parameter)?;
    Ok(StreamParams {
        filter,
        extra: rest,
    })
}
