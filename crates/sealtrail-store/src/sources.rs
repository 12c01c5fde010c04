//! Where the per-source tracker keeps what it learned: for each `(tenant, source)` the
//! [`SourceProgress`] of its `source_seq` numbers, and the tracker's cursor on the log — in
//! `sources.sqlite` in the data directory, or in PostgreSQL for every server on the
//! database (migration 12).
//!
//! Each row also records `through`, the log seq its progress covers. A step applies to a row
//! only the events after its `through`, under the row's lock, so servers following the same
//! shared log may each advance it without counting an event twice; rows and the cursor are
//! written in one transaction. The state cannot be rebuilt once retention has deleted
//! bodies, so the SQLite file is in backups (before the log, so its cursor is never ahead
//! of the restored log); PostgreSQL dumps leave the tables out (a restored database
//! counts its sources again from its log).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use sealtrail_core::sources::SourceProgress;

use crate::StoreError;
use crate::sidecar::{self, Durability};

/// File name in the data directory.
pub const SOURCES_FILE: &str = "sources.sqlite";

/// One event's stamp, as read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStamp {
    /// The event's tenant.
    pub tenant: String,
    /// The producer instance.
    pub source: String,
    /// Its number for this event.
    pub source_seq: u64,
    /// Where the event is in the log.
    pub log_seq: u64,
    /// When the server received it, UTC microseconds.
    pub received_at: i64,
}

/// What is known of one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRow {
    /// The tenant its events belong to.
    pub tenant: String,
    /// The producer instance.
    pub source: String,
    /// Its numbers seen.
    pub progress: SourceProgress,
    /// Received time of its first event seen, UTC microseconds.
    pub first_seen_at: i64,
    /// Received time of its latest event seen, UTC microseconds.
    pub last_seen_at: i64,
    /// The log seq `progress` covers.
    pub through: u64,
}

impl SourceRow {
    /// Applies the stamps (of this row's source) the row does not cover yet.
    fn advance(row: Option<SourceRow>, stamps: &[&SourceStamp], through: u64) -> SourceRow {
        let first = stamps[0];
        let mut row = row.unwrap_or_else(|| SourceRow {
            tenant: first.tenant.clone(),
            source: first.source.clone(),
            progress: SourceProgress::default(),
            first_seen_at: first.received_at,
            last_seen_at: first.received_at,
            through: 0,
        });
        for stamp in stamps.iter().filter(|s| s.log_seq > row.through) {
            row.progress.record(stamp.source_seq);
            row.first_seen_at = row.first_seen_at.min(stamp.received_at);
            row.last_seen_at = row.last_seen_at.max(stamp.received_at);
        }
        row.through = row.through.max(through);
        row
    }
}

/// Which sources to list.
#[derive(Clone, Debug, Default)]
pub struct SourceQuery {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only sources with events missing.
    pub with_holes: bool,
    /// Keyset paging: those after this `(tenant, source)`.
    pub after: Option<(String, String)>,
    /// At most this many.
    pub limit: usize,
}

/// Counts over every source, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceTotals {
    /// Sources known.
    pub sources: u64,
    /// Events missing over all of them.
    pub missing: u64,
}

/// The tracker's storage.
pub trait SourceStore: Send + Sync {
    /// The log seq the tracker has read through.
    fn cursor(&self) -> Result<u64, StoreError>;
    /// Applies the stamps of the events read up to `through` and moves the cursor there,
    /// in one transaction.
    fn apply(&self, stamps: &[SourceStamp], through: u64) -> Result<(), StoreError>;
    /// Sources in `(tenant, source)` order.
    fn list(&self, query: &SourceQuery) -> Result<Vec<SourceRow>, StoreError>;
    /// Counts over every source.
    fn totals(&self) -> Result<SourceTotals, StoreError>;
}

/// Stamps grouped by their row's key, in key order (so concurrent writers lock rows in one
/// order and wait rather than deadlock).
fn by_source(stamps: &[SourceStamp]) -> BTreeMap<(&str, &str), Vec<&SourceStamp>> {
    let mut groups: BTreeMap<(&str, &str), Vec<&SourceStamp>> = BTreeMap::new();
    for stamp in stamps {
        groups
            .entry((stamp.tenant.as_str(), stamp.source.as_str()))
            .or_default()
            .push(stamp);
    }
    groups
}

fn progress_json(progress: &SourceProgress) -> String {
    serde_json::to_string(progress).expect("progress serialises")
}

fn parse_progress(json: &str) -> Result<SourceProgress, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Integrity(format!("a source's stored progress: {e}")))
}

/// The sources table in `sources.sqlite`.
pub struct SqliteSources {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSources").finish_non_exhaustive()
    }
}

const SQLITE_COLUMNS: &str =
    "tenant, source, progress, highest, received, missing, first_seen_at, last_seen_at, through";

