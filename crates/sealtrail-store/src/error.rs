//! The store's error type.

/// What went wrong below the API.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, corruption, locking).
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// PostgreSQL failed (connection lost, constraint, I/O).
    #[error("PostgreSQL error: {}", postgres_detail(.0))]
    Postgres(postgres::Error),
    /// A file in the data directory could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The stored log is not what the server expects (tampered, corrupt, foreign).
    #[error("{0}")]
    Integrity(String),
    /// The data directory was written by a newer or unknown schema.
    #[error("{0}")]
    Schema(String),
    /// The request cannot be answered as asked.
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

// Not `#[from]`: that would also make it the error's source, and messages would repeat it.
impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        Self::Postgres(error)
    }
}

/// What PostgreSQL said, not just "db error".
fn postgres_detail(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}
