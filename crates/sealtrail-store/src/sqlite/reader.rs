//! The read side of the embedded store: filtered pages, stats, checkpoints and proofs.
//!
//! A query reads two places in one snapshot: the index database up to the indexer's cursor,
//! and the log's rows after it (few: the indexer follows within a fraction of a second
//! under normal load). Both are cut to one page before their union is sorted, so the
//! answer is exact however far the indexer lags, and costs little when it does not.
//!
//! Every query is shaped so SQLite can answer it from one index range read in sort order
//! (see the schema); the one case it cannot — several severities of one tenant, which lie
//! in several ranges of the severity index — is rewritten as a merge of per-severity
//! ranges, each stopping after one page (one severity takes the same path, which keeps its
//! plan on the covering severity index).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use sealtrail_core::Severity;
use sealtrail_core::merkle::{self, Hash, SubtreeHashes};
use sealtrail_core::query::{
    ActionMatch, EventFilter, Order, PageCursor, PageRequest, StatsGroup, StatsRequest,
};
use uuid::Uuid;

use crate::StoreError;
use crate::traits::{CheckpointRow, EventPage, LogReader, ReplayPage, StatsRow, StoredEvent};

/// Idle reader connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

/// Read access to the embedded log from any number of threads.
pub struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    /// Opens read access to the log in `data_dir` (which must exist).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = super::log_db_path(data_dir);
        let conn = open_reader_connection(&path)?;
        super::schema::check(&conn)?;
        Ok(Self {
            path,
            idle: Mutex::new(vec![conn]),
        })
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .idle
            .lock()
            .expect("reader pool lock is never poisoned")
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader_connection(&self.path)?,
        };
        let result = f(&conn);
        // A connection still inside a transaction would serve stale snapshots: drop it.
        if !conn.is_autocommit() {
            return result;
        }
        let mut idle = self
            .idle
            .lock()
            .expect("reader pool lock is never poisoned");
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

/// A read-only connection to the log with the index database attached as `ix`.
fn open_reader_connection(log: &Path) -> Result<Connection, StoreError> {
    let conn = super::open_connection(log, true)?;
    let index = log.with_file_name(super::INDEX_DB_FILE);
    conn.execute("ATTACH DATABASE ?1 AS ix", params![index.to_string_lossy()])?;
    conn.pragma_update(Some("ix"), "cache_size", -super::READER_CACHE_KIB)?;
    conn.pragma_update(Some("ix"), "mmap_size", super::READER_MMAP_BYTES)?;
    Ok(conn)
}

/// The indexer's cursor, read in the same statement (so the same snapshot) as the rows.
const INDEXED_THROUGH: &str = "(SELECT value FROM ix.ix_meta WHERE key = 'indexed_through')";

/// SQL conditions and their parameters, built up clause by clause.
#[derive(Default, Clone)]
struct Conditions {
    clauses: Vec<String>,
    params: Vec<SqlValue>,
}

