//! What a backup holds: the list of state files (in the order they are snapshotted) and
//! the manifest written as the archive's first entry.

use serde::{Deserialize, Serialize};

/// The manifest's name in the archive (its first entry).
pub const MANIFEST_NAME: &str = "manifest.json";
/// The manifest's `format`.
pub const FORMAT: &str = "sealtrail-backup";
/// The manifest's `version`: what this build writes. Version 1 (embedded store only, no
/// `store`) is still read; version 2 says which store the backup is of.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest `version` this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
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
/// - the spool's cursor before the spool (a cursor never past what it counts);
/// - the signing key (and a rotation's next key) BEFORE the log, so the copied key is one
///   of the copied log's chain: a rotation committed in between is in the log copy, whose
///   chain then holds the copied key too (the next key, if copied, is promoted at start).
///
/// `index.sqlite` is derived from the log and rebuilt at start; it is never packed.
pub const STATE_FILES: &[StateFile] = &[
    file("sinks.sqlite", Method::Sqlite, false),
    file(
        sealtrail_store::blind_index::BLIND_INDEX_FILE,
        Method::Sqlite,
        false,
    ),
    // Before the log, so the tracker's cursor is never ahead of the restored log.
    file(
        sealtrail_store::sources::SOURCES_FILE,
        Method::Sqlite,
        false,
    ),
    file("spool.cursor", Method::Plain, false),
    file("spool.ndjson", Method::Plain, false),
    file(
        sealtrail_store::identity::SIGNING_KEY_FILE,
        Method::Plain,
        true,
    ),
    file(
        sealtrail_store::identity::NEXT_SIGNING_KEY_FILE,
        Method::Plain,
        false,
    ),
    file(sealtrail_store::sqlite::LOG_DB_FILE, Method::Sqlite, true),
    file(
        sealtrail_store::data_keys::DATA_KEYS_FILE,
        Method::Sqlite,
        false,
    ),
    file(sealtrail_store::keys::KEYS_DB_FILE, Method::Sqlite, false),
];

/// The embedded store's log, which a PostgreSQL backup never holds.
const LOG_FILE: &str = sealtrail_store::sqlite::LOG_DB_FILE;

/// The state file of this name, if it is one.
pub fn state_file(name: &str) -> Option<&'static StateFile> {
    STATE_FILES.iter().find(|f| f.name == name)
}

/// Which store a backup is of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded store: `log.sqlite` in the data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database: its tables as binary COPY files (`pg-<table>.copy`).
    Postgres,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Sqlite => "the embedded (SQLite) store",
            StoreKind::Postgres => "a PostgreSQL store",
        })
    }
}

/// What a PostgreSQL backup holds besides the data directory's files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// The schema version of the database backed up.
    pub schema_version: i64,
    /// Every table copied, in copy (and restore) order.
    pub tables: Vec<PostgresTable>,
    /// One `occurred_at` (UTC µs) in each month partition that held events.
    pub partitions: Vec<i64>,
}

/// One table's copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTable {
    /// The table.
    pub name: String,
    /// Its file in the archive (`pg-<name>.copy`).
    pub file: String,
    /// The columns copied, in order.
    pub columns: Vec<String>,
    /// Rows copied.
    pub rows: u64,
}

impl PostgresSection {
    /// The store's description of the dump, for its restore.
    pub fn to_dump(&self, manifest: &Manifest) -> sealtrail_store::postgres::PgDump {
        sealtrail_store::postgres::PgDump {
            schema_version: self.schema_version,
            origin: manifest.origin.clone(),
            tree_size: manifest.tree_size,
            checkpoint: manifest.checkpoint.clone(),
            tables: self
                .tables
                .iter()
                .map(|t| sealtrail_store::postgres::TableCopy {
                    name: t.name.clone(),
                    columns: t.columns.clone(),
                    rows: t.rows,
                })
                .collect(),
            partitions: self.partitions.clone(),
        }
    }

    /// The section describing the store's `dump`.
    pub fn from_dump(dump: &sealtrail_store::postgres::PgDump) -> Self {
        Self {
            schema_version: dump.schema_version,
            tables: dump
                .tables
                .iter()
                .map(|t| PostgresTable {
                    name: t.name.clone(),
                    file: sealtrail_store::postgres::copy_file_name(&t.name),
                    columns: t.columns.clone(),
                    rows: t.rows,
                })
                .collect(),
            partitions: dump.partitions.clone(),
        }
    }
}

