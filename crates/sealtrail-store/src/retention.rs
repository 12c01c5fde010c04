//! Retention over a stored log: planning (every event's fate under the configured policies
//! at a given moment, counted per tenant and policy: `sealtrail retention plan`), and the
//! ledger a run records its steps in ([`RetentionLedger`], one per backend), which the
//! server's retention run (`sealtrail-server`'s `app::retention`) drives.

use sealtrail_core::Severity;
use sealtrail_core::merkle::Hash;
use sealtrail_core::retention_policy::{Fate, RetentionConfig, RetentionPlan, Subject};

use crate::StoreError;

/// Events read per step of the scan.
pub const SCAN_PAGE_EVENTS: usize = 10_000;

/// What a legal hold covers, as retention asks it: (tenant, resource type, resource id).
pub trait HoldCheck {
    /// True if a hold keeps this event.
    fn holds(&self, tenant: &str, resource_type: &str, resource_id: Option<&str>) -> bool;
}

/// No legal holds.
pub struct NoHolds;

impl HoldCheck for NoHolds {
    fn holds(&self, _: &str, _: &str, _: Option<&str>) -> bool {
        false
    }
}

/// The active legal holds, read once (from `holds.sqlite`) for a whole plan.
pub struct ActiveHolds(pub Vec<sealtrail_core::holds::Hold>);

impl ActiveHolds {
    /// Every active hold in `store`.
    pub fn load(store: &crate::holds::HoldStore) -> Result<Self, StoreError> {
        Ok(Self(store.active()?))
    }
}

impl HoldCheck for ActiveHolds {
    fn holds(&self, tenant: &str, resource_type: &str, resource_id: Option<&str>) -> bool {
        self.0
            .iter()
            .any(|h| h.covers(tenant, resource_type, resource_id))
    }
}

/// What a run must do for one event now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Write its record to an archive segment.
    pub archive: bool,
    /// Remove its body from the hot store (once archived).
    pub remove_body: bool,
    /// Delete it: past retention, not held.
    pub delete: bool,
}

/// The fate of `row` at `now` (as a plan counts it) and what is still to do for it, or
/// `None` for an event deleted before. Archiving is judged from the ledger, not from the
/// policy alone, so a run cut off between its steps, or a hold released since, shows as
/// the work left.
pub fn due(
    config: &RetentionConfig,
    row: &LedgerRow,
    now: i64,
    holds: &dyn HoldCheck,
) -> Option<(Fate, Due)> {
    if row.deleted {
        return None;
    }
    let subject = row.subject();
    let held = holds.holds(
        &row.tenant_id,
        &row.resource_type,
        row.resource_id.as_deref(),
    );
    let archived = row.segment.is_some();
    Some(match config.fate(&subject, now, held, false) {
        Fate::Delete => (
            Fate::Delete,
            Due {
                delete: true,
                ..Due::default()
            },
        ),
        Fate::Archive if archived && !row.has_body => (Fate::Keep, Due::default()),
        Fate::Archive => (
            Fate::Archive,
            Due {
                archive: !archived,
                remove_body: true,
                ..Due::default()
            },
        ),
        Fate::ArchiveHeld if archived => (Fate::Keep, Due::default()),
        Fate::ArchiveHeld => (
            Fate::ArchiveHeld,
            Due {
                archive: true,
                ..Due::default()
            },
        ),
        fate @ (Fate::Keep | Fate::Held) => (fate, Due::default()),
    })
}

/// What is due for every event up to `through` (the newest checkpoint's size) at `now`
/// (UTC µs), counted per tenant and policy; `progress` is told (events scanned, through)
/// after every page.
pub fn plan(
    ledger: &dyn RetentionLedger,
    config: &RetentionConfig,
    now: i64,
    through: u64,
    holds: &dyn HoldCheck,
    mut progress: impl FnMut(u64, u64),
) -> Result<RetentionPlan, StoreError> {
    let mut plan = RetentionPlan::default();
    let mut cursor = 0;
    while cursor < through {
        let rows = ledger.rows(cursor, through, SCAN_PAGE_EVENTS)?;
        for row in &rows {
            if let Some((fate, _)) = due(config, row, now, holds) {
                plan.add(&row.tenant_id, config.policy_for(&row.subject()).name, fate);
            }
        }
        cursor = match rows.last() {
            Some(last) if rows.len() == SCAN_PAGE_EVENTS => last.seq,
            _ => through,
        };
        progress(cursor, through);
    }
    Ok(plan)
}

impl LedgerRow {
    /// What a policy decision is about.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            tenant: &self.tenant_id,
            action: &self.action,
            resource_type: &self.resource_type,
            severity: self.severity,
            occurred_at: self.occurred_at,
        }
    }
}

/// One event as a retention run sees it: the columns its policy and holds depend on, its
/// leaf hash (every seq of a segment carries one), and what runs did to it so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    /// Its seq.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// Owning tenant.
    pub tenant_id: String,
    /// Action.
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id (cleared once the event is deleted).
    pub resource_id: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// When it happened, UTC µs.
    pub occurred_at: i64,
    /// The stem of the archive segment holding its record, if archived.
    pub segment: Option<String>,
    /// Its body is still in the hot store.
    pub has_body: bool,
    /// It passed its retention and was deleted.
    pub deleted: bool,
}

/// An archive segment as the ledger knows it: how many of the events archived in it are
/// not yet deleted (at 0 the segment itself can go).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentUse {
    /// The stem of its file names.
    pub stem: String,
    /// Events the ledger records as archived in it.
    pub archived: u64,
    /// Of them, those not deleted.
    pub live: u64,
}

/// The store's side of a retention run: read what is due, and record each step. Each call
/// is its own transaction, and each step is idempotent, so a run cut off anywhere is
/// completed by the next one: a body leaves the hot store only for an event the ledger
/// already records as archived (or as deleted).
pub trait RetentionLedger: Send + Sync {
    /// Up to `limit` events with seqs in `after+1..=through`, in seq order.
    fn rows(&self, after: u64, through: u64, limit: usize) -> Result<Vec<LedgerRow>, StoreError>;
    /// The verbatim records of those of `seqs` whose bodies are in the hot store.
    fn records(&self, seqs: &[u64]) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Records that `seqs` are archived in the segment `stem`.
    fn mark_archived(&self, stem: &str, seqs: &[u64]) -> Result<(), StoreError>;
    /// Removes the bodies of `seqs` from the hot store (their leaf hashes stay). Refuses a
    /// seq the ledger does not record as archived. Returns how many bodies went.
    fn remove_bodies(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError>;
    /// Deletes `seqs` past their retention: body, and the user and resource ids. Returns how
    /// many were not deleted before.
    fn mark_deleted(&self, seqs: &[u64], at: i64) -> Result<u64, StoreError>;
    /// Those of `seqs` the ledger records as deleted past their retention: a segment keeps
    /// their records until every event in it is deleted, and nobody may read them there.
    fn deleted_among(&self, seqs: &[u64]) -> Result<std::collections::HashSet<u64>, StoreError>;
    /// Every segment the ledger records, with how many of its events are still live.
    fn segments(&self) -> Result<Vec<SegmentUse>, StoreError>;
    /// Forgets a segment whose files were removed (every event in it was deleted).
    fn forget_segment(&self, stem: &str) -> Result<(), StoreError>;
    /// Gives back the storage of deleted events where the store keeps it apart: on
    /// PostgreSQL, drops the month partitions every event of which is deleted. Returns
    /// what was dropped.
    fn drop_expired_storage(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}
