//! API keys: created by the CLI (even while the server runs) or the API, stored as SHA-256
//! hashes, and checked by the server on every request. On the embedded store they live in
//! `keys.sqlite` in the data directory; with `database_url` in the PostgreSQL table
//! `api_keys`, shared by every server on the database.
//!
//! Keys are 256-bit random secrets, so a plain SHA-256 is the right hash: there is nothing
//! to brute-force, and lookups stay a hash-map probe in a cache of the live keys. The cache
//! is reloaded when the keys change: SQLite says so with `PRAGMA data_version`, which
//! changes only when another connection commits to that file (not on every ingest);
//! on PostgreSQL by a summary of `api_keys` that every change moves (rows are never deleted:
//! a new key adds to the count, a revocation or expiry sets a column once or lowers it),
//! looked at no more often than every [`PG_RECHECK`], so a key revoked on one server is
//! refused by all within that.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
/// How stale the PostgreSQL store's cache of live keys may be.
pub const PG_RECHECK: Duration = Duration::from_millis(250);
/// How often a key the PostgreSQL store's cache does not know makes it look again.
pub const PG_MISS_RECHECK: Duration = Duration::from_millis(20);

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
    version: String,
    checked_at: Instant,
    /// When a key the cache did not know last made it look again.
    miss_checked_at: Option<Instant>,
    by_hash: HashMap<Hash, KeyInfo>,
}

/// The key database.
pub struct ApiKeyStore {
    db: KeyDb,
    cache: Mutex<Option<Cache>>,
}

/// Where the keys are.
enum KeyDb {
    Sqlite(Mutex<Connection>),
    Postgres(crate::postgres::PgSession),
}

/// A stored key's columns as read.
struct RawKey {
    secret_hash: Vec<u8>,
    key_id: String,
    scopes: String,
    tenant_id: Option<String>,
    description: Option<String>,
    created_at: i64,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
}

/// Which keys to read.
enum Select<'a> {
    NewestFirst,
    ById(&'a str),
    Live,
}

impl Select<'_> {
    fn tail(&self, placeholder: &str) -> String {
        match self {
            Self::NewestFirst => "ORDER BY created_at DESC".into(),
            Self::ById(_) => format!("WHERE key_id = {placeholder}"),
            Self::Live => "WHERE revoked_at IS NULL".into(),
        }
    }
}

