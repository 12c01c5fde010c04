//! Planning retention over a stored log: every event's fate under the configured policies
//! at a given moment, counted per tenant and policy (`sealtrail retention plan`). Reads
//! only; what a run then does with the plan — archive, drop bodies — builds on it.

use sealtrail_core::retention_policy::{RetentionConfig, RetentionPlan, Subject};
use sealtrail_core::{EventFilter, StoredRecord};

use crate::{LogReader, StoreError};

/// Events read per step of the scan.
const SCAN_PAGE_EVENTS: usize = 10_000;

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
        Ok(Self(store.list(None, false)?))
    }
}

impl HoldCheck for ActiveHolds {
    fn holds(&self, tenant: &str, resource_type: &str, resource_id: Option<&str>) -> bool {
        self.0
            .iter()
            .any(|h| h.covers(tenant, resource_type, resource_id))
    }
}

/// The fate of every event up to the newest checkpoint at `now` (UTC µs); `progress` is
/// told (events scanned, tree size) after every page.
pub fn plan(
    reader: &dyn LogReader,
    config: &RetentionConfig,
    now: i64,
    holds: &dyn HoldCheck,
    mut progress: impl FnMut(u64, u64),
) -> Result<RetentionPlan, StoreError> {
    let through = reader.latest_checkpoint()?.map_or(0, |c| c.tree_size);
    let mut plan = RetentionPlan::default();
    let mut cursor = 0;
    let everything = EventFilter::default();
    while cursor < through {
        let page = reader.events_after(cursor, through, &everything, SCAN_PAGE_EVENTS)?;
        for event in &page.events {
            let record = StoredRecord::parse(&event.record).map_err(|e| {
                StoreError::Integrity(format!(
                    "event {} has a record that does not parse ({e}); run `sealtrail verify`",
                    event.seq
                ))
            })?;
            let subject = Subject {
                tenant: &record.tenant_id,
                action: &record.action,
                resource_type: &record.resource_type,
                severity: record.severity,
                occurred_at: event.occurred_at,
            };
            let held = holds.holds(
                &record.tenant_id,
                &record.resource_type,
                record.resource_id.as_deref(),
            );
            // Nothing is archived yet: archival writes segments but does not record them in
            // the store, so every event is planned as not archived.
            let fate = config.fate(&subject, now, held, false);
            plan.add(&record.tenant_id, config.policy_for(&subject).name, fate);
        }
        debug_assert!(page.scanned_through > cursor, "a scan step advances");
        cursor = page.scanned_through;
        progress(cursor, through);
    }
    Ok(plan)
}
