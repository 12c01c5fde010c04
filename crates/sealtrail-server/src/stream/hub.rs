//! The hub: fans newly durable events out to every live subscriber whose filter matches.
//!
//! One mechanism for every watcher (DESIGN.md): each subscriber is a cursor. While it keeps
//! up, the hub pushes matching events into its bounded queue; when the queue is full — the
//! client is slow, or was still catching up — the hub drops it from live delivery (never
//! waits for it, never buffers more for it), and the subscriber catches up from the store
//! from its cursor and registers again. So ingest never waits for watchers, memory per
//! watcher is bounded by its queue, and nothing is lost or repeated.
//!
//! Events are serialised once, into a [`LiveFrame`] shared by every subscriber; watchers
//! are indexed by tenant, so an event is matched only against its own tenant's watchers
//! (and those following every tenant).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use sealtrail_core::EventFilter;
use sealtrail_store::CommittedEvent;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Durable groups waiting for the dispatcher. If it falls this far behind, the groups are
/// dropped and every live subscriber is sent back to the store (see [`Hub::publish`]).
const DISPATCH_QUEUE_GROUPS: usize = 4096;

/// One event, serialised once for every subscriber.
pub struct LiveFrame {
    /// The event and its columns (for filters).
    pub event: CommittedEvent,
    /// The event as the API returns it (record + `leaf_hash`).
    pub json: Bytes,
    /// The complete Server-Sent Events message.
    pub sse: Bytes,
}

impl LiveFrame {
    fn new(event: &CommittedEvent, opener: &sealtrail_crypto::Opener) -> Self {
        let json = Bytes::from(opener.api_json(&event.stored));
        let sse = sse_message(event.stored.seq, &json);
        Self {
            event: event.clone(),
            json,
            sse,
        }
    }

    /// The event's seq.
    pub fn seq(&self) -> u64 {
        self.event.stored.seq
    }
}

/// `id: <seq>` and the event as the `data` of one SSE message. The JSON is compact, so it
/// holds no raw newline and fits one `data` line.
pub fn sse_message(seq: u64, json: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(json.len() + 32);
    frame.extend_from_slice(format!("id: {seq}\ndata: ").as_bytes());
    frame.extend_from_slice(json);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

struct Slot {
    id: u64,
    filter: EventFilter,
    queue: mpsc::Sender<Arc<LiveFrame>>,
}

#[derive(Default)]
struct Registry {
    /// Every event up to this seq has been either pushed to the registered subscribers or
    /// is older than their registration (so in the store for them to replay).
    published: u64,
    next_id: u64,
    by_tenant: HashMap<String, Vec<Slot>>,
    any_tenant: Vec<Slot>,
}

impl Registry {
    fn slots_mut(&mut self, tenant: Option<&str>) -> &mut Vec<Slot> {
        match tenant {
            Some(t) => self.by_tenant.entry(t.to_owned()).or_default(),
            None => &mut self.any_tenant,
        }
    }

    fn remove(&mut self, tenant: Option<&str>, id: u64) {
        let slots = self.slots_mut(tenant);
        slots.retain(|s| s.id != id);
        if slots.is_empty()
            && let Some(t) = tenant
        {
            self.by_tenant.remove(t);
        }
    }

    fn len(&self) -> usize {
        self.any_tenant.len() + self.by_tenant.values().map(Vec::len).sum::<usize>()
    }
}

/// The live-delivery hub of one server.
pub struct Hub {
    registry: Mutex<Registry>,
    input: mpsc::Sender<Arc<[CommittedEvent]>>,
    /// Set when a durable group could not be queued for the dispatcher.
    overflowed: AtomicBool,
    /// The highest seq of a group that was dropped that way.
    dropped_through: AtomicU64,
    live_queue_events: usize,
    metrics: Arc<Metrics>,
    /// Shows events with their sealed fields opened.
    opener: sealtrail_crypto::Opener,
}

/// A subscriber's place in live delivery.
pub struct Registration {
    hub: Arc<Hub>,
    id: u64,
    tenant: Option<String>,
    /// Every matching event after this seq will arrive on `queue` (until it closes).
    pub live_from: u64,
    /// Matching events after `live_from`, in seq order. Closed when the hub drops this
    /// subscriber from live delivery; what follows must be replayed from the store.
    pub queue: mpsc::Receiver<Arc<LiveFrame>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = self
            .hub
            .registry
            .lock()
            .expect("hub lock is never poisoned");
        registry.remove(self.tenant.as_deref(), self.id);
        self.hub.metrics.stream_live.set(registry.len() as i64);
    }
}

impl Hub {
    /// A hub whose log holds `published` events, and its dispatcher task.
    pub fn start(
        published: u64,
        live_queue_events: usize,
        metrics: Arc<Metrics>,
        opener: sealtrail_crypto::Opener,
    ) -> Arc<Self> {
        let (input, groups) = mpsc::channel(DISPATCH_QUEUE_GROUPS);
        let hub = Arc::new(Self {
            registry: Mutex::new(Registry {
                published,
                ..Registry::default()
            }),
            input,
            overflowed: AtomicBool::new(false),
            dropped_through: AtomicU64::new(0),
            live_queue_events,
            metrics,
            opener,
        });
        tokio::spawn(dispatch(Arc::downgrade(&hub), groups));
        hub
    }

