//! The API's wire shapes, shared by the server (which serialises responses from them and
//! describes them in its OpenAPI document, with the `openapi` feature) and the client
//! (which parses responses into them). The event shapes also describe what validation
//! accepts and what stored records hold; tests check real traffic against them, so the
//! documented API cannot drift from the wire.

use serde::{Deserialize, Serialize};

/// An audit event as a producer sends it. Only `action` and `resource_type` are required;
/// unknown fields are refused by name.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// UUID chosen by the producer, making retries idempotent; the server generates a
    /// UUIDv7 when absent.
    #[cfg_attr(feature = "openapi", schema(format = Uuid))]
    pub id: Option<String>,
    /// The organisation. Taken from the API key when the key is bound to one tenant;
    /// required otherwise. Letters, digits and `. _ - : @`, at most 128.
    pub tenant_id: Option<String>,
    /// When it happened (RFC 3339); defaults to the time the server received it.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub occurred_at: Option<String>,
    /// Who acted (a string, or an integer id). At most 256 characters.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub user_id: Option<serde_json::Value>,
    /// `user` (default), `service` or `system`.
    pub actor_type: Option<ActorTypeDoc>,
    /// What was done, e.g. `guest.dietary_restriction.updated`: 1–128 letters, digits and
    /// `. _ - : /`.
    pub action: String,
    /// What kind of thing it was done to, e.g. `guest`. Same alphabet as `action`.
    pub resource_type: String,
    /// Which one (a string, or an integer id). At most 256 characters.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub resource_id: Option<serde_json::Value>,
    /// `info` (default), `warning` or `critical`.
    pub severity: Option<SeverityDoc>,
    /// `success` (default) or `failure`.
    pub outcome: Option<OutcomeDoc>,
    /// The actor's IPv4 or IPv6 address.
    pub ip_address: Option<String>,
    /// The actor's user agent, at most 1024 characters.
    pub user_agent: Option<String>,
    /// The producer's request id, at most 128 characters.
    pub request_id: Option<String>,
    /// Why it was done, at most 4096 characters.
    pub reason: Option<String>,
    /// What changed, at most 256 entries.
    pub changes: Option<Vec<ChangeDoc>>,
    /// Free-form JSON object, at most 64 KiB of canonical JSON and 32 levels deep.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// The producer instance that numbered this event (with `source_seq`).
    #[serde(default)]
    pub source: Option<String>,
    /// Its gapless number from that producer: 1, 2, 3… (with `source`; see `GET /v1/sources`).
    #[serde(default)]
    pub source_seq: Option<u64>,
}

/// One changed field.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangeDoc {
    /// The field's name.
    pub field: String,
    /// Its value before (any JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub before: Option<serde_json::Value>,
    /// Its value after (any JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub after: Option<serde_json::Value>,
}

/// Severity.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SeverityDoc {
    /// Routine.
    Info,
    /// Worth a look.
    Warning,
    /// Someone must act.
    Critical,
}

/// Actor type.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActorTypeDoc {
    /// A person.
    User,
    /// A program.
    Service,
    /// Sealtrail itself.
    System,
}

/// Outcome.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OutcomeDoc {
    /// It happened.
    Success,
    /// It failed or was denied.
    Failure,
}

/// A stored event: its canonical record's members plus `leaf_hash`. Removing `leaf_hash`
/// and canonicalising (RFC 8785) gives the exact bytes whose `SHA-256(0x00 || bytes)` is
/// the leaf hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Event id.
    #[cfg_attr(feature = "openapi", schema(format = Uuid))]
    pub id: String,
    /// Position in the log (leaf index + 1).
    pub seq: u64,
    /// Owning tenant.
    pub tenant_id: String,
    /// When it happened, UTC, microseconds.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub occurred_at: String,
    /// When Sealtrail received it, UTC, microseconds.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub received_at: String,
    /// Acting user.
    pub user_id: Option<String>,
    /// Actor type.
    pub actor_type: ActorTypeDoc,
    /// Action.
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Severity.
    pub severity: SeverityDoc,
    /// Outcome.
    pub outcome: OutcomeDoc,
    /// IP address, normalised.
    pub ip_address: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Producer's request id.
    pub request_id: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// What changed.
    pub changes: Option<Vec<ChangeDoc>>,
    /// Free-form details.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// The producer instance that numbered it.
    #[serde(default)]
    pub source: Option<String>,
    /// Its number from that producer.
    #[serde(default)]
    pub source_seq: Option<u64>,
    /// `SHA-256(0x00 || canonical record)`, hex.
    pub leaf_hash: String,
}

/// A batch of events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// The events; all are stored or none (unless `partial=true`).
    pub events: Vec<EventInput>,
}

