//! The embedded store's retention ledger: the `retention` table beside `events`, and the
//! steps that remove bodies from the log (with `secure_delete`, so freed pages are zeroed)
//! and their rows from the query index.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_core::Severity;

use super::{INDEX_DB_FILE, log_db_path, open_connection};
use crate::StoreError;
use crate::retention::{LedgerRow, RetentionLedger, SegmentUse};

/// Seqs changed per transaction: short enough that the sequencer's commits, which wait for
/// the database's one write lock, never wait long.
const SEQS_PER_TRANSACTION: usize = 1_000;

/// The retention ledger of the embedded log in a data directory, on a connection of its own.
pub struct SqliteLedger {
    conn: Mutex<Connection>,
}

impl SqliteLedger {
    /// Opens the ledger of the log in `data_dir` (which must exist).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = log_db_path(data_dir);
        if !path.exists() {
            return Err(StoreError::Invalid(format!(
                "no Sealtrail log at {}",
                data_dir.display()
            )));
        }
        let conn = open_connection(&path, false)?;
        super::schema::check(&conn)?;
        // The server's checkpointer owns WAL checkpoints (see wal.rs).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let index = data_dir.join(INDEX_DB_FILE);
        conn.execute("ATTACH DATABASE ?1 AS ix", params![index.to_string_lossy()])?;
        conn.pragma_update(Some("ix"), "secure_delete", "ON")?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .expect("the ledger connection is not poisoned");
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

impl RetentionLedger for SqliteLedger {
    fn rows(&self, after: u64, through: u64, limit: usize) -> Result<Vec<LedgerRow>, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn.prepare_cached(
            "SELECT e.seq, e.leaf_hash, e.tenant_id, e.action, e.resource_type, e.resource_id,
                    e.severity, e.occurred_at, r.segment, length(e.record) > 0,
                    r.deleted_at IS NOT NULL
             FROM events AS e LEFT JOIN retention AS r ON r.seq = e.seq
             WHERE e.seq > ?1 AND e.seq <= ?2 ORDER BY e.seq LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![after as i64, through as i64, limit as i64], |r| {
                let severity: i64 = r.get(6)?;
                Ok((
                    severity,
                    LedgerRow {
                        seq: r.get::<_, i64>(0)? as u64,
                        leaf_hash: r.get(1)?,
                        tenant_id: r.get(2)?,
                        action: r.get(3)?,
                        resource_type: r.get(4)?,
                        resource_id: r.get(5)?,
                        severity: Severity::Info,
                        occurred_at: r.get(7)?,
                        segment: r.get(8)?,
                        has_body: r.get(9)?,
                        deleted: r.get(10)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(code, mut row)| {
                row.severity = Severity::from_code(code).ok_or_else(|| {
                    StoreError::Integrity(format!(
                        "event {} has severity code {code}; run `sealtrail verify`",
                        row.seq
                    ))
                })?;
                Ok(row)
            })
            .collect()
    }

    fn records(&self, seqs: &[u64]) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut conn = self.conn.lock().expect("not poisoned");
        // One snapshot for every record read.
        let tx = conn.transaction()?;
        let mut out = Vec::with_capacity(seqs.len());
        {
            let mut stmt = tx.prepare_cached(
                "SELECT record FROM events WHERE seq = ?1 AND length(record) > 0",
            )?;
            for &seq in seqs {
                if let Some(record) = stmt
                    .query_row(params![seq as i64], |r| r.get::<_, Vec<u8>>(0))
                    .optional()?
                {
                    out.push((seq, record));
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn mark_archived(&self, stem: &str, seqs: &[u64]) -> Result<(), StoreError> {
        for chunk in seqs.chunks(SEQS_PER_TRANSACTION) {
            self.with_tx(|tx| {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO retention (seq, segment) VALUES (?1, ?2)
                     ON CONFLICT (seq) DO UPDATE SET segment = excluded.segment
                     WHERE segment IS NULL",
                )?;
                for &seq in chunk {
                    stmt.execute(params![seq as i64, stem])?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn deleted_among(&self, seqs: &[u64]) -> Result<std::collections::HashSet<u64>, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn
            .prepare_cached("SELECT 1 FROM retention WHERE seq = ?1 AND deleted_at IS NOT NULL")?;
        let mut deleted = std::collections::HashSet::new();
        for &seq in seqs {
            if stmt.exists(params![seq as i64])? {
                deleted.insert(seq);
            }
        }
        Ok(deleted)
    }

    fn remove_bodies(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        for chunk in seqs.chunks(SEQS_PER_TRANSACTION) {
            removed += self.with_tx(|tx| {
                let mut archived = tx.prepare_cached(
                    "SELECT segment IS NOT NULL OR deleted_at IS NOT NULL FROM retention
                     WHERE seq = ?1",
                )?;
                let mut empty =
                    tx.prepare_cached("UPDATE events SET record = x'' WHERE seq = ?1")?;
                let mut note = tx.prepare_cached(
                    "UPDATE retention SET body_removed_at = ?2
                     WHERE seq = ?1 AND body_removed_at IS NULL",
                )?;
                let mut unindex = tx.prepare_cached("DELETE FROM ix.ev WHERE seq = ?1")?;
                let mut n = 0;
                for &seq in chunk {
                    let safe: Option<bool> = archived
                        .query_row(params![seq as i64], |r| r.get(0))
                        .optional()?;
                    if safe != Some(true) {
                        return Err(StoreError::Invalid(format!(
                            "event {seq} is not archived: its body stays in the log"
                        )));
                    }
                    if note.execute(params![seq as i64, at])? == 1 {
                        empty.execute(params![seq as i64])?;
                        unindex.execute(params![seq as i64])?;
                        n += 1;
                    }
                }
                Ok(n)
            })?;
        }
        Ok(removed)
    }

    fn mark_deleted(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for chunk in seqs.chunks(SEQS_PER_TRANSACTION) {
            deleted += self.with_tx(|tx| {
                let mut note = tx.prepare_cached(
                    "INSERT INTO retention (seq, body_removed_at, deleted_at) VALUES (?1, ?2, ?2)
                     ON CONFLICT (seq) DO UPDATE
                         SET body_removed_at = COALESCE(body_removed_at, excluded.body_removed_at),
                             deleted_at = excluded.deleted_at
                     WHERE deleted_at IS NULL",
                )?;
                let mut empty = tx.prepare_cached(
                    "UPDATE events SET record = x'', user_id = NULL, resource_id = NULL
                     WHERE seq = ?1",
                )?;
                let mut unindex = tx.prepare_cached("DELETE FROM ix.ev WHERE seq = ?1")?;
                let mut n = 0;
                for &seq in chunk {
                    if note.execute(params![seq as i64, at])? == 1 {
                        empty.execute(params![seq as i64])?;
                        unindex.execute(params![seq as i64])?;
                        n += 1;
                    }
                }
                Ok(n)
            })?;
        }
        Ok(deleted)
    }

    fn segments(&self) -> Result<Vec<SegmentUse>, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn.prepare_cached(
            "SELECT segment, COUNT(*), COUNT(*) - COUNT(deleted_at) FROM retention
             WHERE segment IS NOT NULL GROUP BY segment ORDER BY segment",
        )?;
        Ok(stmt
            .query_map([], |r| {
                Ok(SegmentUse {
                    stem: r.get(0)?,
                    archived: r.get::<_, i64>(1)? as u64,
                    live: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    fn forget_segment(&self, stem: &str) -> Result<(), StoreError> {
        self.with_tx(|tx| {
            let live: i64 = tx.query_row(
                "SELECT COUNT(*) FROM retention WHERE segment = ?1 AND deleted_at IS NULL",
                params![stem],
                |r| r.get(0),
            )?;
            if live > 0 {
                return Err(StoreError::Invalid(format!(
                    "segment {stem} still holds {live} events not past their retention"
                )));
            }
            tx.execute(
                "UPDATE retention SET segment = NULL WHERE segment = ?1",
                params![stem],
            )?;
            Ok(())
        })
    }
}
