//! Field encryption and crypto-shredding.
//!
//! Configured sensitive fields (`ip_address`, `user_agent`, `reason`, `changes`, or JSON
//! pointers into `details`) are encrypted *before* the record is hashed into the Merkle
//! tree, so the log, its indexes, backups and exports hold only ciphertext, and destroying a
//! key later leaves every leaf hash — and `verify` — intact.
//!
//! - Each value is sealed with AES-256-GCM under a data key: one per tenant, or one per
//!   (tenant, subject) when a subject pointer is configured (the subject's id is stored
//!   only as 16 hex digits of its SHA-256, so the key table does not name people). The
//!   additional data binds the ciphertext to its tenant and field; its event is pinned by
//!   the record's leaf hash (moving it would be tampering, which `verify` finds).
//! - Data keys are random, kept wrapped (AES-256-GCM) by the master key in
//!   `data-keys.sqlite`; the master key comes from a file or environment variable and is
//!   never stored beside the data.
//! - A sealed value is the string `sealtrail:enc:v1:<key ref>:<field>:<base64url(nonce ‖
//!   ciphertext)>` holding the value's JSON text, so any JSON value round-trips, and a read
//!   can splice opened values into the stored bytes without parsing the record.
//! - Shredding deletes a data key (tenant or subject): its values read as `"[shredded]"`
//!   forever after.
//! - With encryption on, the content hash used to recognise retries is keyed (HMAC with a
//!   key derived from the master key), so it cannot be used to guess a sensitive value.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::{StoreError, StoredEvent};

/// File of the wrapped data keys, in the data directory.
pub const DATA_KEYS_FILE: &str = "data-keys.sqlite";
/// Prefix of every sealed value.
pub const SEALED_PREFIX: &str = "sealtrail:enc:v1:";
/// What a value whose key was destroyed reads as.
pub const SHREDDED: &str = "[shredded]";

/// Top-level fields that may be encrypted: none of them is an index or filter column
/// (those must stay readable for queries and row-level security).
pub const ENCRYPTABLE_FIELDS: [&str; 5] = [
    "ip_address",
    "user_agent",
    "reason",
    "changes",
    "request_id",
];

/// Which fields, under which keys.
#[derive(Clone, Debug)]
pub struct EncryptionSettings {
    /// The 32-byte master key.
    pub master_key: [u8; 32],
    /// Top-level field names from [`ENCRYPTABLE_FIELDS`], or JSON pointers into `details`
    /// (`/details/guest/dietary_notes`).
    pub fields: Vec<String>,
    /// A JSON pointer into the event naming its data subject (`/user_id`, or
    /// `/details/guest/id`): events with one get that subject's own key.
    pub subject: Option<String>,
    /// Encrypted fields that also get a keyed blind index, for equality search.
    pub blind_index: Vec<String>,
}

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

/// Checks a field list; the reason names the bad entry.
pub fn check_fields(fields: &[String]) -> Result<(), String> {
    for field in fields {
        let ok = ENCRYPTABLE_FIELDS.contains(&field.as_str())
            || (field.starts_with("/details/") && field.len() > "/details/".len());
        if !ok {
            return Err(format!(
                "{field:?} cannot be encrypted: give one of {} or a JSON pointer into details \
                 (/details/...); indexed fields must stay readable",
                ENCRYPTABLE_FIELDS.join(", ")
            ));
        }
    }
    Ok(())
}

/// What became of a data key.
/// (The AES key schedule is built once per data key, not once per value.)
#[derive(Clone)]
enum KeyState {
    Live(std::sync::Arc<LessSafeKey>),
    Shredded,
    /// No such key (a sealed value from elsewhere): the value is left as stored.
    Missing,
}

/// Seals and opens sensitive fields; owns the data keys.
pub struct FieldCipher {
    settings: EncryptionSettings,
    master: LessSafeKey,
    content_key: ring::hmac::Key,
    blind_key: ring::hmac::Key,
    random: SystemRandom,
    keys: Mutex<Connection>,
    /// Data keys by id, as found.
    cache: Mutex<HashMap<String, KeyState>>,
    /// The key new values are sealed with, by base: (generation, key).
    active: Mutex<HashMap<String, (u32, std::sync::Arc<LessSafeKey>)>>,
    /// Nonces: a random 64-bit prefix drawn per process (and again whenever the counter
    /// wraps) and a 32-bit counter, so no two seals under any key share a nonce without a
    /// system call per value.
    nonces: Mutex<([u8; 8], u32)>,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher")
            .field("fields", &self.settings.fields)
            .finish_non_exhaustive()
    }
}

fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

fn random_prefix() -> Result<[u8; 8], StoreError> {
    let mut prefix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut prefix)
        .map_err(|_| crypto_error("no randomness for nonces"))?;
    Ok(prefix)
}

fn crypto_error(what: &str) -> StoreError {
    StoreError::Integrity(format!("encryption: {what}"))
}

impl FieldCipher {
    /// Opens (creating if needed) the data key table in `data_dir`.
    pub fn open(data_dir: &Path, settings: EncryptionSettings) -> Result<Self, StoreError> {
        check_fields(&settings.fields).map_err(StoreError::Invalid)?;
        if let Some(field) = settings
            .blind_index
            .iter()
            .find(|f| !settings.fields.contains(f))
        {
            return Err(StoreError::Invalid(format!(
                "encryption.blind_index: {field:?} is not in encryption.fields"
            )));
        }
        let conn = crate::sidecar::open(
            &data_dir.join(DATA_KEYS_FILE),
            crate::sidecar::Durability::Full,
        )?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS data_keys (
                 key_id      TEXT PRIMARY KEY,
                 base        TEXT NOT NULL,
                 generation  INTEGER NOT NULL,
                 wrapped     BLOB,
                 created_at  INTEGER NOT NULL,
                 shredded_at INTEGER
             );
             CREATE INDEX IF NOT EXISTS data_keys_by_base ON data_keys (base, generation);",
        )?;
        let derived = Sha256::new()
            .chain_update(b"sealtrail content hash key\n")
            .chain_update(settings.master_key)
            .finalize();
        Ok(Self {
            master: aead_key(&settings.master_key),
            content_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &derived),
            blind_key: ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                &Sha256::new()
                    .chain_update(b"sealtrail blind index key\n")
                    .chain_update(settings.master_key)
                    .finalize(),
            ),
            settings,
            random: SystemRandom::new(),
            keys: Mutex::new(conn),
            cache: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            nonces: Mutex::new((random_prefix()?, 0)),
        })
    }

    /// What a tenant's or a subject's keys are filed under. A shredding destroys every
    /// generation of a base; the next value sealed gets a new generation.
    fn key_base(tenant: &str, subject: Option<&str>) -> String {
        match subject {
            None => format!("t/{tenant}"),
            Some(subject) => format!("s/{tenant}/{}", subject_tag(subject)),
        }
    }

    /// A data key by id (`<base>#<generation>`), for opening.
    fn data_key(&self, key_id: &str) -> Result<KeyState, StoreError> {
        let mut cache = self
            .cache
            .lock()
            .expect("data key cache lock is never poisoned");
        if let Some(found) = cache.get(key_id) {
            return Ok(found.clone());
        }
        let conn = self.keys.lock().expect("data key lock is never poisoned");
        let row: Option<(Option<Vec<u8>>, Option<i64>)> = conn
            .query_row(
                "SELECT wrapped, shredded_at FROM data_keys WHERE key_id = ?1",
                [key_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let state = match row {
            None => KeyState::Missing,
            Some((Some(wrapped), None)) => KeyState::Live(std::sync::Arc::new(aead_key(
                &self.unwrap_key(key_id, wrapped)?,
            ))),
            Some(_) => KeyState::Shredded,
        };
        cache.insert(key_id.to_owned(), state.clone());
        Ok(state)
    }

    /// The key new values of `base` are sealed with, created (as the next generation) if
    /// the base has none alive.
    fn active_key(&self, base: &str) -> Result<(u32, std::sync::Arc<LessSafeKey>), StoreError> {
        let mut active = self
            .active
            .lock()
            .expect("active key lock is never poisoned");
        if let Some(found) = active.get(base) {
            return Ok(found.clone());
        }
        let conn = self.keys.lock().expect("data key lock is never poisoned");
        let live: Option<(u32, Vec<u8>)> = conn
            .query_row(
                "SELECT generation, wrapped FROM data_keys
                 WHERE base = ?1 AND shredded_at IS NULL AND wrapped IS NOT NULL
                 ORDER BY generation DESC LIMIT 1",
                [base],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let found = match live {
            Some((generation, wrapped)) => (
                generation,
                self.unwrap_key(&format!("{base}#{generation}"), wrapped)?,
            ),
            None => {
                let last: Option<u32> = conn.query_row(
                    "SELECT max(generation) FROM data_keys WHERE base = ?1",
                    [base],
                    |r| r.get(0),
                )?;
                let generation = last.unwrap_or(0) + 1;
                let key_id = format!("{base}#{generation}");
                let mut key = [0u8; 32];
                self.random
                    .fill(&mut key)
                    .map_err(|_| crypto_error("no randomness for a data key"))?;
                let wrapped = self.seal_bytes(&self.master, key_id.as_bytes(), &key)?;
                conn.execute(
                    "INSERT INTO data_keys (key_id, base, generation, wrapped, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        key_id,
                        base,
                        generation,
                        wrapped,
                        sealtrail_core::time_format::now_micros()
                    ],
                )?;
                (generation, key)
            }
        };
        let found = (found.0, std::sync::Arc::new(aead_key(&found.1)));
        active.insert(base.to_owned(), found.clone());
        Ok(found)
    }

    fn next_nonce(&self) -> Result<[u8; 12], StoreError> {
        let mut state = self.nonces.lock().expect("nonce lock is never poisoned");
        if state.1 == u32::MAX {
            *state = (random_prefix()?, 0);
        }
        state.1 += 1;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&state.0);
        nonce[8..].copy_from_slice(&state.1.to_be_bytes());
        Ok(nonce)
    }

    fn unwrap_key(&self, key_id: &str, mut wrapped: Vec<u8>) -> Result<[u8; 32], StoreError> {
        let plain = self
            .open_bytes(&self.master, key_id.as_bytes(), &mut wrapped)
            .ok_or_else(|| {
                crypto_error(&format!(
                    "data key {key_id} does not open with this master key"
                ))
            })?;
        plain
            .try_into()
            .map_err(|_| crypto_error(&format!("data key {key_id} is not 32 bytes")))
    }

    fn seal_bytes(
        &self,
        key: &LessSafeKey,
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let nonce = self.next_nonce()?;
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| crypto_error("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open_bytes<'a>(
        &self,
        key: &LessSafeKey,
        aad: &[u8],
        sealed: &'a mut [u8],
    ) -> Option<&'a [u8]> {
        if sealed.len() < 12 + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, body) = sealed.split_at_mut(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        key.open_in_place(nonce, Aad::from(aad), body)
            .ok()
            .map(|p| &*p)
    }

    /// The event as the API returns it, its sealed values opened (or `"[shredded]"`). The
    /// stored bytes are copied with each sealed string replaced by its value: no record is
    /// parsed.
    pub fn open_api_json(&self, stored: &StoredEvent) -> Vec<u8> {
        let marker = format!("\"{SEALED_PREFIX}");
        let marker = marker.as_bytes();
        let record = &stored.record;
        debug_assert_eq!(record.last(), Some(&b'}'), "a record is a JSON object");
        let mut out = Vec::with_capacity(record.len() + 96);
        let mut at = 0;
        while let Some(found) = find(&record[at..], marker) {
            let start = at + found;
            let inner_start = start + 1;
            // A sealed string holds no escapes; anything else is left as it is.
            let Some(len) = record[inner_start..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\')
            else {
                break;
            };
            let end = inner_start + len;
            if record[end] == b'\\' {
                out.extend_from_slice(&record[at..end]);
                at = end;
                continue;
            }
            out.extend_from_slice(&record[at..start]);
            let inner = std::str::from_utf8(&record[inner_start..end]).unwrap_or("");
            match self.open_sealed(&stored.tenant_id, inner) {
                Some(opened) => out.extend_from_slice(&opened),
                None => out.extend_from_slice(&record[start..=end]),
            }
            at = end + 1;
        }
        out.extend_from_slice(&record[at..record.len() - 1]);
        out.extend_from_slice(b",\"leaf_hash\":\"");
        out.extend_from_slice(hex::encode(stored.leaf_hash).as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }

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

    /// A subject's tag, as blind index entries carry it.
    pub fn subject_tag(subject: &str) -> String {
        subject_tag(subject)
    }

    /// Opens one sealed string (`sealtrail:enc:v1:<key ref>:<field>:<data>`): the value's
    /// JSON, `"[shredded]"` if its key is gone, or `None` if it does not open.
    fn open_sealed(&self, tenant: &str, inner: &str) -> Option<Vec<u8>> {
        let rest = inner.strip_prefix(SEALED_PREFIX)?;
        let (key_ref, rest) = rest.split_once(':')?;
        let (field, body) = rest.rsplit_once(':')?;
        let (base, generation) = match key_ref.split('.').collect::<Vec<_>>().as_slice() {
            ["t", generation] => (format!("t/{tenant}"), *generation),
            ["s", tag, generation] => (format!("s/{tenant}/{tag}"), *generation),
            _ => return None,
        };
        let generation: u32 = generation.parse().ok()?;
        let bytes = match self.data_key(&format!("{base}#{generation}")).ok()? {
            KeyState::Live(key) => key,
            KeyState::Shredded => return Some(format!("\"{SHREDDED}\"").into_bytes()),
            KeyState::Missing => return None,
        };
        let mut raw = B64.decode(body).ok()?;
        let aad = format!("{tenant}\n{field}");
        let plain = self.open_bytes(&bytes, aad.as_bytes(), &mut raw)?;
        // The sealed text is the value's JSON, as serde_json wrote it.
        serde_json::from_slice::<&serde_json::value::RawValue>(plain).ok()?;
        Some(plain.to_vec())
    }

    /// Destroys every generation of a tenant's data keys (its subjects' too), or of one
    /// subject's; returns whether there was one. Values sealed later get a new key.
    pub fn shred(&self, tenant: &str, subject: Option<&str>) -> Result<bool, StoreError> {
        let base = Self::key_base(tenant, subject);
        let subjects = format!("s/{tenant}/");
        let now = sealtrail_core::time_format::now_micros();
        let mut cache = self
            .cache
            .lock()
            .expect("data key cache lock is never poisoned");
        let mut active = self
            .active
            .lock()
            .expect("active key lock is never poisoned");
        let conn = self.keys.lock().expect("data key lock is never poisoned");
        let destroyed = match subject {
            Some(_) => conn.execute(
                "UPDATE data_keys SET wrapped = NULL, shredded_at = ?2
                 WHERE base = ?1 AND shredded_at IS NULL",
                params![base, now],
            )?,
            None => conn.execute(
                "UPDATE data_keys SET wrapped = NULL, shredded_at = ?2
                 WHERE (base = ?1 OR substr(base, 1, length(?3)) = ?3) AND shredded_at IS NULL",
                params![base, now, subjects],
            )?,
        };
        // SQLite keeps overwritten bytes in the WAL and free pages until they are reused.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")?;
        let own = format!("{base}#");
        let gone = |key: &str| {
            key == base
                || key.starts_with(&own)
                || (subject.is_none() && key.starts_with(&subjects))
        };
        cache.retain(|k, _| !gone(k));
        active.retain(|k, _| !gone(k));
        Ok(destroyed > 0)
    }
}

impl sealtrail_core::FieldSealer for FieldCipher {
    fn sealed_fields(&self) -> &[String] {
        &self.settings.fields
    }

    fn subject_pointer(&self) -> Option<&str> {
        self.settings.subject.as_deref()
    }

    fn seal(
        &self,
        tenant: &str,
        subject: Option<&str>,
        field: &str,
        value_json: &str,
    ) -> Result<String, String> {
        let base = Self::key_base(tenant, subject);
        let (generation, bytes) = self.active_key(&base).map_err(|e| e.to_string())?;
        let key_ref = match subject {
            Some(subject) => format!("s.{}.{generation}", subject_tag(subject)),
            None => format!("t.{generation}"),
        };
        // The record's place in the Merkle tree pins the value to its event; the additional
        // data pins it to its tenant and field.
        let aad = format!("{tenant}\n{field}");
        let sealed = self
            .seal_bytes(&bytes, aad.as_bytes(), value_json.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{SEALED_PREFIX}{key_ref}:{field}:{}",
            B64.encode(sealed)
        ))
    }

    fn key_content_hash(&self, hash: &mut sealtrail_core::Hash) {
        let tag = ring::hmac::sign(&self.content_key, hash.as_slice());
        hash.copy_from_slice(&tag.as_ref()[..32]);
    }
}

/// How events are shown to authorised readers: with their sealed fields opened when field
/// encryption is on, verbatim otherwise. Cheap to clone; shared by every read path (queries,
/// streams, sinks).
#[derive(Clone, Debug, Default)]
pub struct Opener(Option<std::sync::Arc<FieldCipher>>);

impl Opener {
    /// Opens with `cipher`, or shows records as stored.
    pub fn new(cipher: Option<std::sync::Arc<FieldCipher>>) -> Self {
        Self(cipher)
    }

    /// The event as the API returns it.
    pub fn api_json(&self, stored: &StoredEvent) -> Vec<u8> {
        match &self.0 {
            Some(cipher) => cipher.open_api_json(stored),
            None => stored.to_api_json(),
        }
    }

    /// The cipher, when encryption is on.
    pub fn cipher(&self) -> Option<&FieldCipher> {
        self.0.as_deref()
    }

    /// The cipher, shareable with another thread.
    pub fn shared_cipher(&self) -> Option<std::sync::Arc<FieldCipher>> {
        self.0.clone()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A subject's short name in key ids and sealed values: 16 hex digits of its SHA-256 (the
/// key table and the log never name a subject).
fn subject_tag(subject: &str) -> String {
    hex::encode(&Sha256::digest(subject)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_core::{
        EventLimits, FieldSealer, PreparedEvent, TenantScope, prepare_event_sealed,
    };
    use serde_json::Value;

    fn cipher(dir: &Path, subject: Option<&str>) -> FieldCipher {
        FieldCipher::open(
            dir,
            EncryptionSettings {
                master_key: [7; 32],
                fields: vec![
                    "ip_address".into(),
                    "/details/guest/notes".into(),
                    "changes".into(),
                ],
                subject: subject.map(str::to_owned),
                blind_index: vec!["ip_address".into()],
            },
        )
        .expect("open")
    }

    fn event(user: &str, notes: &str) -> PreparedEvent {
        event_with_id(user, notes, uuid::Uuid::new_v4(), None)
    }

    fn sealed(c: &FieldCipher, user: &str, notes: &str) -> PreparedEvent {
        event_with_id(user, notes, uuid::Uuid::new_v4(), Some(c))
    }

    fn event_with_id(
        user: &str,
        notes: &str,
        id: uuid::Uuid,
        sealer: Option<&FieldCipher>,
    ) -> PreparedEvent {
        let json = serde_json::json!({
            "tenant_id": "acme", "action": "guest.updated", "resource_type": "guest",
            "user_id": user, "ip_address": "203.0.113.77", "id": id.to_string(),
            "changes": [{"field": "diet", "before": "none", "after": "vegan"}],
            "details": {"guest": {"name": "Ada", "notes": notes}},
        });
        prepare_event_sealed(
            json,
            &TenantScope::Any,
            1_764_000_000_000_000,
            &EventLimits::default(),
            sealer.map(|c| c as &dyn FieldSealer),
        )
        .expect("valid")
    }

    fn stored(event: &PreparedEvent, seq: u64) -> StoredEvent {
        let record = event.record(seq);
        StoredEvent {
            seq,
            tenant_id: event.tenant_id.clone(),
            occurred_at: event.occurred_at,
            leaf_hash: sealtrail_core::merkle::leaf_hash(&record),
            record,
        }
    }

    #[test]
    fn sealed_fields_leave_no_plaintext_and_open_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = cipher(dir.path(), None);
        let plain = event("coord:ines", "no peanuts at all");
        let plain_json =
            serde_json::from_slice::<Value>(&stored(&plain, 5).to_api_json()).expect("json");
        let sealed = event_with_id("coord:ines", "no peanuts at all", plain.id, Some(&c));
        let record = sealed.record(5);
        let text = String::from_utf8_lossy(&record);
        for secret in ["203.0.113.77", "no peanuts", "vegan"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("\"name\":\"Ada\""),
            "unconfigured fields stay"
        );
        let value: Value = serde_json::from_slice(&record).expect("a sealed record is JSON");
        assert_eq!(
            sealtrail_core::canonical::to_vec(&value),
            record,
            "and canonical"
        );
        let opened: Value =
            serde_json::from_slice(&c.open_api_json(&stored(&sealed, 5))).expect("json");
        for field in ["ip_address", "changes", "details"] {
            assert_eq!(opened[field], plain_json[field], "{field}");
        }
        assert_ne!(
            opened["leaf_hash"], plain_json["leaf_hash"],
            "the hash is over the sealed record"
        );
        assert_ne!(
            sealed.content_hash, plain.content_hash,
            "the content hash is keyed"
        );
    }

    #[test]
    fn a_sealed_value_moved_to_another_tenant_or_renamed_does_not_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = cipher(dir.path(), None);
        let a = sealed(&c, "u", "secret a");
        let a_json: Value = serde_json::from_slice(&a.record(1)).expect("json");
        let sealed_ip = a_json["ip_address"].as_str().expect("sealed").to_owned();
        // The same record shown as another tenant's: nothing opens.
        let elsewhere = StoredEvent {
            seq: 1,
            tenant_id: "globex".into(),
            occurred_at: 0,
            leaf_hash: [0; 32],
            record: a.record(1),
        };
        let opened: Value = serde_json::from_slice(&c.open_api_json(&elsewhere)).expect("json");
        assert_eq!(opened["ip_address"], sealed_ip);
        // The field named in the sealed string is authenticated too.
        let mut renamed = a_json.clone();
        renamed["ip_address"] = Value::from(sealed_ip.replace(":ip_address:", ":user_agent:"));
        let forged = StoredEvent {
            seq: 1,
            tenant_id: "acme".into(),
            occurred_at: 0,
            leaf_hash: [0; 32],
            record: sealtrail_core::canonical::to_vec(&renamed),
        };
        let opened: Value = serde_json::from_slice(&c.open_api_json(&forged)).expect("json");
        assert!(
            opened["ip_address"]
                .as_str()
                .expect("str")
                .starts_with(SEALED_PREFIX)
        );
        assert_eq!(
            opened["details"]["guest"]["notes"], "secret a",
            "the rest opens"
        );
    }

    #[test]
    fn shredding_a_subject_or_a_tenant_leaves_a_marker_forever() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = cipher(dir.path(), Some("/user_id"));
        let ines = sealed(&c, "coord:ines", "ines's note");
        let ines_key = {
            let conn = c.keys.lock().expect("lock");
            let wrapped: Vec<u8> = conn
                .query_row(
                    "SELECT wrapped FROM data_keys WHERE base LIKE 's/acme/%'",
                    [],
                    |r| r.get(0),
                )
                .expect("ines's key is stored");
            wrapped
        };
        let tom = sealed(&c, "coord:tom", "tom's note");
        assert!(c.shred("acme", Some("coord:ines")).expect("shred"));
        // The wrapped key is gone from the file itself (no free page or WAL keeps it), so
        // not even the master key brings it back.
        let dir_files: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| std::fs::read(e.expect("entry").path()).unwrap_or_default())
            .collect();
        assert!(
            dir_files.iter().all(|bytes| !bytes
                .windows(ines_key.len())
                .any(|w| w == ines_key.as_slice())),
            "the shredded key's bytes are still on disk"
        );
        let reopen = cipher(dir.path(), Some("/user_id"));
        for cipher in [&c, &reopen] {
            let i: Value =
                serde_json::from_slice(&cipher.open_api_json(&stored(&ines, 1))).expect("json");
            assert_eq!(i["details"]["guest"]["notes"], SHREDDED);
            assert_eq!(i["ip_address"], SHREDDED);
            let t: Value =
                serde_json::from_slice(&cipher.open_api_json(&stored(&tom, 2))).expect("json");
            assert_eq!(t["details"]["guest"]["notes"], "tom's note");
        }
        let again = sealed(&c, "coord:ines", "new note");
        let a: Value = serde_json::from_slice(&c.open_api_json(&stored(&again, 3))).expect("json");
        assert_eq!(a["details"]["guest"]["notes"], "new note");
        let i: Value = serde_json::from_slice(&c.open_api_json(&stored(&ines, 1))).expect("json");
        assert_eq!(
            i["details"]["guest"]["notes"], SHREDDED,
            "the old one stays shredded"
        );
        reopen.shred("acme", None).expect("shred tenant");
        let t: Value =
            serde_json::from_slice(&reopen.open_api_json(&stored(&tom, 2))).expect("json");
        assert_eq!(t["details"]["guest"]["notes"], SHREDDED);
    }

    #[test]
    fn a_retry_of_a_sealed_event_has_the_same_content_hash() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = cipher(dir.path(), Some("/user_id"));
        let id = uuid::Uuid::new_v4();
        let first = event_with_id("u", "note", id, Some(&c));
        let retry = event_with_id("u", "note", id, Some(&c));
        assert_ne!(first.record(1), retry.record(1), "fresh nonces");
        assert_eq!(
            first.content_hash, retry.content_hash,
            "the same event as sent"
        );
        let changed = event_with_id("u", "another note", id, Some(&c));
        assert_ne!(
            first.content_hash, changed.content_hash,
            "a sealed value counts"
        );
        let plain = event_with_id("u", "note", id, None);
        assert_ne!(first.content_hash, plain.content_hash, "keyed when sealed");
    }

    #[test]
    fn only_unindexed_fields_may_be_encrypted() {
        assert!(check_fields(&["user_id".into()]).is_err());
        assert!(check_fields(&["/details".into()]).is_err());
        assert!(check_fields(&["ip_address".into(), "/details/x".into()]).is_ok());
    }
}
