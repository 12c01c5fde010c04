//! The log's signing key: an Ed25519 seed in the data directory, created on first start.
//!
//! The key never leaves this file; the public half is served by the API. Someone who can
//! write the database but not read this file cannot forge checkpoints (SECURITY.md).

use std::io::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::StoreError;

/// File name of the signing key seed (64 hex characters, mode 0600).
pub const SIGNING_KEY_FILE: &str = "log-signing.key";

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

fn parse_seed(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// A default log origin unique to this key: `sealtrail/<first 16 hex of SHA-256(public key)>`.
pub fn default_origin(seed: &[u8; 32]) -> String {
    let signer = sealtrail_core::CheckpointSigner::new("sealtrail", seed)
        .expect("the literal origin is a valid key name");
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
