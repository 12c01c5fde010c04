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
    /// The only valid signature is by a key of this log that does not sign trees of this
    /// size (retired before it, or taking over after it).
    #[error(
        "checkpoint of size {size} is signed only by a key that does not sign trees of that size (see the log's key rotations)"
    )]
    RetiredKey {
        /// The checkpoint's tree size.
        size: u64,
    },
    /// A key-rotation statement does not chain on from the log's keys.
    #[error("key chain: {0}")]
    KeyChain(String),
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

/// The log's signing identity: the current key, and the verifier of every key the log
/// has had (see [`CheckpointVerifier`]).
pub struct CheckpointSigner {
    verifier: CheckpointVerifier,
    key: SigningKey,
    key_id: [u8; 4],
}

impl CheckpointSigner {
    /// A signer for the log `origin` from a 32-byte Ed25519 secret seed.
    pub fn new(origin: &str, secret: &[u8; 32]) -> Result<Self, CheckpointError> {
        validate_key_name(origin)?;
        let key = SigningKey::from_bytes(secret);
        let public = key.verifying_key();
        let key_id = key_id(origin, &public);
        Ok(Self {
            verifier: CheckpointVerifier::single(origin, key_id, public),
            key,
            key_id,
        })
    }

    /// This signer, checking checkpoints with `history` (the log's key chain), whose
    /// current key must be this signer's.
    pub fn with_history(self, history: CheckpointVerifier) -> Result<Self, CheckpointError> {
        if history.origin() != self.verifier.origin()
            || history.public_key() != self.key.verifying_key().to_bytes()
        {
            return Err(CheckpointError::KeyChain(format!(
                "the log's current signing key is {}, not this key ({})",
                history.vkey(),
                self.verifier.vkey()
            )));
        }
        Ok(Self {
            verifier: history,
            ..self
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
        let note = format!("{body}\n{}", self.signature_line(&body));
        SignedCheckpoint { checkpoint, note }
    }

    /// The same checkpoint with this key's signature added (a second signature line).
    pub fn cosign(&self, signed: &SignedCheckpoint) -> SignedCheckpoint {
        SignedCheckpoint {
            checkpoint: signed.checkpoint.clone(),
            note: format!(
                "{}{}",
                signed.note,
                self.signature_line(&signed.checkpoint.body())
            ),
        }
    }

    fn signature_line(&self, body: &str) -> String {
        let signature = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{SIGNATURE_LINE_PREFIX}{} {}\n",
            self.verifier.name,
            BASE64.encode(blob)
        )
    }

    /// The statement handing the log over to the key `next` from tree size `size` on:
    /// signed by the current key (the handover is the log's) and by `next` (its holder
    /// accepts it), so the chain can be followed forwards from the first key and
    /// backwards from the current one. Changes nothing: see [`switch_to`](Self::switch_to).
    pub fn rotation_note(&self, next: &[u8; 32], size: u64) -> Result<String, CheckpointError> {
        let next = Self::new(&self.verifier.name, next)?;
        let body = format!(
            "{ROTATION_HEADER}\n{}\n{size}\n{}\n{}\n",
            self.verifier.name,
            self.single_vkey(),
            next.single_vkey()
        );
        Ok(format!(
            "{body}\n{}{}",
            self.signature_line(&body),
            next.signature_line(&body)
        ))
    }

    /// Signs with `next` from now on, after its `rotation` (from
    /// [`rotation_note`](Self::rotation_note)) was committed to the log. Every clone of
    /// this signer's verifier follows the rotation too.
    pub fn switch_to(&mut self, next: &[u8; 32], rotation: &str) -> Result<(), CheckpointError> {
        let next = Self::new(&self.verifier.name, next)?;
        let parsed = KeyRotation::parse(rotation)?;
        if parsed.new.key != next.key.verifying_key() {
            return Err(CheckpointError::KeyChain(
                "the rotation names another key than the one to switch to".into(),
            ));
        }
        self.verifier.accept_rotation(rotation)?;
        self.key = next.key;
        self.key_id = next.key_id;
        Ok(())
    }

    /// The public half of the key this signer signs with (the chain's current key, unless
    /// another server rotated the log and this one has not followed yet).
    pub fn signing_public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The matching verifier (public halves of every key the log has had).
    pub fn verifier(&self) -> &CheckpointVerifier {
        &self.verifier
    }

    /// The current key's vkey (`name+id+key`).
    fn single_vkey(&self) -> String {
        vkey_string(&self.verifier.name, &self.key_id, &self.key.verifying_key())
    }
}

/// The action of the record a rotation appends to the log; producers may not use it.
pub const SIGNING_KEY_ROTATED_ACTION: &str = "log.signing_key_rotated";

/// The first line of a key-rotation statement.
const ROTATION_HEADER: &str = "sealtrail/signing-key-rotation";

fn vkey_string(name: &str, key_id: &[u8; 4], key: &VerifyingKey) -> String {
    let mut raw = vec![ED25519_ALGORITHM];
    raw.extend_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex::encode(key_id), BASE64.encode(raw))
}

