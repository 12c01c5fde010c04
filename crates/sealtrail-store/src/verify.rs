//! `verify`: recompute everything from the stored records and report the first divergence.
//!
//! [`LogAudit`] is the backend-independent check, fed rows in seq order; [`verify_sqlite`]
//! feeds it from the embedded store inside one read snapshot, so it runs safely beside a
//! live server.
//!
//! What it can tell apart, and how:
//! - **edited**: a record no longer hashes to its stored leaf hash;
//! - **rewritten**: record and leaf hash were changed together — caught by the Merkle nodes
//!   stored when the events were appended, and in any case by the signed checkpoints;
//! - **missing**: a seq is absent, or the tree is smaller than a signed checkpoint;
//! - **inserted**: records are shifted by an extra row, or events exist beyond the latest
//!   signed checkpoint (the sequencer signs every commit, so it never leaves any);
//! - **reordered**: a row holds the record of a later seq;
//! - **column mismatch**: an indexed column disagrees with the record;
//! - **bad signature**: a stored checkpoint does not verify with the log's key.
//!
//! A row whose body a retention run removed (archived, or past retention) has an empty
//! record and a row in the store's retention ledger: its leaf hash alone goes into the
//! tree, so the log still verifies; an empty record the ledger does not account for is an
//! edit.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use rusqlite::{OptionalExtension, params};
use sealtrail_core::checkpoint::SIGNING_KEY_ROTATED_ACTION;
use sealtrail_core::merkle::{self, Frontier, Hash};
use sealtrail_core::time_format::format_micros;
use sealtrail_core::{CheckpointVerifier, Severity, StoredRecord};
use uuid::Uuid;

use crate::sqlite::{log_db_path, open_connection};
use crate::{NODE_LEVEL_STRIDE, StoreError};

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The record at `seq` does not hash to its leaf hash.
    Edited {
        /// Where.
        seq: u64,
        /// What exactly.
        detail: String,
    },
    /// Records and leaf hashes in `first..=last` were changed together.
    Rewritten {
        /// First seq of the affected range.
        first: u64,
        /// Last seq of the affected range.
        last: u64,
        /// What disagrees with what.
        detail: String,
    },
    /// The event with this seq is gone.
    Missing {
        /// The first absent seq.
        seq: u64,
        /// How it shows.
        detail: String,
    },
    /// An event was added that the sequencer did not write.
    Inserted {
        /// The first seq affected.
        seq: u64,
        /// How it shows.
        detail: String,
    },
    /// Rows were swapped.
    Reordered {
        /// Where.
        seq: u64,
        /// What is there instead.
        detail: String,
    },
    /// An indexed column disagrees with the record.
    ColumnMismatch {
        /// Where.
        seq: u64,
        /// Which column.
        column: &'static str,
        /// Column value vs record value.
        detail: String,
    },
    /// A stored checkpoint's signature does not verify.
    BadSignature {
        /// The checkpoint's tree size.
        tree_size: u64,
        /// The verifier's complaint.
        detail: String,
    },
}

impl Finding {
    /// The first seq concerned, if the finding is about events.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Finding::Edited { seq, .. }
            | Finding::Missing { seq, .. }
            | Finding::Inserted { seq, .. }
            | Finding::Reordered { seq, .. }
            | Finding::ColumnMismatch { seq, .. } => Some(*seq),
            Finding::Rewritten { first, .. } => Some(*first),
            Finding::BadSignature { .. } => None,
        }
    }

    /// A one-word name of the kind of problem.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Edited { .. } => "edited",
            Finding::Rewritten { .. } => "rewritten",
            Finding::Missing { .. } => "missing",
            Finding::Inserted { .. } => "inserted",
            Finding::Reordered { .. } => "reordered",
            Finding::ColumnMismatch { .. } => "column mismatch",
            Finding::BadSignature { .. } => "bad signature",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Edited { seq, detail } => write!(f, "seq {seq}: edited: {detail}"),
            Finding::Rewritten {
                first,
                last,
                detail,
            } => {
                write!(f, "seq {first}..={last}: rewritten: {detail}")
            }
            Finding::Missing { seq, detail } => write!(f, "seq {seq}: missing: {detail}"),
            Finding::Inserted { seq, detail } => write!(f, "seq {seq}: inserted: {detail}"),
            Finding::Reordered { seq, detail } => write!(f, "seq {seq}: reordered: {detail}"),
            Finding::ColumnMismatch {
                seq,
                column,
                detail,
            } => {
                write!(f, "seq {seq}: column mismatch in {column}: {detail}")
            }
            Finding::BadSignature { tree_size, detail } => {
                write!(
                    f,
                    "checkpoint of tree size {tree_size}: bad signature: {detail}"
                )
            }
        }
    }
}

