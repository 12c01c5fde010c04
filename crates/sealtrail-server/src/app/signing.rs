//! Rotating the log's signing key online: the sequencer appends the rotation record (the
//! statement handing the log to the next key, signed by both keys) in the server's own
//! tenant, signs the tree holding it with both keys and every later tree with the next key
//! alone; then the next seed becomes the data directory's key. A verifier holding either
//! key follows the chain ([`sealtrail_core::CheckpointVerifier::from_rotations`]).

use std::path::PathBuf;
use std::sync::Arc;

use sealtrail_core::time_format::now_micros;
use sealtrail_core::{CheckpointVerifier, EventLimits};
use sealtrail_store::{Receipt, SequencerHandle, identity};

use super::AppError;
use super::error::blocking;
use super::system::RotationRecord;

/// Rotates the signing key of the log this server writes.
pub struct SigningKeys {
    /// The log's writer, which holds the signer.
    pub sequencer: SequencerHandle,
    /// The log's verifier (it follows the rotation).
    pub verifier: CheckpointVerifier,
    /// Where the signing key lives.
    pub data_dir: PathBuf,
    /// The server's own tenant, where the record goes.
    pub tenant: String,
    /// Bounds of the record.
    pub limits: EventLimits,
    /// One rotation at a time.
    pub changes: tokio::sync::Mutex<()>,
}

/// A rotation done.
pub struct Rotated {
    /// The rotation record.
    pub receipt: Receipt,
    /// The tree size from which the new key signs (the record's seq).
    pub from_size: u64,
    /// The key retired (vkey).
    pub old_vkey: String,
    /// The key now signing (vkey).
    pub new_vkey: String,
    /// The statement, as filed with the log.
    pub statement: String,
}

impl SigningKeys {
    /// Hands the log to the next key, on behalf of the admin key `key_id`, with `reason`.
    /// The next seed is the one waiting in the data directory (copied to every server of a
    /// shared database beforehand) or a new one. Runs to its end even if the caller goes
    /// away: a rotation committed must also be promoted in the data directory.
    pub async fn rotate(self: &Arc<Self>, key_id: &str, reason: &str) -> Result<Rotated, AppError> {
        // The same bound as a hold's reason: an admin's sentence, recorded in the log.
        sealtrail_core::holds::validate_hold_reason("reason", reason).map_err(AppError::Invalid)?;
        let (this, key_id, reason) = (self.clone(), key_id.to_owned(), reason.to_owned());
        tokio::spawn(async move { this.rotate_to_end(&key_id, &reason).await })
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?
    }

    async fn rotate_to_end(&self, key_id: &str, reason: &str) -> Result<Rotated, AppError> {
        let _one = self.changes.lock().await;
        let next = self.next_seed().await?;
        let next_vkey = sealtrail_core::CheckpointSigner::new(self.verifier.origin(), &next)
            .map_err(|e| AppError::Internal(e.to_string()))?
            .verifier()
            .vkey();
        let old_vkey = self.verifier.vkey();
        let (tenant, limits) = (self.tenant.clone(), self.limits.clone());
        let (by, why) = (format!("key:{key_id}"), reason.to_owned());
        let (old, new) = (old_vkey.clone(), next_vkey.clone());
        let record = Box::new(move |statement: &str, size: u64| {
            RotationRecord {
                tenant: &tenant,
                by: &by,
                reason: &why,
                statement,
                from_size: size,
                old_vkey: &old,
                new_vkey: &new,
            }
            .prepare(now_micros(), &limits)
            .map_err(|e| format!("the rotation record: {}: {}", e.field, e.reason))
        });
        let outcome = self
            .sequencer
            .rotate_signing_key(next, record)
            .await
            .map_err(|e| AppError::Unavailable(format!("the rotation was not committed: {e}")))?;
        let receipt = outcome
            .receipts
            .into_iter()
            .next()
            .ok_or_else(|| AppError::Internal("the rotation has no receipt".into()))?;
        let data_dir = self.data_dir.clone();
        if let Err(error) =
            blocking(move || Ok(identity::promote_next_signing_key(&data_dir)?)).await
        {
            // The rotation is in the log and the server signs with the new key; the next
            // start, or the next rotation, finishes the rename (the next seed is the
            // chain's current key).
            tracing::error!(%error, "the rotated key could not be made the data directory's key yet");
        }
        let statement = self
            .verifier
            .rotations()
            .into_iter()
            .find(|s| sealtrail_core::checkpoint::rotation_size(s).ok() == Some(receipt.seq))
            .ok_or_else(|| AppError::Internal("the rotation was not followed".into()))?;
        Ok(Rotated {
            from_size: receipt.seq,
            receipt,
            old_vkey,
            new_vkey: next_vkey,
            statement,
        })
    }

    /// The seed to rotate to. A waiting next seed that is the log's current key (a rotation
    /// whose rename did not happen) is promoted first and a new one made; one that is a
    /// retired key of the log is refused.
    async fn next_seed(&self) -> Result<[u8; 32], AppError> {
        let data_dir = self.data_dir.clone();
        let verifier = self.verifier.clone();
        blocking(move || {
            let next = identity::prepare_next_signing_key(&data_dir)?;
            let public = sealtrail_core::CheckpointSigner::new(verifier.origin(), &next)
                .map_err(|e| AppError::Internal(e.to_string()))?
                .verifier()
                .public_key();
            if public == verifier.public_key() {
                identity::promote_next_signing_key(&data_dir)?;
                return Ok(identity::prepare_next_signing_key(&data_dir)?);
            }
            if verifier.has_key(&public) {
                return Err(AppError::Conflict(format!(
                    "{} holds a key this log retired; delete that file (the key signs nothing \
                     any more) to rotate to a new one",
                    data_dir.join(identity::NEXT_SIGNING_KEY_FILE).display()
                )));
            }
            Ok(next)
        })
        .await
    }
}