/// The tree size a key-rotation statement hands the log over at (its signatures are not
/// checked here).
pub fn rotation_size(note: &str) -> Result<u64, CheckpointError> {
    KeyRotation::parse(note).map(|r| r.size)
}

/// A parsed key-rotation statement (not yet verified).
struct KeyRotation {
    origin: String,
    size: u64,
    old: LogKey,
    new: LogKey,
}

impl KeyRotation {
    fn parse(note: &str) -> Result<Self, CheckpointError> {
        let malformed = |why: &str| CheckpointError::KeyChain(format!("malformed rotation: {why}"));
        let (body, _) = split_note(note)?;
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .unwrap_or(body)
            .split('\n')
            .collect();
        let [header, origin, size, old, new] = lines[..] else {
            return Err(malformed("expected five lines"));
        };
        if header != ROTATION_HEADER {
            return Err(malformed("not a key rotation"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| malformed("size is not a number"))?;
        let key = |vkey: &str| -> Result<LogKey, CheckpointError> {
            let v = CheckpointVerifier::from_vkey(vkey)?;
            if v.name != origin {
                return Err(malformed("a key is named for another log"));
            }
            Ok(v.current())
        };
        Ok(Self {
            origin: origin.to_owned(),
            size,
            old: key(old)?,
            new: key(new)?,
        })
    }

    /// Checks that both keys signed the statement.
    fn check_signatures(&self, note: &str) -> Result<(), CheckpointError> {
        let (body, signatures) = split_note(note)?;
        for (who, key) in [("old", &self.old), ("new", &self.new)] {
            if !signature_lines(signatures)?
                .any(|(name, blob)| name == self.origin && key.signed(body, &blob))
            {
                return Err(CheckpointError::KeyChain(format!(
                    "the rotation at size {} is not signed by its {who} key",
                    self.size
                )));
            }
        }
        Ok(())
    }
}

/// Splits a signed note into its body (with its final newline) and its signature lines.
fn split_note(note: &str) -> Result<(&str, &str), CheckpointError> {
    let Some(split) = note.find("\n\n") else {
        return Err(CheckpointError::Malformed(
            "no blank line before the signatures".into(),
        ));
    };
    Ok((&note[..split + 1], &note[split + 2..]))
}

/// The `(key name, decoded blob)` of each signature line; lines whose blob is not base64
/// are skipped (another signer's business), lines that are not signature lines refused.
fn signature_lines(
    signatures: &str,
) -> Result<impl Iterator<Item = (&str, Vec<u8>)>, CheckpointError> {
    let mut lines = Vec::new();
    for line in signatures.lines() {
        let Some((name, blob)) = line
            .strip_prefix(SIGNATURE_LINE_PREFIX)
            .and_then(|rest| rest.split_once(' '))
        else {
            return Err(CheckpointError::Malformed(format!(
                "not a signature line: {line:?}"
            )));
        };
        if let Ok(blob) = BASE64.decode(blob) {
            lines.push((name, blob));
        }
    }
    Ok(lines.into_iter())
}

/// One key of a log, and the tree sizes it signs: `from..=until`.
#[derive(Clone, Debug)]
struct LogKey {
    key_id: [u8; 4],
    key: VerifyingKey,
    from: u64,
    until: Option<u64>,
}

impl LogKey {
    fn covers(&self, size: u64) -> bool {
        size >= self.from && self.until.is_none_or(|until| size <= until)
    }

    /// Whether `blob` (key id + signature) is this key's valid signature of `body`.
    fn signed(&self, body: &str, blob: &[u8]) -> bool {
        blob.len() == 4 + 64
            && blob[..4] == self.key_id
            && ed25519_dalek::Signature::from_slice(&blob[4..])
                .is_ok_and(|s| self.key.verify(body.as_bytes(), &s).is_ok())
    }
}

/// The keys of a log, oldest first, and the rotations that chain them.
#[derive(Debug)]
struct KeyChain {
    keys: Vec<LogKey>,
    rotations: Vec<String>,
}

/// Checks checkpoints signed by one log, under every key it has had.
///
/// A log starts with one key. A rotation hands it to the next key from a tree size on:
/// the old key signs trees up to that size, the new one from it (the tree that holds the
/// rotation record is signed by both). Clones share the chain, so a rotation the
/// sequencer commits is followed by every part of the server at once.
#[derive(Clone, Debug)]
pub struct CheckpointVerifier {
    name: String,
    chain: std::sync::Arc<std::sync::RwLock<KeyChain>>,
}

impl CheckpointVerifier {
    fn single(name: &str, key_id: [u8; 4], key: VerifyingKey) -> Self {
        Self {
            name: name.to_owned(),
            chain: std::sync::Arc::new(std::sync::RwLock::new(KeyChain {
                keys: vec![LogKey {
                    key_id,
                    key,
                    from: 0,
                    until: None,
                }],
                rotations: Vec::new(),
            })),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyChain> {
        self.chain
            .read()
            .expect("the key chain lock is never poisoned")
    }

    fn current(&self) -> LogKey {
        self.read().keys.last().expect("a chain has a key").clone()
    }

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
        let id = key_id(name, &key);
        if hex::encode(id) != id_hex {
            return Err(CheckpointError::MalformedKey(
                "key id does not match the key".into(),
            ));
        }
        Ok(Self::single(name, id, key))
    }

    /// The verifier of a log that was rotated: its key chain rebuilt from the rotation
    /// statements, oldest first, each signed by both its keys. Whoever trusts any one key
    /// of the chain (the first, or the current) can trust all of it; callers check that
    /// with [`has_key`](Self::has_key).
    pub fn from_rotations(rotations: &[String]) -> Result<Self, CheckpointError> {
        let Some(first) = rotations.first() else {
            return Err(CheckpointError::KeyChain(
                "no rotation to start from".into(),
            ));
        };
        let first = KeyRotation::parse(first)?;
        let verifier = Self::single(&first.origin, first.old.key_id, first.old.key);
        for note in rotations {
            verifier.accept_rotation(note)?;
        }
        Ok(verifier)
    }

    /// The log's whole chain, trusted through this (single, pinned) key: with no rotations,
    /// this verifier; else the chain the rotations form, which must hold this key.
    pub fn anchored(&self, rotations: &[String]) -> Result<Self, CheckpointError> {
        if rotations.is_empty() {
            return Ok(self.clone());
        }
        let chain = Self::from_rotations(rotations)?;
        if chain.name != self.name || !chain.has_key(&self.public_key()) {
            return Err(CheckpointError::KeyChain(format!(
                "the log's key rotations do not pass through {} (they end at {})",
                self.vkey(),
                chain.vkey()
            )));
        }
        Ok(chain)
    }

    /// Follows a rotation from the current key (shared by every clone). The statement must
    /// be this log's, name the current key as the old one, hand over at a size past the
    /// current key's first, and be signed by both keys.
    pub fn accept_rotation(&self, note: &str) -> Result<(), CheckpointError> {
        let rotation = KeyRotation::parse(note)?;
        rotation.check_signatures(note)?;
        let mut chain = self
            .chain
            .write()
            .expect("the key chain lock is never poisoned");
        if chain.rotations.iter().any(|kept| kept == note) {
            return Ok(());
        }
        let current = chain.keys.last_mut().expect("a chain has a key");
        if rotation.origin != self.name {
            return Err(CheckpointError::KeyChain(format!(
                "the rotation is for log {:?}, not {:?}",
                rotation.origin, self.name
            )));
        }
        if rotation.old.key != current.key {
            return Err(CheckpointError::KeyChain(format!(
                "the rotation at size {} hands over from a key that is not the log's current one",
                rotation.size
            )));
        }
        if rotation.size <= current.from {
            return Err(CheckpointError::KeyChain(format!(
                "the rotation at size {} is not after the current key's first tree ({})",
                rotation.size, current.from
            )));
        }
        current.until = Some(rotation.size);
        chain.keys.push(LogKey {
            from: rotation.size,
            until: None,
            ..rotation.new
        });
        chain.rotations.push(note.to_owned());
        Ok(())
    }

    /// The rotation statements followed so far, oldest first.
    pub fn rotations(&self) -> Vec<String> {
        self.read().rotations.clone()
    }

    /// Whether the note carries a signature under this log's name by a key the chain does
    /// not know (yet): the tree of a rotation made elsewhere, or a later one.
    pub fn signed_by_unknown_key(&self, note: &str) -> bool {
        let Ok((_, signatures)) = split_note(note) else {
            return false;
        };
        let Ok(lines) = signature_lines(signatures) else {
            return false;
        };
        let chain = self.read();
        lines
            .filter(|(name, blob)| *name == self.name && blob.len() == 4 + 64)
            .any(|(_, blob)| !chain.keys.iter().any(|k| blob[..4] == k.key_id))
    }

    /// Whether `public_key` is one of this log's keys.
    pub fn has_key(&self, public_key: &[u8; 32]) -> bool {
        self.read()
            .keys
            .iter()
            .any(|k| k.key.as_bytes() == public_key)
    }

    /// The current key's verifier key string, which other signed-note tools accept.
    pub fn vkey(&self) -> String {
        let current = self.current();
        vkey_string(&self.name, &current.key_id, &current.key)
    }

    /// The log origin (and key name).
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The current raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.current().key.to_bytes()
    }

    /// Verifies a signed note and returns the checkpoint it carries: one of its signatures
    /// must be by a key of this log that signs trees of its size.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        self.verify_signer(note).map(|(checkpoint, _)| checkpoint)
    }

    /// [`verify`](Self::verify), also naming the key (vkey) whose signature was accepted:
    /// what a single-key verifier of that checkpoint needs (an archive manifest's key).
    pub fn verify_signer(&self, note: &str) -> Result<(Checkpoint, String), CheckpointError> {
        let (body, signatures) = split_note(note)?;
        let checkpoint = Checkpoint::parse_body(body)?;
        if checkpoint.origin != self.name {
            return Err(CheckpointError::WrongOrigin {
                expected: self.name.clone(),
                found: checkpoint.origin,
            });
        }
        let chain = self.read();
        let mut retired = false;
        for (name, blob) in signature_lines(signatures)? {
            if name != self.name {
                continue;
            }
            for key in chain.keys.iter().filter(|k| k.signed(body, &blob)) {
                if key.covers(checkpoint.size) {
                    let vkey = vkey_string(&self.name, &key.key_id, &key.key);
                    return Ok((checkpoint, vkey));
                }
                retired = true;
            }
        }
        if retired {
            return Err(CheckpointError::RetiredKey {
                size: checkpoint.size,
            });
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

    #[test]
    fn a_rotation_hands_the_log_over_at_its_size_and_every_clone_follows() {
        let mut signer = signer();
        let kept = signer.verifier().clone();
        let old_note = signer.sign(9, [1; 32]).note;
        let rotation = signer.rotation_note(&[8u8; 32], 10).unwrap();
        let next = CheckpointSigner::new("sealtrail.test/log", &[8u8; 32]).unwrap();
        let transition = signer.cosign(&next.sign(10, [2; 32])).note;
        // A verifier that does not know the next key yet sees the transition as signed by
        // a key it does not know; the tree before it, not.
        let unaware = CheckpointVerifier::from_vkey(&kept.vkey()).unwrap();
        assert!(unaware.signed_by_unknown_key(&transition));
        assert!(!unaware.signed_by_unknown_key(&old_note));
        signer.switch_to(&[8u8; 32], &rotation).unwrap();
        let new_note = signer.sign(11, [3; 32]).note;
        // The clone taken before the rotation follows it.
        assert_eq!(kept.verify(&old_note).unwrap().size, 9);
        assert_eq!(kept.verify(&transition).unwrap().size, 10);
        assert_eq!(kept.verify(&new_note).unwrap().size, 11);
        assert_eq!(kept.rotations(), vec![rotation.clone()]);
        // The old key no longer signs trees past the rotation, nor the new one before it.
        let old = CheckpointSigner::new("sealtrail.test/log", &[7u8; 32]).unwrap();
        assert_eq!(
            kept.verify(&old.sign(11, [3; 32]).note),
            Err(CheckpointError::RetiredKey { size: 11 })
        );
        assert_eq!(
            kept.verify(&next.sign(9, [1; 32]).note),
            Err(CheckpointError::RetiredKey { size: 9 })
        );
        // Rebuilt from the statements alone, anchored by either key.
        let rebuilt = CheckpointVerifier::from_rotations(&[rotation]).unwrap();
        assert!(rebuilt.has_key(&old.verifier().public_key()));
        assert!(rebuilt.has_key(&next.verifier().public_key()));
        assert_eq!(rebuilt.vkey(), next.verifier().vkey());
        assert_eq!(rebuilt.verify(&new_note).unwrap().size, 11);
        assert_eq!(rotation_size(&rebuilt.rotations()[0]), Ok(10));
    }

    #[test]
    fn a_rotation_not_signed_by_both_keys_or_not_from_the_current_key_is_refused() {
        let signer = signer();
        let rotation = signer.rotation_note(&[8u8; 32], 10).unwrap();
        let (body, signatures) = split_note(&rotation).unwrap();
        let only_old = format!("{body}\n{}\n", signatures.lines().next().unwrap());
        let only_new = format!("{body}\n{}\n", signatures.lines().nth(1).unwrap());
        for forged in [only_old, only_new] {
            assert!(matches!(
                signer.verifier().accept_rotation(&forged),
                Err(CheckpointError::KeyChain(_))
            ));
        }
        let moved = rotation.replacen("\n10\n", "\n11\n", 1);
        assert!(signer.verifier().accept_rotation(&moved).is_err());
        // A stranger's rotation from its own key does not chain on from this log's key.
        let stranger = CheckpointSigner::new("sealtrail.test/log", &[5u8; 32]).unwrap();
        let theirs = stranger.rotation_note(&[6u8; 32], 10).unwrap();
        assert!(matches!(
            signer.verifier().accept_rotation(&theirs),
            Err(CheckpointError::KeyChain(_))
        ));
        assert_eq!(signer.verifier().rotations(), Vec::<String>::new());
        // Sizes move forwards only.
        let verifier = signer.verifier().clone();
        verifier.accept_rotation(&rotation).unwrap();
        let next = CheckpointSigner::new("sealtrail.test/log", &[8u8; 32]).unwrap();
        let back = next.rotation_note(&[9u8; 32], 10).unwrap();
        assert!(verifier.accept_rotation(&back).is_err());
        // Accepting the same statement again changes nothing.
        verifier.accept_rotation(&rotation).unwrap();
        assert_eq!(verifier.rotations().len(), 1);
    }
}
