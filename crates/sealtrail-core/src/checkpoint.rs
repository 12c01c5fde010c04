//! Signed checkpoints: the log's tree head (size + root hash) in the C2SP `tlog-checkpoint`
//! format, signed as a C2SP `signed-note` with Ed25519.
//!
//! Using the ecosystem's format rather than our own means a checkpoint a client kept can be
//! checked by any signed-note implementation, and witnesses can co-sign it later.
//!
//! ```text
//! sealtrail/3f9a0c1d2e4b5a69
//! 1024
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//!
//! — sealtrail/3f9a0c1d2e4b5a69 Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5...
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature-type byte of Ed25519 keys in signed notes.
const ED25519_ALGORITHM: u8 = 0x01;
/// Signature lines start with an em dash and a space (U+2014).
const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Why a checkpoint or key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The log origin (also the key name) is not a valid signed-note key name.
    #[error("invalid log origin {0:?}: it must be non-empty and contain no spaces or '+'")]
    InvalidOrigin(String),
    /// The text is not a well-formed checkpoint note.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// No signature line by this log's key verifies over the note body.
    #[error("checkpoint signature does not verify with the log's public key")]
    BadSignature,
    /// The checkpoint was signed for another log.
    #[error("checkpoint is for log {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// The origin this verifier expects.
        expected: String,
        /// The origin line of the note.
        found: String,
    },
    /// A verifier key string (`name+keyid+base64`) could not be parsed.
    #[error("malformed public key: {0}")]
    MalformedKey(String),
}

/// A tree head: the log's identity, how many leaves, and the root hash over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line; also the signing key's name.
    pub origin: String,
    /// The number of leaves; equal to the highest `seq` in the tree.
    pub size: u64,
    /// The RFC 9162 root hash of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note body the signature covers, including its final newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let size = lines.next().unwrap_or_default();
        let root = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("missing origin line".into()));
        }
        let size: u64 = size.parse().map_err(|_| {
            CheckpointError::Malformed(format!("tree size {size:?} is not a number"))
        })?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                CheckpointError::Malformed("root hash is not 32 bytes of base64".into())
            })?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A checkpoint together with its signed-note text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head that was signed.
    pub checkpoint: Checkpoint,
    /// The complete signed note: body, blank line, signature line.
    pub note: String,
}

fn validate_key_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(CheckpointError::InvalidOrigin(name.to_owned()));
    }
    Ok(())
}

/// The signed-note key ID: the first four bytes of `SHA-256(name || "\n" || 0x01 || key)`.
fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519_ALGORITHM]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The log's signing identity.
pub struct CheckpointSigner {
    verifier: CheckpointVerifier,
    key: SigningKey,
}

impl CheckpointSigner {
    /// A signer for the log `origin` from a 32-byte Ed25519 secret seed.
    pub fn new(origin: &str, secret: &[u8; 32]) -> Result<Self, CheckpointError> {
        validate_key_name(origin)?;
        let key = SigningKey::from_bytes(secret);
        let public = key.verifying_key();
        Ok(Self {
            verifier: CheckpointVerifier {
                name: origin.to_owned(),
                key_id: key_id(origin, &public),
                key: public,
            },
            key,
        })
    }

    /// Signs the tree head `(size, root)` of this log.
    pub fn sign(&self, size: u64, root: Hash) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            origin: self.verifier.name.clone(),
            size,
            root,
        };
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.verifier.key_id);
        blob.extend_from_slice(&signature.to_bytes());
        let note = format!(
            "{body}\n{SIGNATURE_LINE_PREFIX}{} {}\n",
            self.verifier.name,
            BASE64.encode(blob)
        );
        SignedCheckpoint { checkpoint, note }
    }

    /// The matching verifier (public half).
    pub fn verifier(&self) -> &CheckpointVerifier {
        &self.verifier
    }
}

