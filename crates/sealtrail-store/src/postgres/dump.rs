//! Backup and restore of the PostgreSQL log as table copies: an online, consistent dump
//! (one `REPEATABLE READ READ ONLY` transaction, a binary `COPY ... TO STDOUT` of every
//! table of our schema, bounded to the newest checkpoint in that snapshot) and its restore
//! into an empty database (migrations, `COPY ... FROM STDIN`, the whole-log verification —
//! all in one transaction, committed only if the log verifies).
//!
//! The tables are enumerated from the catalog, not from a list here, so a table a later
//! migration adds is backed up without anyone remembering to add it. Only the log's own
//! tables are cut at the snapshot's checkpoint (their rows past it, if any, are of no
//! signed tree); every other table is copied whole.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use postgres::{GenericClient, IsolationLevel, Transaction};
use sealtrail_core::CheckpointVerifier;

use super::schema::{self, SCHEMA_VERSION};
use crate::StoreError;
use crate::verify::VerifyReport;

/// What a dump holds, for the backup's manifest (and what a restore checks against).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgDump {
    /// The schema version of the dumped database (`sealtrail_schema`).
    pub schema_version: i64,
    /// The log's origin (`sealtrail_meta`).
    pub origin: String,
    /// The tree size of the newest checkpoint in the snapshot: the events are 1..=this.
    pub tree_size: u64,
    /// That checkpoint's signed note.
    pub checkpoint: String,
    /// Every table copied, in copy order.
    pub tables: Vec<TableCopy>,
    /// One `occurred_at` in each month partition holding events, so a restore creates the
    /// partitions before it copies the events in.
    pub partitions: Vec<i64>,
}

/// One table's copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCopy {
    /// The table's name.
    pub name: String,
    /// The columns copied, in order (generated columns are left out: PostgreSQL computes
    /// them again on restore).
    pub columns: Vec<String>,
    /// Rows copied.
    pub rows: u64,
}

/// The name of a table's copy (binary COPY format) in a backup.
pub fn copy_file_name(table: &str) -> String {
    format!("pg-{table}.copy")
}

/// Whether `name` is a table name a dump writes and a restore accepts: lower-case letters,
/// digits and underscores, as every table of our migrations is named (so it needs no
/// quoting, and a file name made of it stays a plain name).
pub fn is_plain_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Tables the dump leaves out: the migration record is written again by the restore's own
/// migrations (the dump's schema version is recorded instead); the request counts of the
/// last seconds mean nothing in a restore; the blind index is derived from the log (and
/// from data keys a restore may no longer hold), so it is built again from seq 0; the
/// sources' progress may be ahead of the dump's checkpoint, so it is counted again from
/// the restored log.
const NOT_COPIED: &[&str] = &[
    "sealtrail_schema",
    "key_request_windows",
    "blind_cursor",
    "blind_tokens",
    "source_cursor",
    "source_positions",
];

/// The rows of a log table that belong to the tree of size `n` (`None`: copy every row).
fn bound(table: &str, n: u64) -> Option<String> {
    match table {
        "events" | "event_ids" => Some(format!("seq <= {n}")),
        // Node (level, idx) covers leaves idx·2^level .. (idx+1)·2^level - 1.
        "merkle_nodes" => Some(format!(
            "(idx + 1)::numeric * power(2::numeric, level) <= {n}"
        )),
        "checkpoints" => Some(format!("tree_size <= {n}")),
        _ => None,
    }
}

