//! The embedded store's two schemas: the log (versioned migrations, `PRAGMA user_version`)
//! and the index database (derived, rebuilt when its version changes).

use rusqlite::Connection;

use crate::StoreError;

/// Migrations of the log database, in order; `user_version` is the number applied. Never
/// edit a shipped entry: append a new one.
const LOG_MIGRATIONS: &[&str] = &[
    // 1: the log.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- One row per leaf, appended in seq order. `record` holds the canonical bytes exactly
    -- as hashed; the other columns are copies the indexer and tail scans filter on, and
    -- `verify` checks them against the record. `record` comes last so reading the columns
    -- never touches its overflow pages. The only index is the unique id, which idempotent
    -- retries need before an append is acknowledged; the query indexes live in the index
    -- database, maintained off the ingest path (see indexer.rs).
    CREATE TABLE events (
        seq           INTEGER PRIMARY KEY,
        id            BLOB    NOT NULL UNIQUE,
        tenant_id     TEXT    NOT NULL,
        occurred_at   INTEGER NOT NULL,
        received_at   INTEGER NOT NULL,
        severity      INTEGER NOT NULL,
        action        TEXT    NOT NULL,
        user_id       TEXT,
        resource_type TEXT    NOT NULL,
        resource_id   TEXT,
        content_hash  BLOB,
        leaf_hash     BLOB    NOT NULL,
        record        BLOB    NOT NULL
    );

    -- Complete Merkle subtrees at levels 8, 16, 24, ... (see NODE_LEVEL_STRIDE).
    CREATE TABLE merkle_nodes (
        level INTEGER NOT NULL,
        idx   INTEGER NOT NULL,
        hash  BLOB    NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;

    -- Signed checkpoints: the newest, plus one per history interval.
    CREATE TABLE checkpoints (
        tree_size  INTEGER PRIMARY KEY,
        root_hash  BLOB    NOT NULL,
        note       TEXT    NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 2: the retention ledger.
    r#"
    -- What retention runs did to an event, one row per event they touched: the archive
    -- segment that holds its record (the stem of its file names), when its body left the
    -- hot store (then `events.record` is empty and only the leaf hash stays), and when it
    -- passed its retention and was deleted everywhere. `verify` accepts an empty record
    -- only with a row here.
    CREATE TABLE retention (
        seq             INTEGER PRIMARY KEY,
        segment         TEXT,
        body_removed_at INTEGER,
        deleted_at      INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX retention_by_segment ON retention (segment) WHERE segment IS NOT NULL;
    "#,
];

/// The index database: derived entirely from the log, so a change here bumps
/// [`INDEX_VERSION`] and the indexer rebuilds it instead of migrating.
const INDEX_SCHEMA: &str = r#"
    -- The cursor, and the leaf hash of the last indexed event: proof at every start that
    -- the index belongs to this log as it is now.
    CREATE TABLE ix_meta (
        key   TEXT PRIMARY KEY,
        value NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO ix_meta (key, value) VALUES ('indexed_through', 0), ('indexed_leaf', x'');

    CREATE TABLE ev (
        seq           INTEGER PRIMARY KEY,
        tenant_id     TEXT    NOT NULL,
        occurred_at   INTEGER NOT NULL,
        severity      INTEGER NOT NULL,
        action        TEXT    NOT NULL,
        user_id       TEXT,
        resource_type TEXT    NOT NULL,
        resource_id   TEXT
    );
    -- The query API's filters, each ending in time so a filtered page is one index range
    -- read in order (seq, the rowid, is the implicit last column: the tie-breaker).
    CREATE INDEX ev_by_tenant_time     ON ev (tenant_id, occurred_at);
    CREATE INDEX ev_by_tenant_severity ON ev (tenant_id, severity, occurred_at);
    CREATE INDEX ev_by_tenant_action   ON ev (tenant_id, action, occurred_at);
    CREATE INDEX ev_by_tenant_user     ON ev (tenant_id, user_id, occurred_at)
        WHERE user_id IS NOT NULL;
    CREATE INDEX ev_by_tenant_resource ON ev (tenant_id, resource_type, resource_id, occurred_at);
    -- Queries across tenants (keys not bound to one).
    CREATE INDEX ev_by_time            ON ev (occurred_at);

    -- Event counts per tenant, UTC hour and the dimensions stats group by: stats over
    -- millions of events read thousands of rows here instead of counting index entries.
    CREATE TABLE rollup (
        tenant_id     TEXT    NOT NULL,
        hour          INTEGER NOT NULL,
        severity      INTEGER NOT NULL,
        action        TEXT    NOT NULL,
        resource_type TEXT    NOT NULL,
        n             INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, hour, severity, action, resource_type)
    ) WITHOUT ROWID;
"#;

/// Version of [`INDEX_SCHEMA`]; an index database of another version is rebuilt.
pub const INDEX_VERSION: i64 = 3;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = LOG_MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], refusing one written by a newer build.
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the log was written by a newer Sealtrail (schema {current}; this build knows up to {SCHEMA_VERSION})"
        )));
    }
    for (index, sql) in LOG_MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "migrated the log schema");
    }
    Ok(())
}

/// Checks without changing anything that the database has this build's schema.
pub(crate) fn check(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current != SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the log has schema version {current}; this build expects {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

/// Makes `conn` (the index database) hold an index of [`INDEX_VERSION`], emptying and
/// recreating it if it holds another version. Returns true if it was (re)created.
pub(crate) fn prepare_index(conn: &Connection) -> Result<bool, StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current == INDEX_VERSION {
        return Ok(false);
    }
    reset_index(conn)?;
    Ok(true)
}

/// Empties the index database and creates [`INDEX_SCHEMA`] afresh (cursor at 0).
pub(crate) fn reset_index(conn: &Connection) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    let tables: Vec<String> = tx
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables {
        tx.execute_batch(&format!("DROP TABLE \"{table}\""))?;
    }
    tx.execute_batch(INDEX_SCHEMA)?;
    tx.pragma_update(None, "user_version", INDEX_VERSION)?;
    tx.commit()?;
    tracing::info!(
        version = INDEX_VERSION,
        "created the query index; it fills from the log"
    );
    Ok(())
}
