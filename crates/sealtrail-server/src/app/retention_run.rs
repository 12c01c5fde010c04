//! One retention run over the log, synchronously: archive what reached its archive age,
//! remove the bodies of what is archived, delete what is past its retention, and remove
//! archive segments none of whose events is still kept.
//!
//! Each step is recorded in the store's [`RetentionLedger`] after the step itself is
//! durable, and each is idempotent, so a run cut off anywhere leaves no event both deleted
//! and not archived, and the next run completes the job:
//!
//! 1. a segment is published (its manifest last) before the ledger records its events as
//!    archived; a published segment the ledger does not know is *adopted* at the start of
//!    the next run (after it verifies against the log's key);
//! 2. a body leaves the hot store only for an event the ledger records as archived (the
//!    ledger refuses otherwise);
//! 3. an event past its retention is deleted (body and user/resource ids, never its leaf
//!    hash); its archived record goes with its segment, once every event archived there
//!    is deleted. Segments group one run's events of one policy and one month of
//!    `occurred_at`, held ones apart, so they expire together (a hold placed after an
//!    event was archived keeps its whole segment until the hold is released).
//!
//! Legal holds are read again before each window's deletions.

use std::collections::BTreeMap;

use sealtrail_archive::{ArchiveLocation, SegmentEntry, SegmentSpec};
use sealtrail_core::CheckpointVerifier;
use sealtrail_core::merkle::Hash;
use sealtrail_core::retention_policy::{Fate, RetentionConfig, RetentionPlan};
use sealtrail_core::time_format::format_micros;
use sealtrail_store::retention::{HoldCheck, LedgerRow, RetentionLedger, SCAN_PAGE_EVENTS, due};
use sealtrail_store::{LogReader, StoreError};
use serde::Serialize;

/// Seqs a run handles at once: every leaf hash of a window is in memory (32 MiB).
pub const WINDOW_SEQS: u64 = 1 << 20;

/// What a run works on.
pub struct RunContext<'a> {
    /// The log's read side (checkpoint, range proofs).
    pub reader: &'a dyn LogReader,
    /// The store's retention ledger.
    pub ledger: &'a dyn RetentionLedger,
    /// The policies.
    pub policies: &'a RetentionConfig,
    /// Where segments go (a directory or an S3 bucket); none: nothing is archived and
    /// bodies stay hot.
    pub archive: Option<&'a ArchiveLocation>,
    /// zstd level of new segments.
    pub zstd_level: i32,
    /// The log's checkpoint verifier (its origin names segments' log).
    pub verifier: &'a CheckpointVerifier,
    /// Reads the legal holds in force (again before each window's deletions).
    pub holds: &'a dyn Fn() -> Result<Box<dyn HoldCheck>, StoreError>,
}

/// What one tenant's events went through in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantCounts {
    /// Records written to archive segments.
    pub archived: u64,
    /// Bodies removed from the hot store (archived records).
    pub bodies_removed: u64,
    /// Events deleted past their retention.
    pub deleted: u64,
    /// Events past their retention kept by a legal hold.
    pub held: u64,
    /// Events due for archival kept hot because no archive is configured.
    pub not_archived: u64,
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// The run's label (segment names carry it).
    pub run: String,
    /// The moment policies were applied at (RFC 3339).
    pub at: String,
    /// A dry run changes nothing.
    pub dry_run: bool,
    /// The tree size the run covered.
    pub through_seq: u64,
    /// Events due, per tenant and policy (the plan).
    #[serde(skip)]
    pub plan: RetentionPlan,
    /// Per tenant, what was done.
    pub tenants: BTreeMap<String, TenantCounts>,
    /// Segments written (stems).
    pub segments_written: Vec<String>,
    /// Segments found published but unrecorded (a run cut off), verified and recorded.
    pub segments_adopted: Vec<String>,
    /// Segments removed, every event in them deleted.
    pub segments_removed: Vec<String>,
    /// Archive segments that did not verify and were left alone (stem: problem).
    pub segments_refused: Vec<String>,
    /// Storage given back: PostgreSQL month partitions every event of which is deleted.
    pub partitions_dropped: Vec<String>,
}

