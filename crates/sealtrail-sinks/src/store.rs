//! Each sink's durable cursor and its dead letters, in `sinks.sqlite` in the data
//! directory.
//!
//! A cursor only moves forward, and it moves in the same transaction as the dead letters
//! of the events it passes, so a crash either keeps both or neither: the events are then
//! delivered again (at-least-once), never skipped. The file is in WAL mode without an
//! fsync per commit: losing the last commits to a power cut means redelivery, not loss.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// File name in the data directory.
pub const SINKS_DB_FILE: &str = "sinks.sqlite";

/// The store failed.
#[derive(Debug, thiserror::Error)]
#[error("sink state ({SINKS_DB_FILE}): {0}")]
pub struct StoreFailure(#[from] rusqlite::Error);

/// An event a receiver refused for good, with its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The sink.
    pub sink: String,
    /// The event's seq.
    pub seq: u64,
    /// The event's id.
    pub event_id: String,
    /// What the receiver said (or why it could not be sent).
    pub error: String,
    /// Delivery attempts that ended here (1, plus one per failed replay).
    pub attempts: u32,
    /// When it was first dead-lettered, RFC 3339.
    pub created_at: String,
    /// Whether a replay has been asked for and not yet tried.
    pub replay_requested: bool,
}

/// An event kept back by a route's rate limit, to go out in the route's next digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldEvent {
    /// The route's label.
    pub route: String,
    /// The event's seq.
    pub seq: u64,
    /// The event's id.
    pub event_id: String,
    /// Its one-line description.
    pub headline: String,
}

/// The sinks' cursors and dead letters.
pub struct SinkStore {
    conn: Mutex<Connection>,
}

impl SinkStore {
    /// Opens (creating if needed) the file in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreFailure> {
        let conn = sealtrail_store::sidecar::open(
            &data_dir.join(SINKS_DB_FILE),
            sealtrail_store::sidecar::Durability::Normal,
        )?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sink_cursors (
                 sink       TEXT PRIMARY KEY,
                 seq        INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS dead_letters (
                 sink             TEXT    NOT NULL,
                 seq              INTEGER NOT NULL,
                 event_id         TEXT    NOT NULL,
                 error            TEXT    NOT NULL,
                 attempts         INTEGER NOT NULL,
                 created_at       INTEGER NOT NULL,
                 replay_requested INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (sink, seq)
             );
             CREATE TABLE IF NOT EXISTS digest_pending (
                 sink     TEXT    NOT NULL,
                 route    TEXT    NOT NULL,
                 seq      INTEGER NOT NULL,
                 event_id TEXT    NOT NULL,
                 headline TEXT    NOT NULL,
                 PRIMARY KEY (sink, seq)
             );",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .expect("the sink store's lock is never poisoned")
    }

    /// The last seq the sink has dealt with (0 for a new sink).
    pub fn cursor(&self, sink: &str) -> Result<u64, StoreFailure> {
        Ok(self.stored_cursor(sink)?.unwrap_or(0))
    }

    /// The saved cursor, `None` for a sink that never saved one.
    pub fn stored_cursor(&self, sink: &str) -> Result<Option<u64>, StoreFailure> {
        let seq: Option<i64> = self
            .conn()
            .query_row(
                "SELECT seq FROM sink_cursors WHERE sink = ?1",
                [sink],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.map(|s| s as u64))
    }

