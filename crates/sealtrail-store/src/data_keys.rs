//! The wrapped data keys of field encryption, in `data-keys.sqlite` in the data directory,
//! or in PostgreSQL for every server on it: the storage side of `sealtrail-crypto`'s
//! [`DataKeyStore`].
//!
//! Every commit is fsync'd (a filed key must not vanish, a destroyed one must not come
//! back), and destroying a key also checkpoints the WAL and vacuums the file, so its
//! wrapped bytes are gone from the disk and not only from the table.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_crypto::{CryptoError, DataKeyStore, NewDataKey, StoredDataKey};

use crate::StoreError;
use crate::sidecar::{self, Durability};

/// File of the wrapped data keys, in the data directory.
pub const DATA_KEYS_FILE: &str = "data-keys.sqlite";

/// The `data_keys` table of `data-keys.sqlite`.
pub struct SqliteDataKeyStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteDataKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDataKeyStore").finish_non_exhaustive()
    }
}

/// A database failure, as the cipher reports it (shown as the store's error).
fn failed(error: rusqlite::Error) -> CryptoError {
    CryptoError::storage(StoreError::from(error))
}

impl SqliteDataKeyStore {
    /// Opens (creating if needed) the data key table in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let conn = sidecar::open(&data_dir.join(DATA_KEYS_FILE), Durability::Full)?;
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
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().expect("data key lock is never poisoned")
    }
}

impl DataKeyStore for SqliteDataKeyStore {
    fn load(&self, key_id: &str) -> Result<Option<StoredDataKey>, CryptoError> {
        let row: Option<(Option<Vec<u8>>, Option<i64>)> = self
            .conn()
            .query_row(
                "SELECT wrapped, shredded_at FROM data_keys WHERE key_id = ?1",
                [key_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(failed)?;
        Ok(row.map(|row| match row {
            (Some(wrapped), None) => StoredDataKey::Wrapped(wrapped),
            _ => StoredDataKey::Destroyed,
        }))
    }

    fn newest_live(&self, base: &str) -> Result<Option<(u32, Vec<u8>)>, CryptoError> {
        self.conn()
            .query_row(
                "SELECT generation, wrapped FROM data_keys
                 WHERE base = ?1 AND shredded_at IS NULL AND wrapped IS NOT NULL
                 ORDER BY generation DESC LIMIT 1",
                [base],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(failed)
    }

    fn last_generation(&self, base: &str) -> Result<Option<u32>, CryptoError> {
        self.conn()
            .query_row(
                "SELECT max(generation) FROM data_keys WHERE base = ?1",
                [base],
                |r| r.get(0),
            )
            .map_err(failed)
    }

    fn insert(&self, key: &NewDataKey<'_>) -> Result<bool, CryptoError> {
        self.conn()
            .execute(
                "INSERT INTO data_keys (key_id, base, generation, wrapped, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key.key_id,
                    key.base,
                    key.generation,
                    key.wrapped,
                    key.created_at
                ],
            )
            .map_err(failed)?;
        Ok(true)
    }

    fn wrapped_keys(&self) -> Result<Vec<(String, Vec<u8>)>, CryptoError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT key_id, wrapped FROM data_keys
                 WHERE wrapped IS NOT NULL AND shredded_at IS NULL",
            )
            .map_err(failed)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }

    fn rewrap(&self, key_id: &str, old: &[u8], new: &[u8]) -> Result<bool, CryptoError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE data_keys SET wrapped = ?3
                 WHERE key_id = ?1 AND wrapped = ?2 AND shredded_at IS NULL",
                params![key_id, old, new],
            )
            .map_err(failed)?;
        Ok(changed == 1)
    }

    fn destroy(
        &self,
        base: &str,
        bases_under: Option<&str>,
        shredded_at: i64,
    ) -> Result<u64, CryptoError> {
        let conn = self.conn();
        let destroyed = match bases_under {
            None => conn.execute(
                "UPDATE data_keys SET wrapped = NULL, shredded_at = ?2
                 WHERE base = ?1 AND shredded_at IS NULL",
                params![base, shredded_at],
            ),
            Some(prefix) => conn.execute(
                "UPDATE data_keys SET wrapped = NULL, shredded_at = ?2
                 WHERE (base = ?1 OR substr(base, 1, length(?3)) = ?3) AND shredded_at IS NULL",
                params![base, shredded_at, prefix],
            ),
        }
        .map_err(failed)?;
        // SQLite keeps overwritten bytes in the WAL and free pages until they are reused.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
            .map_err(failed)?;
        Ok(destroyed as u64)
    }
}