/// Checks checkpoints signed by one log.
#[derive(Clone, Debug)]
pub struct CheckpointVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl CheckpointVerifier {
    /// Parses a signed-note verifier key: `<name>+<hex key id>+<base64(0x01 || key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CheckpointError::MalformedKey(
                "expected name+keyid+key".into(),
            ));
        };
        validate_key_name(name).map_err(|e| CheckpointError::MalformedKey(e.to_string()))?;
        let raw = BASE64
            .decode(key_b64)
            .map_err(|e| CheckpointError::MalformedKey(format!("key is not base64: {e}")))?;
        let (&[algorithm], key) = raw.split_at(1.min(raw.len())) else {
            return Err(CheckpointError::MalformedKey("empty key".into()));
        };
        if algorithm != ED25519_ALGORITHM {
            return Err(CheckpointError::MalformedKey(format!(
                "unsupported signature algorithm 0x{algorithm:02x}"
            )));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| CheckpointError::MalformedKey("Ed25519 key is not 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|e| CheckpointError::MalformedKey(e.to_string()))?;
        let verifier = Self {
            name: name.to_owned(),
            key_id: key_id(name, &key),
            key,
        };
        if hex::encode(verifier.key_id) != id_hex {
            return Err(CheckpointError::MalformedKey(
                "key id does not match the key".into(),
            ));
        }
        Ok(verifier)
    }

    /// The verifier key string other signed-note tools accept.
    pub fn vkey(&self) -> String {
        let mut raw = vec![ED25519_ALGORITHM];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(raw)
        )
    }

    /// The log origin (and key name).
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Verifies a signed note and returns the checkpoint it carries.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let Some(split) = note.find("\n\n") else {
            return Err(CheckpointError::Malformed(
                "no blank line before the signatures".into(),
            ));
        };
        let (body, signatures) = (&note[..split + 1], &note[split + 2..]);
        let checkpoint = Checkpoint::parse_body(body)?;
        if checkpoint.origin != self.name {
            return Err(CheckpointError::WrongOrigin {
                expected: self.name.clone(),
                found: checkpoint.origin,
            });
        }
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix(SIGNATURE_LINE_PREFIX) else {
                return Err(CheckpointError::Malformed(format!(
                    "not a signature line: {line:?}"
                )));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(CheckpointError::Malformed(format!(
                    "not a signature line: {line:?}"
                )));
            };
            let Ok(blob) = BASE64.decode(blob) else {
                continue;
            };
            if name != self.name || blob.len() != 4 + 64 || blob[..4] != self.key_id {
                continue;
            }
            let signature = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| CheckpointError::BadSignature)?;
            return self
                .key
                .verify(body.as_bytes(), &signature)
                .map(|()| checkpoint)
                .map_err(|_| CheckpointError::BadSignature);
        }
        Err(CheckpointError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::new("sealtrail.test/log", &[7u8; 32]).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_round_trips_through_the_vkey() {
        let signer = signer();
        let signed = signer.sign(42, [9u8; 32]);
        assert!(signed.note.starts_with("sealtrail.test/log\n42\n"));
        assert!(signed.note.contains("\n\n\u{2014} sealtrail.test/log "));
        let verifier = CheckpointVerifier::from_vkey(&signer.verifier().vkey()).unwrap();
        assert_eq!(verifier.verify(&signed.note).unwrap(), signed.checkpoint);
    }

    #[test]
    fn any_change_to_the_note_breaks_the_signature() {
        let signer = signer();
        let note = signer.sign(42, [9u8; 32]).note;
        let forged_size = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            signer.verifier().verify(&forged_size),
            Err(CheckpointError::BadSignature)
        );
        let other = CheckpointSigner::new("sealtrail.test/log", &[8u8; 32]).unwrap();
        let foreign = other.sign(42, [9u8; 32]).note;
        assert_eq!(
            signer.verifier().verify(&foreign),
            Err(CheckpointError::BadSignature)
        );
        let renamed = CheckpointSigner::new("elsewhere/log", &[7u8; 32]).unwrap();
        assert!(matches!(
            signer.verifier().verify(&renamed.sign(1, [0; 32]).note),
            Err(CheckpointError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn origins_that_are_not_key_names_are_refused() {
        for bad in ["", "has space", "a+b"] {
            assert!(CheckpointSigner::new(bad, &[1; 32]).is_err(), "{bad:?}");
        }
    }
}
