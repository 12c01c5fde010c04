//! The sequencer's side of the PostgreSQL store: one connection, one transaction per group
//! commit, leaves written with binary COPY.

use std::collections::{HashMap, HashSet};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, SimpleQueryMessage};
use sealtrail_core::merkle::Hash;
use uuid::Uuid;

use super::hash_column;
use super::schema::PARTITIONS_DROPPED_KEY;
use crate::StoreError;
use crate::traits::{CheckpointRow, ExistingEvent, LogBackend, LogState, NewLeaf, Syncer};

/// The advisory lock that lets one server at a time write the log (an arbitrary constant).
pub const WRITER_LOCK: i64 = 0x5ea1_7a11_0002;
/// The channel each commit notifies, so every server hears of new events.
pub const COMMIT_CHANNEL: &str = "sealtrail_log";

/// One UTC day in microseconds.
const DAY_MICROS: i64 = 86_400_000_000;

/// The write connection, owned by the sequencer thread.
pub struct PgBackend {
    client: Client,
    /// For reconnecting after PostgreSQL restarts or the network drops.
    url: String,
    /// Whether a group's transaction is open (`BEGIN` sent, no `COMMIT`/`ROLLBACK` yet).
    in_transaction: bool,
    /// Months (days since 1970 of their first day) whose partition is known to exist.
    partitions: HashSet<i64>,
    /// When the partitions ahead of the current month were last ensured.
    ahead_checked: std::time::Instant,
    /// How many partitions retention had dropped when `partitions` was last trusted.
    partitions_dropped: Option<String>,
}

/// How often a running sequencer makes sure the coming months have partitions.
const AHEAD_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

impl PgBackend {
    pub(crate) fn new(mut client: Client, url: &str) -> Result<Self, StoreError> {
        prepare_session(&mut client)?;
        Ok(Self {
            client,
            url: url.to_owned(),
            in_transaction: false,
            partitions: HashSet::new(),
            ahead_checked: std::time::Instant::now(),
            partitions_dropped: None,
        })
    }

    /// Replaces a connection PostgreSQL has closed (restart, failover, network).
    fn reconnect_if_closed(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            let mut client = super::connect(&self.url)?;
            prepare_session(&mut client)?;
            self.client = client;
            self.in_transaction = false;
            tracing::info!("reconnected to PostgreSQL");
        }
        Ok(())
    }

    /// The open group transaction's statements run on the connection itself: `BEGIN` was
    /// sent by [`LogBackend::begin`]. (A `postgres::Transaction` cannot outlive a call.)
    fn conn(&mut self) -> &mut Client {
        debug_assert!(self.in_transaction, "writes happen inside begin/commit");
        &mut self.client
    }

    /// Makes sure every month the leaves fall in has its partition.
    fn ensure_partitions(&mut self, leaves: &[NewLeaf<'_>]) -> Result<(), StoreError> {
        let mut missing: Vec<(i64, i64)> = Vec::new();
        for leaf in leaves {
            let month = month_start_day(leaf.event.occurred_at);
            if !self.partitions.contains(&month) && !missing.iter().any(|(m, _)| *m == month) {
                missing.push((month, leaf.event.occurred_at));
            }
        }
        for (month, at) in missing {
            self.conn()
                .execute("SELECT sealtrail_ensure_partition($1)", &[&at])?;
            self.partitions.insert(month);
        }
        Ok(())
    }
}

/// Session settings of the sequencer's connection, and this month's partitions ahead.
fn prepare_session(client: &mut Client) -> Result<(), StoreError> {
    // "Ack means durable": a COMMIT returns only after the WAL is flushed, whatever the
    // server's default is.
    client.batch_execute("SET synchronous_commit = on")?;
    super::create_partitions_ahead(client)
}

/// The first day (days since 1970-01-01) of the UTC month holding `micros`.
fn month_start_day(micros: i64) -> i64 {
    let days = micros.div_euclid(DAY_MICROS);
    let (year, month, _) = civil_from_days(days);
    days_from_civil(year, month, 1)
}

// Howard Hinnant's proleptic Gregorian calendar algorithms (public domain).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Column types of the `events` COPY, in [`EVENT_COLUMNS`] order.
const EVENT_TYPES: [Type; 13] = [
    Type::INT8,
    Type::UUID,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
];
const EVENT_COLUMNS: &str = "seq, id, tenant_id, occurred_at, received_at, severity, action, \
                             user_id, resource_type, resource_id, content_hash, leaf_hash, record";

