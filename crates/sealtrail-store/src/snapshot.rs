//! Consistent copies of the data directory's SQLite files, taken while the server runs
//! (for `sealtrail backup`).
//!
//! A copy is `VACUUM INTO` from a connection of its own: one read transaction, so the copy
//! is the database as of one commit, and in WAL mode a reader never blocks the sequencer.
//! (SQLite's online backup API restarts whenever another connection writes the source,
//! so under continuous ingest it might never finish.) While the copy reads, the WAL
//! checkpointer cannot move past its snapshot; its RESTART checkpoints give up after 100 ms
//! (`sqlite/wal.rs`), which bounds the stall a long copy can cause the writer.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::StoreError;
use crate::sidecar::BUSY_TIMEOUT;

/// Copies the SQLite database `source` (which must exist) into the new file `dest`, as of
/// one commit. Returns the size of the copy in bytes.
pub fn snapshot_database(source: &Path, dest: &Path) -> Result<u64, StoreError> {
    // READ_WRITE without CREATE: an absent file is an error, never an empty database, and
    // a WAL database needs write access to its shared-memory index even to be read.
    let conn = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Invalid(format!("opening {}: {e}", source.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let target = dest
        .to_str()
        .ok_or_else(|| StoreError::Invalid(format!("{} is not a UTF-8 path", dest.display())))?;
    conn.execute("VACUUM INTO ?1", params![target])
        .map_err(|e| StoreError::Invalid(format!("copying {}: {e}", source.display())))?;
    std::fs::metadata(dest)
        .map(|m| m.len())
        .map_err(|e| StoreError::io(format!("reading {}", dest.display()), e))
}

/// The newest signed checkpoint stored in the log database `log_db` (a snapshot, say):
/// its tree size and note. `None` for a log that has never committed.
pub fn latest_checkpoint(log_db: &Path) -> Result<Option<(u64, String)>, StoreError> {
    let conn = Connection::open_with_flags(
        log_db,
        // Not READ_ONLY: a read-only connection cannot open a WAL database whose shared
        // memory file does not exist yet.
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Invalid(format!("opening {}: {e}", log_db.display())))?;
    Ok(conn
        .query_row(
            "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
        )
        .optional()?)
}

/// The origin (the first line of its checkpoints) of the log database `log_db`.
pub fn log_origin(log_db: &Path) -> Result<Option<String>, StoreError> {
    let conn = Connection::open_with_flags(
        log_db,
        // Not READ_ONLY: a read-only connection cannot open a WAL database whose shared
        // memory file does not exist yet.
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Invalid(format!("opening {}: {e}", log_db.display())))?;
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'origin'", [], |r| {
            r.get(0)
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_holds_what_was_committed_and_a_missing_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("a.sqlite");
        let conn = crate::sidecar::open(&source, crate::sidecar::Durability::Full).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        let copy = dir.path().join("copy.sqlite");
        assert!(snapshot_database(&source, &copy).unwrap() > 0);
        // A write after the copy is not in it.
        conn.execute("INSERT INTO t VALUES (3)", []).unwrap();
        let copied = Connection::open(&copy).unwrap();
        let n: i64 = copied
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        let missing = dir.path().join("missing.sqlite");
        assert!(snapshot_database(&missing, &dir.path().join("x.sqlite")).is_err());
        assert!(
            !missing.exists(),
            "nothing is created in the source's place"
        );
    }
}