impl SqliteSources {
    /// Opens (creating if needed) the table in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        // A commit lost with a power cut is redone from the cursor lost with it.
        let conn = sidecar::open(&data_dir.join(SOURCES_FILE), Durability::Normal)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS source_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS source_positions (
                 tenant        TEXT    NOT NULL,
                 source        TEXT    NOT NULL,
                 progress      TEXT    NOT NULL,
                 highest       INTEGER NOT NULL,
                 received      INTEGER NOT NULL,
                 missing       INTEGER NOT NULL,
                 first_seen_at INTEGER NOT NULL,
                 last_seen_at  INTEGER NOT NULL,
                 through       INTEGER NOT NULL,
                 PRIMARY KEY (tenant, source)
             ) WITHOUT ROWID;",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().expect("sources lock is never poisoned")
    }
}

fn sqlite_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(SourceRow, String)> {
    Ok((
        SourceRow {
            tenant: row.get(0)?,
            source: row.get(1)?,
            progress: SourceProgress::default(),
            first_seen_at: row.get(6)?,
            last_seen_at: row.get(7)?,
            through: row.get::<_, i64>(8)? as u64,
        },
        row.get(2)?,
    ))
}

fn with_progress((mut row, json): (SourceRow, String)) -> Result<SourceRow, StoreError> {
    row.progress = parse_progress(&json)?;
    Ok(row)
}

impl SourceStore for SqliteSources {
    fn cursor(&self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn()
            .query_row("SELECT seq FROM source_cursor WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn apply(&self, stamps: &[SourceStamp], through: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for ((tenant, source), stamps) in by_source(stamps) {
            let stored = tx
                .query_row(
                    &format!(
                        "SELECT {SQLITE_COLUMNS} FROM source_positions WHERE tenant = ?1 AND source = ?2"
                    ),
                    params![tenant, source],
                    sqlite_row,
                )
                .optional()?
                .map(with_progress)
                .transpose()?;
            let row = SourceRow::advance(stored, &stamps, through);
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO source_positions ({SQLITE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    row.tenant,
                    row.source,
                    progress_json(&row.progress),
                    row.progress.highest() as i64,
                    row.progress.received() as i64,
                    row.progress.missing() as i64,
                    row.first_seen_at,
                    row.last_seen_at,
                    row.through as i64,
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO source_cursor (id, seq) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)",
            [through as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn list(&self, query: &SourceQuery) -> Result<Vec<SourceRow>, StoreError> {
        let conn = self.conn();
        let (after_tenant, after_source) = query.after.clone().unzip();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SQLITE_COLUMNS} FROM source_positions
             WHERE (?1 IS NULL OR tenant = ?1)
               AND (?2 = 0 OR missing > 0)
               AND (?3 IS NULL OR (tenant, source) > (?3, ?4))
             ORDER BY tenant, source LIMIT ?5"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    query.tenant,
                    query.with_holes,
                    after_tenant,
                    after_source,
                    query.limit as i64
                ],
                sqlite_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(with_progress).collect()
    }

    fn totals(&self) -> Result<SourceTotals, StoreError> {
        let (sources, missing): (i64, i64) = self.conn().query_row(
            "SELECT count(*), coalesce(sum(missing), 0) FROM source_positions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(SourceTotals {
            sources: sources as u64,
            missing: missing as u64,
        })
    }
}

/// The sources table in PostgreSQL (migration 12), shared by every server on the database.
pub struct PgSources {
    session: crate::postgres::PgSession,
}

impl std::fmt::Debug for PgSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSources").finish_non_exhaustive()
    }
}

const PG_COLUMNS: &str = "tenant, source, progress::text, highest, received, missing, first_seen_at, last_seen_at, through";

fn pg_row(row: &postgres::Row) -> Result<SourceRow, StoreError> {
    Ok(SourceRow {
        tenant: row.get(0),
        source: row.get(1),
        progress: parse_progress(row.get(2))?,
        first_seen_at: row.get(6),
        last_seen_at: row.get(7),
        through: row.get::<_, i64>(8) as u64,
    })
}

impl PgSources {
    /// The table in the database at `url` (made by `sealtrail migrate`).
    pub fn open(url: &str) -> Self {
        Self {
            session: crate::postgres::PgSession::new(url),
        }
    }
}

impl SourceStore for PgSources {
    fn cursor(&self) -> Result<u64, StoreError> {
        self.session.run(|client| {
            let seq: Option<i64> = client
                .query_opt("SELECT seq FROM source_cursor WHERE id = 1", &[])?
                .map(|row| row.get(0));
            Ok(seq.unwrap_or(0) as u64)
        })
    }

