//! API keys: created by the CLI (even while the server runs), stored as SHA-256 hashes in
//! `keys.sqlite` in the data directory, and checked by the server on every request.
//!
//! Keys are 256-bit random secrets, so a plain SHA-256 is the right hash: there is nothing
//! to brute-force, and lookups stay a hash-map probe. Keys live in their own file so the
//! server can notice new or revoked keys with `PRAGMA data_version`, which changes only
//! when another connection commits to that file — not on every ingest.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use rusqlite::{Connection, params};
use sealtrail_core::event::validate_tenant_id;
use sealtrail_core::merkle::Hash;
use sealtrail_core::time_format::now_micros;
use sealtrail_core::{EventLimits, Grant, Scope};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// File name of the key database in the data directory.
pub const KEYS_DB_FILE: &str = "keys.sqlite";
/// Every key starts with this, so leaked keys are easy to find in code and logs.
const KEY_PREFIX: &str = "st_";

/// A key as listed: everything but the secret, which is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Public id, part of the key text.
    pub key_id: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The tenant it is bound to, if any.
    pub tenant_id: Option<String>,
    /// Free text from its creator.
    pub description: Option<String>,
    /// UTC microseconds.
    pub created_at: i64,
    /// UTC microseconds, once revoked.
    pub revoked_at: Option<i64>,
}

/// A stored key: the hash of its secret, and its listing or why it cannot be read.
type KeyRow = (Hash, Result<KeyInfo, String>);

struct Cache {
    data_version: i64,
    by_hash: HashMap<Hash, KeyInfo>,
}

/// The key database.
pub struct ApiKeyStore {
    conn: Mutex<Connection>,
    cache: Mutex<Option<Cache>>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS api_keys (
        key_id      TEXT PRIMARY KEY,
        secret_hash BLOB NOT NULL UNIQUE,
        scopes      TEXT NOT NULL,
        tenant_id   TEXT,
        description TEXT,
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );";

impl ApiKeyStore {
    /// Opens (creating if needed) the key database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::io(format!("creating {}", data_dir.display()), e))?;
        let conn = Connection::open(data_dir.join(KEYS_DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            cache: Mutex::new(None),
        })
    }