/// The `data_keys` table of the PostgreSQL database every server shares (migration 8):
/// a key filed or destroyed by one server is the key of all.
pub struct PgDataKeyStore {
    session: crate::postgres::PgSession,
}

impl std::fmt::Debug for PgDataKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDataKeyStore").finish_non_exhaustive()
    }
}

impl PgDataKeyStore {
    /// The data keys in the database at `url` (its schema migrated). When the database has
    /// none and `data_dir` holds a `data-keys.sqlite` (a server that kept its keys there
    /// before), they are copied in, destroyed ones as destroyed, so what they sealed still
    /// opens; returns how many were. Keys of a second server's file whose ids are taken
    /// already are left out and counted in the log: values that server sealed under them
    /// do not open here.
    pub fn open(url: &str, data_dir: Option<&Path>) -> Result<(Self, usize), StoreError> {
        let store = Self {
            session: crate::postgres::PgSession::new(url),
        };
        let local = data_dir
            .map(|dir| dir.join(DATA_KEYS_FILE))
            .filter(|path| path.is_file());
        let Some(path) = local else {
            return Ok((store, 0));
        };
        let rows = {
            let sqlite = SqliteDataKeyStore::open(path.parent().expect("a file in a directory"))?;
            let conn = sqlite.conn();
            let mut stmt = conn.prepare(
                "SELECT key_id, base, generation, wrapped, created_at, shredded_at FROM data_keys",
            )?;
            stmt.query_map([], |r| {
                Ok(LocalKey {
                    key_id: r.get(0)?,
                    base: r.get(1)?,
                    generation: r.get(2)?,
                    wrapped: r.get(3)?,
                    created_at: r.get(4)?,
                    shredded_at: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        if rows.is_empty() {
            return Ok((store, 0));
        }
        let (imported, clashed) = store.session.run(|c| {
            let mut tx = c.transaction()?;
            let mut imported = 0;
            let mut clashed = 0;
            for key in &rows {
                let inserted = tx.execute(
                    "INSERT INTO data_keys (key_id, base, generation, wrapped, created_at, shredded_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    &[
                        &key.key_id,
                        &key.base,
                        &key.generation,
                        &key.wrapped.as_deref().filter(|_| key.shredded_at.is_none()),
                        &key.created_at,
                        &key.shredded_at,
                    ],
                )?;
                if inserted == 1 {
                    imported += 1;
                    continue;
                }
                if key.shredded_at.is_some() {
                    // Shredded here, perhaps not there yet: it is destroyed everywhere.
                    tx.execute(
                        "UPDATE data_keys SET wrapped = NULL, shredded_at = $2
                         WHERE key_id = $1 AND shredded_at IS NULL",
                        &[&key.key_id, &key.shredded_at],
                    )?;
                    continue;
                }
                if key.key_id == ROOT_KEY_ID {
                    // Every server files the root key once (the first master key, which
                    // they share), each wrapped with its own nonce: the same key.
                    continue;
                }
                // The same key, or one the database has destroyed since: nothing is lost.
                let same: bool = tx
                    .query_one(
                        "SELECT shredded_at IS NOT NULL OR wrapped IS NOT DISTINCT FROM $2
                         FROM data_keys WHERE key_id = $1",
                        &[&key.key_id, &key.wrapped],
                    )?
                    .get(0);
                if !same {
                    clashed += 1;
                }
            }
            tx.commit()?;
            Ok((imported, clashed))
        })?;
        if imported > 0 {
            tracing::info!(keys = imported, from = %path.display(), "data keys copied into the database");
        }
        if clashed > 0 {
            tracing::error!(
                keys = clashed,
                from = %path.display(),
                "data keys of this data directory have ids another server's keys took: \
                 values this server sealed under them do not open; the file is kept"
            );
        } else {
            // Every key of the file is in the database now. A copy left behind would keep
            // the bytes of keys shredded later: not even the data directory may keep one.
            for suffix in ["", "-wal", "-shm"] {
                let file = path.with_file_name(format!("{DATA_KEYS_FILE}{suffix}"));
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StoreError::io(format!("removing {}", file.display()), e));
                    }
                }
            }
            tracing::info!(file = %path.display(), "removed: its data keys are in the database");
        }
        Ok((store, imported))
    }
}

/// The root key's id among the data keys (`sealtrail-crypto`'s cipher files it).
const ROOT_KEY_ID: &str = "root#1";

/// A row of a `data-keys.sqlite` being copied in.
struct LocalKey {
    key_id: String,
    base: String,
    generation: i32,
    wrapped: Option<Vec<u8>>,
    created_at: i64,
    shredded_at: Option<i64>,
}

impl DataKeyStore for PgDataKeyStore {
    fn load(&self, key_id: &str) -> Result<Option<StoredDataKey>, CryptoError> {
        let row: Option<(Option<Vec<u8>>, Option<i64>)> = self
            .session
            .run(|c| {
                Ok(c.query_opt(
                    "SELECT wrapped, shredded_at FROM data_keys WHERE key_id = $1",
                    &[&key_id],
                )?
                .map(|r| (r.get(0), r.get(1))))
            })
            .map_err(CryptoError::storage)?;
        Ok(row.map(|row| match row {
            (Some(wrapped), None) => StoredDataKey::Wrapped(wrapped),
            _ => StoredDataKey::Destroyed,
        }))
    }

