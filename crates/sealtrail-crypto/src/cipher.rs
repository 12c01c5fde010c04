//! The field cipher: seals values as records are written, opens them for readers, and
//! owns the data keys (their AES key schedules cached, their wrapped bytes kept by a
//! [`DataKeyStore`]), so shredding is one call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sealtrail_core::StoredEvent;
use sha2::{Digest, Sha256};

use crate::{CryptoError, DataKeyStore, EncryptionSettings, NewDataKey, StoredDataKey};

/// Prefix of every sealed value.
pub const SEALED_PREFIX: &str = "sealtrail:enc:v1:";
/// What a value whose key was destroyed reads as.
pub const SHREDDED: &str = "[shredded]";

/// Where the root key is filed among the data keys (no tenant's base looks like it).
const ROOT_KEY_ID: &str = "root#1";
const ROOT_KEY_BASE: &str = "root";
const CONTENT_KEY_PURPOSE: &[u8] = b"sealtrail content hash key\n";
const BLIND_KEY_PURPOSE: &[u8] = b"sealtrail blind index key\n";

/// What [`FieldCipher::rewrap_under_current_master`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Keys wrapped by the current master key now.
    pub rewrapped: u64,
    /// Keys that were already.
    pub already: u64,
    /// Keys destroyed (or rewrapped by another run) while this one ran.
    pub gone_meanwhile: u64,
    /// Keys that still do not open with the current master key afterwards.
    pub stranded: u64,
}

/// A locked cache of data keys by id or base.
type CacheGuard<'a, T> = std::sync::MutexGuard<'a, HashMap<String, T>>;

/// What became of a data key.
/// (The AES key schedule is built once per data key, not once per value.)
#[derive(Clone)]
enum KeyState {
    Live(Arc<LessSafeKey>),
    Shredded,
    /// No such key (a sealed value from elsewhere): the value is left as stored.
    Missing,
}

/// Seals and opens sensitive fields; owns the data keys.
pub struct FieldCipher {
    pub(crate) settings: EncryptionSettings,
    master: LessSafeKey,
    /// Master keys `master` replaced: they still open what they wrapped.
    previous: Vec<LessSafeKey>,
    content_key: ring::hmac::Key,
    pub(crate) blind_key: ring::hmac::Key,
    random: SystemRandom,
    keys: Box<dyn DataKeyStore>,
    /// Data keys by id, as found.
    cache: Mutex<HashMap<String, KeyState>>,
    /// The key new values are sealed with, by base: (generation, key).
    active: Mutex<HashMap<String, (u32, Arc<LessSafeKey>)>>,
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

fn random_prefix() -> Result<[u8; 8], CryptoError> {
    let mut prefix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut prefix)
        .map_err(|_| CryptoError::NoRandomness("nonces"))?;
    Ok(prefix)
}

/// An HMAC-SHA256 key derived from the master key for one purpose.
fn derived_key(purpose: &[u8], master_key: &[u8; 32]) -> ring::hmac::Key {
    let derived = Sha256::new()
        .chain_update(purpose)
        .chain_update(master_key)
        .finalize();
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &derived)
}

impl FieldCipher {
    /// A cipher for `settings`, its data keys kept in `keys`. The settings are checked
    /// first ([`EncryptionSettings::check`]).
    pub fn new(
        settings: EncryptionSettings,
        keys: Box<dyn DataKeyStore>,
    ) -> Result<Self, CryptoError> {
        settings.check()?;
        let mut cipher = Self {
            master: aead_key(&settings.master_key),
            previous: settings.previous_master_keys.iter().map(aead_key).collect(),
            // Replaced below by keys derived from the root key.
            content_key: derived_key(CONTENT_KEY_PURPOSE, &settings.master_key),
            blind_key: derived_key(BLIND_KEY_PURPOSE, &settings.master_key),
            settings,
            random: SystemRandom::new(),
            keys,
            cache: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            nonces: Mutex::new((random_prefix()?, 0)),
        };
        let root = cipher.root_key()?;
        cipher.content_key = derived_key(CONTENT_KEY_PURPOSE, &root);
        cipher.blind_key = derived_key(BLIND_KEY_PURPOSE, &root);
        Ok(cipher)
    }

