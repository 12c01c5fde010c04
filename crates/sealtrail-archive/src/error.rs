//! What writing or reading a segment can fail with.

use std::path::PathBuf;

/// Why a segment could not be written or read (verification findings are
/// [`crate::Problem`]s; a reader refusing a segment carries one).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file could not be created, written, synced, renamed or listed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The caller handed the writer something that cannot make a valid segment.
    #[error("{0}")]
    Invalid(String),
    /// An archive location or its settings (the S3 environment variables) do not do.
    #[error("{0}")]
    Settings(String),
    /// An object store could not be reached or refused a request.
    #[error("{context}: {detail}")]
    ObjectStore {
        /// The request and the object's `s3://` URL.
        context: String,
        /// The store's error code and message, or the transport's failure, with a hint at
        /// the setting to check.
        detail: String,
    },
    /// A reader refused a segment that does not verify.
    #[error("{}: does not verify: {problem}", path.display())]
    Refused {
        /// Its manifest.
        path: PathBuf,
        /// The verifier's first finding.
        problem: crate::Problem,
    },
    /// The segment file no longer matches what was verified (changed while being read).
    #[error("{} changed since it was verified: {detail}", path.display())]
    Changed {
        /// The segment file.
        path: PathBuf,
        /// Where it differs.
        detail: String,
    },
    /// A record hashes to its leaf hash but is not a stored record.
    #[error("{}: seq {seq}: the record is not a stored record: {detail}", path.display())]
    UnreadableRecord {
        /// The segment file.
        path: PathBuf,
        /// Its seq.
        seq: u64,
        /// Why.
        detail: String,
    },
}

impl ArchiveError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