    /// Creates a key; returns its listing and the secret key text, shown only this once.
    pub fn create(
        &self,
        scopes: &[Scope],
        tenant_id: Option<&str>,
        description: Option<&str>,
    ) -> Result<(KeyInfo, String), StoreError> {
        if scopes.is_empty() {
            return Err(StoreError::Invalid("a key needs at least one scope".into()));
        }
        if let Some(tenant) = tenant_id {
            validate_tenant_id(tenant, &EventLimits::default())
                .map_err(|r| StoreError::Invalid(format!("tenant {tenant:?} {r}")))?;
        }
        let mut id_bytes = [0u8; 6];
        let mut secret_bytes = [0u8; 32];
        getrandom::fill(&mut id_bytes)
            .and_then(|()| getrandom::fill(&mut secret_bytes))
            .map_err(|e| StoreError::Invalid(format!("no OS randomness for a key: {e}")))?;
        let key_id = hex::encode(id_bytes);
        let secret = format!("{KEY_PREFIX}{key_id}_{}", BASE64URL.encode(secret_bytes));
        let info = KeyInfo {
            key_id,
            scopes: scopes.to_vec(),
            tenant_id: tenant_id.map(str::to_owned),
            description: description.map(str::to_owned),
            created_at: now_micros(),
            revoked_at: None,
        };
        self.conn().execute(
            "INSERT INTO api_keys (key_id, secret_hash, scopes, tenant_id, description, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                info.key_id,
                hash_key(&secret),
                Scope::join(scopes),
                info.tenant_id,
                info.description,
                info.created_at
            ],
        )?;
        self.invalidate();
        Ok((info, secret))
    }

    /// Every key, newest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        self.read_keys("ORDER BY created_at DESC")?
            .into_iter()
            .map(|(_, key)| key.map_err(StoreError::Integrity))
            .collect()
    }

    /// Keys with the hash of their secret; a key whose stored scopes cannot be read comes
    /// back as the reason.
    fn read_keys(&self, tail: &str) -> Result<Vec<KeyRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT secret_hash, key_id, scopes, tenant_id, description, created_at, revoked_at
             FROM api_keys {tail}"
        ))?;
        let rows = stmt.query_map([], |r| {
            let key_id: String = r.get(1)?;
            let scopes: String = r.get(2)?;
            let info = Scope::parse_list(&scopes)
                .map_err(|e| format!("key {key_id} has unreadable scopes: {e}"));
            Ok((
                r.get::<_, Hash>(0)?,
                match info {
                    Ok(scopes) => Ok(KeyInfo {
                        key_id,
                        scopes,
                        tenant_id: r.get(3)?,
                        description: r.get(4)?,
                        created_at: r.get(5)?,
                        revoked_at: r.get(6)?,
                    }),
                    Err(reason) => Err(reason),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a key; returns false if no live key has that id.
    pub fn revoke(&self, key_id: &str) -> Result<bool, StoreError> {
        let changed = self.conn().execute(
            "UPDATE api_keys SET revoked_at = ?1 WHERE key_id = ?2 AND revoked_at IS NULL",
            params![now_micros(), key_id],
        )?;
        self.invalidate();
        Ok(changed == 1)
    }

    /// What the presented key text may do, or `None` if it is not a live key.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Grant>, StoreError> {
        if !presented.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let hash = hash_key(presented);
        let mut cache = self.cache.lock().expect("key cache lock is never poisoned");
        let conn = self.conn();
        let version: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
        if cache.as_ref().is_none_or(|c| c.data_version != version) {
            drop(conn);
            let live = self.load_live()?;
            *cache = Some(Cache {
                data_version: version,
                by_hash: live,
            });
        }
        let cache = cache.as_ref().expect("cache was just filled");
        Ok(cache.by_hash.get(&hash).map(|info| Grant {
            key_id: info.key_id.clone(),
            scopes: info.scopes.clone(),
            tenant_id: info.tenant_id.clone(),
        }))
    }

    fn load_live(&self) -> Result<HashMap<Hash, KeyInfo>, StoreError> {
        let mut live = HashMap::new();
        for (hash, key) in self.read_keys("WHERE revoked_at IS NULL")? {
            match key {
                Ok(info) => {
                    live.insert(hash, info);
                }
                Err(reason) => tracing::error!(%reason, "ignoring an unreadable key"),
            }
        }
        Ok(live)
    }

    /// Our own writes do not change `data_version` for our connection; forget the cache.
    fn invalidate(&self) {
        *self.cache.lock().expect("key cache lock is never poisoned") = None;
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .expect("key database lock is never poisoned")
    }
}

fn hash_key(key: &str) -> Hash {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_authenticates_until_revoked_even_from_another_process_view() {
        let dir = tempfile::tempdir().unwrap();
        let server = ApiKeyStore::open(dir.path()).unwrap();
        assert_eq!(server.authenticate("st_nothing_here").unwrap(), None);
        // The CLI opens its own connection while the server runs.
        let cli = ApiKeyStore::open(dir.path()).unwrap();
        let (info, secret) = cli
            .create(&[Scope::Ingest], Some("bloom"), Some("api"))
            .unwrap();
        let grant = server
            .authenticate(&secret)
            .unwrap()
            .expect("new key is seen");
        assert_eq!(grant.key_id, info.key_id);
        assert_eq!(grant.tenant_id.as_deref(), Some("bloom"));
        assert_eq!(server.authenticate(&format!("{secret}x")).unwrap(), None);
        assert!(cli.revoke(&info.key_id).unwrap());
        assert_eq!(
            server.authenticate(&secret).unwrap(),
            None,
            "revocation is seen at once"
        );
        assert!(!cli.revoke(&info.key_id).unwrap());
        let listed = cli.list().unwrap();
        assert!(listed[0].revoked_at.is_some());
    }

    #[test]
    fn the_secret_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ApiKeyStore::open(dir.path()).unwrap();
        let (_, secret) = store.create(&[Scope::Read], None, None).unwrap();
        drop(store);
        let raw = std::fs::read(dir.path().join(KEYS_DB_FILE)).unwrap();
        let secret_part = secret.rsplit('_').next().unwrap();
        assert!(
            !raw.windows(secret_part.len())
                .any(|w| w == secret_part.as_bytes())
        );
    }
}