impl Conditions {
    fn push(&mut self, clause: &str, values: impl IntoIterator<Item = SqlValue>) {
        self.clauses.push(clause.to_owned());
        self.params.extend(values);
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "1".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    /// Every filter condition except severity.
    fn from_filter(filter: &EventFilter) -> Self {
        let text = |s: &str| SqlValue::Text(s.to_owned());
        let mut c = Conditions::default();
        if let Some(tenant) = &filter.tenant_id {
            c.push("tenant_id = ?", [text(tenant)]);
        }
        match &filter.action {
            Some(ActionMatch::Exact(action)) => c.push("action = ?", [text(action)]),
            Some(ActionMatch::Prefix(prefix)) if !prefix.is_empty() => {
                // A range rather than LIKE (action names are ASCII, so bumping the last byte
                // gives the first string past every extension). The unary `+` keeps SQLite
                // from reading the action index for it: a prefix can match most of a tenant,
                // and sorting all of that by time costs far more than walking the time index
                // and skipping non-matches until the page is full.
                let (lower, upper) = prefix_range(prefix);
                c.push(
                    "+action >= ? AND +action < ?",
                    [SqlValue::Text(lower), SqlValue::Text(upper)],
                );
            }
            _ => {}
        }
        match &filter.exclude_action {
            Some(ActionMatch::Exact(action)) => c.push("action <> ?", [text(action)]),
            Some(ActionMatch::Prefix(prefix)) if !prefix.is_empty() => {
                let (lower, upper) = prefix_range(prefix);
                c.push(
                    "NOT (+action >= ? AND +action < ?)",
                    [SqlValue::Text(lower), SqlValue::Text(upper)],
                );
            }
            // `*` alone leaves every action out.
            Some(ActionMatch::Prefix(_)) => c.push("0", []),
            None => {}
        }
        if let Some(user) = &filter.user_id {
            c.push("user_id = ?", [text(user)]);
        }
        if let Some(kind) = &filter.resource_type {
            c.push("resource_type = ?", [text(kind)]);
        }
        if let Some(id) = &filter.resource_id {
            c.push("resource_id = ?", [text(id)]);
        }
        if let Some(from) = filter.from {
            c.push("occurred_at >= ?", [SqlValue::Integer(from)]);
        }
        if let Some(to) = filter.to {
            c.push("occurred_at < ?", [SqlValue::Integer(to)]);
        }
        if let Some(needle) = &filter.text {
            // SQLite's lower() folds ASCII letters only: the rule of `contains_ascii_nocase`.
            c.push(
                "(instr(lower(action), ?) > 0 OR instr(lower(resource_type), ?) > 0 \
                  OR instr(lower(resource_id), ?) > 0)",
                [text(needle), text(needle), text(needle)],
            );
        }
        c
    }

    fn severities(&mut self, severities: &[Severity]) {
        match severities {
            [] => {}
            [one] => self.push("severity = ?", [SqlValue::Integer(one.code())]),
            many => {
                let marks = vec!["?"; many.len()].join(", ");
                self.push(
                    &format!("severity IN ({marks})"),
                    many.iter().map(|s| SqlValue::Integer(s.code())),
                );
            }
        }
    }

    /// The log rows the indexer has not reached, up to `visible_through`. (The index holds
    /// only durable rows, so it needs no such bound.)
    fn unindexed(&mut self, visible_through: Option<u64>) {
        self.clauses.insert(0, format!("seq > {INDEXED_THROUGH}"));
        if let Some(last) = visible_through {
            self.push("seq <= ?", [SqlValue::Integer(last as i64)]);
        }
    }

    /// Strictly after the cursor in the given order. The redundant bound on `occurred_at`
    /// lets SQLite start the index range at the cursor instead of filtering up to it.
    fn after(&mut self, cursor: &PageCursor, order: Order) {
        let at = SqlValue::Integer(cursor.occurred_at);
        let seq = SqlValue::Integer(cursor.seq as i64);
        match order {
            Order::Desc => self.push(
                "occurred_at <= ? AND (occurred_at < ? OR seq < ?)",
                [at.clone(), at, seq],
            ),
            Order::Asc => self.push(
                "occurred_at >= ? AND (occurred_at > ? OR seq > ?)",
                [at.clone(), at, seq],
            ),
        }
    }
}

fn order_by(order: Order, table: &str) -> String {
    let dir = match order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    format!("ORDER BY {table}occurred_at {dir}, {table}seq {dir}")
}

fn stored_event(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get::<_, i64>(0)? as u64,
        tenant_id: row.get(1)?,
        occurred_at: row.get(2)?,
        leaf_hash: row.get(3)?,
        record: row.get(4)?,
    })
}

/// The SQL (and parameters) of one page: exposed so tests can check its query plan.
pub(crate) fn page_sql(request: &PageRequest) -> (String, Vec<SqlValue>) {
    let mut base = Conditions::from_filter(&request.filter);
    if let Some(cursor) = &request.after {
        base.after(cursor, request.order);
    }
    // One row more than the page tells whether another page follows.
    let fetch = SqlValue::Integer(request.limit as i64 + 1);
    let order = order_by(request.order, "");
    let severities = &request.filter.severities;
    let mut parts = Vec::new();
    let mut params = Vec::new();
    let mut part = |table: &str, c: Conditions| {
        parts.push(format!(
            "SELECT * FROM (SELECT seq, occurred_at FROM {table} WHERE {} {order} LIMIT ?)",
            c.sql()
        ));
        params.extend(c.params);
        params.push(fetch.clone());
    };
    // Indexed part. With a tenant and severities, one range of the covering
    // (tenant, severity, time) index per severity, each cut to a page, then merged.
    if request.filter.tenant_id.is_some() && !severities.is_empty() {
        for severity in severities {
            let mut c = base.clone();
            c.severities(std::slice::from_ref(severity));
            part("ix.ev", c);
        }
    } else {
        let mut c = base.clone();
        c.severities(severities);
        part("ix.ev", c);
    }
    // The log's rows the indexer has not reached yet.
    let mut tail = base;
    tail.severities(severities);
    tail.unindexed(request.visible_through);
    // Inside the part, before its LIMIT: rows retention emptied must not cut a page short.
    tail.clauses.push("length(record) > 0".into());
    part("main.events", tail);
    // The tenant is checked again on the log's own row: the index is derived data, and a
    // stale or edited index must not be able to show one tenant another's events.
    // Events whose bodies retention removed are not in the hot store any more.
    let tenant_check = match &request.filter.tenant_id {
        Some(tenant) => {
            params.push(SqlValue::Text(tenant.clone()));
            "WHERE e.tenant_id = ? AND length(e.record) > 0"
        }
        None => "WHERE length(e.record) > 0",
    };
    let sql = format!(
        "SELECT e.seq, e.tenant_id, e.occurred_at, e.leaf_hash, e.record
         FROM ({}) AS picked JOIN main.events AS e ON e.seq = picked.seq {tenant_check} {} LIMIT ?",
        parts.join(" UNION ALL "),
        order_by(request.order, "picked.")
    );
    params.push(fetch);
    (sql, params)
}