    /// The root key the content-hash and blind-index keys derive from: the first master
    /// key this log ever had, kept wrapped by the current one (as data keys are), so
    /// rotating the master key changes neither tokens nor content hashes. Filed at the
    /// first start: the master key itself, or, on a log from before the root key that
    /// is already rotating, the one previous master key.
    fn root_key(&self) -> Result<[u8; 32], CryptoError> {
        loop {
            match self.keys.load(ROOT_KEY_ID)? {
                Some(StoredDataKey::Wrapped(wrapped)) => {
                    return self.unwrap_key(ROOT_KEY_ID, wrapped);
                }
                Some(StoredDataKey::Destroyed) => {
                    return Err(CryptoError::MalformedDataKey {
                        key_id: ROOT_KEY_ID.into(),
                    });
                }
                None => {
                    let root = match self.settings.previous_master_keys.as_slice() {
                        [] => self.settings.master_key,
                        [first] => *first,
                        _ => return Err(CryptoError::UnknownRootKey),
                    };
                    let wrapped = self.seal_bytes(&self.master, ROOT_KEY_ID.as_bytes(), &root)?;
                    let filed = self.keys.insert(&NewDataKey {
                        key_id: ROOT_KEY_ID,
                        base: ROOT_KEY_BASE,
                        generation: 1,
                        wrapped: &wrapped,
                        created_at: sealtrail_core::time_format::now_micros(),
                    })?;
                    if filed {
                        return Ok(root);
                    }
                    // Another server filed it first: take that one.
                }
            }
        }
    }

    /// Wraps every data key (and the root key) by the current master key, each still
    /// wrapped by a previous one; online: values keep opening throughout, on every
    /// server that has the current key and the previous ones configured. Afterwards the
    /// previous master keys open nothing and can be dropped from the configuration.
    ///
    /// Passes are repeated until one finds nothing to rewrap (a server still running with
    /// the old key alone files new keys under it meanwhile); `stranded` then counts the
    /// keys that still do not open with the current master key: while it is not 0, the
    /// previous keys must stay.
    pub fn rewrap_under_current_master(&self) -> Result<RewrapReport, CryptoError> {
        let mut report = RewrapReport::default();
        for pass in 0..5 {
            let mut rewrapped_now = 0;
            for (key_id, wrapped) in self.keys.wrapped_keys()? {
                if self.opens_with_master(&key_id, &wrapped) {
                    if pass == 0 {
                        report.already += 1;
                    }
                    continue;
                }
                let plain = self.unwrap_key(&key_id, wrapped.clone())?;
                let rewrapped = self.seal_bytes(&self.master, key_id.as_bytes(), &plain)?;
                if self.keys.rewrap(&key_id, &wrapped, &rewrapped)? {
                    rewrapped_now += 1;
                } else {
                    report.gone_meanwhile += 1;
                }
            }
            report.rewrapped += rewrapped_now;
            if rewrapped_now == 0 {
                break;
            }
        }
        report.stranded = self
            .keys
            .wrapped_keys()?
            .iter()
            .filter(|(key_id, wrapped)| !self.opens_with_master(key_id, wrapped))
            .count() as u64;
        Ok(report)
    }

