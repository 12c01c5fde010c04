//! Legal holds: placing, releasing and listing them, each change recorded in the log as an
//! event in the hold's tenant (`legal_hold.placed`, `legal_hold.released`) and durable
//! before it is answered. Retention and archival ask the store's `covering` before they
//! delete anything.
//!
//! Where the holds file and the log could disagree, the hold stays in force: a hold is
//! stored before the record of its placing is appended (a hold whose record failed still
//! blocks deletion, and the answer says the record is missing), and a release is recorded
//! before it is stored (a release that is not in the log never takes effect).

use std::sync::Arc;

use sealtrail_core::EventLimits;
use sealtrail_core::holds::{Hold, HoldRelease, validate_hold, validate_hold_reason};
use sealtrail_core::time_format::{format_micros, now_micros};
use sealtrail_store::Receipt;
use sealtrail_store::holds::{HoldStore, Release};

use super::error::blocking;
use super::system::HoldRecord;
use super::{AppError, DurableLog};

/// What a hold is placed on, and why.
pub struct HoldRequest {
    /// The tenant.
    pub tenant: String,
    /// Only this resource type (none: the whole tenant).
    pub resource_type: Option<String>,
    /// Only this resource (needs `resource_type`).
    pub resource_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// A hold placed or released, and the event recording it.
pub struct HoldChange {
    /// The hold after the change.
    pub hold: Hold,
    /// The event recording the change.
    pub receipt: Receipt,
}

/// Places, releases and lists legal holds.
pub struct LegalHolds {
    store: Arc<HoldStore>,
    log: DurableLog,
    limits: EventLimits,
    /// One change at a time, so a release is checked, recorded and stored without another
    /// change of the same hold in between.
    changes: tokio::sync::Mutex<()>,
}

impl LegalHolds {
    /// Holds in `store`, their changes recorded in `log` (events bounded by `limits`).
    pub fn new(store: Arc<HoldStore>, log: DurableLog, limits: EventLimits) -> Self {
        Self {
            store,
            log,
            limits,
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// The store, for what must ask it which holds cover an event.
    pub fn store(&self) -> &Arc<HoldStore> {
        &self.store
    }

    /// Places a hold on behalf of the admin key `key_id`.
    pub async fn place(&self, request: HoldRequest, key_id: &str) -> Result<HoldChange, AppError> {
        validate_hold(
            &request.tenant,
            request.resource_type.as_deref(),
            request.resource_id.as_deref(),
            &request.reason,
            &self.limits,
        )
        .map_err(AppError::Invalid)?;
        let hold = Hold {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: request.tenant,
            resource_type: request.resource_type,
            resource_id: request.resource_id,
            reason: request.reason,
            placed_by: key_id.to_owned(),
            placed_at: now_micros(),
            release: None,
        };
        // Prepared before the hold is stored: a resource the log would refuse to name is
        // refused here, with its field, and nothing is stored.
        let record = HoldRecord {
            hold: &hold,
            released: false,
            reason: &hold.reason,
            key_id,
        }
        .prepare(hold.placed_at, &self.limits)
        .map_err(AppError::Invalid)?;
        let _change = self.changes.lock().await;
        let (store, stored) = (self.store.clone(), hold.clone());
        blocking(move || Ok(store.place(&stored)?)).await?;
        // Not `Unavailable`: clients retry those by themselves, and each retry would place
        // another hold.
        let mut outcome = self.log.record(vec![record]).await.map_err(|e| {
            AppError::Internal(format!(
                "hold {} is placed and in force, but recording it in the log failed \
                 (release it and place it again to have it recorded): {e}",
                hold.id
            ))
        })?;
        tracing::info!(hold = %hold.id, tenant = %hold.tenant, "legal hold placed");
        Ok(HoldChange {
            hold,
            receipt: outcome.receipts.remove(0),
        })
    }

    /// Releases the hold `id` on behalf of the admin key `key_id`; a key bound to `tenant`
    /// sees only that tenant's holds. A hold released before is a conflict that says when
    /// and by whom.
    pub async fn release(
        &self,
        id: &str,
        reason: &str,
        key_id: &str,
        tenant: Option<&str>,
    ) -> Result<HoldChange, AppError> {
        validate_hold_reason("reason", reason).map_err(AppError::Invalid)?;
        let _change = self.changes.lock().await;
        let (store, wanted) = (self.store.clone(), id.to_owned());
        let hold = blocking(move || Ok(store.get(&wanted)?))
            .await?
            .filter(|h| tenant.is_none_or(|t| t == h.tenant))
            .ok_or_else(|| AppError::NotFound(format!("no legal hold {id}")))?;
        if let Some(release) = &hold.release {
            return Err(already_released(&hold.id, release));
        }
        let at = now_micros();
        let mut released = hold;
        released.release = Some(HoldRelease {
            at,
            by: key_id.to_owned(),
            reason: reason.to_owned(),
        });
        let record = HoldRecord {
            hold: &released,
            released: true,
            reason,
            key_id,
        }
        .prepare(at, &self.limits)
        .map_err(AppError::Invalid)?;
        let mut outcome = self.log.record(vec![record]).await.map_err(|e| {
            AppError::Unavailable(format!(
                "the release could not be recorded in the log, so hold {id} stays in force: {e}"
            ))
        })?;
        let receipt = outcome.receipts.remove(0);
        let (store, wanted, by, why) = (
            self.store.clone(),
            id.to_owned(),
            key_id.to_owned(),
            reason.to_owned(),
        );
        let stored = blocking(move || Ok(store.release(&wanted, &by, &why, at)?))
            .await
            .map_err(|e| {
                AppError::Internal(format!(
                    "the release is recorded as event {} (seq {}), but storing it failed, so \
                     hold {id} stays in force (retry the release): {e}",
                    receipt.id, receipt.seq
                ))
            })?;
        match stored {
            Release::Released(hold) => {
                tracing::info!(hold = %hold.id, tenant = %hold.tenant, "legal hold released");
                Ok(HoldChange { hold, receipt })
            }
            // Another process released it between the check and now.
            Release::AlreadyReleased(hold) => Err(already_released(
                &hold.id,
                hold.release
                    .as_ref()
                    .expect("a released hold has its release"),
            )),
            Release::NotFound => Err(AppError::NotFound(format!("no legal hold {id}"))),
        }
    }

    /// Holds of `tenant` (or of every tenant), active ones only unless `include_released`.
    pub async fn list(
        &self,
        tenant: Option<String>,
        include_released: bool,
    ) -> Result<Vec<Hold>, AppError> {
        let store = self.store.clone();
        blocking(move || Ok(store.list(tenant.as_deref(), include_released)?)).await
    }
}

fn already_released(id: &str, release: &HoldRelease) -> AppError {
    AppError::Conflict(format!(
        "legal hold {id} was released already, at {} by key {} ({}); nothing changed",
        format_micros(release.at),
        release.by,
        release.reason
    ))
}