/// The range of every action starting with `prefix` (not empty): action names are ASCII,
/// so bumping the last byte gives the first string past every extension.
fn prefix_range(prefix: &str) -> (String, String) {
    let mut upper = prefix.to_owned().into_bytes();
    *upper.last_mut().expect("prefix is not empty") += 1;
    let upper = String::from_utf8(upper).expect("an ASCII byte + 1 is ASCII");
    (prefix.to_owned(), upper)
}

/// One UTC hour in microseconds.
const HOUR_MICROS: i64 = 3_600_000_000;

fn floor_to(at: i64, width: i64) -> i64 {
    at - at.rem_euclid(width)
}

/// Stats read whole hours from the rollup table and count only the partial hours at the
/// edges of the range (from the index) and the rows the indexer has not reached (from the
/// log). What the rollup cannot answer (a user or resource id, free text, counts per user)
/// is counted from the index alone.
pub(crate) fn stats_sql(request: &StatsRequest) -> (String, Vec<SqlValue>) {
    let filter = &request.filter;
    let column = match request.group_by {
        StatsGroup::Severity => "severity",
        StatsGroup::Action => "action",
        StatsGroup::ResourceType => "resource_type",
        StatsGroup::UserId => "COALESCE(user_id, '')",
    };
    let bucket_of = |time: &str| match request.interval {
        Some(interval) => {
            let w = interval.micros();
            format!("{time} - ((({time} % {w}) + {w}) % {w})")
        }
        None => "NULL".to_owned(),
    };
    let count = |table: &str, c: &Conditions, time: &str, n: &str| {
        format!(
            "SELECT {} AS bucket, {column} AS key, {n} AS n FROM {table} WHERE {} GROUP BY bucket, key",
            bucket_of(time),
            c.sql()
        )
    };
    let mut all = Conditions::from_filter(filter);
    all.severities(&filter.severities);
    let mut parts = Vec::new();
    let mut params = Vec::new();

    // The rollup has no user or resource id, and free text may match a resource id.
    let rollup_answers = filter.user_id.is_none()
        && filter.resource_id.is_none()
        && filter.text.is_none()
        && request.group_by != StatsGroup::UserId;
    if rollup_answers {
        // Whole hours inside [from, to) come from the rollup.
        let first_hour = filter
            .from
            .map(|f| floor_to(f + HOUR_MICROS - 1, HOUR_MICROS));
        let end_hour = filter.to.map(|t| floor_to(t, HOUR_MICROS));
        let mut dims = Conditions::from_filter(&EventFilter {
            from: None,
            to: None,
            ..filter.clone()
        });
        dims.severities(&filter.severities);
        let empty_middle = matches!((first_hour, end_hour), (Some(a), Some(b)) if a >= b);
        if !empty_middle {
            let mut rollup = dims.clone();
            if let Some(a) = first_hour {
                rollup.push("hour >= ?", [SqlValue::Integer(a)]);
            }
            if let Some(b) = end_hour {
                rollup.push("hour < ?", [SqlValue::Integer(b)]);
            }
            parts.push(count("ix.rollup", &rollup, "hour", "SUM(n)"));
            params.extend(rollup.params);
            // The partial hours at the edges, from the index.
            for (lo, hi) in [(filter.from, first_hour), (end_hour, filter.to)] {
                if let (Some(lo), Some(hi)) = (lo, hi)
                    && lo < hi
                {
                    let mut edge = dims.clone();
                    edge.push(
                        "occurred_at >= ? AND occurred_at < ?",
                        [SqlValue::Integer(lo), SqlValue::Integer(hi)],
                    );
                    parts.push(count("ix.ev", &edge, "occurred_at", "COUNT(*)"));
                    params.extend(edge.params);
                }
            }
        } else {
            parts.push(count("ix.ev", &all, "occurred_at", "COUNT(*)"));
            params.extend(all.params.clone());
        }
    } else {
        parts.push(count("ix.ev", &all, "occurred_at", "COUNT(*)"));
        params.extend(all.params.clone());
    }
    let mut tail = all;
    tail.unindexed(request.visible_through);
    parts.push(count("main.events", &tail, "occurred_at", "COUNT(*)"));
    params.extend(tail.params);
    let sql = format!(
        "SELECT bucket, key, SUM(n) FROM ({}) GROUP BY bucket, key ORDER BY bucket, key",
        parts.join(" UNION ALL ")
    );
    (sql, params)
}

