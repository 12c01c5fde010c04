//! The blind index's table: in `blind-index.sqlite` in the data directory, or in
//! PostgreSQL for every server on the database — the stores of `sealtrail-crypto`'s
//! [`BlindIndexStore`] (tokens → seqs, and the index's cursor on the log, written in one
//! transaction).
//!
//! Commits are not fsync'd: entries lost with a power cut are indexed again from the
//! cursor, which was lost with them.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_crypto::{BlindEntry, BlindIndexStore, CryptoError};

use crate::StoreError;
use crate::sidecar::{self, Durability};

/// File name in the data directory.
pub const BLIND_INDEX_FILE: &str = "blind-index.sqlite";

/// The token → seq table and its cursor.
pub struct SqliteBlindIndex {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteBlindIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBlindIndex").finish_non_exhaustive()
    }
}

/// A database failure, as the index reports it (shown as the store's error).
fn failed(error: rusqlite::Error) -> CryptoError {
    CryptoError::storage(StoreError::from(error))
}

impl SqliteBlindIndex {
    /// Opens (creating if needed) the index in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        // Lost commits are re-indexed from the cursor: NORMAL is enough.
        let conn = sidecar::open(&data_dir.join(BLIND_INDEX_FILE), Durability::Normal)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS blind_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS blind_tokens (
                 tenant      TEXT    NOT NULL,
                 field       TEXT    NOT NULL,
                 token       TEXT    NOT NULL,
                 seq         INTEGER NOT NULL,
                 subject_tag TEXT,
                 PRIMARY KEY (tenant, field, token, seq)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS blind_tokens_by_subject ON blind_tokens (tenant, subject_tag);",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .expect("blind index lock is never poisoned")
    }

    fn add_in_one_transaction(&self, entries: &[BlindEntry], through: u64) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for entry in entries {
            tx.execute(
                "INSERT OR IGNORE INTO blind_tokens (tenant, field, token, seq, subject_tag)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    entry.tenant,
                    entry.field,
                    entry.token,
                    entry.seq as i64,
                    entry.subject_tag
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO blind_cursor (id, seq) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)",
            [through as i64],
        )?;
        tx.commit()
    }
}

impl BlindIndexStore for SqliteBlindIndex {
    fn cursor(&self) -> Result<u64, CryptoError> {
        let seq: Option<i64> = self
            .conn()
            .query_row("SELECT seq FROM blind_cursor WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(failed)?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn add(&self, entries: &[BlindEntry], through: u64) -> Result<(), CryptoError> {
        self.add_in_one_transaction(entries, through)
            .map_err(failed)
    }

    fn find(
        &self,
        tenant: &str,
        field: &str,
        token: &str,
        limit: usize,
    ) -> Result<Vec<u64>, CryptoError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT seq FROM blind_tokens WHERE tenant = ?1 AND field = ?2 AND token = ?3
                 ORDER BY seq DESC LIMIT ?4",
            )
            .map_err(failed)?;
        stmt.query_map(params![tenant, field, token, limit as i64], |r| {
            r.get::<_, i64>(0)
        })
        .and_then(|rows| rows.map(|r| r.map(|s| s as u64)).collect())
        .map_err(failed)
    }

    fn forget(&self, tenant: &str, subject_tag: Option<&str>) -> Result<(), CryptoError> {
        let conn = self.conn();
        match subject_tag {
            None => conn.execute("DELETE FROM blind_tokens WHERE tenant = ?1", [tenant]),
            Some(tag) => conn.execute(
                "DELETE FROM blind_tokens WHERE tenant = ?1 AND subject_tag = ?2",
                params![tenant, tag],
            ),
        }
        .map_err(failed)?;
        Ok(())
    }
}

/// The blind index in PostgreSQL (migration 11), shared by every server on the database:
/// a shredding's entries are gone for all of them at once, and each server's indexer
/// adds what it reads of the shared log (an entry another server added is kept once).
pub struct PgBlindIndex {
    session: crate::postgres::PgSession,
}

impl std::fmt::Debug for PgBlindIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBlindIndex").finish_non_exhaustive()
    }
}

impl PgBlindIndex {
    /// The index in the database at `url` (its tables made by `sealtrail migrate`).
    pub fn open(url: &str) -> Self {
        Self {
            session: crate::postgres::PgSession::new(url),
        }
    }

    fn run<T: Send>(
        &self,
        f: impl Fn(&mut postgres::Client) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<T, CryptoError> {
        self.session.run(f).map_err(CryptoError::storage)
    }
}

impl BlindIndexStore for PgBlindIndex {
    fn cursor(&self) -> Result<u64, CryptoError> {
        self.run(|client| {
            let seq: Option<i64> = client
                .query_opt("SELECT seq FROM blind_cursor WHERE id = 1", &[])?
                .map(|row| row.get(0));
            Ok(seq.unwrap_or(0) as u64)
        })
    }

