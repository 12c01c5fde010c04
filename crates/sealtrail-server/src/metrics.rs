//! Prometheus metrics: what operators graph and alert on.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of ingest request outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `accepted`, `invalid`, `conflict`, `unavailable`, ...
    pub outcome: &'static str,
}

/// Label of read endpoints.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// `events`, `event`, `stats`, `proof`.
    pub endpoint: &'static str,
}

/// Label of per-sink metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// The sink's name.
    pub sink: String,
}

/// Label of per-witness metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WitnessLabel {
    /// The witness's name.
    pub witness: String,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Ingest requests by outcome.
    pub ingest_requests: Family<OutcomeLabel, Counter>,
    /// Events newly stored.
    pub ingest_events: Counter,
    /// Ingest request latency, from the body received to the durable answer.
    pub ingest_seconds: Histogram,
    /// Events per group commit.
    pub commit_events: Histogram,
    /// Group commit latency.
    pub commit_seconds: Histogram,
    /// Read latency by endpoint.
    pub read_seconds: Family<EndpointLabel, Histogram>,
    /// Leaves in the log.
    pub tree_size: Gauge,
    /// Events committed but not yet in the query index.
    pub index_lag_events: Gauge,
    /// Bytes the store occupies on disk.
    pub store_bytes: Gauge,
    /// Acknowledged events waiting in the local spool for the database.
    pub spool_events: Gauge,
    /// Spooled (acknowledged) events the log refused while draining, kept in the rejected list.
    pub spool_rejected_events: Gauge,
    /// Producer instances that stamped `source` on their events.
    pub sources: Gauge,
    /// Events producers numbered (`source_seq`) that never reached the log.
    pub source_missing_events: Gauge,
    /// Full verifications since start that found the log not intact.
    pub verification_failures: Gauge,
    /// The tree size the last full verification found intact.
    pub verified_tree_size: Gauge,
    /// Stream subscriptions (SSE streams and WebSocket subscriptions).
    pub stream_subscribers: Gauge,
    /// Subscriptions in live delivery (the others are catching up from the store).
    pub stream_live: Gauge,
    /// Events handed to live subscribers.
    pub stream_deliveries: Counter,
    /// Times a subscriber fell behind live delivery and went back to the store.
    pub stream_evictions: Counter,
    /// Per sink: log events after its cursor.
    pub sink_lag_events: Family<SinkLabel, Gauge>,
    /// Per sink: age in milliseconds of the oldest event it has not dealt with.
    pub sink_lag_ms: Family<SinkLabel, Gauge>,
    /// Per sink: events its receiver accepted since start.
    pub sink_delivered_events: Family<SinkLabel, Gauge>,
    /// Per sink: events in its dead-letter list.
    pub sink_dead_letters: Family<SinkLabel, Gauge>,
    /// Per sink: failed attempts in a row.
    pub sink_consecutive_failures: Family<SinkLabel, Gauge>,
    /// Per sink: 1 while this server runs it (always on the embedded store; on PostgreSQL
    /// while it holds the sink's lease), else 0.
    pub sink_lease_held: Family<SinkLabel, Gauge>,
    /// Per witness: the tree size it holds.
    pub witness_size: Family<WitnessLabel, Gauge>,
    /// Per witness: 1 when what it holds contradicts the log (rolled back or forked).
    pub witness_alarm: Family<WitnessLabel, Gauge>,
    /// Per witness: pushes that failed since start.
    pub witness_push_failures: Family<WitnessLabel, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sealtrail");
        let ingest_requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "ingest_requests",
            "Ingest requests by outcome",
            ingest_requests.clone(),
        );
        let ingest_events = Counter::default();
        registry.register(
            "ingest_events",
            "Events newly stored",
            ingest_events.clone(),
        );
        let ingest_seconds = latency_histogram();
        registry.register(
            "ingest_duration_seconds",
            "Ingest request latency until the events are durable",
            ingest_seconds.clone(),
        );
        let commit_events = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "commit_events",
            "Events per group commit",
            commit_events.clone(),
        );
        let commit_seconds = latency_histogram();
        registry.register(
            "commit_duration_seconds",
            "Group commit latency",
            commit_seconds.clone(),
        );
        let read_seconds = Family::<EndpointLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "read_duration_seconds",
            "Read latency by endpoint",
            read_seconds.clone(),
        );
        let tree_size = Gauge::default();
        registry.register(
            "log_tree_size",
            "Leaves in the log (highest seq)",
            tree_size.clone(),
        );
        let index_lag_events = Gauge::default();
        registry.register(
            "index_lag_events",
            "Committed events not yet in the query index",
            index_lag_events.clone(),
        );
        let spool_events = Gauge::default();
        registry.register(
            "spool_events",
            "Acknowledged events waiting in the local spool for the database",
            spool_events.clone(),
        );
        let spool_rejected_events = Gauge::default();
        registry.register(
            "spool_rejected_events",
            "Acknowledged events the log refused while the spool drained (sealtrail spool rejected)",
            spool_rejected_events.clone(),
        );
        let sources = Gauge::default();
        registry.register(
            "sources",
            "Producer instances known by their source stamp (GET /v1/sources)",
            sources.clone(),
        );
        let source_missing_events = Gauge::default();
        registry.register(
            "source_missing_events",
            "Events producers numbered with source_seq that never reached the log: holes below each source's highest number",
            source_missing_events.clone(),
        );
        let verification_failures = Gauge::default();
        registry.register(
            "verification_failures",
            "Full verifications of the log since the server started that found it not intact (GET /v1/integrity says why)",
            verification_failures.clone(),
        );
        let verified_tree_size = Gauge::default();
        registry.register(
            "verified_tree_size",
            "The tree size the last full verification found intact (0: none yet, or the last one failed)",
            verified_tree_size.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_size_bytes",
            "Bytes the store occupies on disk",
            store_bytes.clone(),
        );
        let stream_subscribers = Gauge::default();
        registry.register(
            "stream_subscribers",
            "Stream subscriptions",
            stream_subscribers.clone(),
        );
        let stream_live = Gauge::default();
        registry.register(
            "stream_live_subscribers",
            "Stream subscriptions in live delivery (not catching up from the store)",
            stream_live.clone(),
        );
        let stream_deliveries = Counter::default();
        registry.register(
            "stream_deliveries",
            "Events handed to live subscribers",
            stream_deliveries.clone(),
        );
        let stream_evictions = Counter::default();
        registry.register(
            "stream_evictions",
            "Times a subscriber fell behind live delivery and caught up from the store",
            stream_evictions.clone(),
        );
        let sink_lag_events = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "sink_lag_events",
            "Log events after the sink's cursor",
            sink_lag_events.clone(),
        );
        let sink_lag_ms = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "sink_lag_milliseconds",
            "Age of the oldest event the sink has not dealt with",
            sink_lag_ms.clone(),
        );
        let sink_delivered_events = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "sink_delivered_events",
            "Events the sink's receiver accepted since the server started",
            sink_delivered_events.clone(),
        );
        let sink_dead_letters = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "sink_dead_letters",
            "Events in the sink's dead-letter list",
            sink_dead_letters.clone(),
        );
        let sink_consecutive_failures = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "sink_consecutive_failures",
            "Failed delivery attempts in a row",
            sink_consecutive_failures.clone(),
        );
        let sink_lease_held = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "sink_lease_held",
            "Whether this server runs the sink (on PostgreSQL: holds its lease)",
            sink_lease_held.clone(),
        );
        let witness_size = Family::<WitnessLabel, Gauge>::default();
        registry.register(
            "witness_size",
            "Tree size of the newest checkpoint the witness holds",
            witness_size.clone(),
        );
        let witness_alarm = Family::<WitnessLabel, Gauge>::default();
        registry.register(
            "witness_alarm",
            "1 when what the witness holds contradicts the log (rolled back or forked)",
            witness_alarm.clone(),
        );
        let witness_push_failures = Family::<WitnessLabel, Gauge>::default();
        registry.register(
            "witness_push_failures",
            "Checkpoint pushes to the witness that failed since the server started",
            witness_push_failures.clone(),
        );
        Self {
            witness_size,
            witness_alarm,
            witness_push_failures,
            sink_lag_events,
            sink_lag_ms,
            sink_delivered_events,
            sink_dead_letters,
            sink_consecutive_failures,
            sink_lease_held,
            stream_subscribers,
            stream_live,
            stream_deliveries,
            stream_evictions,
            registry,
            ingest_requests,
            ingest_events,
            ingest_seconds,
            commit_events,
            commit_seconds,
            read_seconds,
            tree_size,
            index_lag_events,
            store_bytes,
            spool_events,
            spool_rejected_events,
            sources,
            source_missing_events,
            verification_failures,
            verified_tree_size,
        }
    }

    /// Counts one ingest request.
    pub fn ingest_outcome(&self, outcome: &'static str) {
        self.ingest_requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Records a read's latency.
    pub fn read(&self, endpoint: &'static str, seconds: f64) {
        self.read_seconds
            .get_or_create(&EndpointLabel { endpoint })
            .observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing metrics to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
