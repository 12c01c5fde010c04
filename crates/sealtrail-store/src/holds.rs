//! Legal holds in `holds.sqlite` in the data directory, or on PostgreSQL in the database
//! every server shares (a hold placed through one server binds the retention runs of all):
//! placed, released, listed, and asked by retention and archival which holds cover an
//! event before anything is deleted.
//!
//! Every commit is fsync'd ([`Durability::Full`](crate::sidecar::Durability::Full)): a hold
//! that was acknowledged must not vanish in a power cut. A hold is never deleted; releasing
//! it sets `released_at`, so the table is the hold's whole history.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};
use sealtrail_core::holds::{Hold, HoldRelease};

use crate::StoreError;

/// File name of the holds database in the data directory.
pub const HOLDS_DB_FILE: &str = "holds.sqlite";

/// Most holds one listing returns (holds are few: one per matter, not per event).
pub const MAX_LISTED_HOLDS: usize = 10_000;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS holds (
        id             TEXT PRIMARY KEY,
        tenant_id      TEXT NOT NULL,
        resource_type  TEXT,
        resource_id    TEXT,
        reason         TEXT NOT NULL,
        placed_by      TEXT NOT NULL,
        placed_at      INTEGER NOT NULL,
        released_at    INTEGER,
        released_by    TEXT,
        release_reason TEXT,
        CHECK (resource_id IS NULL OR resource_type IS NOT NULL),
        CHECK ((released_at IS NULL) = (released_by IS NULL)
           AND (released_at IS NULL) = (release_reason IS NULL))
    );
    CREATE INDEX IF NOT EXISTS holds_active ON holds (tenant_id) WHERE released_at IS NULL;";

const COLUMNS: &str = "id, tenant_id, resource_type, resource_id, reason, placed_by, placed_at, \
                       released_at, released_by, release_reason";

/// What asking to release a hold found.
#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    /// Released now.
    Released(Hold),
    /// It had been released before (when, by whom and why are in the hold); nothing changed.
    AlreadyReleased(Hold),
    /// No hold has that id.
    NotFound,
}

/// The holds database.
pub struct HoldStore {
    db: HoldDb,
}

enum HoldDb {
    Sqlite(Mutex<Connection>),
    Postgres(crate::postgres::PgSession),
}