    fn newest_live(&self, base: &str) -> Result<Option<(u32, Vec<u8>)>, CryptoError> {
        self.session
            .run(|c| {
                Ok(c.query_opt(
                    "SELECT generation, wrapped FROM data_keys
                     WHERE base = $1 AND shredded_at IS NULL AND wrapped IS NOT NULL
                     ORDER BY generation DESC LIMIT 1",
                    &[&base],
                )?
                .map(|r| (r.get::<_, i32>(0) as u32, r.get(1))))
            })
            .map_err(CryptoError::storage)
    }

    fn last_generation(&self, base: &str) -> Result<Option<u32>, CryptoError> {
        self.session
            .run(|c| {
                Ok(c.query_one(
                    "SELECT max(generation) FROM data_keys WHERE base = $1",
                    &[&base],
                )?
                .get::<_, Option<i32>>(0)
                .map(|g| g as u32))
            })
            .map_err(CryptoError::storage)
    }

    fn insert(&self, key: &NewDataKey<'_>) -> Result<bool, CryptoError> {
        let generation = key.generation as i32;
        self.session
            .run(|c| {
                // A race between servers making a base's next key: one wins, the other
                // takes the winner's.
                Ok(c.execute(
                    "INSERT INTO data_keys (key_id, base, generation, wrapped, created_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[
                        &key.key_id,
                        &key.base,
                        &generation,
                        &key.wrapped,
                        &key.created_at,
                    ],
                )? == 1)
            })
            .map_err(CryptoError::storage)
    }

