//! The log's signing key: an Ed25519 seed in the data directory, created on first start.
//!
//! The key never leaves this file; the public half is served by the API. Someone who can
//! write the database but not read this file cannot forge checkpoints (SECURITY.md).

use std::io::Write as _;
use std::path::Path;

use sealtrail_core::{CheckpointSigner, CheckpointVerifier};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// File name of the signing key seed (64 hex characters, mode 0600).
pub const SIGNING_KEY_FILE: &str = "log-signing.key";
/// File name of the seed a rotation hands the log to: written before the rotation is
/// committed, renamed over [`SIGNING_KEY_FILE`] once it is. Copying it into every other
/// server's data directory beforehand lets them follow the rotation without a restart.
pub const NEXT_SIGNING_KEY_FILE: &str = "log-signing.next";
/// Prefix of the meta keys holding the log's key-rotation statements, by tree size (the
/// records themselves are in the log; this is their index).
pub const ROTATION_META_PREFIX: &str = "signing_key_rotation/";

/// The meta key of the rotation taking effect at tree size `size` (sorts by size).
pub fn rotation_meta_key(size: u64) -> String {
    format!("{ROTATION_META_PREFIX}{size:020}")
}

/// The range query's bounds of the rotation meta keys: `[prefix, prefix + 1)` (no LIKE,
/// whose `_` would match any character).
pub(crate) const ROTATION_META_RANGE: (&str, &str) =
    (ROTATION_META_PREFIX, "signing_key_rotation0");

/// The filed rotations among meta rows `(key, statement)`: those filed under the key of
/// the size they state, by size. Anything else under the prefix (a row the service role
/// could insert) is not the sequencer's and is left out, so it can neither break the
/// chain nor reorder it; a statement left out that a checkpoint needs still fails that
/// checkpoint.
pub(crate) fn filed_rotations(rows: Vec<(String, String)>) -> Vec<String> {
    let mut filed: Vec<(u64, String)> = rows
        .into_iter()
        .filter_map(|(key, statement)| {
            match sealtrail_core::checkpoint::rotation_size(&statement) {
                Ok(size) if key == rotation_meta_key(size) => Some((size, statement)),
                _ => {
                    tracing::warn!(%key, "a meta row under the rotations' prefix is not a filed key rotation; ignored");
                    None
                }
            }
        })
        .collect();
    filed.sort_by_key(|(size, _)| *size);
    filed.into_iter().map(|(_, statement)| statement).collect()
}