impl HoldStore {
    /// Opens (creating if needed) the holds database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::io(format!("creating {}", data_dir.display()), e))?;
        let conn = crate::sidecar::open(
            &data_dir.join(HOLDS_DB_FILE),
            crate::sidecar::Durability::Full,
        )?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            db: HoldDb::Sqlite(Mutex::new(conn)),
        })
    }

    /// The holds in the PostgreSQL database at `url` (its schema migrated: table `holds`,
    /// migration 10). Holds a `holds.sqlite` in `data_dir` has (placed through this server
    /// before its holds were shared) are merged in, each under its own id, released ones
    /// as released: no hold is lost by the move. Returns how many were added.
    pub fn open_postgres(url: &str, data_dir: Option<&Path>) -> Result<(Self, usize), StoreError> {
        let store = Self {
            db: HoldDb::Postgres(crate::postgres::PgSession::new(url)),
        };
        let local = data_dir
            .map(|dir| dir.join(HOLDS_DB_FILE))
            .filter(|path| path.is_file());
        let Some(path) = local else {
            return Ok((store, 0));
        };
        let holds = Self::open(path.parent().expect("a file in a directory"))?.all()?;
        let merged = store.pg(|c| {
            let mut tx = c.transaction()?;
            let mut merged = 0;
            for hold in &holds {
                let release = hold.release.as_ref();
                merged += tx.execute(
                    "INSERT INTO holds (id, tenant_id, resource_type, resource_id, reason,
                         placed_by, placed_at, released_at, released_by, release_reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
                    &[
                        &hold.id,
                        &hold.tenant,
                        &hold.resource_type,
                        &hold.resource_id,
                        &hold.reason,
                        &hold.placed_by,
                        &hold.placed_at,
                        &release.map(|r| r.at),
                        &release.map(|r| r.by.as_str()),
                        &release.map(|r| r.reason.as_str()),
                    ],
                )? as usize;
            }
            tx.commit()?;
            Ok(merged)
        })?;
        if merged > 0 {
            tracing::info!(holds = merged, from = %path.display(), "legal holds merged into the database");
        }
        Ok((store, merged))
    }

    fn conn(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        match &self.db {
            HoldDb::Sqlite(conn) => Some(conn.lock().unwrap_or_else(|p| p.into_inner())),
            HoldDb::Postgres(_) => None,
        }
    }

    fn pg<T: Send>(
        &self,
        f: impl Fn(&mut postgres::Client) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<T, StoreError> {
        match &self.db {
            HoldDb::Postgres(session) => session.run(f),
            HoldDb::Sqlite(_) => unreachable!("only called on the PostgreSQL store"),
        }
    }

    /// Every hold of the SQLite file, for the merge into PostgreSQL.
    fn all(&self) -> Result<Vec<Hold>, StoreError> {
        let conn = self.conn().expect("read from the SQLite file");
        let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM holds"))?;
        let holds = statement
            .query_map([], hold_of)?
            .collect::<Result<_, _>>()?;
        Ok(holds)
    }

    /// Stores a new, active hold (its id chosen by the caller, so the record of it can be
    /// prepared first). Refused if the hold is released already or names a resource id
    /// without its type, or if the id is taken.
    pub fn place(&self, hold: &Hold) -> Result<(), StoreError> {
        if !hold.is_active() {
            return Err(StoreError::Invalid("a new hold cannot be released".into()));
        }
        if hold.resource_id.is_some() && hold.resource_type.is_none() {
            return Err(StoreError::Invalid(
                "a hold on a resource id needs its resource type".into(),
            ));
        }
        let inserted = match self.conn() {
            Some(conn) => conn.execute(
                "INSERT OR IGNORE INTO holds (id, tenant_id, resource_type, resource_id, reason, \
                 placed_by, placed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    hold.id,
                    hold.tenant,
                    hold.resource_type,
                    hold.resource_id,
                    hold.reason,
                    hold.placed_by,
                    hold.placed_at
                ],
            )? as u64,
            None => self.pg(|c| {
                Ok(c.execute(
                    "INSERT INTO holds (id, tenant_id, resource_type, resource_id, reason, \
                     placed_by, placed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &hold.id,
                        &hold.tenant,
                        &hold.resource_type,
                        &hold.resource_id,
                        &hold.reason,
                        &hold.placed_by,
                        &hold.placed_at,
                    ],
                )?)
            })?,
        };
        if inserted == 0 {
            return Err(StoreError::Invalid(format!(
                "a hold with id {} exists already",
                hold.id
            )));
        }
        Ok(())
    }

    /// The hold with this id, active or released.
    pub fn get(&self, id: &str) -> Result<Option<Hold>, StoreError> {
        match self.conn() {
            Some(conn) => Ok(conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM holds WHERE id = ?1"),
                    [id],
                    hold_of,
                )
                .optional()?),
            None => self.pg(|c| {
                Ok(c.query_opt(
                    &format!("SELECT {COLUMNS} FROM holds WHERE id = $1"),
                    &[&id],
                )?
                .map(|r| pg_hold_of(&r)))
            }),
        }
    }

    /// Releases the hold `id` at `at` (UTC µs) on behalf of the key `by`. A hold released
    /// before stays as it was released: the answer says so.
    pub fn release(
        &self,
        id: &str,
        by: &str,
        reason: &str,
        at: i64,
    ) -> Result<Release, StoreError> {
        let release = HoldRelease {
            at,
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        let Some(mut conn) = self.conn() else {
            return self.pg(|c| {
                let mut tx = c.transaction()?;
                let found = tx
                    .query_opt(
                        &format!("SELECT {COLUMNS} FROM holds WHERE id = $1 FOR UPDATE"),
                        &[&id],
                    )?
                    .map(|r| pg_hold_of(&r));
                let hold = match releasable(found) {
                    ControlFlow::Continue(hold) => hold,
                    ControlFlow::Break(answer) => return Ok(answer),
                };
                tx.execute(
                    "UPDATE holds SET released_at = $2, released_by = $3, release_reason = $4 \
                     WHERE id = $1 AND released_at IS NULL",
                    &[&id, &at, &by, &reason],
                )?;
                tx.commit()?;
                Ok(released(hold, release.clone()))
            });
        };
        let tx = conn.transaction()?;
        let found = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM holds WHERE id = ?1"),
                [id],
                hold_of,
            )
            .optional()?;
        let hold = match releasable(found) {
            ControlFlow::Continue(hold) => hold,
            ControlFlow::Break(answer) => return Ok(answer),
        };
        tx.execute(
            "UPDATE holds SET released_at = ?2, released_by = ?3, release_reason = ?4 \
             WHERE id = ?1 AND released_at IS NULL",
            params![id, at, by, reason],
        )?;
        tx.commit()?;
        Ok(released(hold, release))
    }

    /// Holds of `tenant` (or of every tenant), the active ones only unless
    /// `include_released`; oldest first, at most [`MAX_LISTED_HOLDS`].
    pub fn list(
        &self,
        tenant: Option<&str>,
        include_released: bool,
    ) -> Result<Vec<Hold>, StoreError> {
        let Some(conn) = self.conn() else {
            return self.pg(|c| {
                Ok(c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM holds
                         WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2 OR released_at IS NULL)
                         ORDER BY placed_at, id LIMIT $3"
                    ),
                    &[&tenant, &include_released, &(MAX_LISTED_HOLDS as i64)],
                )?
                .iter()
                .map(pg_hold_of)
                .collect())
            });
        };
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM holds
             WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 OR released_at IS NULL)
             ORDER BY placed_at, id LIMIT ?3"
        ))?;
        let holds = statement
            .query_map(
                params![tenant, include_released, MAX_LISTED_HOLDS as i64],
                hold_of,
            )?
            .collect::<Result<_, _>>()?;
        Ok(holds)
    }

    /// Every active hold, however many (what a retention run checks each event against;
    /// [`list`](Self::list) is capped for answers).
    pub fn active(&self) -> Result<Vec<Hold>, StoreError> {
        let Some(conn) = self.conn() else {
            return self.pg(|c| {
                Ok(c.query(
                    &format!("SELECT {COLUMNS} FROM holds WHERE released_at IS NULL ORDER BY placed_at, id"),
                    &[],
                )?
                .iter()
                .map(pg_hold_of)
                .collect())
            });
        };
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM holds WHERE released_at IS NULL ORDER BY placed_at, id"
        ))?;
        let holds = statement
            .query_map([], hold_of)?
            .collect::<Result<_, _>>()?;
        Ok(holds)
    }

    /// The active holds that forbid deleting an event of `tenant` about (`resource_type`,
    /// `resource_id`): what retention and archival ask before deleting. Empty means no
    /// hold stands in the way.
    pub fn covering(
        &self,
        tenant: &str,
        resource_type: &str,
        resource_id: Option<&str>,
    ) -> Result<Vec<Hold>, StoreError> {
        let candidates: Vec<Hold> = match self.conn() {
            Some(conn) => {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM holds
                     WHERE tenant_id = ?1 AND released_at IS NULL
                       AND (resource_type IS NULL OR resource_type = ?2)
                     ORDER BY placed_at, id"
                ))?;
                statement
                    .query_map([tenant, resource_type], hold_of)?
                    .collect::<Result<_, _>>()?
            }
            None => self.pg(|c| {
                Ok(c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM holds
                         WHERE tenant_id = $1 AND released_at IS NULL
                           AND (resource_type IS NULL OR resource_type = $2)
                         ORDER BY placed_at, id"
                    ),
                    &[&tenant, &resource_type],
                )?
                .iter()
                .map(pg_hold_of)
                .collect())
            })?,
        };
        // The one rule of what a hold covers is core's; SQL only narrows the candidates.
        Ok(candidates
            .into_iter()
            .filter(|h| h.covers(tenant, resource_type, resource_id))
            .collect())
    }
}

