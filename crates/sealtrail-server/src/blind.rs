//! The blind index: equality search on encrypted fields without storing their plaintext.
//!
//! For each blind-indexed field (`encryption.blind_index`) an event's value is reduced to a
//! keyed token (HMAC of tenant, field and value under a key derived from the master key);
//! the index maps tokens to seqs in `blind-index.sqlite` in the data directory. It is a
//! cursor on the log, like every consumer (DESIGN.md): a task reads the durable events after
//! its cursor, opens the indexed fields, and writes their tokens and the new cursor in one
//! transaction; after a restart it resumes, and on a shared PostgreSQL log every server
//! keeps its own. A search turns the asked value into its token the same way, so the index
//! never holds a value. Shredding drops the entries of the destroyed keys.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_core::EventFilter;
use sealtrail_store::StoreError;
use sealtrail_store::encryption::Opener;
use sealtrail_store::follow::{LogConsumer, ReadPlan, Step, StepError};

/// File name in the data directory.
pub const BLIND_INDEX_FILE: &str = "blind-index.sqlite";
/// Events read from the log per step.
const STEP_EVENTS: usize = 2000;

/// The token → seq table and its cursor.
pub struct BlindIndex {
    conn: Mutex<Connection>,
}

impl BlindIndex {
    /// Opens (creating if needed) the index in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        // Lost commits are re-indexed from the cursor: NORMAL is enough.
        let conn = sealtrail_store::sidecar::open(
            &data_dir.join(BLIND_INDEX_FILE),
            sealtrail_store::sidecar::Durability::Normal,
        )?;
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

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .expect("blind index lock is never poisoned")
    }

    /// Every event up to this seq is indexed.
    pub fn cursor(&self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn()
            .query_row("SELECT seq FROM blind_cursor WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// Adds entries (tenant, field, token, seq, subject tag) and moves the cursor.
    fn add(
        &self,
        entries: &[(String, String, String, u64, Option<String>)],
        through: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (tenant, field, token, seq, subject) in entries {
            tx.execute(
                "INSERT OR IGNORE INTO blind_tokens (tenant, field, token, seq, subject_tag)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![tenant, field, token, *seq as i64, subject],
            )?;
        }
        tx.execute(
            "INSERT INTO blind_cursor (id, seq) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)",
            [through as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Seqs of `tenant`'s events whose `field` has `token`, newest first, at most `limit`.
    pub fn find(
        &self,
        tenant: &str,
        field: &str,
        token: &str,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq FROM blind_tokens WHERE tenant = ?1 AND field = ?2 AND token = ?3
             ORDER BY seq DESC LIMIT ?4",
        )?;
        let seqs = stmt
            .query_map(params![tenant, field, token, limit as i64], |r| {
                r.get::<_, i64>(0)
            })?
            .map(|r| r.map(|s| s as u64))
            .collect::<Result<_, _>>()?;
        Ok(seqs)
    }

    /// Drops the entries of a shredded tenant, or of one of its subjects.
    pub fn forget(&self, tenant: &str, subject_tag: Option<&str>) -> Result<(), StoreError> {
        let conn = self.conn();
        match subject_tag {
            None => conn.execute("DELETE FROM blind_tokens WHERE tenant = ?1", [tenant])?,
            Some(tag) => conn.execute(
                "DELETE FROM blind_tokens WHERE tenant = ?1 AND subject_tag = ?2",
                params![tenant, tag],
            )?,
        };
        Ok(())
    }
}

/// The blind index as a consumer of the log: each step tokenises the blind-indexed
/// fields of the events read and stores the tokens with the new cursor.
pub struct BlindIndexer {
    /// The index it keeps.
    pub index: Arc<BlindIndex>,
    /// Opens the sealed fields to tokenise them.
    pub opener: Opener,
}

impl LogConsumer for BlindIndexer {
    fn name(&self) -> &str {
        "blind-index"
    }

    async fn start(&mut self, _through: u64) -> Result<u64, StepError> {
        // Read once: from here on this consumer is the only one moving it.
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.cursor())
            .await
            .map_err(|e| StepError::Fatal(e.to_string()))?
            .map_err(|e| StepError::Fatal(format!("cannot read its cursor: {e}")))
    }

    fn plan(&self) -> ReadPlan {
        ReadPlan::Events {
            filter: EventFilter::default(),
            max_events: STEP_EVENTS,
        }
    }

    async fn step(&mut self, step: Step) -> Result<u64, StepError> {
        let page = step.page.expect("the plan reads events");
        let (index, opener) = (self.index.clone(), self.opener.clone());
        tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
            let cipher = opener
                .cipher()
                .expect("the blind index runs with encryption on");
            let mut entries = Vec::new();
            for event in &page.events {
                for token in cipher.blind_tokens(event) {
                    entries.push((
                        event.tenant_id.clone(),
                        token.field,
                        token.token,
                        event.seq,
                        token.subject_tag,
                    ));
                }
            }
            let scanned = page.scanned_through.max(step.cursor);
            index.add(&entries, scanned)?;
            Ok(scanned)
        })
        .await
        .map_err(|e| StepError::Fatal(format!("the blind index task failed: {e}")))?
        .map_err(StepError::from)
    }
}