struct ConnSubtrees<'a>(&'a Connection);

impl SubtreeHashes for ConnSubtrees<'_> {
    type Error = StoreError;
    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        super::subtree_hash(self.0, level, index)
    }
}

impl SqliteReader {
    /// Runs `prove` in one snapshot of the log, refusing a tree of more leaves than the log
    /// holds.
    fn prove_against(
        &self,
        tree_size: u64,
        prove: impl FnOnce(&mut ConnSubtrees<'_>) -> Result<Vec<Hash>, merkle::ProofError<StoreError>>,
    ) -> Result<Vec<Hash>, StoreError> {
        self.with_conn(|conn| {
            snapshot(conn, || {
                let size: i64 =
                    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
                if tree_size > size as u64 {
                    return Err(StoreError::Invalid(format!(
                        "the log has {size} events; there is no tree of size {tree_size} yet"
                    )));
                }
                prove(&mut ConnSubtrees(conn)).map_err(proof_error)
            })
        })
    }
}

fn proof_error(e: merkle::ProofError<StoreError>) -> StoreError {
    match e {
        merkle::ProofError::OutOfRange(reason) => StoreError::Invalid(reason),
        merkle::ProofError::Source(e) => e,
    }
}

/// Runs `f` inside one read transaction, so multi-statement reads see one snapshot.
fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN")?;
    let result = f();
    // A read transaction commits or rolls back the same; either way the snapshot must end
    // before the connection goes back to the pool (with_conn checks).
    let ended = conn
        .execute_batch("COMMIT")
        .or_else(|_| conn.execute_batch("ROLLBACK"));
    result.and_then(|value| ended.map(|()| value).map_err(StoreError::from))
}

/// Seqs a stream replay scans per call (see [`LogReader::events_after`]).
const REPLAY_SCAN_WINDOW: u64 = 50_000;