const KEY_COLUMNS: &str =
    "secret_hash, key_id, scopes, tenant_id, description, created_at, revoked_at, expires_at";

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
            db: KeyDb::Sqlite(Mutex::new(conn)),
            cache: Mutex::new(None),
        })
    }

    /// The keys in the PostgreSQL database at `url` (its schema migrated). When the
    /// database has no key yet and `data_dir` holds a `keys.sqlite` (a server moving from
    /// the embedded store, or from keys kept per server), those keys are copied in, their
    /// revocations and expiries with them; returns how many were.
    pub fn open_postgres(url: &str, data_dir: Option<&Path>) -> Result<(Self, usize), StoreError> {
        let store = Self {
            // Connected on first use.
            db: KeyDb::Postgres(crate::postgres::PgSession::new(url)),
            cache: Mutex::new(None),
        };
        let mut imported = 0;
        let local = data_dir
            .map(|dir| dir.join(KEYS_DB_FILE))
            .filter(|path| path.is_file());
        if let Some(path) = local {
            let none_yet = store.with_pg(|c| {
                Ok(c.query_one("SELECT count(*) FROM api_keys", &[])?
                    .get::<_, i64>(0)
                    == 0)
            })?;
            if none_yet {
                let sqlite = Self::open(path.parent().expect("a file in a directory"))?;
                for key in sqlite.raw_keys(&Select::NewestFirst)? {
                    imported += store.insert_raw(&key)?;
                }
            }
        }
        Ok((store, imported))
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
        self.insert_raw(&RawKey {
            secret_hash: hash_key(&secret).to_vec(),
            key_id: info.key_id.clone(),
            scopes: Scope::join(scopes),
            tenant_id: info.tenant_id.clone(),
            description: info.description.clone(),
            created_at: info.created_at,
            revoked_at: None,
            expires_at: info.expires_at,
        })?;
        self.invalidate();
        Ok((info, secret))
    }

    /// Every key, newest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        self.read_keys(&Select::NewestFirst)?
            .into_iter()
            .map(|(_, key)| key.map_err(StoreError::Integrity))
            .collect()
    }

    /// Keys with the hash of their secret; a key whose stored scopes cannot be read comes
    /// back as the reason.
    fn read_keys(&self, select: &Select<'_>) -> Result<Vec<KeyRow>, StoreError> {
        let mut rows = Vec::new();
        for raw in self.raw_keys(select)? {
            let hash: Hash = raw.secret_hash.as_slice().try_into().map_err(|_| {
                StoreError::Integrity(format!("key {} has a malformed secret hash", raw.key_id))
            })?;
            let info = match Scope::parse_list(&raw.scopes) {
                Ok(scopes) => Ok(KeyInfo {
                    key_id: raw.key_id,
                    scopes,
                    tenant_id: raw.tenant_id,
                    description: raw.description,
                    created_at: raw.created_at,
                    revoked_at: raw.revoked_at,
                    expires_at: raw.expires_at,
                }),
                Err(e) => Err(format!("key {} has unreadable scopes: {e}", raw.key_id)),
            };
            rows.push((hash, info));
        }
        Ok(rows)
    }

    /// One key by id.
    pub fn get(&self, key_id: &str) -> Result<Option<KeyInfo>, StoreError> {
        let found = self.read_keys(&Select::ById(hex_id(key_id)?))?;
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
                self.expire_by(key_id, now.saturating_add(grace))?;
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
        let now = now_micros();
        let changed = match &self.db {
            KeyDb::Sqlite(conn) => lock(conn).execute(
                "UPDATE api_keys SET revoked_at = ?1 WHERE key_id = ?2 AND revoked_at IS NULL",
                params![now, key_id],
            )? as u64,
            KeyDb::Postgres(_) => self.with_pg(|c| {
                Ok(c.execute(
                    "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
                    &[&now, &key_id],
                )?)
            })?,
        };
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
        // On PostgreSQL the cache is trusted for PG_RECHECK, except that a key it does not
        // know is looked for at once (made on another server a moment ago), at most every
        // PG_MISS_RECHECK so that unknown keys cannot make every request a query.
        let fresh = matches!(self.db, KeyDb::Postgres(_))
            && cache.as_mut().is_some_and(|c| {
                if c.checked_at.elapsed() >= PG_RECHECK {
                    return false;
                }
                if c.by_hash.contains_key(&hash) {
                    return true;
                }
                let look_again = c
                    .miss_checked_at
                    .is_none_or(|at| at.elapsed() >= PG_MISS_RECHECK);
                if look_again {
                    c.miss_checked_at = Some(Instant::now());
                }
                !look_again
            });
        if !fresh {
            let reloaded = self.version().and_then(|version| match cache.as_mut() {
                Some(c) if c.version == version => {
                    c.checked_at = Instant::now();
                    Ok(())
                }
                _ => {
                    let live = self.load_live()?;
                    let miss_checked_at = cache.as_ref().and_then(|c| c.miss_checked_at);
                    *cache = Some(Cache {
                        version,
                        checked_at: Instant::now(),
                        miss_checked_at,
                        by_hash: live,
                    });
                    Ok(())
                }
            });
            match (reloaded, cache.as_mut()) {
                (Ok(()), _) => {}
                // The database is away (ingest goes to the spool meanwhile): the keys known
                // before it went on working, no change to them can be made meanwhile.
                (Err(e), Some(c)) if matches!(self.db, KeyDb::Postgres(_)) => {
                    tracing::warn!(error = %e, "cannot reach the API keys; using those known");
                    c.checked_at = Instant::now();
                }
                (Err(e), _) => return Err(e),
            }
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
        for (hash, key) in self.read_keys(&Select::Live)? {
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

    /// Changes whenever the stored keys do (on SQLite, when another connection commits).
    fn version(&self) -> Result<String, StoreError> {
        match &self.db {
            KeyDb::Sqlite(conn) => Ok(lock(conn)
                .pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0))?
                .to_string()),
            KeyDb::Postgres(_) => self.with_pg(|c| {
                Ok(c.query_one(
                    "SELECT count(*)::text || '/' || COALESCE(sum(revoked_at), 0)::text
                            || '/' || COALESCE(sum(expires_at), 0)::text
                     FROM api_keys",
                    &[],
                )?
                .get(0))
            }),
        }
    }

    fn raw_keys(&self, select: &Select<'_>) -> Result<Vec<RawKey>, StoreError> {
        match &self.db {
            KeyDb::Sqlite(conn) => {
                let conn = lock(conn);
                let mut stmt = conn.prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys {}",
                    select.tail("?1")
                ))?;
                let read = |r: &rusqlite::Row<'_>| {
                    Ok(RawKey {
                        secret_hash: r.get(0)?,
                        key_id: r.get(1)?,
                        scopes: r.get(2)?,
                        tenant_id: r.get(3)?,
                        description: r.get(4)?,
                        created_at: r.get(5)?,
                        revoked_at: r.get(6)?,
                        expires_at: r.get(7)?,
                    })
                };
                let rows = match select {
                    Select::ById(id) => stmt.query_map([id], read)?,
                    _ => stmt.query_map([], read)?,
                };
                Ok(rows.collect::<Result<_, _>>()?)
            }
            KeyDb::Postgres(_) => self.with_pg(|c| {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys {}", select.tail("$1"));
                let rows = match select {
                    Select::ById(id) => c.query(&sql, &[id])?,
                    _ => c.query(&sql, &[])?,
                };
                Ok(rows
                    .iter()
                    .map(|r| RawKey {
                        secret_hash: r.get(0),
                        key_id: r.get(1),
                        scopes: r.get(2),
                        tenant_id: r.get(3),
                        description: r.get(4),
                        created_at: r.get(5),
                        revoked_at: r.get(6),
                        expires_at: r.get(7),
                    })
                    .collect())
            }),
        }
    }

    /// Files a key (an existing id is left as it is); returns 1 if it was new.
    fn insert_raw(&self, key: &RawKey) -> Result<usize, StoreError> {
        match &self.db {
            KeyDb::Sqlite(conn) => Ok(lock(conn).execute(
                "INSERT INTO api_keys (key_id, secret_hash, scopes, tenant_id, description,
                                       created_at, revoked_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key.key_id,
                    key.secret_hash,
                    key.scopes,
                    key.tenant_id,
                    key.description,
                    key.created_at,
                    key.revoked_at,
                    key.expires_at,
                ],
            )?),
            KeyDb::Postgres(_) => self.with_pg(|c| {
                Ok(c.execute(
                    "INSERT INTO api_keys (key_id, secret_hash, scopes, tenant_id, description,
                                           created_at, revoked_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    &[
                        &key.key_id,
                        &key.secret_hash,
                        &key.scopes,
                        &key.tenant_id,
                        &key.description,
                        &key.created_at,
                        &key.revoked_at,
                        &key.expires_at,
                    ],
                )? as usize)
            }),
        }
    }

    /// Makes a key expire at `until` unless it expires sooner.
    fn expire_by(&self, key_id: &str, until: i64) -> Result<(), StoreError> {
        match &self.db {
            KeyDb::Sqlite(conn) => {
                lock(conn).execute(
                    "UPDATE api_keys SET expires_at = min(coalesce(expires_at, ?1), ?1)
                     WHERE key_id = ?2",
                    params![until, key_id],
                )?;
            }
            KeyDb::Postgres(_) => {
                self.with_pg(|c| {
                    c.execute(
                        "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $1), $1)
                         WHERE key_id = $2",
                        &[&until, &key_id],
                    )?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// Runs `f` on the PostgreSQL connection, connecting again if it was closed (the
    /// database restarted).
    fn with_pg<T: Send>(
        &self,
        f: impl Fn(&mut postgres::Client) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<T, StoreError> {
        let KeyDb::Postgres(session) = &self.db else {
            unreachable!("only called on the PostgreSQL store");
        };
        session.run(f)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
