//! The small SQLite files that live beside the log in the data directory (API keys, data
//! keys, sink state, the blind index): each opened the same way.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// How long a writer waits for another process holding the file (a CLI command while the
/// server runs).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much a commit to a sidecar file is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is fsync'd (keys: a created key must not vanish, a revoked or
    /// shredded one must not come back).
    Full,
    /// Commits survive a process crash, not always a power cut (state that can be
    /// rebuilt or that only causes redelivery when lost).
    Normal,
}

/// Opens (creating if needed) `file` in WAL mode with the busy timeout. Deleted content is
/// overwritten (`secure_delete`), so what is removed does not linger in free pages.
pub fn open(file: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}
