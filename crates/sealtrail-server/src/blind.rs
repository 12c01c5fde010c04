//! Keeping the blind index up to date: equality search on encrypted fields without storing
//! their plaintext.
//!
//! For each blind-indexed field (`encryption.blind_index`) an event's value is reduced to a
//! keyed token (`sealtrail-crypto`); the index maps tokens to seqs in a
//! [`BlindIndexStore`] (`blind-index.sqlite` in the data directory, `sealtrail-store`). It
//! is a cursor on the log, like every consumer (DESIGN.md): a [`LogFollower`](sealtrail_store::follow::LogFollower) reads the durable
//! events after its cursor, opens the indexed fields, and writes their tokens and the new
//! cursor in one transaction; after a restart it resumes, and on a shared PostgreSQL log
//! every server keeps its own. A search turns the asked value into its token the same way,
//! so the index never holds a value. Shredding drops the entries of the destroyed keys.

use std::sync::Arc;

use sealtrail_crypto::{BlindEntry, BlindIndexStore, CryptoError, Opener};
use sealtrail_store::follow::{LogConsumer, ReadPlan, Step, StepError};

/// Events read from the log per step.
const STEP_EVENTS: usize = 2000;

/// The blind index as a consumer of the log: each step tokenises the blind-indexed
/// fields of the events read and stores the tokens with the new cursor.
pub struct BlindIndexer {
    /// The index it keeps.
    pub index: Arc<dyn BlindIndexStore>,
    /// Opens the sealed fields to tokenise them.
    pub opener: Opener,
}

impl LogConsumer for BlindIndexer {
    fn name(&self) -> &str {
        "blind-index"
    }

    async fn start(&mut self, _through: u64) -> Result<u64, StepError> {
        // Read once: from here on this consumer is the only one moving it.
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.cursor())
            .await
            .map_err(|e| StepError::Fatal(e.to_string()))?
            .map_err(|e| StepError::Fatal(format!("cannot read its cursor: {e}")))
    }

    fn plan(&self) -> ReadPlan {
        ReadPlan::Events {
            filter: Box::default(),
            max_events: STEP_EVENTS,
        }
    }

    async fn step(&mut self, step: Step) -> Result<u64, StepError> {
        let page = step.page.expect("the plan reads events");
        let (index, opener) = (self.index.clone(), self.opener.clone());
        tokio::task::spawn_blocking(move || -> Result<u64, CryptoError> {
            let cipher = opener
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
            let scanned = page.scanned_through.max(step.cursor);
            index.add(&entries, scanned)?;
            Ok(scanned)
        })
        .await
        .map_err(|e| StepError::Fatal(format!("the blind index task failed: {e}")))?
        .map_err(|e| StepError::Retry(e.to_string()))
    }
}