    /// Moves the cursor to `seq` and records `dead` (events before it that were refused)
    /// and `held` (events kept back for a digest), in one transaction. A cursor never moves
    /// back.
    pub fn advance(
        &self,
        sink: &str,
        seq: u64,
        dead: &[(u64, String, String)],
        held: &[HeldEvent],
    ) -> Result<(), StoreFailure> {
        let now = sealtrail_core::time_format::now_micros();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        debug_assert!(
            dead.iter().all(|d| d.0 <= seq),
            "a dead letter is behind its cursor"
        );
        insert_dead_letters(&tx, sink, dead, now)?;
        for h in held {
            debug_assert!(h.seq <= seq, "a held event is behind its cursor");
            tx.execute(
                "INSERT OR IGNORE INTO digest_pending (sink, route, seq, event_id, headline)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sink, h.route, h.seq as i64, h.event_id, h.headline],
            )?;
        }
        tx.execute(
            "INSERT INTO sink_cursors (sink, seq, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (sink) DO UPDATE SET seq = max(seq, excluded.seq),
                                              updated_at = excluded.updated_at",
            params![sink, seq as i64, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Events held for the sink's digests, oldest first.
    pub fn held(&self, sink: &str) -> Result<Vec<HeldEvent>, StoreFailure> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT route, seq, event_id, headline FROM digest_pending WHERE sink = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([sink], |r| {
            Ok(HeldEvent {
                route: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                event_id: r.get(2)?,
                headline: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A digest went out (or its events became dead letters): they are no longer held.
    pub fn digest_done(
        &self,
        sink: &str,
        seqs: &[u64],
        dead: &[(u64, String, String)],
    ) -> Result<(), StoreFailure> {
        let now = sealtrail_core::time_format::now_micros();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        insert_dead_letters(&tx, sink, dead, now)?;
        for seq in seqs {
            tx.execute(
                "DELETE FROM digest_pending WHERE sink = ?1 AND seq = ?2",
                params![sink, *seq as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The sink's dead letters, oldest seq first, at most `limit`.
    pub fn dead_letters(&self, sink: &str, limit: usize) -> Result<Vec<DeadLetter>, StoreFailure> {
        self.select(
            "WHERE sink = ?1 ORDER BY seq LIMIT ?2",
            params![sink, limit as i64],
        )
    }

    /// Dead letters waiting for a replay, oldest first, at most `limit`.
    pub fn replays_requested(
        &self,
        sink: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreFailure> {
        self.select(
            "WHERE sink = ?1 AND replay_requested = 1 ORDER BY seq LIMIT ?2",
            params![sink, limit as i64],
        )
    }

    fn select(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<DeadLetter>, StoreFailure> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT sink, seq, event_id, error, attempts, created_at, replay_requested
             FROM dead_letters {clause}"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok(DeadLetter {
                sink: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                event_id: r.get(2)?,
                error: r.get(3)?,
                attempts: r.get(4)?,
                created_at: sealtrail_core::time_format::format_micros(r.get(5)?),
                replay_requested: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many dead letters the sink has.
    pub fn dead_letter_count(&self, sink: &str) -> Result<u64, StoreFailure> {
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM dead_letters WHERE sink = ?1",
            [sink],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Asks for the given dead letters (all of the sink's, if `seqs` is `None`) to be sent
    /// again; returns how many were marked.
    pub fn request_replay(&self, sink: &str, seqs: Option<&[u64]>) -> Result<usize, StoreFailure> {
        let conn = self.conn();
        match seqs {
            None => Ok(conn.execute(
                "UPDATE dead_letters SET replay_requested = 1 WHERE sink = ?1",
                [sink],
            )?),
            Some(seqs) => {
                let mut marked = 0;
                for seq in seqs {
                    marked += conn.execute(
                        "UPDATE dead_letters SET replay_requested = 1 WHERE sink = ?1 AND seq = ?2",
                        params![sink, *seq as i64],
                    )?;
                }
                Ok(marked)
            }
        }
    }

    /// A replayed dead letter was accepted: it is gone.
    pub fn replay_delivered(&self, sink: &str, seq: u64) -> Result<(), StoreFailure> {
        self.conn().execute(
            "DELETE FROM dead_letters WHERE sink = ?1 AND seq = ?2",
            params![sink, seq as i64],
        )?;
        Ok(())
    }

    /// A replayed dead letter was refused again: it stays, with the new answer.
    pub fn replay_refused(&self, sink: &str, seq: u64, error: &str) -> Result<(), StoreFailure> {
        self.conn().execute(
            "UPDATE dead_letters SET replay_requested = 0, attempts = attempts + 1, error = ?3
             WHERE sink = ?1 AND seq = ?2",
            params![sink, seq as i64, error],
        )?;
        Ok(())
    }
}

/// Records refused events (seq, id, reason); one refused again keeps its first date.
fn insert_dead_letters(
    tx: &rusqlite::Transaction<'_>,
    sink: &str,
    dead: &[(u64, String, String)],
    now: i64,
) -> Result<(), StoreFailure> {
    for (seq, event_id, error) in dead {
        tx.execute(
            "INSERT INTO dead_letters (sink, seq, event_id, error, attempts, created_at)
             VALUES (?1, ?2, ?3, ?4, 1, ?5)
             ON CONFLICT (sink, seq) DO UPDATE SET error = excluded.error",
            params![sink, *seq as i64, event_id, error, now],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_only_move_forward_and_dead_letters_come_with_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SinkStore::open(dir.path()).expect("open");
        assert_eq!(store.cursor("es").expect("cursor"), 0);
        store
            .advance(
                "es",
                10,
                &[(7, "id-7".into(), "400 mapper_parsing_exception".into())],
                &[],
            )
            .expect("advance");
        store.advance("es", 5, &[], &[]).expect("advance");
        assert_eq!(store.cursor("es").expect("cursor"), 10, "never back");
        assert_eq!(store.cursor("other").expect("cursor"), 0);
        drop(store);

        let store = SinkStore::open(dir.path()).expect("reopen");
        assert_eq!(store.cursor("es").expect("cursor"), 10);
        let dead = store.dead_letters("es", 10).expect("list");
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].seq, dead[0].attempts), (7, 1));
        assert!(!dead[0].replay_requested);

        assert_eq!(
            store.request_replay("es", Some(&[7, 8])).expect("replay"),
            1
        );
        assert_eq!(store.replays_requested("es", 10).expect("list").len(), 1);
        store.replay_refused("es", 7, "400 again").expect("refused");
        let dead = store.dead_letters("es", 10).expect("list");
        assert_eq!((dead[0].attempts, dead[0].error.as_str()), (2, "400 again"));
        assert!(store.replays_requested("es", 10).expect("list").is_empty());
        store.request_replay("es", None).expect("replay");
        store.replay_delivered("es", 7).expect("delivered");
        assert_eq!(store.dead_letter_count("es").expect("count"), 0);
    }
}
