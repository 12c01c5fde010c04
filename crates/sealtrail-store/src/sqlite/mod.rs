//! The embedded store: one SQLite database in the data directory, in WAL mode with
//! `secure_delete=ON`. The sequencer's commits write the WAL and a separate syncer fsyncs
//! it before anything is acknowledged (see wal.rs); every other connection uses
//! `synchronous=FULL`.
//!
//! One connection writes (the sequencer's); readers each take a pooled connection and see
//! a consistent snapshot, never blocking the writer (WAL). The query indexes live in a
//! second database, `index.sqlite`, which the [`Indexer`] fills from the log.

mod indexer;
mod reader;
mod retention;
mod schema;
mod wal;
mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sealtrail_core::CheckpointSigner;
use sealtrail_core::merkle::{Hash, fold_complete};

pub use indexer::{IndexProgress, Indexer, IndexerConfig, IndexerHandle};
pub use reader::SqliteReader;
pub use retention::SqliteLedger;
pub use writer::{SqliteBackend, insert_event_row};

use crate::{NODE_LEVEL_STRIDE, StoreError, identity};

/// The log database's file name inside the data directory.
pub const LOG_DB_FILE: &str = "log.sqlite";
/// The query index database's file name inside the data directory (derived from the log).
pub const INDEX_DB_FILE: &str = "index.sqlite";

/// Page cache of the writer connection, in KiB (SQLite's negative `cache_size`). Indexes of
/// a few million events stay hot, so inserts rarely read pages back from disk.
const WRITER_CACHE_KIB: i64 = 128 * 1024;
/// Page cache of each reader connection, in KiB.
const READER_CACHE_KIB: i64 = 32 * 1024;
/// Bytes of the database each reader maps into memory instead of copying through the cache.
const READER_MMAP_BYTES: i64 = 1 << 30;
/// Largest WAL file kept after a checkpoint, in bytes.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// The path of the log database in `data_dir`.
pub fn log_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_DB_FILE)
}

/// Opens (creating if needed) the embedded log in `data_dir`: the write backend for the
/// sequencer and the log's signer. `origin` names a new log; an existing log keeps the
/// origin it was created with, and a different one is refused.
pub fn open_log(
    data_dir: &Path,
    origin: Option<&str>,
) -> Result<(SqliteBackend, CheckpointSigner), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StoreError::io(format!("creating data directory {}", data_dir.display()), e)
    })?;
    let conn = open_connection(&log_db_path(data_dir), false)?;
    schema::migrate(&conn)?;
    // Readers attach the index database, so it must exist before the first query.
    drop(Indexer::open(data_dir, IndexerConfig::default())?);
    let secret = identity::load_or_create_signing_key(data_dir)?;
    let stored_origin: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'origin'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let origin = match (stored_origin, origin) {
        (Some(stored), Some(asked)) if stored != asked => {
            return Err(StoreError::Invalid(format!(
                "this log was created with origin {stored:?}; it cannot be renamed to {asked:?}"
            )));
        }
        (Some(stored), _) => stored,
        (None, asked) => {
            let origin = match asked {
                Some(o) => o.to_owned(),
                None => identity::default_origin(&secret),
            };
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('origin', ?1)",
                params![origin],
            )?;
            origin
        }
    };
    let signer = identity::log_signer(data_dir, &origin, &key_rotations(&conn)?, true)?;
    Ok((SqliteBackend::new(conn, &log_db_path(data_dir))?, signer))
}

/// The verifier of an existing log's checkpoints, from its stored origin and the signing
/// key in `data_dir`. Creates nothing. (Pin the public key instead where the data
/// directory itself is not trusted.)
pub fn log_verifier(data_dir: &Path) -> Result<sealtrail_core::CheckpointVerifier, StoreError> {
    let path = log_db_path(data_dir);
    if !path.exists() {
        return Err(StoreError::Invalid(format!(
            "no Sealtrail log at {}",
            data_dir.display()
        )));
    }
    let conn = open_connection(&path, true)?;
    let origin: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'origin'", [], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| StoreError::Integrity("the log has no origin in its meta table".into()))?;
    identity::log_verifier(data_dir, &origin, &key_rotations(&conn)?)
}

/// The log's key-rotation statements, oldest first (the `meta` table).
pub(crate) fn key_rotations(conn: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
    let (from, to) = identity::ROTATION_META_RANGE;
    let mut statement =
        conn.prepare("SELECT key, CAST(value AS TEXT) FROM meta WHERE key >= ?1 AND key < ?2")?;
    let rows = statement.query_map(params![from, to], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(identity::filed_rotations(rows.collect::<Result<_, _>>()?))
}

/// Makes everything committed to the embedded log so far durable, from any process: an
/// fsync of its WAL (and of the database file). A tool reading beside a running server — the
/// archiver — calls it before trusting the newest stored checkpoint, which the server may
/// have committed but not yet fsync'd; after it, that checkpoint survives a power cut.
pub fn sync_committed(data_dir: &Path) -> Result<(), StoreError> {
    let db = log_db_path(data_dir);
    for path in [wal::wal_path(&db), db] {
        match std::fs::File::open(&path) {
            Ok(file) => file
                .sync_all()
                .map_err(|e| StoreError::io(format!("syncing {}", path.display()), e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Opens a connection with the log's pragmas. Readers get a larger mmap and no writes.
pub(crate) fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::CannotOpen => {
            StoreError::Invalid(format!(
                "no Sealtrail log at {} (is --data-dir right?)",
                path.display()
            ))
        }
        other => StoreError::Database(other),
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL is a property of the file, synchronous of the connection: FULL makes every
    // commit fsync the WAL, which is what "ack means durable" rests on.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
    } else {
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    }
    Ok(conn)
}

/// The hash of the complete subtree `(level, index)`, from the stored node at the nearest
/// kept level at or below it: one range read of at most 2^[`NODE_LEVEL_STRIDE`] hashes.
pub(crate) fn subtree_hash(conn: &Connection, level: u32, index: u64) -> Result<Hash, StoreError> {
    let base = level - level % NODE_LEVEL_STRIDE;
    let span = 1u64 << (level - base);
    let first = index << (level - base);
    let hashes: Vec<Hash> = if base == 0 {
        // Leaf i is the event with seq i + 1.
        let mut stmt = conn.prepare_cached(
            "SELECT leaf_hash FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![first as i64, (first + span) as i64], |r| {
            r.get::<_, [u8; 32]>(0)
        })?;
        rows.collect::<Result<_, _>>()?
    } else {
        let mut stmt = conn.prepare_cached(
            "SELECT hash FROM merkle_nodes WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
        )?;
        let rows = stmt.query_map(params![base, first as i64, (first + span) as i64], |r| {
            r.get::<_, [u8; 32]>(0)
        })?;
        rows.collect::<Result<_, _>>()?
    };
    if hashes.len() as u64 != span {
        return Err(StoreError::Integrity(format!(
            "the stored tree lacks {} of the {span} hashes under subtree (level {level}, index {index}); \
             run `sealtrail verify`",
            span - hashes.len() as u64
        )));
    }
    Ok(fold_complete(&hashes))
}

/// Bytes used by the database file and its WAL.
pub(crate) fn storage_bytes(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    size(db) + size(&wal::wal_path(db))
}
