//! The PostgreSQL store's retention ledger: the `retention` table, and the steps that
//! remove bodies (`record` set to NULL, which `details` follows; a trigger refuses any
//! other change to an event).

use std::sync::Mutex;

use postgres::Client;
use sealtrail_core::Severity;

use super::connect;
use crate::StoreError;
use crate::retention::{LedgerRow, RetentionLedger, SegmentUse};

/// Seqs changed per transaction.
const SEQS_PER_TRANSACTION: usize = 1_000;

/// The retention ledger of a PostgreSQL log, on a connection of its own (opened again if
/// PostgreSQL closed it: a restart, a failover).
pub struct PgLedger {
    url: String,
    client: Mutex<Option<Client>>,
}

/// The ledger's connection, open.
struct Connected<'a>(std::sync::MutexGuard<'a, Option<Client>>);

impl std::ops::Deref for Connected<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.0.as_ref().expect("connected")
    }
}

impl std::ops::DerefMut for Connected<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("connected")
    }
}

impl PgLedger {
    /// Connects to the log at `url` (migrated to this build's schema).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut client = connect(url)?;
        super::check_schema(&mut client)?;
        Ok(Self {
            url: url.to_owned(),
            client: Mutex::new(Some(client)),
        })
    }

    fn client(&self) -> Result<Connected<'_>, StoreError> {
        let mut guard = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url)?);
        }
        Ok(Connected(guard))
    }
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        // Closing a blocking client runs a small runtime of its own, which panics on an
        // async worker: close it on a thread (as the reader does).
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(client) = client {
            let _ = std::thread::Builder::new()
                .name("sealtrail-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

fn seqs_param(seqs: &[u64]) -> Vec<i64> {
    seqs.iter().map(|&s| s as i64).collect()
}

impl RetentionLedger for PgLedger {
    fn rows(&self, after: u64, through: u64, limit: usize) -> Result<Vec<LedgerRow>, StoreError> {
        let rows = self.client()?.query(
            // From the id table: it keeps the leaf hashes (and tenants) of events whose
            // month partition was dropped, which a segment's range may span.
            "SELECT i.seq, i.leaf_hash, i.tenant_id, COALESCE(e.action, ''),
                    COALESCE(e.resource_type, ''), e.resource_id, COALESCE(e.severity, 0::smallint),
                    i.occurred_at, r.segment, e.record IS NOT NULL,
                    r.deleted_at IS NOT NULL OR e.seq IS NULL
             FROM event_ids AS i
                  LEFT JOIN events AS e ON e.occurred_at = i.occurred_at AND e.seq = i.seq
                  LEFT JOIN retention AS r ON r.seq = i.seq
             WHERE i.seq > $1 AND i.seq <= $2 ORDER BY i.seq LIMIT $3",
            &[&(after as i64), &(through as i64), &(limit as i64)],
        )?;
        rows.iter()
            .map(|r| {
                let seq = r.get::<_, i64>(0) as u64;
                let code = i64::from(r.get::<_, i16>(6));
                let severity = Severity::from_code(code).ok_or_else(|| {
                    StoreError::Integrity(format!(
                        "event {seq} has severity code {code}; run `sealtrail verify`"
                    ))
                })?;
                Ok(LedgerRow {
                    seq,
                    leaf_hash: super::hash_column(r.get(1))?,
                    tenant_id: r.get(2),
                    action: r.get(3),
                    resource_type: r.get(4),
                    resource_id: r.get(5),
                    severity,
                    occurred_at: r.get(7),
                    segment: r.get(8),
                    has_body: r.get::<_, Option<bool>>(9).unwrap_or(false),
                    deleted: r.get::<_, Option<bool>>(10).unwrap_or(false),
                })
            })
            .collect()
    }

    fn records(&self, seqs: &[u64]) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(SEQS_PER_TRANSACTION) {
            for r in tx.query(
                "SELECT seq, record FROM events
                 WHERE seq = ANY($1) AND record IS NOT NULL ORDER BY seq",
                &[&seqs_param(chunk)],
            )? {
                out.push((r.get::<_, i64>(0) as u64, r.get(1)));
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn mark_archived(&self, stem: &str, seqs: &[u64]) -> Result<(), StoreError> {
        for chunk in seqs.chunks(SEQS_PER_TRANSACTION) {
            self.client()?.execute(
                "INSERT INTO retention (seq, segment) SELECT unnest($1::bigint[]), $2
                 ON CONFLICT (seq) DO UPDATE SET segment = excluded.segment
                 WHERE retention.segment IS NULL",
                &[&seqs_param(chunk), &stem],
            )?;
        }
        Ok(())
    }

    fn deleted_among(&self, seqs: &[u64]) -> Result<std::collections::HashSet<u64>, StoreError> {
        let seqs: Vec<i64> = seqs.iter().map(|&seq| seq as i64).collect();
        let rows = self.client()?.query(
            "SELECT seq FROM retention WHERE seq = ANY($1) AND deleted_at IS NOT NULL",
            &[&seqs],
        )?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    fn remove_bodies(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        for chunk in seqs.chunks(SEQS_PER_TRANSACTION) {
            let chunk = seqs_param(chunk);
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let unarchived: Option<i64> = tx
                .query_one(
                    "SELECT min(s) FROM unnest($1::bigint[]) AS s
                     WHERE NOT EXISTS (SELECT 1 FROM retention AS r WHERE r.seq = s
                                       AND (r.segment IS NOT NULL OR r.deleted_at IS NOT NULL))",
                    &[&chunk],
                )?
                .get(0);
            if let Some(seq) = unarchived {
                return Err(StoreError::Invalid(format!(
                    "event {seq} is not archived: its body stays in the log"
                )));
            }
            let noted = tx.query(
                "UPDATE retention SET body_removed_at = $2
                 WHERE seq = ANY($1) AND body_removed_at IS NULL RETURNING seq",
                &[&chunk, &at],
            )?;
            let noted: Vec<i64> = noted.iter().map(|r| r.get(0)).collect();
            tx.execute(
                "UPDATE events SET record = NULL WHERE seq = ANY($1) AND record IS NOT NULL",
                &[&noted],
            )?;
            tx.commit()?;
            removed += noted.len() as u64;
        }
        Ok(removed)
    }

    fn mark_deleted(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for chunk in seqs.chunks(SEQS_PER_TRANSACTION) {
            let chunk = seqs_param(chunk);
            let mut client = self.client()?;
            let mut tx = client.transaction()?;
            let noted = tx.query(
                "INSERT INTO retention (seq, body_removed_at, deleted_at)
                 SELECT unnest($1::bigint[]), $2, $2
                 ON CONFLICT (seq) DO UPDATE
                     SET body_removed_at = COALESCE(retention.body_removed_at, excluded.body_removed_at),
                         deleted_at = excluded.deleted_at
                 WHERE retention.deleted_at IS NULL
                 RETURNING seq",
                &[&chunk, &at],
            )?;
            let noted: Vec<i64> = noted.iter().map(|r| r.get(0)).collect();
            tx.execute(
                "UPDATE events SET record = NULL, user_id = NULL, resource_id = NULL
                 WHERE seq = ANY($1)",
                &[&noted],
            )?;
            tx.commit()?;
            deleted += noted.len() as u64;
        }
        Ok(deleted)
    }

    fn segments(&self) -> Result<Vec<SegmentUse>, StoreError> {
        Ok(self
            .client()?
            .query(
                "SELECT segment, count(*), count(*) - count(deleted_at) FROM retention
                 WHERE segment IS NOT NULL GROUP BY segment ORDER BY segment",
                &[],
            )?
            .iter()
            .map(|r| SegmentUse {
                stem: r.get(0),
                archived: r.get::<_, i64>(1) as u64,
                live: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    fn forget_segment(&self, stem: &str) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM retention WHERE segment = $1 AND deleted_at IS NULL",
                &[&stem],
            )?
            .get(0);
        if live > 0 {
            return Err(StoreError::Invalid(format!(
                "segment {stem} still holds {live} events not past their retention"
            )));
        }
        tx.execute(
            "UPDATE retention SET segment = NULL WHERE segment = $1",
            &[&stem],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn drop_expired_storage(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .client()?
            .query("SELECT sealtrail_drop_expired_partitions()", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }
}
