//! Receipts: what became of an event a producer was answered for. A 201 names its seq at
//! once; a 202 (the database was unreachable, the event spooled) names only its id, and
//! the producer looks here later: stored with its seq, still waiting in the spool, or
//! refused by the log when the spool drained (kept in the rejected list, with the reason).
//! Receipts say where an event is, never what it holds, so they are not access-logged.

use std::sync::Arc;

use sealtrail_store::LogReader;
use uuid::Uuid;

use super::error::blocking;
use super::{AppError, DurableLog};

/// Where an event is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// In the log, at `seq`.
    Stored,
    /// Acknowledged while the database was unreachable, waiting in the spool.
    Spooled,
    /// Acknowledged, then refused by the log when the spool drained.
    Refused,
}

/// A refusal of a spooled event with this id.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Refusal {
    /// Why the log refused it.
    pub reason: String,
    /// When (RFC 3339).
    pub refused_at: String,
}

/// What became of the event with one id.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// The event id.
    pub id: String,
    /// Where it is.
    pub status: ReceiptStatus,
    /// Its seq, when stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Spooled events with this id the log refused (an id reused with other content while
    /// it waited: the stored event is then another one than the refused).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refusal>,
}

/// The receipt of event `id`, if it exists for a key that may see `tenant`s for which
/// `may_see` says so (others' events do not exist for it).
pub async fn receipt(
    reader: Arc<dyn LogReader>,
    log: &DurableLog,
    id: Uuid,
    may_see: impl Fn(&str) -> bool,
) -> Result<Receipt, AppError> {
    let not_found = || AppError::NotFound(format!("no event with id {id}"));
    let refused: Vec<Refusal> = log
        .rejected_events()
        .into_iter()
        .filter(|r| r.id == id && may_see(&r.tenant_id))
        .map(|r| Refusal {
            reason: r.reason,
            refused_at: sealtrail_core::time_format::format_micros(r.refused_at),
        })
        .collect();
    let spool = log.clone();
    // The spool first: it is local, and answers while the database is unreachable.
    let (stored, spooled) = blocking(move || match spool.spooled_event(&id)? {
        Some(tenant) => Ok((None, Some(tenant))),
        None => Ok((reader.get(&id)?.map(|e| (e.seq, e.tenant_id)), None)),
    })
    .await?;
    let (status, seq) = match (stored, spooled) {
        (_, Some(tenant)) if may_see(&tenant) => (ReceiptStatus::Spooled, None),
        (Some((seq, tenant)), _) if may_see(&tenant) => (ReceiptStatus::Stored, Some(seq)),
        _ if !refused.is_empty() => (ReceiptStatus::Refused, None),
        _ => return Err(not_found()),
    };
    Ok(Receipt {
        id: id.to_string(),
        status,
        seq,
        refused,
    })
}
