//! Sealing: between validation and writing the record, the values a [`FieldSealer`] names
//! are replaced by sealed strings, so the leaf hash covers only ciphertext.
//!
//! A sealed value's bytes are random, so a retry could not be recognised by them: each
//! sealed value's plaintext is hashed instead, under its field name, and the record writer
//! leaves the sealed members out of the content hash.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::FieldError;
use super::validate::ValidEvent;
use crate::merkle::Hash;

/// Encrypts sensitive field values while a record is written (field encryption lives in
/// the store; this is the seam it plugs into, so sealing costs no second pass over the
/// record).
pub trait FieldSealer {
    /// Fields to seal: top-level names, or JSON pointers into `details` (`/details/...`).
    fn sealed_fields(&self) -> &[String];
    /// A JSON pointer into the event naming its data subject, if keys are per subject.
    fn subject_pointer(&self) -> Option<&str>;
    /// The sealed string standing for `value_json` (a value's JSON text) in `field`.
    fn seal(
        &self,
        tenant: &str,
        subject: Option<&str>,
        field: &str,
        value_json: &str,
    ) -> Result<String, String>;
    /// Keys the content hash (so it cannot be used to guess a sealed value).
    fn key_content_hash(&self, hash: &mut Hash);
}

/// A validated event with its configured fields sealed.
pub(crate) struct SealedEvent<'s> {
    pub(crate) event: ValidEvent,
    /// `None` when no sealer is configured.
    pub(crate) sealing: Option<Sealing<'s>>,
}

/// What sealing did, for the content hash.
pub(crate) struct Sealing<'s> {
    sealer: &'s dyn FieldSealer,
    /// Members whose written bytes are sealed, so random.
    pub(crate) members: SealedMembers,
    /// Each sealed value's plaintext, in the order sealed.
    plaintexts: Sha256,
}

/// The members a sealer can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sealable {
    IpAddress,
    UserAgent,
    RequestId,
    Reason,
    Changes,
    Details,
}

/// A set of [`Sealable`] members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SealedMembers(u8);

impl SealedMembers {
    fn insert(&mut self, member: Sealable) {
        self.0 |= 1 << member as u8;
    }

    pub(crate) fn contains(self, member: Sealable) -> bool {
        self.0 & (1 << member as u8) != 0
    }
}

/// The event's data subject as its key is chosen by: the value the sealer's subject pointer
/// names in the event as sent, a string as itself and anything else as its JSON.
pub(crate) fn data_subject(sealer: &dyn FieldSealer, event: &Value) -> Option<String> {
    match event.pointer(sealer.subject_pointer()?)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Seals the fields `sealer` names, in the order it names them; names it cannot reach are
/// ignored (the store checks its configuration).
pub(crate) fn seal<'s>(
    mut event: ValidEvent,
    sealer: Option<&'s dyn FieldSealer>,
    subject: Option<&str>,
) -> Result<SealedEvent<'s>, FieldError> {
    let Some(sealer) = sealer else {
        return Ok(SealedEvent {
            event,
            sealing: None,
        });
    };
    let mut sealing = Sealing {
        sealer,
        members: SealedMembers::default(),
        plaintexts: Sha256::new(),
    };
    let owner = Owner {
        tenant: &event.tenant_id,
        subject,
    };
    // Parsed at the first pointer into them and written once after the last.
    let mut details: Option<Value> = None;
    for field in sealer.sealed_fields() {
        let (member, text) = match field.as_str() {
            "ip_address" => (Sealable::IpAddress, &mut event.ip_address),
            "user_agent" => (Sealable::UserAgent, &mut event.user_agent),
            "request_id" => (Sealable::RequestId, &mut event.request_id),
            "reason" => (Sealable::Reason, &mut event.reason),
            "changes" => {
                if let Some(changes) = &mut event.changes {
                    let json = std::str::from_utf8(changes).expect("canonical JSON is UTF-8");
                    let sealed = sealing.seal(&owner, field, json)?;
                    *changes = crate::canonical::to_vec(&Value::String(sealed));
                    sealing.members.insert(Sealable::Changes);
                }
                continue;
            }
            _ => {
                if let (Some(pointer), Some(sent)) =
                    (field.strip_prefix("/details"), &event.details)
                {
                    let value = details.get_or_insert_with(|| {
                        serde_json::from_slice(sent).expect("details were canonicalised just now")
                    });
                    sealing.seal_in_details(&owner, value, sent, pointer, field)?;
                }
                continue;
            }
        };
        if let Some(value) = text {
            let json = serde_json::to_string(value).expect("a string serialises");
            *value = sealing.seal(&owner, field, &json)?;
            sealing.members.insert(member);
        }
    }
    if sealing.members.contains(Sealable::Details) {
        let value = details.expect("sealing inside details parsed them");
        event.details = Some(crate::canonical::to_vec(&value));
    }
    Ok(SealedEvent {
        event,
        sealing: Some(sealing),
    })
}

/// Whose key seals: the tenant's, or its data subject's.
struct Owner<'a> {
    tenant: &'a str,
    subject: Option<&'a str>,
}

impl Sealing<'_> {
    fn seal(&mut self, owner: &Owner, field: &str, value_json: &str) -> Result<String, FieldError> {
        for part in [field.as_bytes(), b"\n", value_json.as_bytes(), b"\n"] {
            self.plaintexts.update(part);
        }
        self.sealer
            .seal(owner.tenant, owner.subject, field, value_json)
            .map_err(|reason| FieldError::new(field, reason))
    }

    /// Seals the value `pointer` names inside `details`, if it is there and not null. The
    /// details as sent count once, whole, among the plaintexts.
    fn seal_in_details(
        &mut self,
        owner: &Owner,
        details: &mut Value,
        sent: &[u8],
        pointer: &str,
        field: &str,
    ) -> Result<(), FieldError> {
        let Some(slot) = details.pointer_mut(pointer).filter(|v| !v.is_null()) else {
            return Ok(());
        };
        if !self.members.contains(Sealable::Details) {
            for part in [b"details\n".as_slice(), sent, b"\n"] {
                self.plaintexts.update(part);
            }
            self.members.insert(Sealable::Details);
        }
        let json = slot.to_string();
        *slot = Value::String(self.seal(owner, field, &json)?);
        Ok(())
    }

    /// The content hash of the members written as sent, completed by the sealed values'
    /// plaintexts and keyed by the sealer, so it cannot be used to guess a sealed value.
    pub(crate) fn keyed_content_hash(self, content: Sha256) -> Hash {
        let mut hash: Hash = content
            .chain_update(self.plaintexts.finalize())
            .finalize()
            .into();
        self.sealer.key_content_hash(&mut hash);
        hash
    }
}
