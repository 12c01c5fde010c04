//! The sequencer's side of the embedded store.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_core::merkle::Hash;
use uuid::Uuid;

use super::wal::{WalCheckpointer, WalHalt, WalSyncer};
use crate::StoreError;
use crate::traits::{CheckpointRow, ExistingEvent, LogBackend, LogState, NewLeaf, Syncer};

/// The write connection, owned by the sequencer thread, and the WAL checkpointer that
/// lives as long as it.
pub struct SqliteBackend {
    conn: Connection,
    path: std::path::PathBuf,
    halt: WalHalt,
    // Dropped after `conn` (fields drop in order): the final checkpoint sees no writer.
    _checkpointer: WalCheckpointer,
}

impl SqliteBackend {
    pub(crate) fn new(conn: Connection, path: &std::path::Path) -> Result<Self, StoreError> {
        super::schema::check(&conn)?;
        // Commits write the WAL without fsync and never checkpoint: the sequencer's syncer
        // and the background checkpointer do both (see wal.rs).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let halt = WalHalt::default();
        let checkpointer = WalCheckpointer::spawn(path, halt.clone())?;
        Ok(Self {
            halt,
            conn,
            path: path.to_owned(),
            _checkpointer: checkpointer,
        })
    }
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        // Closing the last connection checkpoints the WAL into the database; after a failed
        // fsync its contents are not trustworthy, so leave it for recovery at the next start.
        if self.halt.is_halted() {
            let _ = self.conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            );
        }
    }
}

/// Writes one leaf's row: the only place that knows the `events` row format. Public so the
/// tamper tests (playing a forger) and the naive-insert benchmark write exactly what the
/// sequencer writes.
pub fn insert_event_row(conn: &Connection, leaf: &NewLeaf<'_>) -> Result<(), StoreError> {
    let e = leaf.event;
    conn.prepare_cached(
        "INSERT INTO events (seq, id, tenant_id, occurred_at, received_at, severity, action,
                             user_id, resource_type, resource_id, content_hash, leaf_hash, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        leaf.seq as i64,
        e.id.as_bytes(),
        e.tenant_id,
        e.occurred_at,
        e.received_at,
        e.severity.code(),
        e.action,
        e.user_id,
        e.resource_type,
        e.resource_id,
        e.content_hash,
        leaf.leaf_hash,
        leaf.record,
    ])?;
    Ok(())
}

impl LogBackend for SqliteBackend {
    fn state(&mut self) -> Result<LogState, StoreError> {
        let size: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let latest_checkpoint = self
            .conn
            .query_row(
                "SELECT tree_size, root_hash, note, created_at FROM checkpoints
                 ORDER BY tree_size DESC LIMIT 1",
                [],
                |r| {
                    Ok(CheckpointRow {
                        tree_size: r.get::<_, i64>(0)? as u64,
                        root: r.get(1)?,
                        note: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()?;
        Ok(LogState {
            size: size as u64,
            latest_checkpoint,
        })
    }

    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        super::subtree_hash(&self.conn, level, index)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        // IMMEDIATE: take the write lock now, so a concurrent writer (there should be none)
        // fails here rather than at commit after all the work.
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    fn find_existing(&mut self, ids: &[Uuid]) -> Result<HashMap<Uuid, ExistingEvent>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, leaf_hash, content_hash FROM events WHERE id = ?1")?;
        let mut found = HashMap::new();
        for id in ids {
            let row = stmt
                .query_row(params![id.as_bytes()], |r| {
                    Ok(ExistingEvent {
                        seq: r.get::<_, i64>(0)? as u64,
                        leaf_hash: r.get(1)?,
                        content_hash: r.get(2)?,
                    })
                })
                .optional()?;
            if let Some(existing) = row {
                found.insert(*id, existing);
            }
        }
        Ok(found)
    }

    fn insert_leaves(&mut self, leaves: &[NewLeaf<'_>]) -> Result<(), StoreError> {
        for leaf in leaves {
            insert_event_row(&self.conn, leaf)?;
        }
        Ok(())
    }

    fn insert_nodes(&mut self, nodes: &[(u32, u64, Hash)]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
        for (level, index, hash) in nodes {
            stmt.execute(params![level, *index as i64, hash])?;
        }
        Ok(())
    }

    fn insert_checkpoint(
        &mut self,
        checkpoint: &CheckpointRow,
        _history: bool,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO checkpoints (tree_size, root_hash, note, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                checkpoint.tree_size as i64,
                checkpoint.root,
                checkpoint.note,
                checkpoint.created_at
            ])?;
        Ok(())
    }

    fn insert_key_rotation(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![crate::identity::rotation_meta_key(size), note],
        )?;
        Ok(())
    }

    fn key_rotations(&mut self) -> Result<Vec<String>, StoreError> {
        super::key_rotations(&self.conn)
    }

    fn supersede_checkpoint(&mut self, tree_size: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM checkpoints WHERE tree_size = ?1")?
            .execute(params![tree_size as i64])?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    fn syncer(&self) -> Result<Box<dyn Syncer>, StoreError> {
        Ok(Box::new(WalSyncer::new(&self.path, self.halt.clone())))
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }
}
