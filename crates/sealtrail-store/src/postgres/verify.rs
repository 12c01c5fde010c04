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
    let mut audit = match LogAudit::new(verifier, notes, external_note) {
        Ok(audit) => audit,
        Err(finding) => {
            return Ok(VerifyReport {
                events: 0,
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
    let ids_total: i64 = tx.query_one("SELECT count(*) FROM event_ids", &[])?.get(0);
    let node = tx.prepare("SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2")?;
    // The id table row for each event rides along, to be compared with the event.
    let portal = tx.bind(
        "SELECT e.seq, e.id, e.tenant_id, e.occurred_at, e.received_at, e.severity, e.action,
                e.user_id, e.resource_type, e.resource_id, e.leaf_hash, e.record,
                i.seq, i.leaf_hash
         FROM events AS e LEFT JOIN event_ids AS i ON i.id = e.id
         ORDER BY e.seq",
        &[],
    )?;
    let mut checked = 0u64;
    loop {
        let rows = tx.query_portal(&portal, BATCH_ROWS)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let row = AuditRow {
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
                record: r.get(11),
            };
            let finding = audit.check_row(&row, |level, index| {
                tx.query_opt(&node, &[&(level as i32), &(index as i64)])?
                    .map(|n| hash_column(n.get(0)))
                    .transpose()
            })?;
            checked += 1;
            let finding = finding.or_else(|| id_row_mismatch(&row, r));
            if let Some(finding) = finding {
                let mut report = audit.finish(checked);
                report.problem = Some(finding);
                return Ok(report);
            }
        }
        progress(checked, total as u64);
    }
    if ids_total as u64 != checked {
        let mut report = audit.finish(checked);
        report.problem = Some(Finding::Inserted {
            seq: checked + 1,
            detail: format!(
                "the id table holds {ids_total} ids for {checked} events: ids of events that are not in the log"
            ),
        });
        return Ok(report);
    }
    Ok(audit.finish(checked))
}

/// The id table must point at this very event: dedupe answers retries from it.
fn id_row_mismatch(row: &AuditRow, r: &postgres::Row) -> Option<Finding> {
    let id_seq: Option<i64> = r.get(12);
    let id_leaf: Option<Vec<u8>> = r.get(13);
    match (id_seq, id_leaf) {
        (Some(seq), Some(leaf)) if seq as u64 == row.seq && leaf == row.leaf_hash => None,
        (None, _) => Some(Finding::ColumnMismatch {
            seq: row.seq,
            column: "event_ids",
            detail: "the event's id is missing from the id table".into(),
        }),
        (Some(seq), _) => Some(Finding::ColumnMismatch {
            seq: row.seq,
            column: "event_ids",
            detail: format!(
                "the id table maps this event's id to seq {seq} with another leaf hash"
            ),
        }),
    }
}