/// The hold found, if it can be released now; else the answer to give.
fn releasable(found: Option<Hold>) -> ControlFlow<Release, Hold> {
    match found {
        None => ControlFlow::Break(Release::NotFound),
        Some(hold) if !hold.is_active() => ControlFlow::Break(Release::AlreadyReleased(hold)),
        Some(hold) => ControlFlow::Continue(hold),
    }
}

/// `hold` as it is once `release` is stored.
fn released(mut hold: Hold, release: HoldRelease) -> Release {
    hold.release = Some(release);
    Release::Released(hold)
}

/// [`hold_of`] for a PostgreSQL row of [`COLUMNS`].
fn pg_hold_of(row: &postgres::Row) -> Hold {
    let released_at: Option<i64> = row.get(7);
    Hold {
        id: row.get(0),
        tenant: row.get(1),
        resource_type: row.get(2),
        resource_id: row.get(3),
        reason: row.get(4),
        placed_by: row.get(5),
        placed_at: row.get(6),
        release: released_at.map(|at| HoldRelease {
            at,
            by: row.get(8),
            reason: row.get(9),
        }),
    }
}

fn hold_of(row: &Row<'_>) -> rusqlite::Result<Hold> {
    let released_at: Option<i64> = row.get(7)?;
    let release = match released_at {
        None => None,
        Some(at) => Some(HoldRelease {
            at,
            by: row.get(8)?,
            reason: row.get(9)?,
        }),
    };
    Ok(Hold {
        id: row.get(0)?,
        tenant: row.get(1)?,
        resource_type: row.get(2)?,
        resource_id: row.get(3)?,
        reason: row.get(4)?,
        placed_by: row.get(5)?,
        placed_at: row.get(6)?,
        release,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(id: &str, tenant: &str, rtype: Option<&str>, rid: Option<&str>, at: i64) -> Hold {
        Hold {
            id: id.into(),
            tenant: tenant.into(),
            resource_type: rtype.map(str::to_owned),
            resource_id: rid.map(str::to_owned),
            reason: format!("matter {id}"),
            placed_by: "k1".into(),
            placed_at: at,
            release: None,
        }
    }

    fn ids(holds: &[Hold]) -> Vec<&str> {
        holds.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn placed_holds_are_listed_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = HoldStore::open(dir.path()).unwrap();
        store.place(&hold("a", "acme", None, None, 1)).unwrap();
        store
            .place(&hold("b", "acme", Some("guest"), Some("g-1"), 2))
            .unwrap();
        store.place(&hold("c", "globex", None, None, 3)).unwrap();
        drop(store);

        let store = HoldStore::open(dir.path()).unwrap();
        assert_eq!(ids(&store.list(None, false).unwrap()), ["a", "b", "c"]);
        assert_eq!(ids(&store.list(Some("acme"), false).unwrap()), ["a", "b"]);
        assert_eq!(
            store.get("b").unwrap().unwrap(),
            hold("b", "acme", Some("guest"), Some("g-1"), 2)
        );
        assert_eq!(store.get("zzz").unwrap(), None);
    }

    #[test]
    fn a_taken_id_or_a_resource_id_without_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = HoldStore::open(dir.path()).unwrap();
        store.place(&hold("a", "acme", None, None, 1)).unwrap();
        let again = store.place(&hold("a", "acme", Some("guest"), None, 2));
        assert!(matches!(again, Err(StoreError::Invalid(_))), "{again:?}");
        let untyped = store.place(&hold("b", "acme", None, Some("g-1"), 2));
        assert!(
            matches!(untyped, Err(StoreError::Invalid(_))),
            "{untyped:?}"
        );
        assert_eq!(ids(&store.list(None, true).unwrap()), ["a"]);
    }

    #[test]
    fn release_is_recorded_once_and_a_second_release_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = HoldStore::open(dir.path()).unwrap();
        store.place(&hold("a", "acme", None, None, 1)).unwrap();
        store.place(&hold("b", "acme", None, None, 2)).unwrap();

        let Release::Released(released) = store.release("a", "k2", "settled", 10).unwrap() else {
            panic!("the first release releases");
        };
        let expected = HoldRelease {
            at: 10,
            by: "k2".into(),
            reason: "settled".into(),
        };
        assert_eq!(released.release.as_ref(), Some(&expected));
        // A second release changes nothing and answers with the first.
        match store.release("a", "k3", "again", 20).unwrap() {
            Release::AlreadyReleased(h) => assert_eq!(h.release, Some(expected.clone())),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.release("nope", "k3", "x", 20).unwrap(),
            Release::NotFound
        );

        assert_eq!(ids(&store.list(Some("acme"), false).unwrap()), ["b"]);
        assert_eq!(ids(&store.list(Some("acme"), true).unwrap()), ["a", "b"]);
        drop(store);
        let store = HoldStore::open(dir.path()).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().release, Some(expected));
    }

    #[test]
    fn covering_finds_the_active_holds_over_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = HoldStore::open(dir.path()).unwrap();
        store.place(&hold("tenant", "acme", None, None, 1)).unwrap();
        store
            .place(&hold("guests", "acme", Some("guest"), None, 2))
            .unwrap();
        store
            .place(&hold("g1", "acme", Some("guest"), Some("g-1"), 3))
            .unwrap();
        store
            .place(&hold("vendor", "acme", Some("vendor"), Some("v-1"), 4))
            .unwrap();
        store
            .place(&hold("other", "globex", None, None, 5))
            .unwrap();

        let covering = |t, rt, rid| ids(&store.covering(t, rt, rid).unwrap()).join(",");
        assert_eq!(covering("acme", "guest", Some("g-1")), "tenant,guests,g1");
        assert_eq!(covering("acme", "guest", Some("g-2")), "tenant,guests");
        assert_eq!(covering("acme", "guest", None), "tenant,guests");
        assert_eq!(covering("acme", "vendor", Some("v-1")), "tenant,vendor");
        assert_eq!(covering("acme", "vendor", Some("v-2")), "tenant");
        assert_eq!(covering("globex", "guest", Some("g-1")), "other");
        assert_eq!(covering("initech", "guest", Some("g-1")), "");

        store.release("tenant", "k2", "closed", 9).unwrap();
        store.release("guests", "k2", "closed", 9).unwrap();
        assert_eq!(covering("acme", "guest", Some("g-1")), "g1");
        assert_eq!(covering("acme", "guest", Some("g-2")), "");
    }
}
