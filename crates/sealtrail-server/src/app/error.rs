//! Why a use case failed, in terms a handler turns into an answer (`ApiError`).

use sealtrail_core::FieldError;
use sealtrail_store::StoreError;

/// A use case's failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request named something invalid (the field and why).
    #[error("{}: {}", .0.field, .0.reason)]
    Invalid(FieldError),
    /// Nothing by that name (or not for this key).
    #[error("{0}")]
    NotFound(String),
    /// Not possible as the server is configured.
    #[error("{0}")]
    Conflict(String),
    /// Not now: retrying may succeed (a read whose access record could not be written).
    #[error("{0}")]
    Unavailable(String),
    /// A fault of the server or its store.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(reason) => Self::Invalid(FieldError::new("", reason)),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Runs store work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
}