/// Where one submitted event landed, or (with `partial=true`) why it was refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestResult {
    /// Position in the request; present with `partial=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Uuid))]
    pub id: Option<String>,
    /// Its position in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Its leaf hash, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    /// Why it was refused (with `partial=true` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EventError>,
}

/// The answer to an accepted ingest: sent only once the events are durable.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestResponse {
    /// One entry per submitted event, in order.
    pub events: Vec<IngestResult>,
    /// Size of the signed tree that contains them.
    pub tree_size: u64,
    /// That tree's signed checkpoint (C2SP signed note). Keep it: a consistency proof from
    /// it to any later checkpoint shows history was not rewritten.
    pub checkpoint: String,
    /// True when the database was unreachable and the events were kept, durably, in the
    /// server's local spool (answer 202): they enter the log, in order, when it is back,
    /// and their receipts carry ids but no seq yet. `tree_size` and `checkpoint` are then
    /// the log's as it stood.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spooled: bool,
}

/// A page of events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventPage {
    /// The events, in the requested order.
    pub events: Vec<Event>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An RFC 9162 inclusion proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf's index (seq − 1).
    pub leaf_index: u64,
    /// The size of the tree proven against.
    pub tree_size: u64,
    /// Sibling hashes, hex, deepest first.
    pub hashes: Vec<String>,
}

/// One event with the proof that it is in the log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventWithProof {
    /// The event.
    pub event: Event,
    /// Its inclusion proof: against `checkpoint`, or (when `tree_size` was asked for)
    /// against the tree of `proof.tree_size` leaves, whose signed checkpoint the client holds.
    pub proof: InclusionProof,
    /// The latest signed checkpoint (the one the proof is against unless `tree_size` was
    /// asked for).
    pub checkpoint: CheckpointView,
    /// With `record=true`: the verbatim stored record (canonical JSON, UTF-8) whose
    /// `SHA-256(0x00 || bytes)` is the leaf hash. With field encryption its sealed values
    /// are ciphertext, where `event` shows them opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// A signed checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckpointView {
    /// The log's origin (first line of the note).
    pub origin: String,
    /// Leaves covered.
    pub tree_size: u64,
    /// Root hash, hex.
    pub root_hash: String,
    /// When it was signed.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub signed_at: String,
    /// The C2SP signed note.
    pub note: String,
}

/// An RFC 9162 consistency proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// Proof hashes, hex.
    pub hashes: Vec<String>,
}

/// The key checkpoints are signed with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    /// The log's origin, also the key name.
    pub origin: String,
    /// Signature algorithm: `ed25519`.
    pub algorithm: String,
    /// Raw public key, base64.
    pub public_key: String,
    /// Signed-note verifier key (`name+id+key`), for note-verifying tools.
    pub vkey: String,
    /// The key rotations the log went through, oldest first: signed notes handing the log
    /// from one key to the next at a tree size, each signed by both keys. With them, a
    /// verifier that trusts any one key of the log (say, the first) accepts checkpoints
    /// signed by the later ones.
    #[serde(default)]
    pub rotations: Vec<String>,
}

/// One count.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatsRow {
    /// Start of the bucket, when bucketed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub bucket: Option<String>,
    /// The severity, action or resource type.
    pub key: String,
    /// Matching events.
    pub count: u64,
}

/// Counts of events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatsResponse {
    /// `severity`, `action` or `resource_type`.
    pub group_by: String,
    /// `hour` or `day`, when bucketed.
    pub interval: Option<String>,
    /// The counts, by bucket then key.
    pub rows: Vec<StatsRow>,
    /// Sum of all counts.
    pub total: u64,
}

/// Readiness.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// Whether the server takes writes and reads.
    pub ready: bool,
    /// Leaves in the log.
    pub tree_size: u64,
    /// Committed events not yet in the query index (queries are exact regardless).
    pub index_lag_events: u64,
    /// Acknowledged events waiting in the local spool for the database (PostgreSQL).
    #[serde(default)]
    pub spool_events: u64,
    /// Acknowledged events the log refused when the spool drained (`sealtrail spool
    /// rejected` lists them).
    #[serde(default)]
    pub spool_rejected_events: u64,
    /// What an operator should look at; the server is ready regardless.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One bad event of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventError {
    /// Position of the event in the request (0-based; for NDJSON, among non-empty lines).
    pub index: usize,
    /// For NDJSON: the 1-based line of the body the event was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The field, e.g. `ip_address`, or empty for the whole event.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_event`.
    pub code: String,
    /// Human-readable summary.
    pub message: String,
    /// The offending field or parameter, as a path such as `events[3].ip_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why it is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every bad event of a batch (the batch was not stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<EventError>,
}