/// What `verify` established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// Of them, events whose body retention removed (checked by their leaf hash only).
    pub bodies_removed: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The tree size rebuilt (up to the first problem).
    pub tree_size: u64,
    /// The root hash rebuilt.
    pub root: Hash,
    /// The first problem, if any.
    pub problem: Option<Finding>,
}

/// One stored event as `verify` reads it: every column.
#[derive(Clone, Debug)]
pub struct AuditRow {
    /// Row seq.
    pub seq: u64,
    /// Row id column (16 bytes).
    pub id: Vec<u8>,
    /// Column.
    pub tenant_id: String,
    /// Column.
    pub occurred_at: i64,
    /// Column.
    pub received_at: i64,
    /// Column.
    pub severity: i64,
    /// Column.
    pub action: String,
    /// Column.
    pub user_id: Option<String>,
    /// Column.
    pub resource_type: String,
    /// Column.
    pub resource_id: Option<String>,
    /// Column.
    pub leaf_hash: Vec<u8>,
    /// The verbatim record; empty once retention removed the body.
    pub record: Vec<u8>,
    /// The retention ledger says a run removed this row's body.
    pub body_removed: bool,
}

/// A signed tree head `verify` must reproduce.
#[derive(Clone, Debug)]
struct Anchor {
    size: u64,
    root: Hash,
    source: &'static str,
}

/// The backend-independent part of `verify`: feed rows in seq order, then [`finish`].
///
/// [`finish`]: LogAudit::finish
pub struct LogAudit {
    frontier: Frontier,
    /// Checkpoint roots to reproduce, ascending by size.
    anchors: Vec<Anchor>,
    next_anchor: usize,
    /// Size of the last anchor that matched: where a rewritten range starts.
    last_good_size: u64,
    checkpoints: u64,
    latest_signed: u64,
    bodies_removed: u64,
    /// The key rotations, by the seq of their record (= the tree size they take effect at).
    rotations: HashMap<u64, String>,
}

impl LogAudit {
    /// Starts an audit against the stored checkpoints (notes, in any order) and optionally
    /// a checkpoint kept outside the server. The store's key rotations extend `verifier`
    /// (a pinned key, or the log's chain) to the log's other keys, if they pass through its
    /// key; each must also be the statement of the record at its seq. Returns a finding at
    /// once if a signature fails.
    pub fn new(
        verifier: &CheckpointVerifier,
        stored_rotations: &[String],
        stored_notes: impl IntoIterator<Item = (u64, String)>,
        external_note: Option<&str>,
    ) -> Result<Self, Finding> {
        let verifier = &verifier
            .anchored(stored_rotations)
            .map_err(|e| Finding::BadSignature {
                tree_size: 0,
                detail: format!("the log's stored key rotations: {e}"),
            })?;
        let rotations = verifier
            .rotations()
            .into_iter()
            .filter_map(|r| Some((sealtrail_core::checkpoint::rotation_size(&r).ok()?, r)))
            .collect();
        let mut anchors = Vec::new();
        let mut checkpoints = 0;
        for (tree_size, note) in stored_notes {
            let checkpoint = verifier.verify(&note).map_err(|e| Finding::BadSignature {
                tree_size,
                detail: e.to_string(),
            })?;
            if checkpoint.size != tree_size {
                return Err(Finding::BadSignature {
                    tree_size,
                    detail: format!(
                        "the row says tree size {tree_size}, the signed note {}",
                        checkpoint.size
                    ),
                });
            }
            anchors.push(Anchor {
                size: checkpoint.size,
                root: checkpoint.root,
                source: "stored checkpoint",
            });
            checkpoints += 1;
        }
        let latest_signed = anchors.iter().map(|a| a.size).max().unwrap_or(0);
        if let Some(note) = external_note {
            let checkpoint = verifier.verify(note).map_err(|e| Finding::BadSignature {
                tree_size: 0,
                detail: format!("the checkpoint given to verify against: {e}"),
            })?;
            anchors.push(Anchor {
                size: checkpoint.size,
                root: checkpoint.root,
                source: "kept checkpoint",
            });
            checkpoints += 1;
        }
        anchors.sort_by_key(|a| a.size);
        let mut audit = Self {
            frontier: Frontier::new(),
            anchors,
            next_anchor: 0,
            last_good_size: 0,
            checkpoints,
            latest_signed,
            bodies_removed: 0,
            rotations,
        };
        audit.check_anchors()?;
        Ok(audit)
    }

