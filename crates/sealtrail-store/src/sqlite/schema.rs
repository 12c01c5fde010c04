//! The embedded store's schema and its versioned migrations (`PRAGMA user_version`).

use rusqlite::Connection;

use crate::StoreError;

/// Migrations in order; `user_version` is the number applied. Never edit a shipped entry:
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the log.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- One row per leaf. `record` holds the canonical bytes exactly as hashed; the other
    -- columns are copies for indexing, and `verify` checks them against the record.
    -- `record` comes last so reading the indexed columns never touches its overflow pages.
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
    -- The query API's filters, each ending in time so a filtered page is one index range
    -- read in order (seq, the rowid, is the implicit last column: the tie-breaker).
    CREATE INDEX events_by_tenant_time     ON events (tenant_id, occurred_at);
    CREATE INDEX events_by_tenant_severity ON events (tenant_id, severity, occurred_at);
    CREATE INDEX events_by_tenant_action   ON events (tenant_id, action, occurred_at);
    CREATE INDEX events_by_tenant_user     ON events (tenant_id, user_id, occurred_at)
        WHERE user_id IS NOT NULL;
    CREATE INDEX events_by_tenant_resource ON events (tenant_id, resource_type, resource_id, occurred_at);
    -- Queries across tenants (keys not bound to one).
    CREATE INDEX events_by_time            ON events (occurred_at);

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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`], refusing one written by a newer build.
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the log was written by a newer Sealtrail (schema {current}; this build knows up to {SCHEMA_VERSION})"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
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