/// Reads the signing key seed, creating one from the OS's random source if there is none.
pub fn load_or_create_signing_key(data_dir: &Path) -> Result<[u8; 32], StoreError> {
    let path = data_dir.join(SIGNING_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_seed(text.trim()).ok_or_else(|| {
            StoreError::Invalid(format!(
                "{} does not hold a 64-hex-digit Ed25519 seed",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| {
                StoreError::Invalid(format!("no OS randomness for a signing key: {e}"))
            })?;
            write_private_file(&path, format!("{}\n", hex::encode(seed)).as_bytes())?;
            tracing::info!(path = %path.display(), "created the log signing key");
            Ok(seed)
        }
        Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
    }
}

/// Reads the signing key seed; never creates one (for tools that only inspect a log).
pub fn read_signing_key(data_dir: &Path) -> Result<[u8; 32], StoreError> {
    let path = data_dir.join(SIGNING_KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StoreError::io(
            format!("reading the log's signing key {}", path.display()),
            e,
        )
    })?;
    parse_seed(text.trim()).ok_or_else(|| {
        StoreError::Invalid(format!(
            "{} does not hold a 64-hex-digit Ed25519 seed",
            path.display()
        ))
    })
}

/// The seed a rotation is to hand the log to, if one is waiting in `data_dir`.
pub fn read_next_signing_key(data_dir: &Path) -> Result<Option<[u8; 32]>, StoreError> {
    let path = data_dir.join(NEXT_SIGNING_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_seed(text.trim()).map(Some).ok_or_else(|| {
            StoreError::Invalid(format!(
                "{} does not hold a 64-hex-digit Ed25519 seed",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
    }
}

/// The seed for the next rotation: the one already waiting in `data_dir` (placed there by
/// an operator for several servers), or a new one, durably written first.
pub fn prepare_next_signing_key(data_dir: &Path) -> Result<[u8; 32], StoreError> {
    if let Some(seed) = read_next_signing_key(data_dir)? {
        return Ok(seed);
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| StoreError::Invalid(format!("no OS randomness for a signing key: {e}")))?;
    write_private_file(
        &data_dir.join(NEXT_SIGNING_KEY_FILE),
        format!("{}\n", hex::encode(seed)).as_bytes(),
    )?;
    Ok(seed)
}

/// Makes the waiting next seed the signing key (after its rotation is durable in the
/// log): an atomic rename, so the retired seed is gone and the data directory holds one
/// key at every moment.
pub fn promote_next_signing_key(data_dir: &Path) -> Result<(), StoreError> {
    let next = data_dir.join(NEXT_SIGNING_KEY_FILE);
    let current = data_dir.join(SIGNING_KEY_FILE);
    let context = || format!("renaming {} to {}", next.display(), current.display());
    std::fs::rename(&next, &current).map_err(|e| StoreError::io(context(), e))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(context(), e))?;
    tracing::info!(path = %current.display(), "the rotated signing key is now the log's key");
    Ok(())
}

/// The log's signer, from the seed in `data_dir` and the log's stored rotations: with
/// none, the seed's key alone; else the chain they form, whose current key must be the
/// seed's — or the waiting next seed's, which is then promoted (the rotation was
/// committed, the rename had not happened yet). A retired seed is refused: this server
/// would sign trees its log no longer accepts from that key.
pub fn log_signer(
    data_dir: &Path,
    origin: &str,
    rotations: &[String],
    create: bool,
) -> Result<CheckpointSigner, StoreError> {
    let seed = if create {
        load_or_create_signing_key(data_dir)?
    } else {
        read_signing_key(data_dir)?
    };
    let invalid =
        |e: sealtrail_core::checkpoint::CheckpointError| StoreError::Invalid(e.to_string());
    let signer = CheckpointSigner::new(origin, &seed).map_err(invalid)?;
    if rotations.is_empty() {
        return Ok(signer);
    }
    let chain = CheckpointVerifier::from_rotations(rotations)
        .map_err(|e| StoreError::Integrity(format!("the log's key rotations: {e}")))?;
    if chain.public_key() == signer.verifier().public_key() {
        return signer.with_history(chain).map_err(invalid);
    }
    if let Some(next) = read_next_signing_key(data_dir)? {
        let next = CheckpointSigner::new(origin, &next).map_err(invalid)?;
        if chain.public_key() == next.verifier().public_key() {
            promote_next_signing_key(data_dir)?;
            return next.with_history(chain).map_err(invalid);
        }
    }
    Err(StoreError::Invalid(
        if chain.has_key(&signer.verifier().public_key()) {
            format!(
                "the log's signing key was rotated to {}; {} holds a retired key. Copy the new \
             key's {NEXT_SIGNING_KEY_FILE} from the server that rotated it into {} (or its \
             {SIGNING_KEY_FILE} over this one)",
                chain.vkey(),
                data_dir.join(SIGNING_KEY_FILE).display(),
                data_dir.display()
            )
        } else {
            format!(
                "{} is none of this log's signing keys (current: {})",
                data_dir.join(SIGNING_KEY_FILE).display(),
                chain.vkey()
            )
        },
    ))
}

/// The verifier of a log's checkpoints under all its keys, anchored by the key in
/// `data_dir` (current, retired or waiting as the next): creates and renames nothing.
pub fn log_verifier(
    data_dir: &Path,
    origin: &str,
    rotations: &[String],
) -> Result<CheckpointVerifier, StoreError> {
    let invalid =
        |e: sealtrail_core::checkpoint::CheckpointError| StoreError::Invalid(e.to_string());
    let own = CheckpointSigner::new(origin, &read_signing_key(data_dir)?).map_err(invalid)?;
    match own.verifier().anchored(rotations) {
        Ok(chain) => Ok(chain),
        Err(error) => {
            let next = read_next_signing_key(data_dir)?
                .map(|seed| CheckpointSigner::new(origin, &seed).map_err(invalid))
                .transpose()?;
            next.and_then(|n| n.verifier().anchored(rotations).ok())
                .ok_or_else(|| {
                    StoreError::Integrity(format!(
                        "the key in {}: {error}",
                        data_dir.join(SIGNING_KEY_FILE).display()
                    ))
                })
        }
    }
}

fn parse_seed(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// A default log origin unique to this key: `sealtrail/<first 16 hex of SHA-256(public key)>`.
pub fn default_origin(seed: &[u8; 32]) -> String {
    let signer =
        CheckpointSigner::new("sealtrail", seed).expect("the literal origin is a valid key name");
    let digest = Sha256::digest(signer.verifier().public_key());
    format!("sealtrail/{}", hex::encode(&digest[..8]))
}

/// Creates a file readable by its owner only and makes it durable (file and directory).
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let context = || format!("writing {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| StoreError::io(context(), e))?;
    file.write_all(contents)
        .map_err(|e| StoreError::io(context(), e))?;
    file.sync_all().map_err(|e| StoreError::io(context(), e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(context(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_signing_key(dir.path()).unwrap();
        let again = load_or_create_signing_key(dir.path()).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(default_origin(&first).starts_with("sealtrail/"));
    }
}
