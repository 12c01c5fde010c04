//! Each sink's durable cursor, its dead letters, the events held for its digests and, on
//! PostgreSQL, its lease: in `sinks.sqlite` in the data directory (the embedded store),
//! or in the database every server shares (`database_url`).
//!
//! A cursor only moves forward, and it moves in the same transaction as the dead letters
//! of the events it passes, so a crash either keeps both or neither: the events are then
//! delivered again (at-least-once), never skipped. The SQLite file is in WAL mode without
//! an fsync per commit: losing the last commits to a power cut means redelivery, not loss.
//!
//! On PostgreSQL a sink runs on one server at a time, the holder of its lease (a row with
//! an epoch and an expiry the holder renews). Every write the holder makes checks, in its
//! own transaction, that the lease is still its own: a server that lost it (it stalled
//! past the expiry and another took over) cannot move the cursor or the dead letters.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_store::StoreError;
use sealtrail_store::postgres::PgSession;
use serde::Serialize;

/// File name in the data directory.
pub const SINKS_DB_FILE: &str = "sinks.sqlite";

/// An arbitrary constant: the transaction lock under which one server copies a
/// `sinks.sqlite` into a database that has no sink state yet.
const IMPORT_LOCK: i64 = 0x5ea1_7a11_0007;

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The SQLite file.
    #[error("sink state ({SINKS_DB_FILE}): {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database.
    #[error("sink state (PostgreSQL): {0}")]
    Postgres(#[from] StoreError),
    /// A write under a lease this server no longer holds: another server runs the sink.
    #[error("this server no longer holds the sink's lease")]
    LeaseLost,
}

impl From<postgres::Error> for StoreFailure {
    fn from(error: postgres::Error) -> Self {
        Self::Postgres(StoreError::from(error))
    }
}

/// Proof of holding a sink's lease: its holder and the epoch it was granted in (each
/// grant to anyone increments the epoch, so an old holder's writes are refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The holder's name (host, process, a random part).
    pub holder: String,
    /// The grant.
    pub epoch: i64,
}

/// What asking for a lease got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// Held now, until renewed or released.
    Held(Fence),
    /// Another server holds it.
    HeldBy(String),
}

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

/// The sinks' cursors, dead letters, held events and leases.
pub struct SinkStore {
    db: SinkDb,
}