/// Writes leaves' rows with binary COPY: the only place that knows the PostgreSQL row
/// format. Public so the benchmark and the tamper tests write exactly what the sequencer
/// writes.
pub fn copy_event_rows(
    client: &mut impl postgres::GenericClient,
    leaves: &[NewLeaf<'_>],
) -> Result<(), StoreError> {
    let sink = client.copy_in(&format!(
        "COPY events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)"
    ))?;
    let mut writer = BinaryCopyInWriter::new(sink, &EVENT_TYPES);
    for leaf in leaves {
        let e = leaf.event;
        let content_hash = e.content_hash.as_ref().map(|h| h.as_slice());
        writer.write(&[
            &(leaf.seq as i64),
            &e.id,
            &e.tenant_id,
            &e.occurred_at,
            &e.received_at,
            &(e.severity.code() as i16),
            &e.action,
            &e.user_id,
            &e.resource_type,
            &e.resource_id,
            &content_hash,
            &leaf.leaf_hash.as_slice(),
            &leaf.record,
        ])?;
    }
    writer.finish()?;
    let sink = client.copy_in(
        "COPY event_ids (id, seq, occurred_at, tenant_id, leaf_hash, content_hash) FROM STDIN (FORMAT binary)",
    )?;
    let mut writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::BYTEA,
            Type::BYTEA,
        ],
    );
    for leaf in leaves {
        let e = leaf.event;
        let content_hash = e.content_hash.as_ref().map(|h| h.as_slice());
        writer.write(&[
            &e.id,
            &(leaf.seq as i64),
            &e.occurred_at,
            &e.tenant_id,
            &leaf.leaf_hash.as_slice(),
            &content_hash,
        ])?;
    }
    writer.finish()?;
    Ok(())
}

fn checkpoint_row(row: &postgres::Row) -> Result<CheckpointRow, StoreError> {
    Ok(CheckpointRow {
        tree_size: row.get::<_, i64>(0) as u64,
        root: hash_column(row.get(1))?,
        note: row.get(2),
        created_at: row.get(3),
    })
}

/// The newest stored checkpoint.
pub(crate) fn latest_checkpoint(
    client: &mut impl postgres::GenericClient,
) -> Result<Option<CheckpointRow>, StoreError> {
    client
        .query_opt(
            "SELECT tree_size, root_hash, note, created_at FROM checkpoints
             ORDER BY tree_size DESC LIMIT 1",
            &[],
        )?
        .as_ref()
        .map(checkpoint_row)
        .transpose()
}

