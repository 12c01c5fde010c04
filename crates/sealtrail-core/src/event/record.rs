//! The canonical record: the RFC 8785 bytes the leaf hash covers, and the content hash that
//! tells a producer's retry from a conflicting reuse of its event id.
//!
//! Members are written one by one in canonical key order (all keys are ASCII, so RFC 8785's
//! UTF-16 order is byte order) rather than by serialising a map, so the record is split
//! where `seq` goes and the sequencer only has to write one integer between the parts.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::PreparedEvent;
use super::Severity;
use super::seal::{Sealable, SealedEvent, SealedMembers};
use crate::canonical::ObjectWriter;
use crate::time_format::format_micros;

/// Room for a typical record, so writing one rarely reallocates.
const RECORD_CAPACITY_BYTES: usize = 512;

/// Writes the record of a validated, sealed event.
pub(crate) fn write_record(sealed: SealedEvent<'_>) -> PreparedEvent {
    let SealedEvent { event, sealing } = sealed;
    let id = event.producer_id.unwrap_or_else(Uuid::now_v7);
    let occurred_at = event.occurred_at.unwrap_or(event.received_at);
    let mut id_buf = Uuid::encode_buffer();
    let id_text = id.hyphenated().encode_lower(&mut id_buf);
    let occurred_text = format_micros(occurred_at);
    let received_text = format_micros(event.received_at);
    let sealed = sealing
        .as_ref()
        .map_or_else(SealedMembers::default, |s| s.members);
    let sealed_or_sent = |member| {
        if sealed.contains(member) {
            Source::Sealer
        } else {
            Source::Producer
        }
    };
    let occurred_source = match event.occurred_at {
        Some(_) => Source::Producer,
        None => Source::Server,
    };

    // The content hash covers what the producer determined, so a retry of the same request
    // matches even though `received_at` (and a defaulted `occurred_at`) differ. Only a
    // producer's id is ever checked against it.
    let mut record = RecordWriter::new(event.producer_id.is_some());
    record.str("action", &event.action, Source::Producer);
    record.str("actor_type", event.actor_type.as_str(), Source::Producer);
    if let Some(changes) = &event.changes {
        record.raw("changes", changes, sealed_or_sent(Sealable::Changes));
    }
    if let Some(details) = &event.details {
        record.raw("details", details, sealed_or_sent(Sealable::Details));
    }
    record.str("id", id_text, Source::Producer);
    if let Some(ip_address) = &event.ip_address {
        record.str(
            "ip_address",
            ip_address,
            sealed_or_sent(Sealable::IpAddress),
        );
    }
    record.str("occurred_at", &occurred_text, occurred_source);
    record.str("outcome", event.outcome.as_str(), Source::Producer);
    if let Some(reason) = &event.reason {
        record.str("reason", reason, sealed_or_sent(Sealable::Reason));
    }
    record.str("received_at", &received_text, Source::Server);
    if let Some(request_id) = &event.request_id {
        record.str(
            "request_id",
            request_id,
            sealed_or_sent(Sealable::RequestId),
        );
    }
    if let Some(resource_id) = &event.resource_id {
        record.str("resource_id", resource_id, Source::Producer);
    }
    record.str("resource_type", &event.resource_type, Source::Producer);
    let record_head = record.split_at_seq();
    record.str("severity", event.severity.as_str(), Source::Producer);
    if let Some((source, source_seq)) = &event.source {
        record.str("source", source, Source::Producer);
        record.raw(
            "source_seq",
            source_seq.to_string().as_bytes(),
            Source::Producer,
        );
    }
    record.str("tenant_id", &event.tenant_id, Source::Producer);
    if let Some(user_agent) = &event.user_agent {
        record.str(
            "user_agent",
            user_agent,
            sealed_or_sent(Sealable::UserAgent),
        );
    }
    if let Some(user_id) = &event.user_id {
        record.str("user_id", user_id, Source::Producer);
    }
    let (record_tail, content) = record.finish();

    PreparedEvent {
        id,
        tenant_id: event.tenant_id,
        occurred_at,
        received_at: event.received_at,
        severity: event.severity,
        action: event.action,
        user_id: event.user_id,
        resource_type: event.resource_type,
        resource_id: event.resource_id,
        record_head,
        record_tail,
        content_hash: content.map(|content| match sealing {
            Some(sealing) => sealing.keyed_content_hash(content),
            None => content.finalize().into(),
        }),
    }
}

/// Who determined a member's bytes. The content hash takes only the producer's: the
/// server's differ on a retry, and a sealer's are random (their plaintexts count instead).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Producer,
    Server,
    Sealer,
}

/// An [`ObjectWriter`] that also feeds chosen members, each with its separator, into the
/// content hash.
struct RecordWriter {
    object: ObjectWriter,
    /// `None` when no content hash is wanted.
    content: Option<Sha256>,
    /// The key written last, to assert canonical order.
    last_key: &'static str,
}

impl RecordWriter {
    fn new(content_hash: bool) -> Self {
        Self {
            object: ObjectWriter::new(RECORD_CAPACITY_BYTES),
            content: content_hash.then(Sha256::new),
            last_key: "",
        }
    }

    fn str(&mut self, key: &'static str, value: &str, source: Source) {
        self.assert_order(key);
        let written = self.object.member_str(key, value);
        self.hash(written, source);
    }

    /// Writes a member whose value is canonical JSON already.
    fn raw(&mut self, key: &'static str, canonical: &[u8], source: Source) {
        self.assert_order(key);
        let written = self.object.member_raw(key, canonical);
        self.hash(written, source);
    }

    /// Writes `"seq":` and returns the record so far: the part before the seq value.
    fn split_at_seq(&mut self) -> Vec<u8> {
        self.assert_order("seq");
        self.object.key("seq");
        self.object.split_off()
    }

    /// The record after the seq value, and the content hash so far.
    fn finish(self) -> (Vec<u8>, Option<Sha256>) {
        (self.object.finish(), self.content)
    }

    fn hash(&mut self, written: std::ops::Range<usize>, source: Source) {
        if let (Some(content), Source::Producer) = (&mut self.content, source) {
            content.update(&self.object.bytes()[written]);
            content.update(b"\n");
        }
    }

    fn assert_order(&mut self, key: &'static str) {
        debug_assert!(
            self.last_key < key,
            "record members in canonical order: {key} after {}",
            self.last_key
        );
        self.last_key = key;
    }
}

/// The indexed fields of a stored record, read back from its canonical bytes. `verify`
/// compares these with the columns beside the record.
#[derive(Clone, Debug, Deserialize)]
pub struct StoredRecord {
    /// Leaf position + 1.
    pub seq: u64,
    /// Event id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// RFC 3339, canonical spelling.
    pub occurred_at: String,
    /// RFC 3339, canonical spelling.
    pub received_at: String,
    /// Severity.
    pub severity: Severity,
    /// Action name.
    pub action: String,
    /// Acting user, if any.
    pub user_id: Option<String>,
    /// Resource type.
    pub resource_type: String,
    /// Resource id, if any.
    pub resource_id: Option<String>,
}

impl StoredRecord {
    /// Parses a record's canonical bytes.
    pub fn parse(record: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(record).map_err(|e| e.to_string())
    }
}
