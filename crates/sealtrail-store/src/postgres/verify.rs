//! `verify` for the PostgreSQL store: the same audit as for the embedded store (every
//! record rehashed, every column checked against its record, the tree rebuilt and every
//! signed checkpoint reproduced), plus the id table checked against the events.

use postgres::{IsolationLevel, Transaction};
use sealtrail_core::CheckpointVerifier;
use sealtrail_core::merkle;

use super::hash_column;
use crate::StoreError;
use crate::verify::{AuditRow, Finding, LogAudit, VerifyReport};

/// Rows fetched per round trip.
const BATCH_ROWS: i32 = 10_000;

/// Verifies the log in the database at `url`. `progress(done, total)` is called as rows
/// are checked; `external_note` is a checkpoint kept outside the server.
pub fn verify_postgres(
    url: &str,
    verifier: &CheckpointVerifier,
    external_note: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, StoreError> {
    let mut client = super::connect(url)?;
    super::schema::check(&mut client)?;
    // One snapshot for the whole scan: a live server may append meanwhile.
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let report = verify_in(&mut tx, verifier, external_note, &mut progress)?;
    tx.commit()?;
    Ok(report)
}

/// The audit of [`verify_postgres`] inside the transaction `tx` (a restore verifies the
/// log it copied in before it commits).
pub(crate) fn verify_in(
    tx: &mut Transaction<'_>,
    verifier: &CheckpointVerifier,
    external_note: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, StoreError> {
    let notes: Vec<(u64, String)> = tx
        .query(
            "SELECT tree_size, note FROM checkpoints ORDER BY tree_size",
            &[],
        )?
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
        .collect();
    let rotations = super::key_rotations(tx)?;
    let mut audit = match LogAudit::new(verifier, &rotations, notes, external_note) {
        Ok(audit) => audit,
        Err(finding) => {
            return Ok(VerifyReport {
                events: 0,
                bodies_removed: 0,
                checkpoints: 0,
                tree_size: 0,
                root: merkle::empty_root(),
                problem: Some(finding),
            });
        }
    };
    let total: i64 = tx
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM events", &[])?
        .get(0);
    let node = tx.prepare("SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2")?;
    let dropped_partitions: Vec<DroppedPartition> = tx
        .query("SELECT lo, hi FROM dropped_partitions", &[])?
        .iter()
        .map(|r| DroppedPartition {
            lo: r.get(0),
            hi: r.get(1),
        })
        .collect();
    // Driven by the id table, in seq order (its unique index), each event found by its
    // primary key: no sort of the whole log. An id whose event is gone is either an event
    // whose month partition retention dropped (every event in it deleted; the id row keeps
    // its leaf hash) or a finding; an event without an id row shows in the count below.
    let portal = tx.bind(
        "SELECT i.seq, e.id, e.tenant_id, e.occurred_at, e.received_at, e.severity, e.action,
                e.user_id, e.resource_type, e.resource_id, COALESCE(e.leaf_hash, i.leaf_hash),
                e.record, e.seq, i.leaf_hash,
                COALESCE(r.body_removed_at IS NOT NULL, false), e.seq IS NULL,
                r.deleted_at, i.occurred_at, i.id
         FROM event_ids AS i
              LEFT JOIN events AS e ON e.occurred_at = i.occurred_at AND e.seq = i.seq
              LEFT JOIN retention AS r ON r.seq = i.seq
         ORDER BY i.seq",
        &[],
    )?;
    let mut checked = 0u64;
    // Id rows whose event row is there.
    let mut present = 0u64;
    loop {
        let rows = tx.query_portal(&portal, BATCH_ROWS)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let dropped: bool = r.get(15);
            let row = match dropped {
                false => event_row(r),
                true => match dropped_row(r, &dropped_partitions) {
                    Ok(row) => row,
                    Err(finding) => {
                        let mut report = audit.finish(checked);
                        report.problem = Some(finding);
                        return Ok(report);
                    }
                },
            };
            let finding = audit.check_row(&row, |level, index| {
                tx.query_opt(&node, &[&(level as i32), &(index as i64)])?
                    .map(|n| hash_column(n.get(0)))
                    .transpose()
            })?;
            checked += 1;
            present += u64::from(!dropped);
            let finding = match dropped {
                false => finding.or_else(|| id_row_mismatch(&row, r)),
                true => finding,
            };
            if let Some(finding) = finding {
                let mut report = audit.finish(checked);
                report.problem = Some(finding);
                return Ok(report);
            }
        }
        progress(checked, total as u64);
    }
    let events: i64 = tx.query_one("SELECT count(*) FROM events", &[])?.get(0);
    let mut report = audit.finish(checked);
    if report.problem.is_none() && events as u64 != present {
        // Rare, so found only then: the first event row the id table does not point at.
        let first: Option<i64> = tx
            .query_one(
                "SELECT min(e.seq) FROM events AS e WHERE NOT EXISTS (
                     SELECT 1 FROM event_ids AS i WHERE i.seq = e.seq AND i.id = e.id)",
                &[],
            )?
            .get(0);
        report.problem = Some(Finding::Inserted {
            seq: first.unwrap_or(0) as u64,
            detail: format!(
                "the log holds {events} event rows, the id table points at {present} of them"
            ),
        });
    }
    Ok(report)
}