impl LogBackend for PgBackend {
    fn state(&mut self) -> Result<LogState, StoreError> {
        // Inside a group's transaction a lost connection must fail the group, never be
        // replaced silently (the rest of the group would run outside the transaction).
        if !self.in_transaction {
            self.reconnect_if_closed()?;
            // Outside the writers' lock another server may commit between the two reads:
            // read them from one snapshot, or a sequencer opening beside a busy server
            // (a backup recording itself, a second server starting) sees a size and a
            // checkpoint of two different trees.
            let mut tx = self
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let size: i64 = tx
                .query_one("SELECT COALESCE(MAX(seq), 0) FROM event_ids", &[])?
                .get(0);
            let latest_checkpoint = latest_checkpoint(&mut tx)?;
            tx.commit()?;
            return Ok(LogState {
                size: size as u64,
                latest_checkpoint,
            });
        }
        let size: i64 = self
            .client
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM event_ids", &[])?
            .get(0);
        Ok(LogState {
            size: size as u64,
            latest_checkpoint: latest_checkpoint(&mut self.client)?,
        })
    }

    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        super::subtree_hash(&mut self.client, level, index)
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        self.reconnect_if_closed()?;
        // A server running for months still finds next month's partition waiting.
        if self.ahead_checked.elapsed() >= AHEAD_CHECK_INTERVAL {
            super::create_partitions_ahead(&mut self.client)?;
            self.ahead_checked = std::time::Instant::now();
        }
        // Several servers may share the database: one writes at a time, for as long as
        // its transaction lasts (a server that dies releases the lock with its connection).
        // Read under that lock: whether a retention run dropped partitions since the last
        // group, which makes the months remembered as having one a guess.
        let replies = self.client.simple_query(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK});
             SELECT value FROM sealtrail_meta WHERE key = '{PARTITIONS_DROPPED_KEY}'"
        ))?;
        self.in_transaction = true;
        let dropped = replies.iter().find_map(|reply| match reply {
            SimpleQueryMessage::Row(row) if row.columns()[0].name() == "value" => {
                row.get(0).map(str::to_owned)
            }
            _ => None,
        });
        if dropped != self.partitions_dropped {
            self.partitions.clear();
            self.partitions_dropped = dropped;
        }
        Ok(())
    }

    fn find_existing(&mut self, ids: &[Uuid]) -> Result<HashMap<Uuid, ExistingEvent>, StoreError> {
        let rows = self.conn().query(
            "SELECT id, seq, leaf_hash, content_hash FROM event_ids WHERE id = ANY($1)",
            &[&ids],
        )?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let content_hash: Option<&[u8]> = row.get(3);
            found.insert(
                row.get::<_, Uuid>(0),
                ExistingEvent {
                    seq: row.get::<_, i64>(1) as u64,
                    leaf_hash: hash_column(row.get(2))?,
                    content_hash: content_hash.map(hash_column).transpose()?,
                },
            );
        }
        Ok(found)
    }

    fn insert_leaves(&mut self, leaves: &[NewLeaf<'_>]) -> Result<(), StoreError> {
        self.ensure_partitions(leaves)?;
        copy_event_rows(self.conn(), leaves)
    }

    fn insert_nodes(&mut self, nodes: &[(u32, u64, Hash)]) -> Result<(), StoreError> {
        if nodes.is_empty() {
            return Ok(());
        }
        let levels: Vec<i32> = nodes.iter().map(|(l, _, _)| *l as i32).collect();
        let indexes: Vec<i64> = nodes.iter().map(|(_, i, _)| *i as i64).collect();
        let hashes: Vec<&[u8]> = nodes.iter().map(|(_, _, h)| h.as_slice()).collect();
        self.conn().execute(
            "INSERT INTO merkle_nodes (level, idx, hash)
             SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[])",
            &[&levels, &indexes, &hashes],
        )?;
        Ok(())
    }

    fn insert_checkpoint(
        &mut self,
        checkpoint: &CheckpointRow,
        history: bool,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO checkpoints (tree_size, root_hash, note, created_at, history)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &(checkpoint.tree_size as i64),
                &checkpoint.root.as_slice(),
                &checkpoint.note,
                &checkpoint.created_at,
                &history,
            ],
        )?;
        Ok(())
    }

    fn insert_key_rotation(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO sealtrail_meta (key, value) VALUES ($1, $2)",
            &[&crate::identity::rotation_meta_key(size), &note],
        )?;
        Ok(())
    }

    fn key_rotations(&mut self) -> Result<Vec<String>, StoreError> {
        if !self.in_transaction {
            self.reconnect_if_closed()?;
        }
        super::key_rotations(&mut self.client)
    }

    fn supersede_checkpoint(&mut self, tree_size: u64) -> Result<(), StoreError> {
        // Not a DELETE: the service role holds none on checkpoints (migration 5).
        self.conn().execute(
            "SELECT sealtrail_supersede_checkpoint($1)",
            &[&(tree_size as i64)],
        )?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.in_transaction = false;
        // Wakes every server's log follower (delivered only if the commit succeeds).
        self.client
            .batch_execute(&format!("NOTIFY {COMMIT_CHANNEL}; COMMIT"))?;
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

    fn syncer(&self) -> Result<Box<dyn Syncer>, StoreError> {
        Ok(Box::new(CommittedIsDurable))
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        if self.in_transaction {
            self.in_transaction = false;
            if !self.client.is_closed() {
                self.client.batch_execute("ROLLBACK")?;
            }
        }
        Ok(())
    }
}

/// With `synchronous_commit = on`, PostgreSQL has flushed a transaction's WAL before its
/// `COMMIT` returns: by the time the sequencer asks, every commit is already durable.
struct CommittedIsDurable;

impl Syncer for CommittedIsDurable {
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_starts_match_the_calendar() {
        // 2024-02-29T12:00:00Z → 2024-02-01.
        assert_eq!(
            month_start_day(1_709_208_000_000_000),
            days_from_civil(2024, 2, 1)
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(month_start_day(-1), days_from_civil(1969, 12, 1));
        for days in -800_000..800_000i64 {
            if days % 997 == 0 {
                let (y, m, d) = civil_from_days(days);
                assert_eq!(days_from_civil(y, m, d), days);
            }
        }
    }
}