    /// Sets where the log stands before the first subscriber (the sequencer's durable size).
    pub fn set_published(&self, published: u64) {
        self.registry
            .lock()
            .expect("hub lock is never poisoned")
            .published = published;
    }

    /// Hands a durable group to the dispatcher. Called on the sequencer's flusher thread:
    /// never blocks. If the dispatcher is that far behind, the group is dropped from live
    /// delivery and every subscriber is sent to catch up from the store instead.
    pub fn publish(&self, events: Arc<[CommittedEvent]>) {
        let last = events.last().map_or(0, |e| e.stored.seq);
        if self.input.try_send(events).is_err() {
            self.dropped_through.fetch_max(last, Ordering::AcqRel);
            self.overflowed.store(true, Ordering::Release);
        }
    }

    /// Joins live delivery. Events up to `live_from` are in the store; every matching event
    /// after it comes through the returned queue.
    pub fn register(self: &Arc<Self>, filter: EventFilter) -> Registration {
        let (sender, queue) = mpsc::channel(self.live_queue_events);
        let tenant = filter.tenant_id.clone();
        let mut registry = self.registry.lock().expect("hub lock is never poisoned");
        let id = registry.next_id;
        registry.next_id += 1;
        // Groups dropped on overflow are durable and not yet counted as published.
        let live_from = registry
            .published
            .max(self.dropped_through.load(Ordering::Acquire));
        registry.slots_mut(tenant.as_deref()).push(Slot {
            id,
            filter,
            queue: sender,
        });
        self.metrics.stream_live.set(registry.len() as i64);
        drop(registry);
        Registration {
            hub: self.clone(),
            id,
            tenant,
            live_from,
            queue,
        }
    }
}

async fn dispatch(hub: std::sync::Weak<Hub>, mut groups: mpsc::Receiver<Arc<[CommittedEvent]>>) {
    while let Some(group) = groups.recv().await {
        let Some(hub) = hub.upgrade() else { return };
        // Frames (the event's JSON, opened if encrypted, and its SSE message) are made
        // outside the lock, and only for events someone may be watching: with no
        // subscriber for its tenant, an event costs nothing here.
        let (any_tenant, tenants): (bool, HashSet<String>) = {
            let registry = hub.registry.lock().expect("hub lock is never poisoned");
            (
                !registry.any_tenant.is_empty(),
                registry.by_tenant.keys().cloned().collect(),
            )
        };
        let mut frames: Vec<Option<Arc<LiveFrame>>> = group
            .iter()
            .map(|e| {
                (any_tenant || tenants.contains(&e.stored.tenant_id))
                    .then(|| Arc::new(LiveFrame::new(e, &hub.opener)))
            })
            .collect();
        let mut registry = hub.registry.lock().expect("hub lock is never poisoned");
        // Events stored without passing through here (the sequencer recovered a commit
        // whose answer was lost) leave a gap before this group: treat it like an overflow.
        let gap = group
            .first()
            .is_some_and(|e| e.stored.seq > registry.published + 1);
        if hub.overflowed.swap(false, Ordering::AcqRel) || gap {
            // Some group never reached us: nobody's live queue is complete any more.
            let evicted = registry.len();
            registry.by_tenant.clear();
            registry.any_tenant.clear();
            registry.published = registry
                .published
                .max(hub.dropped_through.load(Ordering::Acquire));
            hub.metrics.stream_evictions.inc_by(evicted as u64);
            tracing::warn!(
                evicted,
                "live dispatch fell behind; subscribers catch up from the store"
            );
        }
        let mut evicted: HashSet<u64> = HashSet::new();
        let mut delivered = 0u64;
        for (event, frame) in group.iter().zip(frames.iter_mut()) {
            let columns = event.columns();
            let own = registry
                .by_tenant
                .get(columns.tenant_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if own.is_empty() && registry.any_tenant.is_empty() {
                continue;
            }
            // A subscriber that registered after the look above: framed now, under the lock.
            let frame = frame.get_or_insert_with(|| Arc::new(LiveFrame::new(event, &hub.opener)));
            for slot in own.iter().chain(registry.any_tenant.iter()) {
                if !slot.filter.matches(&columns) || evicted.contains(&slot.id) {
                    continue;
                }
                match slot.queue.try_send(frame.clone()) {
                    Ok(()) => delivered += 1,
                    // Too far behind, or gone: out of live delivery; it resumes from the
                    // store (or has left).
                    Err(_) => {
                        evicted.insert(slot.id);
                    }
                }
            }
        }
        if !evicted.is_empty() {
            registry.any_tenant.retain(|s| !evicted.contains(&s.id));
            registry.by_tenant.retain(|_, slots| {
                slots.retain(|s| !evicted.contains(&s.id));
                !slots.is_empty()
            });
            hub.metrics.stream_evictions.inc_by(evicted.len() as u64);
        }
        if let Some(last) = group.last() {
            registry.published = registry.published.max(last.stored.seq);
        }
        hub.metrics.stream_live.set(registry.len() as i64);
        drop(registry);
        hub.metrics.stream_deliveries.inc_by(delivered);
    }
}