/// Dumps the log at `url` into `dir` (one [`copy_file_name`] file per table, fsync'd),
/// while writers go on. `progress(table, bytes)` reports each table's bytes as written.
pub fn dump_postgres(
    url: &str,
    dir: &Path,
    mut progress: impl FnMut(&str, u64),
) -> Result<PgDump, StoreError> {
    let mut client = super::connect(url)?;
    schema::check(&mut client)?;
    // One snapshot for every table: what one commit left, whatever commits meanwhile.
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    // As pg_dump does: a role that row-level security would confine gets an error, not a
    // silently partial copy.
    tx.batch_execute("SET LOCAL row_security = off")?;
    let schema_version: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM sealtrail_schema",
            &[],
        )?
        .get(0);
    let origin: String = tx
        .query_opt("SELECT value FROM sealtrail_meta WHERE key = 'origin'", &[])?
        .map(|r| r.get(0))
        .ok_or_else(|| {
            StoreError::Invalid(
                "the log has no origin yet (start the server on the database once)".into(),
            )
        })?;
    let (tree_size, checkpoint) = tx
        .query_opt(
            "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1",
            &[],
        )?
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)))
        .ok_or_else(|| {
            StoreError::Invalid(
                "the log has no signed checkpoint yet (start the server on the database once)"
                    .into(),
            )
        })?;
    let partitions: Vec<i64> = tx
        .query(
            "SELECT min(occurred_at) FROM events WHERE seq <= $1 GROUP BY tableoid ORDER BY 1",
            &[&(tree_size as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut tables = Vec::new();
    for (name, columns) in our_tables(&mut tx)? {
        if NOT_COPIED.contains(&name.as_str()) {
            continue;
        }
        let select = format!(
            "SELECT {} FROM {name}{}",
            column_list(&columns),
            bound(&name, tree_size)
                .map(|b| format!(" WHERE {b}"))
                .unwrap_or_default()
        );
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM ({select}) AS t"), &[])?
            .get(0);
        let path = dir.join(copy_file_name(&name));
        let file = File::create(&path)
            .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        let mut out = Reporting {
            inner: BufWriter::with_capacity(1 << 16, file),
            written: 0,
            table: &name,
            progress: &mut progress,
        };
        let mut reader = tx.copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))?;
        io::copy(&mut reader, &mut out).map_err(|e| {
            StoreError::io(format!("copying table {name} to {}", path.display()), e)
        })?;
        drop(reader);
        let file = out
            .inner
            .into_inner()
            .map_err(|e| StoreError::io(format!("writing {}", path.display()), e.into_error()))?;
        file.sync_all()
            .map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
        // The id table, not `events`: it keeps every seq, also those whose month
        // partition retention dropped.
        if name == "event_ids" && rows as u64 != tree_size {
            return Err(StoreError::Integrity(format!(
                "the snapshot holds {rows} event ids for a checkpoint of tree size {tree_size}; \
                 run `sealtrail verify` on the database"
            )));
        }
        tables.push(TableCopy {
            name,
            columns,
            rows: rows as u64,
        });
    }
    tx.commit()?;
    Ok(PgDump {
        schema_version,
        origin,
        tree_size,
        checkpoint,
        tables,
        partitions,
    })
}

/// Every table of the current schema that is not a partition (a partitioned table is
/// copied through its parent), with its stored (not generated) columns, by name.
fn our_tables(client: &mut impl GenericClient) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let rows = client.query(
        "SELECT c.relname::text,
                array_agg(a.attname::text ORDER BY a.attnum)
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE n.nspname = current_schema()
           AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
         GROUP BY c.relname
         ORDER BY c.relname",
        &[],
    )?;
    let tables: Vec<(String, Vec<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (name, columns) in &tables {
        if !is_plain_table_name(name) || !columns.iter().all(|c| is_plain_table_name(c)) {
            return Err(StoreError::Invalid(format!(
                "table {name:?} (or one of its columns) is not named in lower-case letters, \
                 digits and underscores; a backup copies only the log's own tables"
            )));
        }
    }
    Ok(tables)
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts bytes written and reports them per table.
struct Reporting<'a, W, F> {
    inner: W,
    written: u64,
    table: &'a str,
    progress: &'a mut F,
}

