//! Crypto-shredding: destroying a tenant's data keys, or one subject's, so the sensitive
//! fields of its events read as `"[shredded]"` forever while every record and hash stays
//! and `verify` still passes; dropping their blind-index entries; and recording the
//! shredding as an event in the tenant.

use std::sync::Arc;

use sealtrail_core::EventLimits;
use sealtrail_crypto::{BlindIndexStore, FieldCipher, Opener};
use sealtrail_store::Receipt;
use sha2::{Digest, Sha256};

use super::DurableLog;
use super::system::ShreddingRecord;

/// What a shredding did.
pub struct Shredding {
    /// SHA-256 (hex) of the subject id, for a subject's shredding.
    pub subject_sha256: Option<String>,
    /// False if the key had never been used (it is destroyed all the same: it never will).
    pub key_existed: bool,
    /// The event recording it.
    pub receipt: Receipt,
}

/// Why a shredding failed.
#[derive(Debug, thiserror::Error)]
pub enum ShredError {
    /// Field encryption is off: there are no keys.
    #[error(
        "field encryption is not configured ([encryption] in the config): there are no keys to shred"
    )]
    NotConfigured,
    /// Destroying the keys or the index entries failed.
    #[error("{0}")]
    Failed(String),
    /// The keys are destroyed but the record of it could not be appended.
    #[error("the key is destroyed, but recording it failed (retry to record it): {0}")]
    Unrecorded(String),
}

/// Destroys data keys.
pub struct Shredder {
    /// Where the record goes.
    pub log: DurableLog,
    /// The cipher whose keys are destroyed.
    pub opener: Opener,
    /// The blind index whose entries go with them.
    pub blind: Option<Arc<dyn BlindIndexStore>>,
    /// Limits of the record.
    pub limits: EventLimits,
}

impl Shredder {
    /// Destroys `tenant`'s keys (its own and every subject's), or only `subject`'s, on
    /// behalf of the admin key `key_id`.
    pub async fn shred(
        &self,
        tenant: &str,
        subject: Option<&str>,
        key_id: &str,
    ) -> Result<Shredding, ShredError> {
        let Some(cipher) = self.opener.shared_cipher() else {
            return Err(ShredError::NotConfigured);
        };
        let (owned_tenant, owned_subject) = (tenant.to_owned(), subject.map(str::to_owned));
        let blind = self.blind.clone();
        let key_existed = tokio::task::spawn_blocking(move || {
            let existed = cipher
                .shred(&owned_tenant, owned_subject.as_deref())
                .map_err(|e| ShredError::Failed(e.to_string()))?;
            if let Some(index) = blind {
                let tag = owned_subject.as_deref().map(FieldCipher::subject_tag);
                index
                    .forget(&owned_tenant, tag.as_deref())
                    .map_err(|e| ShredError::Failed(e.to_string()))?;
            }
            Ok::<_, ShredError>(existed)
        })
        .await
        .map_err(|e| ShredError::Failed(e.to_string()))??;
        let subject_sha256 = subject.map(|s| hex::encode(Sha256::digest(s)));
        let record = ShreddingRecord {
            tenant,
            key_id,
            subject_sha256: subject_sha256.as_deref(),
            key_existed,
        }
        .prepare(sealtrail_core::time_format::now_micros(), &self.limits)
        .map_err(|e| ShredError::Failed(format!("the shredding record is invalid: {e}")))?;
        let mut outcome = self
            .log
            .record(vec![record])
            .await
            .map_err(|e| ShredError::Unrecorded(e.to_string()))?;
        Ok(Shredding {
            subject_sha256,
            key_existed,
            receipt: outcome.receipts.remove(0),
        })
    }
}