    /// Whether a wrapped key opens with the current master key.
    fn opens_with_master(&self, key_id: &str, wrapped: &[u8]) -> bool {
        let mut probe = wrapped.to_vec();
        self.open_bytes(&self.master, key_id.as_bytes(), &mut probe)
            .is_some()
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
    fn data_key(&self, key_id: &str) -> Result<KeyState, CryptoError> {
        let mut cache = self
            .cache
            .lock()
            .expect("data key cache lock is never poisoned");
        if let Some(found) = cache.get(key_id) {
            return Ok(found.clone());
        }
        let state = match self.keys.load(key_id)? {
            None => KeyState::Missing,
            Some(StoredDataKey::Wrapped(wrapped)) => {
                KeyState::Live(Arc::new(aead_key(&self.unwrap_key(key_id, wrapped)?)))
            }
            Some(StoredDataKey::Destroyed) => KeyState::Shredded,
        };
        cache.insert(key_id.to_owned(), state.clone());
        Ok(state)
    }

    /// The key new values of `base` are sealed with, created (as the next generation) if
    /// the base has none alive.
    fn active_key(&self, base: &str) -> Result<(u32, Arc<LessSafeKey>), CryptoError> {
        let mut active = self
            .active
            .lock()
            .expect("active key lock is never poisoned");
        if let Some(found) = active.get(base) {
            return Ok(found.clone());
        }
        let found = loop {
            match self.keys.newest_live(base)? {
                Some((generation, wrapped)) => {
                    break (
                        generation,
                        self.unwrap_key(&format!("{base}#{generation}"), wrapped)?,
                    );
                }
                None => {
                    if let Some(made) = self.new_data_key(base)? {
                        break made;
                    }
                    // Another server filed this generation first: take its key.
                }
            }
        };
        let found = (found.0, Arc::new(aead_key(&found.1)));
        active.insert(base.to_owned(), found.clone());
        Ok(found)
    }

    /// Makes and files the next generation of `base`'s key; `None` when another server
    /// sharing the key store filed that generation first.
    fn new_data_key(&self, base: &str) -> Result<Option<(u32, [u8; 32])>, CryptoError> {
        let generation = self.keys.last_generation(base)?.unwrap_or(0) + 1;
        let key_id = format!("{base}#{generation}");
        let mut key = [0u8; 32];
        self.random
            .fill(&mut key)
            .map_err(|_| CryptoError::NoRandomness("a data key"))?;
        let wrapped = self.seal_bytes(&self.master, key_id.as_bytes(), &key)?;
        let filed = self.keys.insert(&NewDataKey {
            key_id: &key_id,
            base,
            generation,
            wrapped: &wrapped,
            created_at: sealtrail_core::time_format::now_micros(),
        })?;
        Ok(filed.then_some((generation, key)))
    }

    fn next_nonce(&self) -> Result<[u8; 12], CryptoError> {
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

    /// Opens a wrapped key with the master key, or else with a previous one.
    fn unwrap_key(&self, key_id: &str, wrapped: Vec<u8>) -> Result<[u8; 32], CryptoError> {
        for master in std::iter::once(&self.master).chain(&self.previous) {
            let mut bytes = wrapped.clone();
            if let Some(plain) = self.open_bytes(master, key_id.as_bytes(), &mut bytes) {
                return plain.try_into().map_err(|_| CryptoError::MalformedDataKey {
                    key_id: key_id.to_owned(),
                });
            }
        }
        Err(CryptoError::WrongMasterKey {
            key_id: key_id.to_owned(),
        })
    }

    fn seal_bytes(
        &self,
        key: &LessSafeKey,
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = self.next_nonce()?;
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| CryptoError::SealingFailed)?;
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
        self.open_api_json_noting(stored, &mut |_| {})
    }

    /// [`open_api_json`](Self::open_api_json), handing `opened` the JSON of each value it
    /// opened (not the `"[shredded]"` of a destroyed key), so that a caller can keep them
    /// out of what it writes elsewhere.
    pub fn open_api_json_noting(
        &self,
        stored: &StoredEvent,
        opened: &mut dyn FnMut(&[u8]),
    ) -> Vec<u8> {
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
                Some(value) => {
                    if !is_shredded_marker(&value) {
                        opened(&value);
                    }
                    out.extend_from_slice(&value);
                }
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

    /// A subject's tag, as blind index entries carry it.
    pub fn subject_tag(subject: &str) -> String {
        subject_tag(subject)
    }

    /// Opens one sealed string (`sealtrail:enc:v1:<key ref>:<field>:<data>`): the value's
    /// JSON, `"[shredded]"` if its key is gone, or `None` if it does not open.
    pub(crate) fn open_sealed(&self, tenant: &str, inner: &str) -> Option<Vec<u8>> {
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
    pub fn shred(&self, tenant: &str, subject: Option<&str>) -> Result<bool, CryptoError> {
        let base = Self::key_base(tenant, subject);
        let subjects = format!("s/{tenant}/");
        let now = sealtrail_core::time_format::now_micros();
        let (mut cache, mut active) = self.caches();
        let bases_under = subject.is_none().then_some(subjects.as_str());
        let destroyed = self.keys.destroy(&base, bases_under, now)?;
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

impl FieldCipher {
    /// With a key store shared by several servers: drops every cached key once the number
    /// of destroyed keys changed since the last call (another server shredded), so what
    /// it destroyed reads as `"[shredded]"` here too and is no longer sealed with; they
    /// are loaded again as needed. `last` is the count seen by the previous call.
    pub fn forget_keys_if_shredded(&self, last: &mut Option<u64>) -> Result<bool, CryptoError> {
        let Some(count) = self.keys.destroyed_count()? else {
            return Ok(false);
        };
        if *last == Some(count) {
            return Ok(false);
        }
        // The first call clears too: a key cached before it may be destroyed already.
        *last = Some(count);
        self.forget_cached_keys();
        Ok(true)
    }

    /// Drops every cached data key; they are loaded from the key store again as needed.
    pub fn forget_cached_keys(&self) {
        let (mut cache, mut active) = self.caches();
        cache.clear();
        active.clear();
    }

    /// Both key caches, locked in the one order every caller takes them.
    fn caches(
        &self,
    ) -> (
        CacheGuard<'_, KeyState>,
        CacheGuard<'_, (u32, Arc<LessSafeKey>)>,
    ) {
        (
            self.cache
                .lock()
                .expect("data key cache lock is never poisoned"),
            self.active
                .lock()
                .expect("active key lock is never poisoned"),
        )
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

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A subject's short name in key ids and sealed values: 16 hex digits of its SHA-256 (the
/// key table and the log never name a subject).
fn subject_tag(subject: &str) -> String {
    hex::encode(&Sha256::digest(subject)[..8])
}

/// Whether an opened value is the `"[shredded]"` shown for a destroyed key.
fn is_shredded_marker(value: &[u8]) -> bool {
    value.len() == SHREDDED.len() + 2 && &value[1..value.len() - 1] == SHREDDED.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_keys::memory::MemoryDataKeys;
    use sealtrail_core::{
        EventLimits, FieldSealer, PreparedEvent, TenantScope, prepare_event_sealed,
    };
    use serde_json::Value;

    fn settings(subject: Option<&str>) -> EncryptionSettings {
        EncryptionSettings {
            previous_master_keys: Vec::new(),
            master_key: [7; 32],
            fields: vec![
                "ip_address".into(),
                "/details/guest/notes".into(),
                "changes".into(),
            ],
            subject: subject.map(str::to_owned),
            blind_index: vec!["ip_address".into()],
        }
    }

    fn cipher_over(keys: &MemoryDataKeys, subject: Option<&str>) -> FieldCipher {
        FieldCipher::new(settings(subject), Box::new(keys.clone())).expect("valid settings")
    }

    fn cipher(subject: Option<&str>) -> FieldCipher {
        cipher_over(&MemoryDataKeys::default(), subject)
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
        let c = cipher(None);
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
        let c = cipher(None);
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
        let keys = MemoryDataKeys::default();
        let c = cipher_over(&keys, Some("/user_id"));
        let ines = sealed(&c, "coord:ines", "ines's note");
        let tom = sealed(&c, "coord:tom", "tom's note");
        let ines_base = format!("s/acme/{}", FieldCipher::subject_tag("coord:ines"));
        assert!(c.shred("acme", Some("coord:ines")).expect("shred"));
        assert!(
            keys.rows()
                .values()
                .filter(|(base, _, _)| *base == ines_base)
                .all(|(_, _, wrapped)| wrapped.is_none()),
            "the key store was told to destroy ines's key"
        );
        let reopen = cipher_over(&keys, Some("/user_id"));
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
        assert!(!c.shred("acme", Some("coord:nobody")).expect("shred"));
        reopen.shred("acme", None).expect("shred tenant");
        let t: Value =
            serde_json::from_slice(&reopen.open_api_json(&stored(&tom, 2))).expect("json");
        assert_eq!(t["details"]["guest"]["notes"], SHREDDED);
    }

    #[test]
    fn a_retry_of_a_sealed_event_has_the_same_content_hash() {
        let c = cipher(Some("/user_id"));
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
    fn values_sealed_in_the_v1_format_by_another_implementation_open() {
        // Made with Python's `cryptography` (AES-256-GCM): the data key 00..1f wrapped by
        // the master key 07.. with its key id as additional data, and "203.0.113.77"
        // sealed under it for acme's ip_address. Stored data must keep opening.
        let keys = MemoryDataKeys::default();
        let wrapped = hex::decode(
            "01010101010101010101010176e08bb494baea09d9ddd62a7c3a7e3eb8ea06e70c822d04402859797aa928a4ae3124526a35ef57d371996e323b735b",
        )
        .expect("hex");
        keys.insert(&NewDataKey {
            key_id: "t/acme#1",
            base: "t/acme",
            generation: 1,
            wrapped: &wrapped,
            created_at: 0,
        })
        .expect("insert");
        let c = cipher_over(&keys, None);
        let sealed = "sealtrail:enc:v1:t.1:ip_address:AgICAgICAgICAgICuRopiJfpH2r6tozPBFunIFbOL3jJ2WAaJ4lrEDMe";
        let record = format!("{{\"ip_address\":\"{sealed}\",\"tenant_id\":\"acme\"}}");
        let stored = StoredEvent {
            seq: 1,
            tenant_id: "acme".into(),
            occurred_at: 0,
            leaf_hash: [0xab; 32],
            record: record.into_bytes(),
        };
        assert_eq!(
            String::from_utf8(c.open_api_json(&stored)).expect("utf-8"),
            format!(
                "{{\"ip_address\":\"203.0.113.77\",\"tenant_id\":\"acme\",\"leaf_hash\":\"{}\"}}",
                "ab".repeat(32)
            )
        );
        let own = c.seal("acme", None, "ip_address", "\"x\"").expect("seal");
        assert!(own.starts_with("sealtrail:enc:v1:t.1:ip_address:"), "{own}");
    }

    #[test]
    fn a_data_key_under_another_master_key_is_refused_by_name() {
        let keys = MemoryDataKeys::default();
        let c = cipher_over(&keys, None);
        sealed(&c, "u", "note");
        let mut other = settings(None);
        other.master_key = [8; 32];
        // Refused at once: the root key, filed at the first start, does not open.
        let error = FieldCipher::new(other.clone(), Box::new(keys.clone()))
            .expect_err("the stored root key does not open");
        assert_eq!(
            error.to_string(),
            "encryption: data key root#1 does not open with this master key"
        );
        // With the first key listed as previous it opens, and the new key wraps anew.
        other.previous_master_keys = vec![[7; 32]];
        let rotating = FieldCipher::new(other.clone(), Box::new(keys.clone())).expect("opens");
        let report = rotating.rewrap_under_current_master().expect("rewrap");
        assert_eq!((report.rewrapped, report.already), (2, 0), "{report:?}");
        other.previous_master_keys.clear();
        let rotated = FieldCipher::new(other, Box::new(keys.clone())).expect("the new key alone");
        assert_eq!(
            rotated.blind_token("acme", "f", b"\"v\""),
            c.blind_token("acme", "f", b"\"v\""),
            "tokens derive from the root key, not the master key"
        );
    }
}
