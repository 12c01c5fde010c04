//! What a backup holds: the list of state files (in the order they are snapshotted) and
//! the manifest written as the archive's first entry.

use serde::{Deserialize, Serialize};

/// The manifest's name in the archive (its first entry).
pub const MANIFEST_NAME: &str = "manifest.json";
/// The manifest's `format`.
pub const FORMAT: &str = "sealtrail-backup";
/// The manifest's `version`: what this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest manifest a restore reads, in bytes (a few hundred are normal).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// How a state file is copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A SQLite database: `VACUUM INTO`, as of one commit.
    Sqlite,
    /// A plain file, copied as it is.
    Plain,
}

/// One file of the data directory that is state (not derived, not a secret kept elsewhere).
#[derive(Clone, Copy, Debug)]
pub struct StateFile {
    /// Its name in the data directory and in the archive.
    pub name: &'static str,
    /// How it is copied.
    pub method: Method,
    /// Whether a data directory without it cannot be backed up.
    pub required: bool,
}

const fn file(name: &'static str, method: Method, required: bool) -> StateFile {
    StateFile {
        name,
        method,
        required,
    }
}

/// Every file a backup may hold, in snapshot order. Nothing else is ever packed: the
/// master key of field encryption is not in the data directory, and a file put there by
/// mistake (`master.key`, say) is left out because it is not in this list.
///
/// The order is an invariant:
/// - the consumers' cursors (`sinks.sqlite`, `blind-index.sqlite`) BEFORE the log, so no
///   restored cursor is ahead of the restored log (a cursor behind it only redelivers);
/// - `data-keys.sqlite` AFTER the log, so every data key an event of the snapshot was
///   sealed with is in the copy (a key is filed before the event it seals is appended);
/// - the spool's cursor before the spool (a cursor never past what it counts).
///
/// `index.sqlite` is derived from the log and rebuilt at start; it is never packed.
pub const STATE_FILES: &[StateFile] = &[
    file("sinks.sqlite", Method::Sqlite, false),
    file(
        sealtrail_store::blind_index::BLIND_INDEX_FILE,
        Method::Sqlite,
        false,
    ),
    file("spool.cursor", Method::Plain, false),
    file("spool.ndjson", Method::Plain, false),
    file(sealtrail_store::sqlite::LOG_DB_FILE, Method::Sqlite, true),
    file(
        sealtrail_store::data_keys::DATA_KEYS_FILE,
        Method::Sqlite,
        false,
    ),
    file(sealtrail_store::keys::KEYS_DB_FILE, Method::Sqlite, false),
    file(
        sealtrail_store::identity::SIGNING_KEY_FILE,
        Method::Plain,
        true,
    ),
];

/// The state file of this name, if it is one.
pub fn state_file(name: &str) -> Option<&'static StateFile> {
    STATE_FILES.iter().find(|f| f.name == name)
}

/// The archive's first entry: what the backup holds and the log it snapshotted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// The Sealtrail version that wrote it.
    pub sealtrail_version: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The log's origin (first line of its checkpoints).
    pub origin: String,
    /// Tree size of the snapshotted log: its events are seqs 1..=tree_size.
    pub tree_size: u64,
    /// The signed checkpoint note of that tree (the newest in the snapshot).
    pub checkpoint: String,
    /// Every file packed after the manifest, in archive order.
    pub files: Vec<ManifestFile>,
}

/// One packed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Its name (one of [`STATE_FILES`]).
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// SHA-256 of its contents, hex.
    pub sha256: String,
}

impl Manifest {
    /// Checks what a restore relies on: format, version, known and unique file names, the
    /// required files present. Returns the problem.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "its manifest's format is {:?}, not {FORMAT:?}",
                self.format
            ));
        }
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "it is format version {}; this sealtrail reads version {FORMAT_VERSION}",
                self.version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.files {
            if state_file(&f.name).is_none() {
                return Err(format!(
                    "its manifest lists {:?}, which is not a Sealtrail state file",
                    f.name
                ));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(format!("its manifest lists {:?} twice", f.name));
            }
        }
        for required in STATE_FILES.iter().filter(|f| f.required) {
            if !seen.contains(required.name) {
                return Err(format!("its manifest lacks {}", required.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_files_hold_no_master_key_and_no_derived_index() {
        for f in STATE_FILES {
            let name = f.name.to_ascii_lowercase();
            assert!(!name.contains("master"), "{name}");
            assert_ne!(f.name, sealtrail_store::sqlite::INDEX_DB_FILE);
        }
        let position = |name: &str| STATE_FILES.iter().position(|f| f.name == name).unwrap();
        let log = position("log.sqlite");
        assert!(position("sinks.sqlite") < log && position("blind-index.sqlite") < log);
        assert!(position("data-keys.sqlite") > log);
    }

    #[test]
    fn a_manifest_naming_a_foreign_or_duplicate_file_is_refused() {
        let entry = |name: &str| ManifestFile {
            name: name.into(),
            bytes: 0,
            sha256: String::new(),
        };
        let mut manifest = Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            sealtrail_version: "0".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            origin: "o".into(),
            tree_size: 0,
            checkpoint: String::new(),
            files: vec![entry("log.sqlite"), entry("log-signing.key")],
        };
        assert_eq!(manifest.check(), Ok(()));
        manifest.files.push(entry("../master.key"));
        assert!(
            manifest
                .check()
                .unwrap_err()
                .contains("not a Sealtrail state file")
        );
        manifest.files.pop();
        manifest.files.push(entry("log.sqlite"));
        assert!(manifest.check().unwrap_err().contains("twice"));
        manifest.files.truncate(1);
        assert!(
            manifest
                .check()
                .unwrap_err()
                .contains("lacks log-signing.key")
        );
    }
}