impl<W: Write, F: FnMut(&str, u64)> Write for Reporting<'_, W, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        (self.progress)(self.table, self.written);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The relations already in the current schema of the database, for the refusal of a
/// restore into a database that is not empty.
fn existing_relations(client: &mut impl GenericClient) -> Result<Vec<String>, StoreError> {
    Ok(client
        .query(
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Where a restore is.
pub enum RestoreStep<'a> {
    /// Copying a table in: its name, rows so far is unknown, bytes read so far and total.
    Copy {
        table: &'a str,
        bytes: u64,
        total: u64,
    },
    /// Verifying the restored log: events done of total.
    Verify { done: u64, total: u64 },
}

/// Restores `dump` (its copies in `dir`) into the EMPTY database at `url`, in one
/// transaction: the schema by the store's own migrations (up to the dump's version, then
/// the rest after the copy, so a later migration meets the rows it expects), month
/// partitions, every table with `COPY FROM`, sequences past their rows, then the whole
/// log verified with `verifier` against `checkpoint`. The transaction commits only if the
/// log verifies and has exactly the dump's tree size; otherwise nothing is left in the
/// database and the report (with its problem) is returned.
pub fn restore_postgres(
    url: &str,
    dump: &PgDump,
    dir: &Path,
    verifier: &CheckpointVerifier,
    mut progress: impl FnMut(RestoreStep<'_>),
) -> Result<VerifyReport, StoreError> {
    if dump.schema_version > SCHEMA_VERSION || dump.schema_version < 1 {
        return Err(StoreError::Schema(format!(
            "the backup is of schema version {}; this build restores versions 1 to {SCHEMA_VERSION}",
            dump.schema_version
        )));
    }
    let mut client = super::connect(url)?;
    let existing = existing_relations(&mut client)?;
    if !existing.is_empty() {
        let shown = existing
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        return Err(StoreError::Invalid(format!(
            "the database at {} is not empty (it holds {} relations: {shown}{}); a restore \
             goes into a new, empty database (CREATE DATABASE ...) and never over a log",
            super::redact(url),
            existing.len(),
            if existing.len() > 5 { ", ..." } else { "" }
        )));
    }
    let mut tx = client.transaction()?;
    // Serialises with `sealtrail migrate` and any server starting on this database.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&schema::MIGRATION_LOCK],
    )?;
    schema::apply(&mut tx, dump.schema_version)?;
    for at in &dump.partitions {
        tx.execute("SELECT sealtrail_ensure_partition($1)", &[at])?;
    }
    for table in &dump.tables {
        copy_in(&mut tx, table, dir, &mut progress)?;
    }
    advance_sequences(&mut tx, &dump.tables)?;
    schema::apply(&mut tx, SCHEMA_VERSION)?;
    let report =
        super::verify::verify_in(&mut tx, verifier, Some(&dump.checkpoint), |done, total| {
            progress(RestoreStep::Verify { done, total })
        })?;
    if report.problem.is_none() && report.tree_size == dump.tree_size {
        tx.commit()?;
    } else {
        tx.rollback()?;
    }
    Ok(report)
}

/// Copies one table's file into it, checking the row count against the dump's.
fn copy_in(
    tx: &mut Transaction<'_>,
    table: &TableCopy,
    dir: &Path,
    progress: &mut impl FnMut(RestoreStep<'_>),
) -> Result<(), StoreError> {
    if !is_plain_table_name(&table.name) || !table.columns.iter().all(|c| is_plain_table_name(c)) {
        return Err(StoreError::Invalid(format!(
            "the backup names table {:?} or a column of it that is not a plain name",
            table.name
        )));
    }
    let path = dir.join(copy_file_name(&table.name));
    let file =
        File::open(&path).map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut writer = tx
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            table.name,
            column_list(&table.columns)
        ))
        .map_err(|e| copy_refused(table, e))?;
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = io::Read::read(&mut reader, &mut buffer)
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        writer
            .write_all(&buffer[..n])
            .map_err(|e| StoreError::io(format!("copying into table {}", table.name), e))?;
        bytes += n as u64;
        progress(RestoreStep::Copy {
            table: &table.name,
            bytes,
            total,
        });
    }
    let rows = writer.finish().map_err(|e| copy_refused(table, e))?;
    if rows != table.rows {
        return Err(StoreError::Integrity(format!(
            "table {}: {rows} rows copied in, the backup's manifest says {}",
            table.name, table.rows
        )));
    }
    Ok(())
}

fn copy_refused(table: &TableCopy, e: postgres::Error) -> StoreError {
    StoreError::Integrity(format!(
        "PostgreSQL refused the backup's rows of table {}: {e}{}",
        table.name,
        e.as_db_error()
            .map(|d| format!(" ({})", d.message()))
            .unwrap_or_default()
    ))
}

/// Moves every sequence a copied table's column draws from past the rows copied in (COPY
/// writes the values, it does not draw them), so the next insert gets a fresh one.
fn advance_sequences(tx: &mut Transaction<'_>, tables: &[TableCopy]) -> Result<(), StoreError> {
    for table in tables {
        for column in &table.columns {
            let sequence: Option<String> = tx
                .query_one(
                    "SELECT pg_get_serial_sequence($1, $2)",
                    &[&table.name, column],
                )?
                .get(0);
            if let Some(sequence) = sequence {
                tx.execute(
                    &format!(
                        "SELECT setval($1::text::regclass, COALESCE((SELECT max(\"{column}\") FROM {}), 0) + 1, false)",
                        table.name
                    ),
                    &[&sequence],
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_copied() {
        for good in ["events", "merkle_nodes", "retention_runs2"] {
            assert!(is_plain_table_name(good), "{good}");
        }
        for bad in ["", "Events", "a-b", "../x", "2x", "a b", "a\"b"] {
            assert!(!is_plain_table_name(bad), "{bad}");
        }
        assert_eq!(copy_file_name("events"), "pg-events.copy");
    }

    #[test]
    fn the_log_tables_are_cut_at_the_checkpoint_and_others_copied_whole() {
        assert_eq!(bound("events", 7).unwrap(), "seq <= 7");
        assert_eq!(bound("checkpoints", 7).unwrap(), "tree_size <= 7");
        assert!(bound("merkle_nodes", 7).unwrap().ends_with("<= 7"));
        assert_eq!(bound("sealtrail_meta", 7), None);
        assert_eq!(bound("retention_runs", 7), None);
    }
}
