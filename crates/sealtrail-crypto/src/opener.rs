//! How every read path (queries, streams, sinks) shows events: through one `Opener`, which
//! opens sealed fields when encryption is on and copies records verbatim otherwise.

use std::sync::Arc;

use sealtrail_core::StoredEvent;

use crate::FieldCipher;

/// How events are shown to authorised readers: with their sealed fields opened when field
/// encryption is on, verbatim otherwise. Cheap to clone; shared by every read path (queries,
/// streams, sinks).
#[derive(Clone, Debug, Default)]
pub struct Opener(Option<Arc<FieldCipher>>);

impl Opener {
    /// Opens with `cipher`, or shows records as stored.
    pub fn new(cipher: Option<Arc<FieldCipher>>) -> Self {
        Self(cipher)
    }

    /// The event as the API returns it.
    pub fn api_json(&self, stored: &StoredEvent) -> Vec<u8> {
        match &self.0 {
            Some(cipher) => cipher.open_api_json(stored),
            None => stored.to_api_json(),
        }
    }

    /// The event as the API returns it, and the JSON of every value opened for it (empty
    /// when encryption is off): what must not leave with anything but the event itself.
    pub fn api_json_and_opened(&self, stored: &StoredEvent) -> (Vec<u8>, Vec<Vec<u8>>) {
        match &self.0 {
            Some(cipher) => {
                let mut opened = Vec::new();
                let json = cipher.open_api_json_noting(stored, &mut |v| opened.push(v.to_vec()));
                (json, opened)
            }
            None => (stored.to_api_json(), Vec::new()),
        }
    }

    /// The cipher, when encryption is on.
    pub fn cipher(&self) -> Option<&FieldCipher> {
        self.0.as_deref()
    }

    /// The cipher, shareable with another thread.
    pub fn shared_cipher(&self) -> Option<Arc<FieldCipher>> {
        self.0.clone()
    }
}