    fn wrapped_keys(&self) -> Result<Vec<(String, Vec<u8>)>, CryptoError> {
        self.session
            .run(|c| {
                Ok(c.query(
                    "SELECT key_id, wrapped FROM data_keys
                     WHERE wrapped IS NOT NULL AND shredded_at IS NULL",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
            })
            .map_err(CryptoError::storage)
    }

    fn rewrap(&self, key_id: &str, old: &[u8], new: &[u8]) -> Result<bool, CryptoError> {
        self.session
            .run(|c| {
                Ok(c.execute(
                    "UPDATE data_keys SET wrapped = $3
                     WHERE key_id = $1 AND wrapped = $2 AND shredded_at IS NULL",
                    &[&key_id, &old, &new],
                )? == 1)
            })
            .map_err(CryptoError::storage)
    }

    fn destroy(
        &self,
        base: &str,
        bases_under: Option<&str>,
        shredded_at: i64,
    ) -> Result<u64, CryptoError> {
        let prefix = bases_under.map(|p| format!("{}%", like_escape(p)));
        let destroyed = self
            .session
            .run(|c| {
                Ok(c.execute(
                    "UPDATE data_keys SET wrapped = NULL, shredded_at = $2
                     WHERE (base = $1 OR ($3::text IS NOT NULL AND base LIKE $3))
                       AND shredded_at IS NULL",
                    &[&base, &shredded_at, &prefix],
                )?)
            })
            .map_err(CryptoError::storage)?;
        // The old row versions keep the bytes until the table is rewritten; that takes the
        // table's owner (for any other role PostgreSQL skips it with a warning). Best
        // effort, after the keys are destroyed: a rewrite that cannot get its lock within
        // the session's lock_timeout (a backup reading the table) is left for later.
        if let Err(e) = self
            .session
            .run(|c| Ok(c.batch_execute("VACUUM (FULL) data_keys")?))
        {
            tracing::warn!(error = %e, "cannot rewrite data_keys after a shredding; run VACUUM FULL data_keys as its owner");
        }
        Ok(destroyed)
    }

    fn destroyed_count(&self) -> Result<Option<u64>, CryptoError> {
        self.session
            .run(|c| {
                Ok(c.query_one(
                    "SELECT count(*) FROM data_keys WHERE shredded_at IS NOT NULL",
                    &[],
                )?
                .get::<_, i64>(0) as u64)
            })
            .map(Some)
            .map_err(CryptoError::storage)
    }
}

/// `text` as a LIKE pattern matching itself.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use sealtrail_core::{FieldSealer, StoredEvent};
    use sealtrail_crypto::{EncryptionSettings, FieldCipher, SHREDDED};
    use serde_json::Value;

    use super::*;

    fn cipher(dir: &Path) -> FieldCipher {
        let settings = EncryptionSettings {
            previous_master_keys: Vec::new(),
            master_key: [7; 32],
            fields: vec!["ip_address".into()],
            subject: Some("/user_id".into()),
            blind_index: Vec::new(),
        };
        let keys = SqliteDataKeyStore::open(dir).expect("open the data keys");
        FieldCipher::new(settings, Box::new(keys)).expect("valid settings")
    }

    /// What a reader is shown of a sealed `ip_address` of tenant acme.
    fn opened_ip(cipher: &FieldCipher, sealed: &str) -> Value {
        let record = format!("{{\"ip_address\":\"{sealed}\",\"tenant_id\":\"acme\"}}");
        let stored = StoredEvent {
            seq: 1,
            tenant_id: "acme".into(),
            occurred_at: 0,
            leaf_hash: [0; 32],
            record: record.into_bytes(),
        };
        let json: Value = serde_json::from_slice(&cipher.open_api_json(&stored)).expect("json");
        json["ip_address"].clone()
    }

    fn files(dir: &Path) -> Vec<Vec<u8>> {
        std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| std::fs::read(e.expect("entry").path()).unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_shredded_key_is_gone_from_the_files_and_stays_shredded_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = cipher(dir.path());
        let ines = c
            .seal("acme", Some("coord:ines"), "ip_address", "\"203.0.113.77\"")
            .expect("seal");
        let tom = c
            .seal("acme", Some("coord:tom"), "ip_address", "\"198.51.100.9\"")
            .expect("seal");
        let ines_key: Vec<u8> = Connection::open(dir.path().join(DATA_KEYS_FILE))
            .expect("open")
            .query_row(
                "SELECT wrapped FROM data_keys WHERE base = ?1",
                [format!("s/acme/{}", FieldCipher::subject_tag("coord:ines"))],
                |r| r.get(0),
            )
            .expect("ines's key is stored");
        assert!(c.shred("acme", Some("coord:ines")).expect("shred"));
        // No free page or WAL keeps it, so not even the master key brings it back.
        assert!(
            files(dir.path())
                .iter()
                .all(|bytes| !bytes.windows(ines_key.len()).any(|w| w == ines_key)),
            "the shredded key's bytes are still on disk"
        );
        let reopened = cipher(dir.path());
        assert_eq!(opened_ip(&reopened, &ines), SHREDDED);
        assert_eq!(opened_ip(&reopened, &tom), "198.51.100.9");
        assert!(reopened.shred("acme", None).expect("shred the tenant"));
        assert!(
            !reopened.shred("acme", None).expect("again"),
            "nothing left"
        );
        assert_eq!(opened_ip(&cipher(dir.path()), &tom), SHREDDED);
        let again = reopened
            .seal("acme", Some("coord:ines"), "ip_address", "\"203.0.113.78\"")
            .expect("a new generation");
        assert!(again.contains(".2:ip_address:"), "{again}");
        assert_eq!(opened_ip(&cipher(dir.path()), &again), "203.0.113.78");
    }
}
