//! Keeping the blind index up to date: equality search on encrypted fields without storing
//! their plaintext.
//!
//! For each blind-indexed field (`encryption.blind_index`) an event's value is reduced to a
//! keyed token (`sealtrail-crypto`); the index maps tokens to seqs in a
//! [`BlindIndexStore`] (`blind-index.sqlite` in the data directory, `sealtrail-store`). It
//! is a cursor on the log, like every consumer (DESIGN.md): the task here reads the durable
//! events after its cursor, opens the indexed fields, and writes their tokens and the new
//! cursor in one transaction; after a restart it resumes, and on a shared PostgreSQL log
//! every server keeps its own. A search turns the asked value into its token the same way,
//! so the index never holds a value. Shredding drops the entries of the destroyed keys.

use std::sync::Arc;
use std::time::Duration;

use sealtrail_core::EventFilter;
use sealtrail_crypto::{BlindEntry, BlindIndexStore, Opener};
use sealtrail_store::{DurableSize, LogReader};
use tokio::sync::watch;

/// Events read from the log per step.
const STEP_EVENTS: usize = 2000;
/// A step fails in the log (reading) or in the index (writing).
type StepError = Box<dyn std::error::Error + Send + Sync>;

/// Follows the log, indexing the blind-indexed fields of every durable event.
pub async fn follow(
    index: Arc<dyn BlindIndexStore>,
    reader: Arc<dyn LogReader>,
    durable: DurableSize,
    opener: Opener,
    mut stop: watch::Receiver<bool>,
) {
    // Read once: from here on this task is the only one moving it.
    let mut cursor = match index.cursor() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "the blind index cannot read its cursor; it stops");
            return;
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let through = durable.get();
        if cursor >= through {
            tokio::select! {
                () = durable.wait_beyond(cursor) => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let (index2, reader2, opener2) = (index.clone(), reader.clone(), opener.clone());
        let step = tokio::task::spawn_blocking(move || -> Result<u64, StepError> {
            let page =
                reader2.events_after(cursor, through, &EventFilter::default(), STEP_EVENTS)?;
            let cipher = opener2
                .cipher()
                .expect("the blind index runs with encryption on");
            let mut entries = Vec::new();
            for event in &page.events {
                for token in cipher.blind_tokens(event) {
                    entries.push(BlindEntry {
                        tenant: event.tenant_id.clone(),
                        field: token.field,
                        token: token.token,
                        seq: event.seq,
                        subject_tag: token.subject_tag,
                    });
                }
            }
            let scanned = page.scanned_through.max(cursor);
            index2.add(&entries, scanned)?;
            Ok(scanned)
        })
        .await;
        match step {
            Ok(Ok(scanned)) => cursor = scanned,
            Ok(Err(error)) => {
                tracing::warn!(%error, "blind indexing failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                tracing::error!(%error, "the blind index task failed; it stops");
                return;
            }
        }
    }
}
