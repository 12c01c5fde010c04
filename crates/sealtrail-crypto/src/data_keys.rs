//! Where wrapped data keys persist: the trait a store implements so the cipher can find,
//! file and destroy keys without knowing how they are stored.
//!
//! Keys are named by strings the cipher makes and the store only compares: a *base* says
//! whose key it is (`t/<tenant>`, or `s/<tenant>/<subject tag>`), a *generation* counts the
//! keys a base has had (a shredding destroys them all; the next seal creates the next
//! one), and the key id is `<base>#<generation>`.

use crate::CryptoError;

/// A data key as the key store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredDataKey {
    /// The key, wrapped (AES-256-GCM) by the master key with its key id as additional data.
    Wrapped(Vec<u8>),
    /// Destroyed by a shredding: what it sealed reads as `"[shredded]"`.
    Destroyed,
}

/// A data key to file.
#[derive(Clone, Copy, Debug)]
pub struct NewDataKey<'a> {
    /// `<base>#<generation>`.
    pub key_id: &'a str,
    /// Whose key it is.
    pub base: &'a str,
    /// One more than the base's highest generation so far.
    pub generation: u32,
    /// The key, wrapped by the master key.
    pub wrapped: &'a [u8],
    /// When it was made, UTC microseconds.
    pub created_at: i64,
}

/// The wrapped data keys, persisted. Every call is durable when it returns: a filed key
/// must not vanish (values sealed under it would not open), a destroyed one must not come
/// back.
pub trait DataKeyStore: Send + Sync {
    /// The key filed under `key_id`, or `None` if there never was one.
    fn load(&self, key_id: &str) -> Result<Option<StoredDataKey>, CryptoError>;
    /// The highest generation of `base` that is not destroyed, with its wrapped key.
    fn newest_live(&self, base: &str) -> Result<Option<(u32, Vec<u8>)>, CryptoError>;
    /// The highest generation `base` ever had, destroyed or not.
    fn last_generation(&self, base: &str) -> Result<Option<u32>, CryptoError>;
    /// Files a new key; false when a key of that id was filed first by another server
    /// sharing the store (the caller then takes that one).
    fn insert(&self, key: &NewDataKey<'_>) -> Result<bool, CryptoError>;
    /// Destroys every key of `base` not yet destroyed, and, with `bases_under`, those of
    /// every base starting with that prefix (a tenant's subjects); returns how many. When
    /// it returns, the wrapped bytes are gone from storage itself (no journal or free page
    /// keeps them), so not even the master key brings them back.
    fn destroy(
        &self,
        base: &str,
        bases_under: Option<&str>,
        shredded_at: i64,
    ) -> Result<u64, CryptoError>;
    /// Every key not destroyed, with its wrapped bytes (the root key's too).
    fn wrapped_keys(&self) -> Result<Vec<(String, Vec<u8>)>, CryptoError>;
    /// Replaces the wrapped bytes of `key_id` (the same key, wrapped by another master
    /// key) if they are still `old`; false if they changed or the key was destroyed
    /// meanwhile. Durable when it returns.
    fn rewrap(&self, key_id: &str, old: &[u8], new: &[u8]) -> Result<bool, CryptoError>;
    /// For a store several servers share: how many keys are destroyed, whoever destroyed
    /// them (polled, so a server drops the keys it cached once another shredded them).
    /// `None`, the default: only this process destroys keys.
    fn destroyed_count(&self) -> Result<Option<u64>, CryptoError> {
        Ok(None)
    }
}

/// A [`DataKeyStore`] in memory, for the crate's tests.
#[cfg(test)]
pub(crate) mod memory {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// One row: base, generation, wrapped key (gone once destroyed).
    type Row = (String, u32, Option<Vec<u8>>);

    /// Shared by clones, so a test can "reopen" a cipher over the same keys.
    #[derive(Clone, Default)]
    pub(crate) struct MemoryDataKeys(Arc<Mutex<HashMap<String, Row>>>);

    impl MemoryDataKeys {
        pub(crate) fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Row>> {
            self.0.lock().expect("test lock")
        }
    }

    impl DataKeyStore for MemoryDataKeys {
        fn load(&self, key_id: &str) -> Result<Option<StoredDataKey>, CryptoError> {
            Ok(self
                .rows()
                .get(key_id)
                .map(|(_, _, wrapped)| match wrapped {
                    Some(w) => StoredDataKey::Wrapped(w.clone()),
                    None => StoredDataKey::Destroyed,
                }))
        }

        fn newest_live(&self, base: &str) -> Result<Option<(u32, Vec<u8>)>, CryptoError> {
            Ok(self
                .rows()
                .values()
                .filter(|(b, _, w)| b == base && w.is_some())
                .max_by_key(|(_, generation, _)| *generation)
                .map(|(_, generation, w)| (*generation, w.clone().expect("filtered"))))
        }

        fn last_generation(&self, base: &str) -> Result<Option<u32>, CryptoError> {
            Ok(self
                .rows()
                .values()
                .filter(|(b, _, _)| b == base)
                .map(|(_, generation, _)| *generation)
                .max())
        }

        fn insert(&self, key: &NewDataKey<'_>) -> Result<bool, CryptoError> {
            let row = (
                key.base.to_owned(),
                key.generation,
                Some(key.wrapped.to_vec()),
            );
            let previous = self.rows().insert(key.key_id.to_owned(), row);
            assert!(previous.is_none(), "a key id is filed once");
            Ok(true)
        }

        fn wrapped_keys(&self) -> Result<Vec<(String, Vec<u8>)>, CryptoError> {
            Ok(self
                .rows()
                .iter()
                .filter_map(|(id, (_, _, w))| w.clone().map(|w| (id.clone(), w)))
                .collect())
        }

        fn rewrap(&self, key_id: &str, old: &[u8], new: &[u8]) -> Result<bool, CryptoError> {
            let mut rows = self.rows();
            match rows.get_mut(key_id) {
                Some((_, _, Some(w))) if w.as_slice() == old => {
                    *w = new.to_vec();
                    Ok(true)
                }
                _ => Ok(false),
            }
        }

        fn destroy(
            &self,
            base: &str,
            bases_under: Option<&str>,
            _shredded_at: i64,
        ) -> Result<u64, CryptoError> {
            let mut destroyed = 0;
            for (b, _, wrapped) in self.rows().values_mut() {
                let hit = b == base || bases_under.is_some_and(|p| b.starts_with(p));
                if hit && wrapped.take().is_some() {
                    destroyed += 1;
                }
            }
            Ok(destroyed)
        }
    }
}