impl LogReader for SqliteReader {
    fn events_after(
        &self,
        after: u64,
        through: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<ReplayPage, StoreError> {
        if through <= after {
            return Ok(ReplayPage {
                events: Vec::new(),
                scanned_through: after,
            });
        }
        let window_end = through.min(after.saturating_add(REPLAY_SCAN_WINDOW));
        let mut c = Conditions::from_filter(filter);
        c.severities(&filter.severities);
        // Events whose bodies retention removed are skipped: they are in the archive.
        c.clauses
            .insert(0, "seq > ? AND seq <= ? AND length(record) > 0".into());
        c.params.insert(0, SqlValue::Integer(window_end as i64));
        c.params.insert(0, SqlValue::Integer(after as i64));
        c.params.push(SqlValue::Integer(limit as i64));
        let sql = format!(
            "SELECT seq, tenant_id, occurred_at, leaf_hash, record FROM main.events
             WHERE {} ORDER BY seq LIMIT ?",
            c.sql()
        );
        self.with_conn(|conn| {
            let events: Vec<StoredEvent> = conn
                .prepare_cached(&sql)?
                .query_map(params_from_iter(c.params), stored_event)?
                .collect::<Result<_, _>>()?;
            let scanned_through = if events.len() == limit {
                events.last().map_or(window_end, |e| e.seq)
            } else {
                window_end
            };
            Ok(ReplayPage {
                events,
                scanned_through,
            })
        })
    }

    fn query(&self, request: &PageRequest) -> Result<EventPage, StoreError> {
        let (sql, params) = page_sql(request);
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut events: Vec<StoredEvent> = stmt
                .query_map(params_from_iter(params), stored_event)?
                .collect::<Result<_, _>>()?;
            let next = if events.len() > request.limit {
                events.truncate(request.limit);
                events.last().map(|e| PageCursor {
                    occurred_at: e.occurred_at,
                    seq: e.seq,
                })
            } else {
                None
            };
            Ok(EventPage { events, next })
        })
    }

    fn get(&self, id: &Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seq, tenant_id, occurred_at, leaf_hash, record FROM events
                     WHERE id = ?1 AND length(record) > 0",
                )?
                .query_row(params![id.as_bytes()], stored_event)
                .optional()?)
        })
    }

    fn stats(&self, request: &StatsRequest) -> Result<Vec<StatsRow>, StoreError> {
        let (sql, params) = stats_sql(request);
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(params), |r| {
                let key = match request.group_by {
                    StatsGroup::Severity => Severity::from_code(r.get(1)?)
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "unknown".to_owned()),
                    _ => r.get(1)?,
                };
                Ok(StatsRow {
                    bucket: r.get(0)?,
                    key,
                    count: r.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn key_rotations(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn(super::key_rotations)
    }

    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT tree_size, root_hash, note, created_at FROM checkpoints
                     ORDER BY tree_size DESC LIMIT 1",
                )?
                .query_row([], |r| {
                    Ok(CheckpointRow {
                        tree_size: r.get::<_, i64>(0)? as u64,
                        root: r.get(1)?,
                        note: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .optional()?)
        })
    }

    fn inclusion_proof(&self, leaf_index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.with_conn(|conn| {
            snapshot(conn, || {
                merkle::inclusion_proof(&mut ConnSubtrees(conn), leaf_index, tree_size)
                    .map_err(proof_error)
            })
        })
    }

    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.prove_against(new_size, |subtrees| {
            merkle::consistency_proof(subtrees, old_size, new_size)
        })
    }

    fn range_proof(
        &self,
        first_seq: u64,
        last_seq: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let Some(start) = first_seq.checked_sub(1) else {
            return Err(StoreError::Invalid("seqs start at 1".into()));
        };
        // Leaf index = seq - 1, so seqs first..=last are leaves [first - 1, last).
        self.prove_against(tree_size, |subtrees| {
            merkle::range_proof(subtrees, start, last_seq, tree_size)
        })
    }

    fn storage_bytes(&self) -> Result<u64, StoreError> {
        Ok(super::storage_bytes(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of each common query reads an index range in sort order: no full scan of
    /// the index table or the log, and no sort of what the index part read (the outer merge
    /// and the tail sort handle at most a few pages).
    #[test]
    fn common_queries_read_one_index_range_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, _) = crate::sqlite::open_log(dir.path(), Some("plan.test/log")).unwrap();
        drop(backend);
        let conn = open_reader_connection(&crate::sqlite::log_db_path(dir.path())).unwrap();
        let cases: &[&[(&str, &str)]] = &[
            &[("tenant_id", "t")],
            &[
                ("tenant_id", "t"),
                ("severity", "critical"),
                ("from", "2026-11-01T00:00:00Z"),
                ("to", "2026-11-08T00:00:00Z"),
            ],
            &[
                ("tenant_id", "t"),
                ("severity", "warning,critical"),
                ("from", "2026-11-01T00:00:00Z"),
            ],
            &[("tenant_id", "t"), ("action", "guest.rsvp.updated")],
            &[("tenant_id", "t"), ("action", "guest.*")],
            &[("tenant_id", "t"), ("user_id", "u")],
            &[
                ("tenant_id", "t"),
                ("resource_type", "guest"),
                ("resource_id", "7"),
            ],
            &[
                ("tenant_id", "t"),
                ("order", "asc"),
                (
                    "cursor",
                    &PageCursor {
                        occurred_at: 5,
                        seq: 9,
                    }
                    .encode(Order::Asc),
                ),
            ],
            &[("from", "2026-11-01T00:00:00Z")],
            &[],
        ];
        for params in cases {
            let request = PageRequest::from_params(params.iter().copied()).unwrap();
            let (sql, values) = page_sql(&request);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            // (id, parent, detail)
            let plan: Vec<(i64, i64, String)> = stmt
                .query_map(params_from_iter(values), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(3)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let text: Vec<&str> = plan.iter().map(|(_, _, d)| d.as_str()).collect();
            let index_parents: Vec<i64> = plan
                .iter()
                .filter(|(_, _, d)| d.contains("ix.ev "))
                .map(|(_, p, _)| *p)
                .collect();
            assert!(
                !index_parents.is_empty(),
                "{params:?} does not read the index: {text:?}"
            );
            for (_, parent, detail) in &plan {
                assert!(
                    !detail.starts_with("SCAN ix.ev") || detail.contains("USING"),
                    "{params:?} scans the whole index table: {text:?}"
                );
                assert!(
                    !detail.starts_with("SCAN main.events"),
                    "{params:?} scans the log: {text:?}"
                );
                if detail.contains("TEMP B-TREE") {
                    assert!(
                        !index_parents.contains(parent),
                        "{params:?} sorts what it read from the index: {text:?}"
                    );
                }
            }
        }
    }
}