/// The archive's first entry: what the backup holds and the log it snapshotted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// The store the backup is of (absent in version 1: the embedded store).
    #[serde(default)]
    pub store: StoreKind,
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
    /// For a backup of a PostgreSQL store: its tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSection>,
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
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&self.version) {
            return Err(format!(
                "it is format version {}; this sealtrail reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}",
                self.version
            ));
        }
        let tables = self.check_store()?;
        let mut seen = std::collections::HashSet::new();
        for f in &self.files {
            let known = match self.store {
                StoreKind::Sqlite => state_file(&f.name).is_some(),
                StoreKind::Postgres => {
                    (state_file(&f.name).is_some() && f.name != LOG_FILE)
                        || tables.contains(&f.name.as_str())
                }
            };
            if !known {
                return Err(format!(
                    "its manifest lists {:?}, which is not a Sealtrail state file of {}",
                    f.name, self.store
                ));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(format!("its manifest lists {:?} twice", f.name));
            }
        }
        let required = STATE_FILES
            .iter()
            .filter(|f| f.required && !(self.store == StoreKind::Postgres && f.name == LOG_FILE))
            .map(|f| f.name)
            .chain(tables.iter().copied());
        for name in required {
            if !seen.contains(name) {
                return Err(format!("its manifest lacks {name}"));
            }
        }
        Ok(())
    }

    /// Checks the store's part: a PostgreSQL section exactly when the store is PostgreSQL,
    /// with plain table names, each with its own file. Returns the tables' files.
    fn check_store(&self) -> Result<Vec<&str>, String> {
        match (self.store, &self.postgres) {
            (StoreKind::Sqlite, None) => Ok(Vec::new()),
            (StoreKind::Sqlite, Some(_)) => {
                Err("its manifest is of the embedded store yet has a postgres section".into())
            }
            (StoreKind::Postgres, None) => {
                Err("its manifest is of a PostgreSQL store yet has no postgres section".into())
            }
            (StoreKind::Postgres, Some(_)) if self.version < 2 => {
                Err("a version 1 manifest cannot be of a PostgreSQL store".into())
            }
            (StoreKind::Postgres, Some(section)) => {
                let mut files = Vec::new();
                for table in &section.tables {
                    let plain = sealtrail_store::postgres::is_plain_table_name(&table.name)
                        && table
                            .columns
                            .iter()
                            .all(|c| sealtrail_store::postgres::is_plain_table_name(c));
                    if !plain {
                        return Err(format!(
                            "its manifest names table {:?} (or a column of it), which is not a plain name",
                            table.name
                        ));
                    }
                    if table.file != sealtrail_store::postgres::copy_file_name(&table.name) {
                        return Err(format!(
                            "its manifest puts table {} in {:?}",
                            table.name, table.file
                        ));
                    }
                    files.push(table.file.as_str());
                }
                if !section.tables.iter().any(|t| t.name == "events") {
                    return Err("its manifest lists no events table".into());
                }
                Ok(files)
            }
        }
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
            store: StoreKind::Sqlite,
            sealtrail_version: "0".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            origin: "o".into(),
            tree_size: 0,
            checkpoint: String::new(),
            files: vec![entry("log.sqlite"), entry("log-signing.key")],
            postgres: None,
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

    #[test]
    fn a_postgres_manifest_holds_its_tables_and_no_sqlite_log() {
        let entry = |name: &str| ManifestFile {
            name: name.into(),
            bytes: 0,
            sha256: String::new(),
        };
        let table = |name: &str| PostgresTable {
            name: name.into(),
            file: format!("pg-{name}.copy"),
            columns: vec!["seq".into()],
            rows: 0,
        };
        let mut manifest = Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            store: StoreKind::Postgres,
            sealtrail_version: "0".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            origin: "o".into(),
            tree_size: 0,
            checkpoint: String::new(),
            files: vec![
                entry("pg-events.copy"),
                entry("pg-retention_runs.copy"),
                entry("log-signing.key"),
            ],
            postgres: Some(PostgresSection {
                schema_version: 2,
                tables: vec![table("events"), table("retention_runs")],
                partitions: vec![],
            }),
        };
        assert_eq!(manifest.check(), Ok(()));
        manifest.files.push(entry("log.sqlite"));
        assert!(manifest.check().unwrap_err().contains("log.sqlite"));
        manifest.files.pop();
        manifest.files.remove(1);
        assert!(
            manifest
                .check()
                .unwrap_err()
                .contains("lacks pg-retention_runs.copy")
        );
        manifest.postgres.as_mut().unwrap().tables[1].file = "../x".into();
        assert!(manifest.check().unwrap_err().contains("puts table"));
        manifest.postgres = None;
        assert!(
            manifest
                .check()
                .unwrap_err()
                .contains("no postgres section")
        );
    }

    #[test]
    fn a_version_1_manifest_is_read_as_of_the_embedded_store() {
        let v1 = r#"{"format":"sealtrail-backup","version":1,"sealtrail_version":"0.1.0",
            "created_at":"2026-01-01T00:00:00Z","origin":"o","tree_size":3,"checkpoint":"c",
            "files":[{"name":"log.sqlite","bytes":1,"sha256":"00"},
                     {"name":"log-signing.key","bytes":1,"sha256":"00"}]}"#;
        let manifest: Manifest = serde_json::from_str(v1).unwrap();
        assert_eq!(manifest.store, StoreKind::Sqlite);
        assert_eq!(manifest.check(), Ok(()));
        let v3 = v1.replace("\"version\":1", "\"version\":3");
        let manifest: Manifest = serde_json::from_str(&v3).unwrap();
        assert!(manifest.check().unwrap_err().contains("format version 3"));
    }
}