/// A month partition retention dropped: `lo..hi` of `occurred_at`.
struct DroppedPartition {
    lo: i64,
    hi: i64,
}

/// An event row, every column as stored.
fn event_row(r: &postgres::Row) -> AuditRow {
    AuditRow {
        seq: r.get::<_, i64>(0) as u64,
        id: r.get::<_, uuid::Uuid>(1).as_bytes().to_vec(),
        tenant_id: r.get(2),
        occurred_at: r.get(3),
        received_at: r.get(4),
        severity: i64::from(r.get::<_, i16>(5)),
        action: r.get(6),
        user_id: r.get(7),
        resource_type: r.get(8),
        resource_id: r.get(9),
        leaf_hash: r.get(10),
        record: r.get::<_, Option<Vec<u8>>>(11).unwrap_or_default(),
        body_removed: r.get(14),
    }
}

/// An id whose event row is gone: only an event retention deleted, in a month partition
/// it dropped, may be; its leaf hash is the id table's.
fn dropped_row(r: &postgres::Row, dropped: &[DroppedPartition]) -> Result<AuditRow, Finding> {
    let seq = r.get::<_, i64>(0) as u64;
    let deleted_at: Option<i64> = r.get(16);
    let occurred_at: i64 = r.get(17);
    let Some(_) = deleted_at else {
        return Err(Finding::Missing {
            seq,
            detail: "the id table holds this event's id, but the event is gone and no \
                     retention run deleted it"
                .into(),
        });
    };
    // Partitions go whole, after every event in them was deleted. (The run's clock, not
    // the database's, stamps deleted_at, so the two times are not compared.)
    let went_with_its_partition = dropped
        .iter()
        .any(|p| p.lo <= occurred_at && occurred_at < p.hi);
    if !went_with_its_partition {
        return Err(Finding::Missing {
            seq,
            detail: "retention deleted this event, but its row is gone while no dropped \
                     partition held it"
                .into(),
        });
    }
    Ok(AuditRow {
        seq,
        id: r.get::<_, uuid::Uuid>(18).as_bytes().to_vec(),
        tenant_id: String::new(),
        occurred_at: 0,
        received_at: 0,
        severity: 0,
        action: String::new(),
        user_id: None,
        resource_type: String::new(),
        resource_id: None,
        leaf_hash: r.get(10),
        record: Vec::new(),
        body_removed: true,
    })
}

/// The id table must point at this very event: dedupe answers retries from it.
fn id_row_mismatch(row: &AuditRow, r: &postgres::Row) -> Option<Finding> {
    let id: uuid::Uuid = r.get(18);
    let id_leaf: Vec<u8> = r.get(13);
    if id.as_bytes()[..] != row.id[..] {
        return Some(Finding::ColumnMismatch {
            seq: row.seq,
            column: "event_ids",
            detail: format!("the id table maps id {id} to this seq, which holds another event"),
        });
    }
    if id_leaf != row.leaf_hash {
        return Some(Finding::ColumnMismatch {
            seq: row.seq,
            column: "event_ids",
            detail: "the id table holds another leaf hash for this event".into(),
        });
    }
    None
}