    /// Checks one row; `stored_node(level, index)` reads a kept Merkle node.
    pub fn check_row(
        &mut self,
        row: &AuditRow,
        mut stored_node: impl FnMut(u32, u64) -> Result<Option<Hash>, StoreError>,
    ) -> Result<Option<Finding>, StoreError> {
        let expected = self.frontier.size() + 1;
        let seq = row.seq;
        if seq != expected {
            return Ok(Some(Finding::Missing {
                seq: expected,
                detail: format!("the log goes from seq {} to seq {seq}", expected - 1),
            }));
        }
        debug_assert!(
            seq >= expected,
            "rows arrive in ascending seq order, from 1"
        );
        if seq > self.latest_signed {
            return Ok(Some(Finding::Inserted {
                seq,
                detail: format!(
                    "no signed checkpoint covers it (the latest covers {}); the sequencer signs \
                     every commit, so this row was written by something else",
                    self.latest_signed
                ),
            }));
        }
        let leaf = match row.record.is_empty() {
            true => match self.removed_body_leaf(row) {
                Ok(leaf) => leaf,
                Err(finding) => return Ok(Some(finding)),
            },
            false => {
                match check_record(row).and_then(|leaf| self.check_rotation(row).map(|()| leaf)) {
                    Ok(leaf) => leaf,
                    Err(finding) => return Ok(Some(finding)),
                }
            }
        };
        let mut completed = Vec::new();
        self.frontier.push(leaf, |level, index, hash| {
            if level % NODE_LEVEL_STRIDE == 0 {
                completed.push((level, index, *hash));
            }
        });
        for (level, index, hash) in completed {
            let first = (index << level) + 1;
            let last = (index + 1) << level;
            match stored_node(level, index)? {
                Some(stored) if stored == hash => {}
                Some(_) => {
                    return Ok(Some(Finding::Rewritten {
                        first,
                        last,
                        detail: "the events no longer match the Merkle node stored when they were \
                                 appended: records were changed together with their leaf hashes"
                            .into(),
                    }));
                }
                None => {
                    return Ok(Some(Finding::Missing {
                        seq: first,
                        detail: format!("the Merkle node over seq {first}..={last} is missing"),
                    }));
                }
            }
        }
        Ok(self.check_anchors().err())
    }

    /// A key rotation takes effect at the seq of its record: the record there must carry
    /// it, and every rotation record (an action producers may not use) must be filed — a
    /// filing deleted would let a retired key sign again.
    fn check_rotation(&self, row: &AuditRow) -> Result<(), Finding> {
        let is_record = row.action == SIGNING_KEY_ROTATED_ACTION;
        let detail = match self.rotations.get(&row.seq) {
            None if !is_record => return Ok(()),
            None => {
                "this key rotation record is not among the log's filed rotations (its \
                     filing was removed, or the record was not written by the sequencer)"
            }
            Some(statement) => {
                let record: serde_json::Value =
                    serde_json::from_slice(&row.record).unwrap_or_default();
                if is_record && record["details"]["statement"].as_str() == Some(statement) {
                    return Ok(());
                }
                "the log's key rotation filed for this tree size is not this record's statement"
            }
        };
        Err(Finding::Edited {
            seq: row.seq,
            detail: detail.into(),
        })
    }

    /// The leaf hash of a row whose body is gone: only a retention run may have removed it.
    fn removed_body_leaf(&mut self, row: &AuditRow) -> Result<Hash, Finding> {
        if !row.body_removed {
            return Err(Finding::Edited {
                seq: row.seq,
                detail: "the record is empty, and no retention run removed it".into(),
            });
        }
        let leaf: Hash = row
            .leaf_hash
            .as_slice()
            .try_into()
            .map_err(|_| Finding::Edited {
                seq: row.seq,
                detail: format!(
                    "the stored leaf hash is {} bytes, not 32",
                    row.leaf_hash.len()
                ),
            })?;
        self.bodies_removed += 1;
        Ok(leaf)
    }

