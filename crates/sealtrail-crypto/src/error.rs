//! The crate's error type: bad settings, a key or value that cannot be sealed or opened,
//! or a failure of the store behind one of the persistence traits.

use crate::settings::ENCRYPTABLE_FIELDS;

/// Any error a [`DataKeyStore`](crate::DataKeyStore) or
/// [`BlindIndexStore`](crate::BlindIndexStore) implementation reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong sealing, opening, shredding or indexing.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A configured field is not one that may be encrypted.
    #[error(
        "{field:?} cannot be encrypted: give one of {} or a JSON pointer into details \
         (/details/...); indexed fields must stay readable",
        ENCRYPTABLE_FIELDS.join(", ")
    )]
    UnencryptableField {
        /// The field as configured.
        field: String,
    },
    /// A blind-indexed field is not among the encrypted ones.
    #[error("encryption.blind_index: {field:?} is not in encryption.fields")]
    BlindIndexNotEncrypted {
        /// The field as configured.
        field: String,
    },
    /// The system gave no randomness (for nonces, or for a new data key).
    #[error("encryption: no randomness for {0}")]
    NoRandomness(&'static str),
    /// AES-GCM refused to seal (it does not for keys and lengths this crate uses).
    #[error("encryption: sealing failed")]
    SealingFailed,
    /// A stored data key does not open with the configured master key (another master
    /// key, or a tampered key store).
    #[error("encryption: data key {key_id} does not open with this master key")]
    WrongMasterKey {
        /// The data key's id.
        key_id: String,
    },
    /// No root key is stored yet and several previous master keys are configured: which
    /// one was the first cannot be told.
    #[error(
        "encryption: no root key is stored yet, and with several previous_master_keys the first master key cannot be told; start once with only the first one listed"
    )]
    UnknownRootKey,
    /// A stored data key opened but is not an AES-256 key.
    #[error("encryption: data key {key_id} is not 32 bytes")]
    MalformedDataKey {
        /// The data key's id.
        key_id: String,
    },
    /// The store behind a persistence trait failed; shown as it said it.
    #[error(transparent)]
    Storage(BoxError),
}

impl CryptoError {
    /// Wraps a persistence failure.
    pub fn storage(error: impl Into<BoxError>) -> Self {
        Self::Storage(error.into())
    }
}
