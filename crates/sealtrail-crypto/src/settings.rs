//! What to encrypt and with which master key, and the rules a configuration must follow
//! (only fields that no index or filter needs may be sealed).

use crate::CryptoError;

/// Top-level fields that may be encrypted: none of them is an index or filter column
/// (those must stay readable for queries and row-level security).
pub const ENCRYPTABLE_FIELDS: [&str; 5] = [
    "ip_address",
    "user_agent",
    "reason",
    "changes",
    "request_id",
];

/// Which fields, under which keys.
#[derive(Clone, Debug)]
pub struct EncryptionSettings {
    /// The 32-byte master key: every data key is wrapped by it.
    pub master_key: [u8; 32],
    /// Master keys it replaced: data keys still wrapped by one of them open, until
    /// [`FieldCipher::rewrap_under_current_master`](crate::FieldCipher::rewrap_under_current_master)
    /// has wrapped every one by `master_key`.
    pub previous_master_keys: Vec<[u8; 32]>,
    /// Top-level field names from [`ENCRYPTABLE_FIELDS`], or JSON pointers into `details`
    /// (`/details/guest/dietary_notes`).
    pub fields: Vec<String>,
    /// A JSON pointer into the event naming its data subject (`/user_id`, or
    /// `/details/guest/id`): events with one get that subject's own key.
    pub subject: Option<String>,
    /// Encrypted fields that also get a keyed blind index, for equality search.
    pub blind_index: Vec<String>,
}

impl EncryptionSettings {
    /// Checks the field list and that every blind-indexed field is an encrypted one.
    pub fn check(&self) -> Result<(), CryptoError> {
        check_fields(&self.fields)?;
        match self.blind_index.iter().find(|f| !self.fields.contains(f)) {
            Some(field) => Err(CryptoError::BlindIndexNotEncrypted {
                field: field.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Checks a field list; the error names the bad entry.
pub fn check_fields(fields: &[String]) -> Result<(), CryptoError> {
    for field in fields {
        let ok = ENCRYPTABLE_FIELDS.contains(&field.as_str())
            || (field.starts_with("/details/") && field.len() > "/details/".len());
        if !ok {
            return Err(CryptoError::UnencryptableField {
                field: field.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(fields: &[&str], blind_index: &[&str]) -> EncryptionSettings {
        EncryptionSettings {
            previous_master_keys: Vec::new(),
            master_key: [7; 32],
            fields: fields.iter().map(|f| f.to_string()).collect(),
            subject: None,
            blind_index: blind_index.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn only_unindexed_fields_may_be_encrypted() {
        assert!(check_fields(&["user_id".into()]).is_err());
        assert!(check_fields(&["/details".into()]).is_err());
        assert!(check_fields(&["ip_address".into(), "/details/x".into()]).is_ok());
    }

    #[test]
    fn a_blind_index_needs_its_field_encrypted() {
        assert!(settings(&["ip_address"], &["ip_address"]).check().is_ok());
        let error = settings(&["ip_address"], &["reason"])
            .check()
            .expect_err("reason is not encrypted");
        assert_eq!(
            error.to_string(),
            "encryption.blind_index: \"reason\" is not in encryption.fields"
        );
    }
}
