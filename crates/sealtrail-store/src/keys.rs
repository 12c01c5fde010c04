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
use sealtrail_core::time_format::{format_micros, now_micros};
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
    /// UTC microseconds from which it is refused, if it expires.
    pub expires_at: Option<i64>,
}

impl KeyInfo {
    /// `active`, `revoked <time>` or `expired <time>`, as of `now` (UTC microseconds).
    pub fn state(&self, now: i64) -> String {
        match (self.revoked_at, self.expires_at) {
            (Some(at), _) => format!("revoked {}", format_micros(at)),
            (None, Some(at)) if at <= now => format!("expired {}", format_micros(at)),
            (None, Some(at)) => format!("active until {}", format_micros(at)),
            (None, None) => "active".into(),
        }
    }
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

/// Columns added after the first release, each with its definition: added to a key
/// database that lacks them.
const ADDED_COLUMNS: [(&str, &str); 1] = [("expires_at", "INTEGER")];

impl ApiKeyStore {
    /// Opens (creating if needed) the key database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::io(format!("creating {}", data_dir.display()), e))?;
        let conn = crate::sidecar::open(
            &data_dir.join(KEYS_DB_FILE),
            crate::sidecar::Durability::Full,
        )?;
        conn.execute_batch(SCHEMA)?;
        for (column, definition) in ADDED_COLUMNS {
            let present: bool = conn.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('api_keys') WHERE name = ?1",
                [column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&format!(
                    "ALTER TABLE api_keys ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            cache: Mutex::new(None),
        })
    }

    /// Creates a key that does not expire; returns its listing and the secret key text,
    /// shown only this once.
    pub fn create(
        &self,
        scopes: &[Scope],
        tenant_id: Option<&str>,
        description: Option<&str>,
    ) -> Result<(KeyInfo, String), StoreError> {
        self.create_expiring(scopes, tenant_id, description, None)
    }

    /// Creates a key refused from `expires_at` (UTC microseconds) on, if given.
    pub fn create_expiring(
        &self,
        scopes: &[Scope],
        tenant_id: Option<&str>,
        description: Option<&str>,
        expires_at: Option<i64>,
    ) -> Result<(KeyInfo, String), StoreError> {
        if expires_at.is_some_and(|at| at <= now_micros()) {
            return Err(StoreError::Invalid(
                "the expiry is not in the future".into(),
            ));
        }
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
            expires_at,
        };
        self.conn().execute(
            "INSERT INTO api_keys
                 (key_id, secret_hash, scopes, tenant_id, description, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                info.key_id,
                hash_key(&secret),
                Scope::join(scopes),
                info.tenant_id,
                info.description,
                info.created_at,
                info.expires_at,
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
            "SELECT secret_hash, key_id, scopes, tenant_id, description, created_at, revoked_at,
                    expires_at
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
                        expires_at: r.get(7)?,
                    }),
                    Err(reason) => Err(reason),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One key by id.
    pub fn get(&self, key_id: &str) -> Result<Option<KeyInfo>, StoreError> {
        let found = self.read_keys(&format!("WHERE key_id = '{}'", hex_id(key_id)?))?;
        found
            .into_iter()
            .next()
            .map(|(_, key)| key.map_err(StoreError::Integrity))
            .transpose()
    }

    /// Replaces a key with a new one of the same scopes, tenant and description: the old
    /// one is refused at once, or after `grace_micros` so its users can switch. Returns the
    /// new key's listing and secret; `None` if no live key has that id.
    pub fn rotate(
        &self,
        key_id: &str,
        grace_micros: Option<i64>,
    ) -> Result<Option<(KeyInfo, String)>, StoreError> {
        let now = now_micros();
        let Some(old) = self.get(key_id)? else {
            return Ok(None);
        };
        if old.revoked_at.is_some() || old.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let description = format!(
            "{}(rotated from {key_id})",
            old.description
                .as_deref()
                .map(|d| format!("{d} "))
                .unwrap_or_default()
        );
        let created = self.create_expiring(
            &old.scopes,
            old.tenant_id.as_deref(),
            Some(&description),
            old.expires_at,
        )?;
        match grace_micros {
            Some(grace) if grace > 0 => {
                let until = now.saturating_add(grace);
                self.conn().execute(
                    "UPDATE api_keys SET expires_at = min(coalesce(expires_at, ?1), ?1)
                     WHERE key_id = ?2",
                    params![until, key_id],
                )?;
                self.invalidate();
            }
            _ => {
                self.revoke(key_id)?;
            }
        }
        Ok(Some(created))
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
        let now = now_micros();
        Ok(cache
            .by_hash
            .get(&hash)
            .filter(|info| info.expires_at.is_none_or(|at| now < at))
            .map(|info| Grant {
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

/// A key id is 12 lowercase hex digits; anything else names no key.
fn hex_id(key_id: &str) -> Result<&str, StoreError> {
    if key_id.len() == 12
        && key_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(key_id)
    } else {
        Err(StoreError::Invalid(format!(
            "{key_id:?} is not a key id (12 lowercase hex digits)"
        )))
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

    #[test]
    fn an_expired_key_is_refused_and_a_rotated_one_after_its_grace() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ApiKeyStore::open(dir.path()).expect("open");
        let soon = now_micros() + 300_000;
        let (info, secret) = store
            .create_expiring(&[Scope::Read], Some("acme"), None, Some(soon))
            .expect("create");
        assert!(store.authenticate(&secret).expect("auth").is_some());
        assert!(info.state(now_micros()).starts_with("active until"));
        std::thread::sleep(std::time::Duration::from_millis(350));
        assert!(
            store.authenticate(&secret).expect("auth").is_none(),
            "expired"
        );
        assert!(
            store
                .get(&info.key_id)
                .expect("get")
                .expect("listed")
                .state(now_micros())
                .starts_with("expired")
        );
        assert!(
            store.rotate(&info.key_id, None).expect("rotate").is_none(),
            "an expired key is not rotated"
        );
        assert!(
            store
                .create_expiring(&[Scope::Read], None, None, Some(1))
                .is_err()
        );

        let (old, old_secret) = store
            .create(&[Scope::Ingest], Some("acme"), Some("web"))
            .expect("create");
        let (new, new_secret) = store
            .rotate(&old.key_id, None)
            .expect("rotate")
            .expect("live");
        assert_eq!(
            (new.scopes.clone(), new.tenant_id.clone()),
            (old.scopes.clone(), old.tenant_id.clone())
        );
        assert!(
            new.description
                .as_deref()
                .is_some_and(|d| d.contains(&old.key_id))
        );
        assert!(
            store.authenticate(&old_secret).expect("auth").is_none(),
            "revoked at once"
        );
        assert!(store.authenticate(&new_secret).expect("auth").is_some());

        let (graced, graced_secret) = store
            .rotate(&new.key_id, Some(300_000))
            .expect("rotate")
            .expect("live");
        assert!(
            store.authenticate(&new_secret).expect("auth").is_some(),
            "within the grace"
        );
        assert!(store.authenticate(&graced_secret).expect("auth").is_some());
        std::thread::sleep(std::time::Duration::from_millis(350));
        assert!(
            store.authenticate(&new_secret).expect("auth").is_none(),
            "after the grace"
        );
        assert!(store.get("nothex").is_err());
        assert!(store.get(&graced.key_id).expect("get").is_some());
    }
}
