//! Field encryption and crypto-shredding: what turns a sensitive value into ciphertext
//! before its record is hashed, opens it again for authorised readers, and destroys keys so
//! that it can never be opened again.
//!
//! Configured sensitive fields (`ip_address`, `user_agent`, `reason`, `changes`,
//! `request_id`, or JSON pointers into `details`) are encrypted *before* the record is
//! hashed into the Merkle tree, so the log, its indexes, backups and exports hold only
//! ciphertext, and destroying a key later leaves every leaf hash — and `verify` — intact.
//!
//! - Each value is sealed with AES-256-GCM under a data key: one per tenant, or one per
//!   (tenant, subject) when a subject pointer is configured (the subject's id is stored
//!   only as 16 hex digits of its SHA-256, so the key table does not name people). The
//!   additional data binds the ciphertext to its tenant and field; its event is pinned by
//!   the record's leaf hash (moving it would be tampering, which `verify` finds).
//! - Data keys are random and kept wrapped (AES-256-GCM) by the master key; the master key
//!   comes from a file or environment variable and is never stored beside the data.
//! - A sealed value is the string `sealtrail:enc:v1:<key ref>:<field>:<base64url(nonce ‖
//!   ciphertext)>` holding the value's JSON text, so any JSON value round-trips, and a read
//!   can splice opened values into the stored bytes without parsing the record.
//! - Shredding destroys a data key (tenant or subject): its values read as `"[shredded]"`
//!   forever after.
//! - With encryption on, the content hash used to recognise retries is keyed (HMAC with a
//!   key derived from the master key), so it cannot be used to guess a sensitive value.
//! - Blind-indexed fields also get a keyed token (HMAC of tenant, field and value), so
//!   equality search works without the index holding a value.
//!
//! # Boundaries
//!
//! This crate holds no SQL and touches no file. What must persist goes through two traits
//! that a store implements: [`DataKeyStore`] (the wrapped data keys; `sealtrail-store`
//! keeps them in `data-keys.sqlite`) and [`BlindIndexStore`] (token → seq entries and the
//! index's cursor on the log; `blind-index.sqlite`). Dependencies point one way: core ←
//! crypto ← store. The [`FieldCipher`] implements core's
//! [`FieldSealer`](sealtrail_core::FieldSealer), the seam through which `prepare` seals
//! values as a record is written; the [`Opener`] is how every read path shows events.
//!
//! The opener needs an event as read back; that type,
//! [`StoredEvent`](sealtrail_core::StoredEvent), lives in core (the store re-exports it),
//! so this crate depends on no store.

mod blind;
mod cipher;
mod data_keys;
mod error;
mod opener;
mod settings;

pub use blind::{BlindEntry, BlindIndexStore, BlindToken};
pub use cipher::{FieldCipher, RewrapReport, SEALED_PREFIX, SHREDDED};
pub use data_keys::{DataKeyStore, NewDataKey, StoredDataKey};
pub use error::{BoxError, CryptoError};
pub use opener::Opener;
pub use settings::{ENCRYPTABLE_FIELDS, EncryptionSettings, check_fields};
