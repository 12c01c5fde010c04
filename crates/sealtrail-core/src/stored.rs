//! An event as read back from the log: its place, its owner, its leaf hash and the verbatim
//! record bytes that were hashed.
//!
//! It lives in core rather than in the store because everything that shows stored events
//! needs it without needing a store: the readers of every backend produce it, and the
//! `Opener` of `sealtrail-crypto` turns it into API JSON with sealed fields opened.

use crate::merkle::Hash;

/// An event as read back: sort key, owner, leaf hash and the verbatim record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the log.
    pub seq: u64,
    /// Owning tenant.
    pub tenant_id: String,
    /// `occurred_at`, UTC microseconds (the sort key with `seq`).
    pub occurred_at: i64,
    /// Leaf hash of `record`.
    pub leaf_hash: Hash,
    /// Canonical record bytes, exactly as hashed.
    pub record: Vec<u8>,
}

impl StoredEvent {
    /// The event as the API returns it: the record's members plus `leaf_hash` (hex).
    /// Removing `leaf_hash` and canonicalising gives back the hashed bytes.
    pub fn to_api_json(&self) -> Vec<u8> {
        debug_assert_eq!(self.record.last(), Some(&b'}'), "a record is a JSON object");
        let mut out = Vec::with_capacity(self.record.len() + 80);
        out.extend_from_slice(&self.record[..self.record.len() - 1]);
        out.extend_from_slice(b",\"leaf_hash\":\"");
        out.extend_from_slice(hex::encode(self.leaf_hash).as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }
}