    /// Compares the rebuilt tree with every checkpoint of the current size.
    fn check_anchors(&mut self) -> Result<(), Finding> {
        let size = self.frontier.size();
        while let Some(anchor) = self.anchors.get(self.next_anchor) {
            if anchor.size != size {
                break;
            }
            if anchor.root != self.frontier.root() {
                return Err(Finding::Rewritten {
                    first: self.last_good_size + 1,
                    last: size,
                    detail: format!(
                        "the events do not reproduce the root of the {} of tree size {size}",
                        anchor.source
                    ),
                });
            }
            self.last_good_size = size;
            self.next_anchor += 1;
        }
        Ok(())
    }

    /// Ends the audit once every row was fed.
    pub fn finish(self, events: u64) -> VerifyReport {
        let size = self.frontier.size();
        let unrecorded = self.rotations.keys().filter(|at| **at > size).min();
        let problem = self
            .anchors
            .get(self.next_anchor)
            .map(|anchor| Finding::Missing {
                seq: size + 1,
                detail: format!(
                    "the {} of tree size {} covers events from seq {} on that are no longer stored",
                    anchor.source,
                    anchor.size,
                    size + 1
                ),
            })
            .or_else(|| {
                unrecorded.map(|at| Finding::Missing {
                    seq: *at,
                    detail: format!(
                        "a key rotation is filed for tree size {at}, but the log has no record there"
                    ),
                })
            });
        VerifyReport {
            events,
            bodies_removed: self.bodies_removed,
            checkpoints: self.checkpoints,
            tree_size: size,
            root: self.frontier.root(),
            problem,
        }
    }
}

/// Checks a row that holds its record: it hashes to the leaf hash, parses, sits at its own
/// seq, and the columns agree with it. Returns the leaf hash.
fn check_record(row: &AuditRow) -> Result<Hash, Finding> {
    let seq = row.seq;
    let leaf = merkle::leaf_hash(&row.record);
    if leaf.as_slice() != row.leaf_hash.as_slice() {
        return Err(Finding::Edited {
            seq,
            detail: "the record does not match its stored leaf hash".into(),
        });
    }
    let record = StoredRecord::parse(&row.record).map_err(|e| Finding::Edited {
        seq,
        detail: format!("the record is not a valid event: {e}"),
    })?;
    if record.seq != seq {
        return Err(if record.seq > seq {
            Finding::Reordered {
                seq,
                detail: format!("it holds the record of seq {}", record.seq),
            }
        } else {
            Finding::Inserted {
                seq: record.seq,
                detail: format!(
                    "the record of seq {} is stored at seq {seq}: a row was inserted before it",
                    record.seq
                ),
            }
        });
    }
    if let Some(finding) = compare_columns(row, &record) {
        return Err(finding);
    }
    Ok(leaf)
}

fn compare_columns(row: &AuditRow, record: &StoredRecord) -> Option<Finding> {
    let seq = row.seq;
    let mismatch = |column: &'static str, column_value: String, record_value: String| {
        Some(Finding::ColumnMismatch {
            seq,
            column,
            detail: format!("column has {column_value}, the record {record_value}"),
        })
    };
    let id = Uuid::from_slice(&row.id)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| hex::encode(&row.id));
    if id != record.id.to_string() {
        return mismatch("id", id, record.id.to_string());
    }
    if row.tenant_id != record.tenant_id {
        return mismatch("tenant_id", row.tenant_id.clone(), record.tenant_id.clone());
    }
    if format_micros(row.occurred_at) != record.occurred_at {
        return mismatch(
            "occurred_at",
            format_micros(row.occurred_at),
            record.occurred_at.clone(),
        );
    }
    if format_micros(row.received_at) != record.received_at {
        return mismatch(
            "received_at",
            format_micros(row.received_at),
            record.received_at.clone(),
        );
    }
    if Severity::from_code(row.severity) != Some(record.severity) {
        return mismatch(
            "severity",
            row.severity.to_string(),
            record.severity.as_str().into(),
        );
    }
    if row.action != record.action {
        return mismatch("action", row.action.clone(), record.action.clone());
    }
    if row.user_id != record.user_id {
        return mismatch(
            "user_id",
            format!("{:?}", row.user_id),
            format!("{:?}", record.user_id),
        );
    }
    if row.resource_type != record.resource_type {
        return mismatch(
            "resource_type",
            row.resource_type.clone(),
            record.resource_type.clone(),
        );
    }
    if row.resource_id != record.resource_id {
        return mismatch(
            "resource_id",
            format!("{:?}", row.resource_id),
            format!("{:?}", record.resource_id),
        );
    }
    None
}

