//! The log's write-ahead log, handled off the sequencer's thread: fsync after each commit
//! (the sequencer's acknowledgements wait for it) and checkpoints into the database file.
//!
//! The sequencer's connection commits with `synchronous=NORMAL` — its `COMMIT` writes the
//! WAL frames but does not fsync — and with automatic checkpoints off. [`WalSyncer`] then
//! fsyncs the WAL file: WAL frames are appended in order, so once that returns, every
//! commit written before it is durable, exactly as with `synchronous=FULL`, while the
//! sequencer is already building the next group. [`WalCheckpointer`] copies the WAL into
//! the database from its own connection (whose checkpoints fsync the WAL before and the
//! database after copying), so the sequencer never waits for that either.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::StoreError;
use crate::traits::Syncer;

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// Above this many WAL frames (pages, 4 KiB each), a checkpoint blocks the writer until the
/// WAL can restart from the beginning: the bound on the WAL's size under sustained load.
/// Passive checkpoints normally let the WAL restart long before; this stall (hundreds of
/// milliseconds) is the backstop, so it is set high.
const MAX_WAL_FRAMES: i64 = 256 * 1024;

/// Longest a RESTART checkpoint waits for readers (while blocking the writer).
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// The WAL file of a database.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Set when an fsync of the WAL failed: after that nothing is known about what reached the
/// disk (the kernel may have dropped the unwritten pages), so the checkpointer must not copy
/// the WAL into the database any more. The log stops (fail-stop); a restart recovers.
#[derive(Clone, Default)]
pub(crate) struct WalHalt(Arc<AtomicBool>);

impl WalHalt {
    fn halt(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_halted(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// fsyncs the log's WAL file.
pub(crate) struct WalSyncer {
    path: PathBuf,
    file: Option<File>,
    halt: WalHalt,
}

impl WalSyncer {
    pub(crate) fn new(db: &Path, halt: WalHalt) -> Self {
        Self {
            path: wal_path(db),
            file: None,
            halt,
        }
    }
}

impl Syncer for WalSyncer {
    fn sync(&mut self) -> Result<(), StoreError> {
        let result = self.sync_wal();
        if result.is_err() {
            self.halt.halt();
        }
        result
    }
}

impl WalSyncer {
    fn sync_wal(&mut self) -> Result<(), StoreError> {
        if self.file.is_none() {
            // The WAL exists from the first write of the sequencer's connection until that
            // connection closes, and SQLite only ever truncates it, so one descriptor stays
            // valid for the sequencer's whole life.
            let file = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| {
                    StoreError::io(format!("opening {} to fsync it", self.path.display()), e)
                })?;
            self.file = Some(file);
            // The WAL is created anew after every clean shutdown: make its directory entry
            // durable too, or a power cut could lose the file with everything in it.
            if let Some(dir) = self.path.parent() {
                File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
                    StoreError::io(format!("fsync of directory {}", dir.display()), e)
                })?;
            }
        }
        self.file
            .as_ref()
            .expect("opened above")
            .sync_data()
            .map_err(|e| StoreError::io(format!("fsync of {}", self.path.display()), e))
    }
}

/// Copies the WAL into the database file in the background.
pub(crate) struct WalCheckpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WalCheckpointer {
    pub(crate) fn spawn(db: &Path, halt: WalHalt) -> Result<Self, StoreError> {
        // FULL: this connection's checkpoints fsync the WAL before copying it and the
        // database file after, so a WAL restart never drops a frame that is not yet in a
        // durable database file.
        let conn = super::open_connection(db, false)?;
        // RESTART checkpoints block writers while they wait for readers: give up soon.
        conn.busy_timeout(RESTART_WAIT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sealtrail-wal".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(CHECKPOINT_INTERVAL);
                    if halt.is_halted() {
                        return;
                    }
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                }
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| StoreError::io("starting the WAL checkpointer", e))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

fn checkpoint(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    // (busy, frames in the WAL, frames checkpointed)
    let (_, frames, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if frames > MAX_WAL_FRAMES {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