    fn apply(&self, stamps: &[SourceStamp], through: u64) -> Result<(), StoreError> {
        let groups = by_source(stamps);
        self.session.run(|client| {
            let mut tx = client.transaction()?;
            for ((tenant, source), stamps) in &groups {
                // Locked, so a server advancing the same row waits and then sees this one's
                // `through`.
                let stored = tx
                    .query_opt(
                        &format!(
                            "SELECT {PG_COLUMNS} FROM source_positions
                             WHERE tenant = $1 AND source = $2 FOR UPDATE"
                        ),
                        &[tenant, source],
                    )?
                    .map(|row| pg_row(&row))
                    .transpose()?;
                let row = SourceRow::advance(stored, stamps, through);
                tx.execute(
                    "INSERT INTO source_positions
                         (tenant, source, progress, highest, received, missing, first_seen_at, last_seen_at, through)
                     VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (tenant, source) DO UPDATE SET
                         progress = excluded.progress, highest = excluded.highest,
                         received = excluded.received, missing = excluded.missing,
                         first_seen_at = excluded.first_seen_at,
                         last_seen_at = excluded.last_seen_at, through = excluded.through
                     WHERE excluded.through > source_positions.through",
                    &[
                        &row.tenant,
                        &row.source,
                        &progress_json(&row.progress),
                        &(row.progress.highest() as i64),
                        &(row.progress.received() as i64),
                        &(row.progress.missing() as i64),
                        &row.first_seen_at,
                        &row.last_seen_at,
                        &(row.through as i64),
                    ],
                )?;
            }
            tx.execute(
                "INSERT INTO source_cursor (id, seq) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET seq = GREATEST(source_cursor.seq, excluded.seq)",
                &[&(through as i64)],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn list(&self, query: &SourceQuery) -> Result<Vec<SourceRow>, StoreError> {
        let (after_tenant, after_source) = query.after.clone().unzip();
        self.session.run(|client| {
            client
                .query(
                    &format!(
                        "SELECT {PG_COLUMNS} FROM source_positions
                         WHERE ($1::text IS NULL OR tenant = $1)
                           AND (NOT $2 OR missing > 0)
                           AND ($3::text IS NULL OR (tenant, source) > ($3, $4::text))
                         ORDER BY tenant, source LIMIT $5"
                    ),
                    &[
                        &query.tenant,
                        &query.with_holes,
                        &after_tenant,
                        &after_source,
                        &(query.limit as i64),
                    ],
                )?
                .iter()
                .map(pg_row)
                .collect()
        })
    }

    fn totals(&self) -> Result<SourceTotals, StoreError> {
        self.session.run(|client| {
            let row = client.query_one(
                "SELECT count(*), coalesce(sum(missing), 0)::bigint FROM source_positions",
                &[],
            )?;
            Ok(SourceTotals {
                sources: row.get::<_, i64>(0) as u64,
                missing: row.get::<_, i64>(1) as u64,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(tenant: &str, source: &str, source_seq: u64, log_seq: u64) -> SourceStamp {
        SourceStamp {
            tenant: tenant.into(),
            source: source.into(),
            source_seq,
            log_seq,
            received_at: log_seq as i64 * 1000,
        }
    }

    #[test]
    fn holes_are_kept_per_tenant_and_source_and_replays_do_not_count_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteSources::open(dir.path()).expect("open");
        assert_eq!(store.cursor().expect("cursor"), 0);
        let first = [
            stamp("acme", "api/a1", 1, 1),
            stamp("acme", "api/a1", 2, 2),
            stamp("acme", "api/a1", 5, 3),
            stamp("globex", "api/a1", 1, 4),
        ];
        store.apply(&first, 4).expect("apply");
        // A step read again (after a crash before the cursor moved, or by another server).
        store.apply(&first[2..], 4).expect("apply again");
        store
            .apply(&[stamp("acme", "api/a1", 3, 5)], 5)
            .expect("apply");
        drop(store);
        let store = SqliteSources::open(dir.path()).expect("reopen");
        assert_eq!(store.cursor().expect("cursor"), 5);
        let all = store
            .list(&SourceQuery {
                limit: 10,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(all.len(), 2);
        let acme = &all[0];
        assert_eq!(
            (acme.tenant.as_str(), acme.progress.received()),
            ("acme", 4)
        );
        assert_eq!(acme.progress.missing(), 1, "4 never arrived");
        assert_eq!((acme.first_seen_at, acme.last_seen_at), (1000, 5000));
        let holes = store
            .list(&SourceQuery {
                with_holes: true,
                limit: 10,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(holes.len(), 1);
        let globex = store
            .list(&SourceQuery {
                tenant: Some("globex".into()),
                limit: 10,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(globex[0].progress.highest(), 1);
        let after = store
            .list(&SourceQuery {
                after: Some(("acme".into(), "api/a1".into())),
                limit: 10,
                ..Default::default()
            })
            .expect("list");
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].tenant, "globex");
        assert_eq!(
            store.totals().expect("totals"),
            SourceTotals {
                sources: 2,
                missing: 1
            }
        );
    }
}
