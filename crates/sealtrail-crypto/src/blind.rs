//! Blind-index tokens, and the trait a store implements to keep them: equality search on
//! encrypted fields without storing their plaintext.
//!
//! For each blind-indexed field (`encryption.blind_index`) an event's value is reduced to a
//! keyed token (HMAC of tenant, field and value under a key derived from the master key);
//! a search turns the asked value into its token the same way, so the index never holds a
//! value. The index is a cursor on the log: entries and the cursor move in one step, and
//! shredding drops the entries of the destroyed keys.

use sealtrail_core::StoredEvent;

use crate::cipher::find;
use crate::{CryptoError, FieldCipher, SEALED_PREFIX, SHREDDED};

/// One blind index entry of an event: which field, its token, and whose key sealed it
/// (the subject tag, so a subject's shredding can drop its entries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlindToken {
    /// The field.
    pub field: String,
    /// HMAC of the tenant, field and value under the blind-index key, hex.
    pub token: String,
    /// The subject's tag, if the value was sealed under a subject key.
    pub subject_tag: Option<String>,
}

/// A token as the index files it: whose event, which seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlindEntry {
    /// The event's tenant.
    pub tenant: String,
    /// The field.
    pub field: String,
    /// The value's token ([`BlindToken::token`]).
    pub token: String,
    /// The event's seq.
    pub seq: u64,
    /// The subject's tag, if the value was sealed under a subject key.
    pub subject_tag: Option<String>,
}

/// The token → seq table and its cursor on the log.
pub trait BlindIndexStore: Send + Sync {
    /// Every event up to this seq is indexed (0 when nothing is).
    fn cursor(&self) -> Result<u64, CryptoError>;
    /// Adds entries (an entry already there is kept once) and moves the cursor to
    /// `through`, in one step; the cursor never moves back.
    fn add(&self, entries: &[BlindEntry], through: u64) -> Result<(), CryptoError>;
    /// Seqs of `tenant`'s events whose `field` has `token`, newest first, at most `limit`.
    fn find(
        &self,
        tenant: &str,
        field: &str,
        token: &str,
        limit: usize,
    ) -> Result<Vec<u64>, CryptoError>;
    /// Drops the entries of a shredded tenant, or of one of its subjects.
    fn forget(&self, tenant: &str, subject_tag: Option<&str>) -> Result<(), CryptoError>;
}

impl FieldCipher {
    /// The blind index token of `value_json` (a value's JSON text) in `field` of `tenant`.
    pub fn blind_token(&self, tenant: &str, field: &str, value_json: &[u8]) -> String {
        let mut context = ring::hmac::Context::with_key(&self.blind_key);
        context.update(tenant.as_bytes());
        context.update(b"\n");
        context.update(field.as_bytes());
        context.update(b"\n");
        context.update(value_json);
        hex::encode(&context.sign().as_ref()[..16])
    }

    /// Whether `field` has a blind index.
    pub fn has_blind_index(&self, field: &str) -> bool {
        self.settings.blind_index.iter().any(|f| f == field)
    }

    /// The blind index entries of a stored event: one per sealed value of a blind-indexed
    /// field whose key is alive.
    pub fn blind_tokens(&self, stored: &StoredEvent) -> Vec<BlindToken> {
        if self.settings.blind_index.is_empty() {
            return Vec::new();
        }
        let marker = format!("\"{SEALED_PREFIX}");
        let record = &stored.record;
        let mut tokens = Vec::new();
        let mut at = 0;
        while let Some(found) = find(&record[at..], marker.as_bytes()) {
            let inner_start = at + found + 1;
            let Some(len) = record[inner_start..].iter().position(|&b| b == b'"') else {
                break;
            };
            let inner = std::str::from_utf8(&record[inner_start..inner_start + len]).unwrap_or("");
            at = inner_start + len + 1;
            let Some((key_ref, field)) = inner
                .strip_prefix(SEALED_PREFIX)
                .and_then(|r| r.split_once(':'))
                .and_then(|(key_ref, rest)| Some((key_ref, rest.rsplit_once(':')?.0)))
            else {
                continue;
            };
            if !self.has_blind_index(field) {
                continue;
            }
            let Some(opened) = self.open_sealed(&stored.tenant_id, inner) else {
                continue;
            };
            if opened == format!("\"{SHREDDED}\"").as_bytes() {
                continue;
            }
            let subject_tag = key_ref
                .strip_prefix("s.")
                .and_then(|r| r.split('.').next())
                .map(str::to_owned);
            tokens.push(BlindToken {
                field: field.to_owned(),
                token: self.blind_token(&stored.tenant_id, field, &opened),
                subject_tag,
            });
        }
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncryptionSettings;
    use crate::data_keys::memory::MemoryDataKeys;
    use sealtrail_core::{EventLimits, FieldSealer, TenantScope, prepare_event_sealed};

    fn cipher() -> FieldCipher {
        let settings = EncryptionSettings {
            previous_master_keys: Vec::new(),
            master_key: [7; 32],
            fields: vec!["ip_address".into(), "reason".into()],
            subject: Some("/user_id".into()),
            blind_index: vec!["ip_address".into()],
        };
        FieldCipher::new(settings, Box::new(MemoryDataKeys::default())).expect("valid")
    }

    fn stored(c: &FieldCipher, user: &str) -> StoredEvent {
        let json = serde_json::json!({
            "tenant_id": "acme", "action": "guest.updated", "resource_type": "guest",
            "user_id": user, "ip_address": "203.0.113.77", "reason": "asked",
        });
        let prepared = prepare_event_sealed(
            json,
            &TenantScope::Any,
            1_764_000_000_000_000,
            &EventLimits::default(),
            Some(c as &dyn FieldSealer),
        )
        .expect("valid");
        let record = prepared.record(1);
        StoredEvent {
            seq: 1,
            tenant_id: "acme".into(),
            occurred_at: prepared.occurred_at,
            leaf_hash: sealtrail_core::merkle::leaf_hash(&record),
            record,
        }
    }

    #[test]
    fn tokens_and_keyed_content_hashes_are_stable_across_releases() {
        // Computed independently (HMAC-SHA256 under SHA-256 of the purpose and the master
        // key): an index or a dedupe table written by an older release must keep matching.
        let c = cipher();
        assert_eq!(
            c.blind_token("acme", "ip_address", b"\"203.0.113.77\""),
            "b10f91172ab5473b3e7eddb135fddc89"
        );
        let mut hash = [0u8; 32];
        c.key_content_hash(&mut hash);
        assert_eq!(
            hex::encode(hash),
            "3e1de75a44a2a2956c7574fed08782d75fda10a2dae79a2d82126adb2adecbcf"
        );
        assert_eq!(FieldCipher::subject_tag("coord:ines"), "65f241739ee5acc6");
    }

    #[test]
    fn an_event_yields_a_token_per_blind_indexed_field_until_its_key_is_shredded() {
        let c = cipher();
        let event = stored(&c, "coord:ines");
        assert_eq!(
            c.blind_tokens(&event),
            vec![BlindToken {
                field: "ip_address".into(),
                token: c.blind_token("acme", "ip_address", b"\"203.0.113.77\""),
                subject_tag: Some(FieldCipher::subject_tag("coord:ines")),
            }],
            "reason is sealed but not blind-indexed"
        );
        assert!(c.has_blind_index("ip_address") && !c.has_blind_index("reason"));
        c.shred("acme", Some("coord:ines")).expect("shred");
        assert!(c.blind_tokens(&event).is_empty());
    }
}
