//! What writing a segment can fail with.

/// Why a segment could not be written (verification findings are [`crate::Problem`]s).
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
}

impl ArchiveError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