/// Where the sinks' state is.
enum SinkDb {
    Sqlite(Mutex<Connection>),
    Postgres(PgSession),
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
            db: SinkDb::Sqlite(Mutex::new(conn)),
        })
    }

    /// The sink state in the PostgreSQL database at `url` (its schema migrated: tables
    /// `sink_cursors`, `sink_dead_letters`, `sink_digest_pending`, `sink_leases`). When the
    /// database has no cursor yet and `data_dir` holds a `sinks.sqlite` (a server that ran
    /// its sinks from its data directory before), its cursors, dead letters and held events
    /// are copied in, so no sink starts over; returns how many cursors were.
    pub fn open_postgres(
        url: &str,
        data_dir: Option<&Path>,
    ) -> Result<(Self, usize), StoreFailure> {
        let store = Self {
            db: SinkDb::Postgres(PgSession::new(url)),
        };
        let local = data_dir
            .map(|dir| dir.join(SINKS_DB_FILE))
            .filter(|path| path.is_file());
        let Some(path) = local else {
            return Ok((store, 0));
        };
        let sqlite = Self::open(path.parent().expect("a file in a directory"))?;
        let (cursors, dead, held) = sqlite.everything()?;
        if cursors.is_empty() {
            return Ok((store, 0));
        }
        let imported = store.pg(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&IMPORT_LOCK])?;
            let none_yet = tx
                .query_one("SELECT count(*) FROM sink_cursors", &[])?
                .get::<_, i64>(0)
                == 0;
            if !none_yet {
                return Ok(0);
            }
            let now = sealtrail_core::time_format::now_micros();
            for (sink, seq) in &cursors {
                tx.execute(
                    "INSERT INTO sink_cursors (sink, seq, updated_at) VALUES ($1, $2, $3)",
                    &[sink, &(*seq as i64), &now],
                )?;
            }
            for d in &dead {
                tx.execute(
                    "INSERT INTO sink_dead_letters
                         (sink, seq, event_id, error, attempts, created_at, replay_requested)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &d.sink,
                        &(d.seq as i64),
                        &d.event_id,
                        &d.error,
                        &(d.attempts as i32),
                        &d.created_micros,
                        &d.replay_requested,
                    ],
                )?;
            }
            for (sink, h) in &held {
                tx.execute(
                    "INSERT INTO sink_digest_pending (sink, route, seq, event_id, headline)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[sink, &h.route, &(h.seq as i64), &h.event_id, &h.headline],
                )?;
            }
            tx.commit()?;
            Ok(cursors.len())
        })?;
        if imported > 0 {
            tracing::info!(
                cursors = imported,
                from = %path.display(),
                "sink state copied into the database"
            );
        }
        Ok((store, imported))
    }

    /// Whether the state is shared by several servers (PostgreSQL), so each sink runs
    /// under a lease.
    pub fn is_shared(&self) -> bool {
        matches!(self.db, SinkDb::Postgres(_))
    }

    fn sqlite(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        match &self.db {
            SinkDb::Sqlite(conn) => Some(
                conn.lock()
                    .expect("the sink store's lock is never poisoned"),
            ),
            SinkDb::Postgres(_) => None,
        }
    }

    fn pg<T: Send>(
        &self,
        f: impl Fn(&mut postgres::Client) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<T, StoreFailure> {
        match &self.db {
            SinkDb::Postgres(session) => Ok(session.run(f)?),
            SinkDb::Sqlite(_) => unreachable!("only called on the PostgreSQL store"),
        }
    }

    /// Runs `f` in a transaction that first checks `fence` still holds the sink's lease
    /// (and keeps the lease row from changing hands until it commits).
    fn fenced<T: Send>(
        &self,
        sink: &str,
        fence: Option<&Fence>,
        f: impl Fn(&mut postgres::Transaction<'_>) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<T, StoreFailure> {
        // On PostgreSQL every write of a sink is made under its lease.
        let Some(fence) = fence else {
            return Err(StoreFailure::LeaseLost);
        };
        let held = self.pg(|c| {
            let mut tx = c.transaction()?;
            {
                let still = tx
                    .query_opt(
                        "SELECT 1 FROM sink_leases
                         WHERE sink = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                         FOR SHARE",
                        &[&sink, &fence.holder, &fence.epoch],
                    )?
                    .is_some();
                if !still {
                    return Ok(None);
                }
            }
            let value = f(&mut tx)?;
            tx.commit()?;
            Ok(Some(value))
        })?;
        held.ok_or(StoreFailure::LeaseLost)
    }

    /// The last seq the sink has dealt with (0 for a new sink).
    pub fn cursor(&self, sink: &str) -> Result<u64, StoreFailure> {
        Ok(self.stored_cursor(sink)?.unwrap_or(0))
    }

    /// The saved cursor, `None` for a sink that never saved one.
    pub fn stored_cursor(&self, sink: &str) -> Result<Option<u64>, StoreFailure> {
        let seq: Option<i64> = match self.sqlite() {
            Some(conn) => conn
                .query_row(
                    "SELECT seq FROM sink_cursors WHERE sink = ?1",
                    [sink],
                    |r| r.get(0),
                )
                .optional()?,
            None => self.pg(|c| {
                Ok(
                    c.query_opt("SELECT seq FROM sink_cursors WHERE sink = $1", &[&sink])?
                        .map(|r| r.get(0)),
                )
            })?,
        };
        Ok(seq.map(|s| s as u64))
    }

    /// Moves the cursor to `seq` and records `dead` (events before it that were refused)
    /// and `held` (events kept back for a digest), in one transaction. A cursor never moves
    /// back. On PostgreSQL only while `fence` holds the lease.
    pub fn advance(
        &self,
        sink: &str,
        seq: u64,
        dead: &[(u64, String, String)],
        held: &[HeldEvent],
        fence: Option<&Fence>,
    ) -> Result<(), StoreFailure> {
        let now = sealtrail_core::time_format::now_micros();
        debug_assert!(
            dead.iter().all(|d| d.0 <= seq),
            "a dead letter is behind its cursor"
        );
        debug_assert!(
            held.iter().all(|h| h.seq <= seq),
            "a held event is behind its cursor"
        );
        if let Some(mut conn) = self.sqlite() {
            let tx = conn.transaction()?;
            insert_dead_letters(&tx, sink, dead, now)?;
            for h in held {
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
            return Ok(());
        }
        self.fenced(sink, fence, |tx| {
            pg_insert_dead_letters(tx, sink, dead, now)?;
            for h in held {
                tx.execute(
                    "INSERT INTO sink_digest_pending (sink, route, seq, event_id, headline)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[&sink, &h.route, &(h.seq as i64), &h.event_id, &h.headline],
                )?;
            }
            tx.execute(
                "INSERT INTO sink_cursors (sink, seq, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (sink) DO UPDATE SET seq = greatest(sink_cursors.seq, excluded.seq),
                                                  updated_at = excluded.updated_at",
                &[&sink, &(seq as i64), &now],
            )?;
            Ok(())
        })
    }

    /// Events held for the sink's digests, oldest first.
    pub fn held(&self, sink: &str) -> Result<Vec<HeldEvent>, StoreFailure> {
        if let Some(conn) = self.sqlite() {
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
            return Ok(rows.collect::<Result<_, _>>()?);
        }
        self.pg(|c| {
            Ok(c.query(
                "SELECT route, seq, event_id, headline FROM sink_digest_pending
                 WHERE sink = $1 ORDER BY seq",
                &[&sink],
            )?
            .iter()
            .map(|r| HeldEvent {
                route: r.get(0),
                seq: r.get::<_, i64>(1) as u64,
                event_id: r.get(2),
                headline: r.get(3),
            })
            .collect())
        })
    }

    /// A digest went out (or its events became dead letters): they are no longer held.
    pub fn digest_done(
        &self,
        sink: &str,
        seqs: &[u64],
        dead: &[(u64, String, String)],
        fence: Option<&Fence>,
    ) -> Result<(), StoreFailure> {
        let now = sealtrail_core::time_format::now_micros();
        if let Some(mut conn) = self.sqlite() {
            let tx = conn.transaction()?;
            insert_dead_letters(&tx, sink, dead, now)?;
            for seq in seqs {
                tx.execute(
                    "DELETE FROM digest_pending WHERE sink = ?1 AND seq = ?2",
                    params![sink, *seq as i64],
                )?;
            }
            tx.commit()?;
            return Ok(());
        }
        let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        self.fenced(sink, fence, |tx| {
            pg_insert_dead_letters(tx, sink, dead, now)?;
            tx.execute(
                "DELETE FROM sink_digest_pending WHERE sink = $1 AND seq = ANY($2)",
                &[&sink, &seqs],
            )?;
            Ok(())
        })
    }

    /// The sink's dead letters, oldest seq first, at most `limit`.
    pub fn dead_letters(&self, sink: &str, limit: usize) -> Result<Vec<DeadLetter>, StoreFailure> {
        self.select(sink, false, limit)
    }

    /// Dead letters waiting for a replay, oldest first, at most `limit`.
    pub fn replays_requested(
        &self,
        sink: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreFailure> {
        self.select(sink, true, limit)
    }

    fn select(
        &self,
        sink: &str,
        requested_only: bool,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreFailure> {
        let rows: Vec<StoredDeadLetter> = if let Some(conn) = self.sqlite() {
            let mut stmt = conn.prepare(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters
                 WHERE sink = ?1 AND (replay_requested = 1 OR NOT ?2) ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![sink, requested_only, limit as i64],
                StoredDeadLetter::from_sqlite,
            )?;
            rows.collect::<Result<_, _>>()?
        } else {
            self.pg(|c| {
                Ok(c.query(
                    &format!(
                        "SELECT {DEAD_LETTER_COLUMNS} FROM sink_dead_letters
                         WHERE sink = $1 AND (replay_requested OR NOT $2) ORDER BY seq LIMIT $3"
                    ),
                    &[&sink, &requested_only, &(limit as i64)],
                )?
                .iter()
                .map(StoredDeadLetter::from_postgres)
                .collect())
            })?
        };
        Ok(rows.into_iter().map(StoredDeadLetter::shown).collect())
    }

    /// How many dead letters the sink has.
    pub fn dead_letter_count(&self, sink: &str) -> Result<u64, StoreFailure> {
        let n: i64 = match self.sqlite() {
            Some(conn) => conn.query_row(
                "SELECT count(*) FROM dead_letters WHERE sink = ?1",
                [sink],
                |r| r.get(0),
            )?,
            None => self.pg(|c| {
                Ok(c.query_one(
                    "SELECT count(*) FROM sink_dead_letters WHERE sink = $1",
                    &[&sink],
                )?
                .get(0))
            })?,
        };
        Ok(n as u64)
    }

    /// Asks for the given dead letters (all of the sink's, if `seqs` is `None`) to be sent
    /// again; returns how many were marked. Any server may ask; the lease holder sends.
    pub fn request_replay(&self, sink: &str, seqs: Option<&[u64]>) -> Result<usize, StoreFailure> {
        if let Some(conn) = self.sqlite() {
            return match seqs {
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
            };
        }
        let seqs: Option<Vec<i64>> = seqs.map(|s| s.iter().map(|seq| *seq as i64).collect());
        self.pg(|c| {
            let marked = c.execute(
                "UPDATE sink_dead_letters SET replay_requested = true
                 WHERE sink = $1 AND ($2::bigint[] IS NULL OR seq = ANY($2))",
                &[&sink, &seqs],
            )?;
            Ok(marked as usize)
        })
    }

    /// A replayed dead letter was accepted: it is gone.
    pub fn replay_delivered(
        &self,
        sink: &str,
        seq: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreFailure> {
        if let Some(conn) = self.sqlite() {
            conn.execute(
                "DELETE FROM dead_letters WHERE sink = ?1 AND seq = ?2",
                params![sink, seq as i64],
            )?;
            return Ok(());
        }
        self.fenced(sink, fence, |tx| {
            tx.execute(
                "DELETE FROM sink_dead_letters WHERE sink = $1 AND seq = $2",
                &[&sink, &(seq as i64)],
            )?;
            Ok(())
        })
    }

    /// A replayed dead letter was refused again: it stays, with the new answer.
    pub fn replay_refused(
        &self,
        sink: &str,
        seq: u64,
        error: &str,
        fence: Option<&Fence>,
    ) -> Result<(), StoreFailure> {
        if let Some(conn) = self.sqlite() {
            conn.execute(
                "UPDATE dead_letters SET replay_requested = 0, attempts = attempts + 1, error = ?3
                 WHERE sink = ?1 AND seq = ?2",
                params![sink, seq as i64, error],
            )?;
            return Ok(());
        }
        self.fenced(sink, fence, |tx| {
            tx.execute(
                "UPDATE sink_dead_letters
                 SET replay_requested = false, attempts = attempts + 1, error = $3
                 WHERE sink = $1 AND seq = $2",
                &[&sink, &(seq as i64), &error],
            )?;
            Ok(())
        })
    }

    /// Asks for the sink's lease for `holder`, for `ttl`: granted when nobody holds it or
    /// the last holder let it expire (it died, stalled or released it).
    pub fn acquire_lease(
        &self,
        sink: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseAnswer, StoreFailure> {
        let ttl = ttl.as_secs_f64();
        self.pg(|c| {
            let granted = c.query_opt(
                "INSERT INTO sink_leases (sink, holder, epoch, expires_at)
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3))
                 ON CONFLICT (sink) DO UPDATE
                     SET holder = excluded.holder, epoch = sink_leases.epoch + 1,
                         expires_at = excluded.expires_at
                     WHERE sink_leases.expires_at <= now()
                 RETURNING epoch",
                &[&sink, &holder, &ttl],
            )?;
            if let Some(row) = granted {
                return Ok(LeaseAnswer::Held(Fence {
                    holder: holder.to_owned(),
                    epoch: row.get(0),
                }));
            }
            let current = c.query_opt(
                "SELECT holder, epoch, expires_at > now() FROM sink_leases WHERE sink = $1",
                &[&sink],
            )?;
            match current {
                // Granted to this process already (a grant whose answer was lost with the
                // connection, then asked again): it is ours.
                Some(row) if row.get::<_, String>(0) == holder && row.get::<_, bool>(2) => {
                    Ok(LeaseAnswer::Held(Fence {
                        holder: holder.to_owned(),
                        epoch: row.get(1),
                    }))
                }
                Some(row) => Ok(LeaseAnswer::HeldBy(row.get(0))),
                None => Ok(LeaseAnswer::HeldBy(String::new())),
            }
        })
    }

    /// Extends the lease `fence` holds by `ttl` from now; false when it is no longer held
    /// (it expired, and maybe another server took it).
    pub fn renew_lease(
        &self,
        sink: &str,
        fence: &Fence,
        ttl: Duration,
    ) -> Result<bool, StoreFailure> {
        let ttl = ttl.as_secs_f64();
        self.pg(|c| {
            Ok(c.execute(
                "UPDATE sink_leases SET expires_at = now() + make_interval(secs => $4)
                 WHERE sink = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()",
                &[&sink, &fence.holder, &fence.epoch, &ttl],
            )? == 1)
        })
    }

    /// Gives the lease up at once (a clean stop), so another server takes over without
    /// waiting for it to expire.
    pub fn release_lease(&self, sink: &str, fence: &Fence) -> Result<(), StoreFailure> {
        self.pg(|c| {
            c.execute(
                "UPDATE sink_leases SET expires_at = now()
                 WHERE sink = $1 AND holder = $2 AND epoch = $3",
                &[&sink, &fence.holder, &fence.epoch],
            )?;
            Ok(())
        })
    }

    /// Every cursor, dead letter and held event (what `open_postgres` copies in).
    #[allow(clippy::type_complexity)]
    fn everything(
        &self,
    ) -> Result<
        (
            Vec<(String, u64)>,
            Vec<StoredDeadLetter>,
            Vec<(String, HeldEvent)>,
        ),
        StoreFailure,
    > {
        let conn = self.sqlite().expect("read from the SQLite file");
        let cursors = conn
            .prepare("SELECT sink, seq FROM sink_cursors")?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        let dead = conn
            .prepare(&format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters"))?
            .query_map([], StoredDeadLetter::from_sqlite)?
            .collect::<Result<_, _>>()?;
        let held = conn
            .prepare("SELECT sink, route, seq, event_id, headline FROM digest_pending")?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    HeldEvent {
                        route: r.get(1)?,
                        seq: r.get::<_, i64>(2)? as u64,
                        event_id: r.get(3)?,
                        headline: r.get(4)?,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        Ok((cursors, dead, held))
    }
}

/// A dead letter as stored (its date in UTC microseconds).
struct StoredDeadLetter {
    sink: String,
    seq: u64,
    event_id: String,
    error: String,
    attempts: u32,
    created_micros: i64,
    replay_requested: bool,
}

/// The columns [`StoredDeadLetter`] is read from, in its fields' order.
const DEAD_LETTER_COLUMNS: &str =
    "sink, seq, event_id, error, attempts, created_at, replay_requested";

impl StoredDeadLetter {
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            sink: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
            event_id: r.get(2)?,
            error: r.get(3)?,
            attempts: r.get(4)?,
            created_micros: r.get(5)?,
            replay_requested: r.get(6)?,
        })
    }

    fn from_postgres(r: &postgres::Row) -> Self {
        Self {
            sink: r.get(0),
            seq: r.get::<_, i64>(1) as u64,
            event_id: r.get(2),
            error: r.get(3),
            attempts: r.get::<_, i32>(4) as u32,
            created_micros: r.get(5),
            replay_requested: r.get(6),
        }
    }

    fn shown(self) -> DeadLetter {
        DeadLetter {
            sink: self.sink,
            seq: self.seq,
            event_id: self.event_id,
            error: self.error,
            attempts: self.attempts,
            created_at: sealtrail_core::time_format::format_micros(self.created_micros),
            replay_requested: self.replay_requested,
        }
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

/// [`insert_dead_letters`] on PostgreSQL.
fn pg_insert_dead_letters(
    tx: &mut postgres::Transaction<'_>,
    sink: &str,
    dead: &[(u64, String, String)],
    now: i64,
) -> Result<(), StoreError> {
    for (seq, event_id, error) in dead {
        tx.execute(
            "INSERT INTO sink_dead_letters (sink, seq, event_id, error, attempts, created_at)
             VALUES ($1, $2, $3, $4, 1, $5)
             ON CONFLICT (sink, seq) DO UPDATE SET error = excluded.error",
            &[&sink, &(*seq as i64), event_id, error, &now],
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
                None,
            )
            .expect("advance");
        store.advance("es", 5, &[], &[], None).expect("advance");
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
        store
            .replay_refused("es", 7, "400 again", None)
            .expect("refused");
        let dead = store.dead_letters("es", 10).expect("list");
        assert_eq!((dead[0].attempts, dead[0].error.as_str()), (2, "400 again"));
        assert!(store.replays_requested("es", 10).expect("list").is_empty());
        store.request_replay("es", None).expect("replay");
        store.replay_delivered("es", 7, None).expect("delivered");
        assert_eq!(store.dead_letter_count("es").expect("count"), 0);
    }
}
