//! Backup and restore of a data directory and its log, on either store.
//!
//! A backup is an online snapshot: each state file is copied as of one commit while the
//! server keeps ingesting ([`sealtrail_store::snapshot`]), packed as a plain tar with a
//! manifest first, and the whole stream is encrypted to age recipients — so
//! `age -d -i key.txt backup.age | tar -t` lists it with the standard tools. On a
//! PostgreSQL store the log is every table of its schema copied in one snapshot
//! ([`sealtrail_store::postgres::dump_postgres`], `pg-<table>.copy` in binary COPY
//! format) in place of `log.sqlite`, and the finished backup is recorded in the log as a
//! `backup.created` event. The manifest says which store a backup is of.
//!
//! A restore accepts nothing it has not checked: it unpacks into a temporary directory
//! beside the target, compares every file with the manifest's size and SHA-256, verifies
//! the whole Merkle tree of the restored log against the signed checkpoint the manifest
//! names, appends a `backup.restored` event to the restored log with the sequencer, and only
//! then moves the directory into place. Any failure leaves the target as it was. A
//! PostgreSQL backup goes into an empty database, copied in and verified in one
//! transaction that commits only if the log verifies.
//!
//! Why a crate of its own: age and tar stay out of the store, which the server, the sinks
//! and every test binary of theirs link.

mod create;
mod manifest;
mod postgres;
mod record;
mod restore;

use std::path::{Path, PathBuf};

pub use create::{BACKUP_ACTION, BackupOptions, BackupSummary, create_backup};
pub use manifest::{
    FORMAT, FORMAT_VERSION, MANIFEST_NAME, Manifest, ManifestFile, Method, PostgresSection,
    PostgresTable, STATE_FILES, StateFile, StoreKind,
};
pub use record::RESTORE_ACTION;
pub use restore::{RestoreOptions, RestoreSummary, restore_backup};

/// What went wrong, naming the file or the check.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The store refused or failed (snapshot, verification, sequencer).
    #[error(transparent)]
    Store(#[from] sealtrail_store::StoreError),
    /// The command cannot be done as asked (the target exists, no log to back up, ...).
    #[error("{0}")]
    Refused(String),
    /// A recipient or identity could not be read.
    #[error("{0}")]
    Key(String),
    /// The backup is encrypted to other recipients than the identities given.
    #[error(
        "none of the identities in {identity} can decrypt {file}: it was encrypted to other recipients (or its header is damaged)"
    )]
    WrongIdentity {
        /// The backup file.
        file: PathBuf,
        /// The identity file(s).
        identity: String,
    },
    /// The file is not an age file, or its encryption does not hold.
    #[error("cannot decrypt {file}: {detail}")]
    Decrypt {
        /// The backup file.
        file: PathBuf,
        /// What age said.
        detail: String,
    },
    /// The backup's contents are damaged or were altered (or it is not a Sealtrail backup).
    #[error("the backup {file} is damaged: {detail}")]
    Damaged {
        /// The backup file.
        file: PathBuf,
        /// What did not match.
        detail: String,
    },
    /// A PostgreSQL restore verified and committed the log, then failed: the database and
    /// the data directory hold the restored state, the `backup.restored` event may be
    /// missing.
    #[error(
        "the log was restored and verified into {database} (data directory {}), but the restore \
         did not finish: {detail}",
        data_dir.display()
    )]
    RestoredNotRecorded {
        /// The database (password redacted).
        database: String,
        /// The data directory.
        data_dir: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The restored log does not verify: nothing was restored.
    #[error("the restored log does not verify, so nothing was restored: {0}")]
    Unverified(String),
}

impl BackupError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// How long work is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes read or written.
    Bytes,
    /// Events verified.
    Events,
}

/// Where a backup or restore reports what it is doing (a progress bar, or a line per step).
pub trait Progress {
    /// A step begins; `total` is its size in `unit`, 0 when unknown.
    fn begin(&mut self, step: &str, total: u64, unit: Unit);
    /// How much of the current step is done.
    fn set(&mut self, done: u64, total: u64);
    /// The current step ended.
    fn end(&mut self);
}

/// A [`Progress`] that reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn begin(&mut self, _: &str, _: u64, _: Unit) {}
    fn set(&mut self, _: u64, _: u64) {}
    fn end(&mut self) {}
}

/// A recipient in age's text form (`age1…`, an X25519 public key).
pub fn parse_recipient(text: &str) -> Result<Box<dyn age::Recipient + Send>, BackupError> {
    text.trim()
        .parse::<age::x25519::Recipient>()
        .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
        .map_err(|e| {
            BackupError::Key(format!(
                "{text:?} is not an age X25519 recipient (age1…): {e}"
            ))
        })
}

/// The recipients in a file as `age -R` reads it: one per line, `#` comments, blank lines.
pub fn read_recipients_file(
    path: &Path,
) -> Result<Vec<Box<dyn age::Recipient + Send>>, BackupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BackupError::io(format!("reading {}", path.display()), e))?;
    let recipients = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            parse_recipient(line).map_err(|e| BackupError::Key(format!("{}: {e}", path.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if recipients.is_empty() {
        return Err(BackupError::Key(format!(
            "{} holds no recipient",
            path.display()
        )));
    }
    Ok(recipients)
}

/// The identities in an age identity file (`age-keygen`'s output: `AGE-SECRET-KEY-1…` lines).
pub fn read_identity_file(path: &Path) -> Result<Vec<Box<dyn age::Identity>>, BackupError> {
    let name = path
        .to_str()
        .ok_or_else(|| BackupError::Key(format!("{} is not a UTF-8 path", path.display())))?;
    let file = age::IdentityFile::from_file(name.to_owned()).map_err(|e| {
        BackupError::Key(format!("reading the identity file {}: {e}", path.display()))
    })?;
    let identities = file
        .into_identities()
        .map_err(|e| BackupError::Key(format!("the identity file {}: {e}", path.display())))?;
    if identities.is_empty() {
        return Err(BackupError::Key(format!(
            "{} holds no age identity",
            path.display()
        )));
    }
    Ok(identities)
}
