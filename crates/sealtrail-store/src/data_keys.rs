//! The wrapped data keys of field encryption, in `data-keys.sqlite` in the data directory:
//! the SQLite side of `sealtrail-crypto`'s [`DataKeyStore`].
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

    fn insert(&self, key: &NewDataKey<'_>) -> Result<(), CryptoError> {
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
        Ok(())
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

#[cfg(test)]
mod tests {
    use sealtrail_core::{FieldSealer, StoredEvent};
    use sealtrail_crypto::{EncryptionSettings, FieldCipher, SHREDDED};
    use serde_json::Value;

    use super::*;

    fn cipher(dir: &Path) -> FieldCipher {
        let settings = EncryptionSettings {
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