impl RunReport {
    /// Totals over every tenant.
    pub fn totals(&self) -> TenantCounts {
        let mut t = TenantCounts::default();
        for c in self.tenants.values() {
            t.archived += c.archived;
            t.bodies_removed += c.bodies_removed;
            t.deleted += c.deleted;
            t.held += c.held;
            t.not_archived += c.not_archived;
        }
        t
    }
}

/// Events of one window a run acts on.
#[derive(Default)]
struct WindowWork {
    /// (policy, month of occurred_at, held) → seqs to archive, in order.
    archive: BTreeMap<(String, String, bool), Vec<u64>>,
    /// Seqs whose bodies go once archived.
    remove_body: Vec<u64>,
    /// Seqs past retention.
    delete: Vec<u64>,
}

/// Runs retention at `now` (UTC µs) over the log up to `checkpoint` (durable: segments are
/// proved against it); `progress(done, through)` after each window.
pub fn run(
    cx: &RunContext<'_>,
    now: i64,
    checkpoint: &sealtrail_store::CheckpointRow,
    dry_run: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<RunReport, StoreError> {
    let through = checkpoint.tree_size;
    let mut report = RunReport {
        run: run_label(now),
        at: format_micros(now),
        dry_run,
        through_seq: through,
        ..RunReport::default()
    };
    if dry_run {
        let holds = (cx.holds)()?;
        report.plan = sealtrail_store::retention::plan(
            cx.ledger,
            cx.policies,
            now,
            through,
            &*holds,
            &mut progress,
        )?;
        return Ok(report);
    }
    if let Some(location) = cx.archive {
        location.remove_leftovers().map_err(archive_error)?;
        adopt_unrecorded(cx, location, &mut report)?;
    }
    let mut first = 1;
    while first <= through {
        let last = through.min(first + WINDOW_SEQS - 1);
        let rows = window_rows(cx.ledger, first - 1, last)?;
        let holds = (cx.holds)()?;
        let work = plan_window(cx, &rows, now, &*holds, &mut report);
        if let Some(location) = cx.archive {
            for (index, ((_, month, _), seqs)) in work.archive.iter().enumerate() {
                let label = format!("{}-{month}-{index}", report.run);
                let stem = write_segment(cx, location, &rows, seqs, &label, checkpoint)?;
                cx.ledger.mark_archived(&stem, seqs)?;
                report.segments_written.push(stem);
            }
        }
        let removed = cx.ledger.remove_bodies(&work.remove_body, now)?;
        debug_assert!(removed <= work.remove_body.len() as u64);
        // Holds are read again right before deleting: one placed while this window was
        // archived keeps what it covers.
        let holds = (cx.holds)()?;
        let deletable: Vec<u64> = work
            .delete
            .iter()
            .copied()
            .filter(|seq| {
                let row = &rows[rows
                    .binary_search_by_key(seq, |r| r.seq)
                    .expect("planned from rows")];
                !holds.holds(
                    &row.tenant_id,
                    &row.resource_type,
                    row.resource_id.as_deref(),
                )
            })
            .collect();
        cx.ledger.mark_deleted(&deletable, now)?;
        first = last + 1;
        progress(last, through);
    }
    if let Some(location) = cx.archive {
        remove_expired_segments(cx, location, &mut report)?;
    }
    report.partitions_dropped = cx.ledger.drop_expired_storage()?;
    Ok(report)
}

/// `r` + the run's moment, UTC, to the second: `r20261202t181200`.
fn run_label(now: i64) -> String {
    let text = format_micros(now);
    let digits: String = text
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("r{}", digits.to_ascii_lowercase())
}

/// Every ledger row of `after+1..=last`.
fn window_rows(
    ledger: &dyn RetentionLedger,
    after: u64,
    last: u64,
) -> Result<Vec<LedgerRow>, StoreError> {
    let mut rows = Vec::new();
    let mut cursor = after;
    loop {
        let page = ledger.rows(cursor, last, SCAN_PAGE_EVENTS)?;
        let full = page.len() == SCAN_PAGE_EVENTS;
        if let Some(row) = page.last() {
            cursor = row.seq;
        }
        rows.extend(page);
        if !full {
            return Ok(rows);
        }
    }
}

/// Sorts a window's events into the run's work, and counts them.
fn plan_window(
    cx: &RunContext<'_>,
    rows: &[LedgerRow],
    now: i64,
    holds: &dyn HoldCheck,
    report: &mut RunReport,
) -> WindowWork {
    let mut work = WindowWork::default();
    for row in rows {
        let Some((fate, due)) = due(cx.policies, row, now, holds) else {
            continue;
        };
        let policy = cx.policies.policy_for(&row.subject()).name;
        report.plan.add(&row.tenant_id, policy, fate);
        let counts = report.tenants.entry(row.tenant_id.clone()).or_default();
        if fate == Fate::Held {
            counts.held += 1;
        }
        if due.delete {
            counts.deleted += 1;
            work.delete.push(row.seq);
            continue;
        }
        if cx.archive.is_none() {
            if due.archive {
                counts.not_archived += 1;
            }
            continue;
        }
        if due.archive {
            counts.archived += 1;
            let month = format_micros(row.occurred_at)[..7].replace('-', "");
            // Held events apart: their segment outlives the others'.
            work.archive
                .entry((policy.to_owned(), month, fate == Fate::ArchiveHeld))
                .or_default()
                .push(row.seq);
        }
        if due.remove_body && row.has_body {
            counts.bodies_removed += 1;
            work.remove_body.push(row.seq);
        }
    }
    work
}

/// Writes the segment of `seqs` (records) over `seqs[0]..=seqs[last]` (leaf hashes of every
/// seq in between from `rows`), proved against `checkpoint`. Returns its stem.
fn write_segment(
    cx: &RunContext<'_>,
    location: &ArchiveLocation,
    rows: &[LedgerRow],
    seqs: &[u64],
    label: &str,
    checkpoint: &sealtrail_store::CheckpointRow,
) -> Result<String, StoreError> {
    let (first, last) = (seqs[0], *seqs.last().expect("a group has a seq"));
    let spec = SegmentSpec {
        origin: cx.verifier.origin().to_owned(),
        first_seq: first,
        last_seq: last,
        only_tenant: None,
        zstd_level: cx.zstd_level,
        label: Some(label.to_owned()),
    };
    let stem = spec.stem();
    let records: BTreeMap<u64, Vec<u8>> = cx.ledger.records(seqs)?.into_iter().collect();
    let leaves: BTreeMap<u64, Hash> = rows
        .iter()
        .filter(|r| (first..=last).contains(&r.seq))
        .map(|r| (r.seq, r.leaf_hash))
        .collect();
    let mut writer = location.create_segment(spec).map_err(archive_error)?;
    for seq in first..=last {
        let leaf_hash = *leaves.get(&seq).ok_or_else(|| {
            StoreError::Integrity(format!(
                "seq {seq} is missing from the log: run `sealtrail verify`"
            ))
        })?;
        let record = match seqs.binary_search(&seq) {
            Ok(_) => Some(records.get(&seq).ok_or_else(|| {
                StoreError::Integrity(format!("the body of seq {seq} vanished during the run"))
            })?),
            Err(_) => None,
        };
        writer
            .push(SegmentEntry {
                seq,
                leaf_hash,
                record: record.map(Vec::as_slice),
            })
            .map_err(archive_error)?;
    }
    let boundary = cx.reader.range_proof(first, last, checkpoint.tree_size)?;
    writer
        .finish(&checkpoint.note, cx.verifier, &boundary)
        .map_err(archive_error)?;
    Ok(stem)
}

/// An archive failure as the run reports it: a fault of the server's storage, not of the
/// request.
fn archive_error(e: sealtrail_archive::ArchiveError) -> StoreError {
    match e {
        sealtrail_archive::ArchiveError::Io { context, source } => {
            StoreError::io(format!("archive: {context}"), source)
        }
        other => StoreError::Integrity(format!("archive: {other}")),
    }
}

fn stem_of(manifest_name: &str) -> String {
    manifest_name.trim_end_matches(".manifest.json").to_owned()
}

/// Records the events of published segments the ledger does not know (a run cut off
/// between publishing and recording), once each verifies against the log's key.
fn adopt_unrecorded(
    cx: &RunContext<'_>,
    location: &ArchiveLocation,
    report: &mut RunReport,
) -> Result<(), StoreError> {
    let known: std::collections::BTreeSet<String> =
        cx.ledger.segments()?.into_iter().map(|s| s.stem).collect();
    let listed = match location.list_segments() {
        Ok(listed) => listed,
        // A directory not created yet: nothing was published.
        Err(sealtrail_archive::ArchiveError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Vec::new()
        }
        Err(e) => return Err(archive_error(e)),
    };
    for found in listed {
        let stem = stem_of(&found.manifest_name);
        if known.contains(&stem) || !is_run_segment(&stem) {
            continue;
        }
        let segment = match location.open_segment(&found, Some(cx.verifier)) {
            Ok(segment) => segment,
            // It could not be read (this time, or until someone repairs the archive): the
            // run stops, and the next one tries again. Going on would archive its events a
            // second time, and the copy would never be recorded.
            Err(e) if unreadable(&e) => return Err(archive_error(e)),
            Err(e) => {
                report.segments_refused.push(format!("{stem}: {e}"));
                continue;
            }
        };
        let mut seqs = Vec::new();
        for event in segment.events().map_err(archive_error)? {
            seqs.push(event.map_err(archive_error)?.stored.seq);
        }
        cx.ledger.mark_archived(&stem, &seqs)?;
        let recorded = cx.ledger.segments()?.iter().any(|s| s.stem == stem);
        if recorded {
            report.segments_adopted.push(stem);
        } else {
            // Every event in it is recorded in another segment (it was archived again while
            // this one could not be read): a copy, which would otherwise be found unknown
            // at every run.
            tracing::warn!(segment = %stem, "removing an archive segment whose events are all archived in others");
            location.remove_segment(&stem).map_err(archive_error)?;
            report.segments_removed.push(stem);
        }
    }
    Ok(())
}

/// Whether `e` says the archive could not be read, rather than that what it read does
/// not verify.
fn unreadable(e: &sealtrail_archive::ArchiveError) -> bool {
    use sealtrail_archive::{ArchiveError, Problem};
    match e {
        ArchiveError::Io { .. } | ArchiveError::ObjectStore { .. } => true,
        ArchiveError::Refused { problem, .. } => matches!(
            problem,
            Problem::ManifestUnreadable(_) | Problem::SegmentUnreadable(_)
        ),
        _ => false,
    }
}

/// Segments retention wrote carry a run label (`archive write` writes unlabelled ones,
/// which retention leaves alone).
fn is_run_segment(stem: &str) -> bool {
    sealtrail_archive::parse_stem(stem)
        .and_then(|(_, _, label)| label)
        .is_some_and(|l| l.starts_with('r'))
}

/// Removes the segments every event of which is deleted (manifest first, then the segment
/// file), then forgets them.
fn remove_expired_segments(
    cx: &RunContext<'_>,
    location: &ArchiveLocation,
    report: &mut RunReport,
) -> Result<(), StoreError> {
    for segment in cx.ledger.segments()? {
        if segment.live > 0 {
            continue;
        }
        location
            .remove_segment(&segment.stem)
            .map_err(archive_error)?;
        cx.ledger.forget_segment(&segment.stem)?;
        report.segments_removed.push(segment.stem);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_labels_are_valid_segment_labels() {
        let label = run_label(1_800_000_000 * 1_000_000);
        assert_eq!(label, "r20270115t080000");
        assert!(sealtrail_archive::valid_label(&format!("{label}-202701-3")));
    }
}