    fn add(&self, entries: &[BlindEntry], through: u64) -> Result<(), CryptoError> {
        // In key order, so two servers adding the same entries wait on each other instead
        // of deadlocking.
        let mut sorted: Vec<&BlindEntry> = entries.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.tenant, &a.field, &a.token, a.seq).cmp(&(&b.tenant, &b.field, &b.token, b.seq))
        });
        let tenants: Vec<&str> = sorted.iter().map(|e| e.tenant.as_str()).collect();
        let fields: Vec<&str> = sorted.iter().map(|e| e.field.as_str()).collect();
        let tokens: Vec<&str> = sorted.iter().map(|e| e.token.as_str()).collect();
        let seqs: Vec<i64> = sorted.iter().map(|e| e.seq as i64).collect();
        let subjects: Vec<Option<&str>> = sorted.iter().map(|e| e.subject_tag.as_deref()).collect();
        self.run(|client| {
            let mut tx = client.transaction()?;
            if !seqs.is_empty() {
                tx.execute(
                    "INSERT INTO blind_tokens (tenant, field, token, seq, subject_tag)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
                     ON CONFLICT DO NOTHING",
                    &[&tenants, &fields, &tokens, &seqs, &subjects],
                )?;
            }
            tx.execute(
                "INSERT INTO blind_cursor (id, seq) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET seq = GREATEST(blind_cursor.seq, excluded.seq)",
                &[&(through as i64)],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn find(
        &self,
        tenant: &str,
        field: &str,
        token: &str,
        limit: usize,
    ) -> Result<Vec<u64>, CryptoError> {
        self.run(|client| {
            Ok(client
                .query(
                    "SELECT seq FROM blind_tokens WHERE tenant = $1 AND field = $2 AND token = $3
                     ORDER BY seq DESC LIMIT $4",
                    &[&tenant, &field, &token, &(limit as i64)],
                )?
                .iter()
                .map(|row| row.get::<_, i64>(0) as u64)
                .collect())
        })
    }

    fn forget(&self, tenant: &str, subject_tag: Option<&str>) -> Result<(), CryptoError> {
        self.run(|client| {
            match subject_tag {
                None => client.execute("DELETE FROM blind_tokens WHERE tenant = $1", &[&tenant])?,
                Some(tag) => client.execute(
                    "DELETE FROM blind_tokens WHERE tenant = $1 AND subject_tag = $2",
                    &[&tenant, &tag],
                )?,
            };
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: &str, token: &str, seq: u64, subject_tag: Option<&str>) -> BlindEntry {
        BlindEntry {
            tenant: tenant.into(),
            field: "/details/guest/email".into(),
            token: token.into(),
            seq,
            subject_tag: subject_tag.map(str::to_owned),
        }
    }

    #[test]
    fn entries_are_found_newest_first_and_the_cursor_survives_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = SqliteBlindIndex::open(dir.path()).expect("open");
        assert_eq!(index.cursor().expect("cursor"), 0);
        let entries = [
            entry("acme", "t1", 3, None),
            entry("acme", "t1", 7, None),
            entry("acme", "t1", 7, None),
            entry("globex", "t1", 8, None),
        ];
        index.add(&entries, 10).expect("add");
        index.add(&[], 4).expect("an older cursor");
        let find = |index: &SqliteBlindIndex, limit| {
            index
                .find("acme", "/details/guest/email", "t1", limit)
                .expect("find")
        };
        assert_eq!(find(&index, 10), vec![7, 3]);
        assert_eq!(find(&index, 1), vec![7]);
        drop(index);
        let reopened = SqliteBlindIndex::open(dir.path()).expect("reopen");
        assert_eq!(
            reopened.cursor().expect("cursor"),
            10,
            "the cursor never moves back"
        );
        assert_eq!(find(&reopened, 10), vec![7, 3]);
    }

    #[test]
    fn forgetting_drops_a_subjects_entries_or_a_whole_tenants() {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = SqliteBlindIndex::open(dir.path()).expect("open");
        let entries = [
            entry("acme", "t1", 1, Some("aa")),
            entry("acme", "t1", 2, Some("bb")),
            entry("acme", "t1", 3, None),
            entry("globex", "t1", 4, Some("aa")),
        ];
        index.add(&entries, 4).expect("add");
        let find = |tenant| {
            index
                .find(tenant, "/details/guest/email", "t1", 10)
                .expect("find")
        };
        index.forget("acme", Some("aa")).expect("forget a subject");
        assert_eq!(find("acme"), vec![3, 2]);
        assert_eq!(find("globex"), vec![4], "another tenant's subject stays");
        index.forget("acme", None).expect("forget a tenant");
        assert!(find("acme").is_empty());
        assert_eq!(find("globex"), vec![4]);
    }
}