/// Reads one row whatever types its columns were tampered into: a value of the wrong type
/// is itself a finding, never a crash of `verify`.
fn read_audit_row(r: &rusqlite::Row<'_>) -> Result<AuditRow, Finding> {
    use rusqlite::types::ValueRef;
    let raw_seq = r.get::<_, i64>(0).map_err(|e| Finding::Edited {
        seq: 0,
        detail: format!("a row has an unreadable seq: {e}"),
    })?;
    if raw_seq < 1 {
        return Err(Finding::Inserted {
            seq: 0,
            detail: format!("a row with seq {raw_seq}; the sequencer's seqs start at 1"),
        });
    }
    let seq = raw_seq as u64;
    let bytes = |i: usize| match r.get_ref(i) {
        Ok(ValueRef::Blob(b)) | Ok(ValueRef::Text(b)) => Some(b.to_vec()),
        _ => None,
    };
    let text = |i: usize| match r.get_ref(i) {
        Ok(ValueRef::Text(t)) => Some(String::from_utf8_lossy(t).into_owned()),
        Ok(ValueRef::Null) => None,
        Ok(ValueRef::Integer(n)) => Some(n.to_string()),
        Ok(ValueRef::Real(x)) => Some(x.to_string()),
        Ok(ValueRef::Blob(b)) => Some(hex::encode(b)),
        Err(_) => None,
    };
    let integer = |i: usize, column: &'static str| match r.get_ref(i) {
        Ok(ValueRef::Integer(n)) => Ok(n),
        other => Err(Finding::ColumnMismatch {
            seq,
            column,
            detail: format!("column holds {other:?}, not an integer"),
        }),
    };
    let required = |value: Option<String>, column: &'static str| {
        value.ok_or_else(|| Finding::ColumnMismatch {
            seq,
            column,
            detail: "column is empty".into(),
        })
    };
    Ok(AuditRow {
        seq,
        id: bytes(1).unwrap_or_default(),
        tenant_id: required(text(2), "tenant_id")?,
        occurred_at: integer(3, "occurred_at")?,
        received_at: integer(4, "received_at")?,
        severity: integer(5, "severity")?,
        action: required(text(6), "action")?,
        user_id: text(7),
        resource_type: required(text(8), "resource_type")?,
        resource_id: text(9),
        leaf_hash: bytes(10).unwrap_or_default(),
        record: bytes(11).unwrap_or_default(),
        body_removed: matches!(r.get_ref(12), Ok(ValueRef::Integer(1))),
    })
}

/// Verifies the embedded log in `data_dir`. `progress(done, total)` is called as rows are
/// checked. `external_note` is a checkpoint kept outside the server, which exposes a
/// rollback of the newest events together with their stored checkpoints.
pub fn verify_sqlite(
    data_dir: &Path,
    verifier: &CheckpointVerifier,
    external_note: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, StoreError> {
    let conn = open_connection(&log_db_path(data_dir), true)?;
    // One snapshot for the whole scan: a live server may append meanwhile.
    conn.execute_batch("BEGIN")?;
    let notes: Vec<(u64, String)> = conn
        .prepare("SELECT tree_size, note FROM checkpoints ORDER BY tree_size")?
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let rotations = crate::sqlite::key_rotations(&conn)?;
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
    let total: i64 =
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    let mut node_stmt =
        conn.prepare("SELECT hash FROM merkle_nodes WHERE level = ?1 AND idx = ?2")?;
    let mut rows_stmt = conn.prepare(
        "SELECT seq, id, tenant_id, occurred_at, received_at, severity, action, user_id,
                resource_type, resource_id, leaf_hash, record,
                EXISTS (SELECT 1 FROM retention AS r
                        WHERE r.seq = events.seq AND r.body_removed_at IS NOT NULL)
         FROM events ORDER BY seq",
    )?;
    let mut rows = rows_stmt.query([])?;
    let mut checked = 0u64;
    while let Some(r) = rows.next()? {
        let row = match read_audit_row(r) {
            Ok(row) => row,
            Err(finding) => {
                let mut report = audit.finish(checked);
                report.problem = Some(finding);
                return Ok(report);
            }
        };
        let finding = audit.check_row(&row, |level, index| {
            Ok(node_stmt
                .query_row(params![level, index as i64], |r| r.get::<_, Hash>(0))
                .optional()?)
        })?;
        checked += 1;
        if checked.is_multiple_of(4096) {
            progress(checked, total as u64);
        }
        if let Some(finding) = finding {
            let mut report = audit.finish(checked);
            report.problem = Some(finding);
            return Ok(report);
        }
    }
    progress(checked, total as u64);
    Ok(audit.finish(checked))
}
