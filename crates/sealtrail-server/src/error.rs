//! Every error the API returns, and its one JSON shape:
//! `{"code": "...", "message": "...", "field": "...", "reason": "...", "errors": [...]}`.
//!
//! `code` is stable and machine-readable; `message` is for people; `field` and `reason`
//! say which input was wrong and why; `errors` lists every bad event of a batch.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sealtrail_core::FieldError;
pub use sealtrail_core::api::{ErrorBody, EventError};

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Boxed: errors travel in every handler's `Result`, which should stay small.
    body: Box<ErrorBody>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                field: None,
                reason: None,
                errors: Vec::new(),
            }),
            retry_after_secs: None,
        }
    }

    /// 400 for a bad field or parameter.
    pub fn field(status: StatusCode, code: &str, error: FieldError) -> Self {
        let mut e = Self::new(status, code, error.to_string());
        e.body.field = Some(error.field).filter(|f| !f.is_empty());
        e.body.reason = Some(error.reason);
        e
    }

    /// 400: a query or path parameter is wrong.
    pub fn invalid_parameter(error: FieldError) -> Self {
        Self::field(StatusCode::BAD_REQUEST, "invalid_parameter", error)
    }

    /// 400: the body is not JSON.
    pub fn invalid_json(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {reason}"),
        );
        e.body.reason = Some(reason);
        e
    }

    /// 400: one or more events are invalid; nothing was stored.
    pub fn invalid_events(errors: Vec<EventError>, batch: bool) -> Self {
        let first = errors
            .first()
            .cloned()
            .expect("invalid_events is built from at least one error");
        let path = |e: &EventError| match (batch, e.field.is_empty()) {
            (false, _) => e.field.clone(),
            (true, true) => format!("events[{}]", e.index),
            (true, false) => format!("events[{}].{}", e.index, e.field),
        };
        let field = path(&first);
        let at_line = first
            .line
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        let message = match (errors.len(), field.is_empty()) {
            (1, true) => format!(
                "invalid event{at_line}: {}; nothing was stored",
                first.reason
            ),
            (1, false) => format!("{field}{at_line}: {}; nothing was stored", first.reason),
            (n, _) => format!(
                "{n} events are invalid, the first {field}{at_line}: {}; nothing was stored",
                first.reason
            ),
        };
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_event", message);
        e.body.field = Some(field).filter(|f| !f.is_empty());
        e.body.reason = Some(first.reason);
        e.body.errors = errors;
        e
    }

    /// 401: no key, or not a live key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the key may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 naming the field that asked for another tenant.
    pub fn forbidden_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{field}: {message}"),
        );
        e.body.field = Some(field.to_owned());
        e.body.reason = Some(message);
        e
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: an event id was reused with other content.
    pub fn id_conflict(field: String, id: uuid::Uuid) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "id_conflict",
            format!(
                "{field}: id {id} was already used for an event with different content; nothing was stored"
            ),
        );
        e.body.field = Some(field);
        e.body.reason = Some("reused with different content".into());
        e
    }

    /// 413: the body is larger than allowed.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds the limit of {limit} bytes (limits.max_body_bytes)"),
        )
    }

    /// 413: more events than one request may carry.
    pub fn batch_too_large(count: usize, limit: usize) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{count} events in one request; the limit is {limit} (limits.max_batch_events)"
            ),
        );
        e.body.field = Some("events".into());
        e.body.reason = Some(format!("at most {limit} events per request"));
        e
    }

    /// 415.
    pub fn unsupported_media_type(found: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {found:?} is not accepted; send application/json or application/x-ndjson"
            ),
        )
    }

    /// 503: the events were not acknowledged. Retrying with the same event ids is safe.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after_secs = Some(1);
        e
    }

    /// 409: the request does not fit the server's configuration or state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429: the key made more requests than its rate allows.
    pub fn rate_limited(key_id: &str, per_sec: u32, retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "API key {key_id} is over its limit of {per_sec} requests per second (limits.key_requests_per_sec); retry after {retry_after_secs} s"
            ),
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 500, for failures that are ours; the detail goes to the log, not the client.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body the client gets.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(*self.body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sealtrail_crypto::CryptoError> for ApiError {
    fn from(error: sealtrail_crypto::CryptoError) -> Self {
        Self::internal(error)
    }
}

impl From<crate::app::AppError> for ApiError {
    fn from(error: crate::app::AppError) -> Self {
        use crate::app::AppError;
        match error {
            AppError::Invalid(field) => Self::invalid_parameter(field),
            AppError::NotFound(message) => Self::not_found(message),
            AppError::Conflict(message) => Self::conflict(message),
            AppError::Unavailable(message) => Self::unavailable(message),
            AppError::Internal(message) => Self::internal(message),
        }
    }
}

impl From<sealtrail_store::StoreError> for ApiError {
    fn from(error: sealtrail_store::StoreError) -> Self {
        match error {
            sealtrail_store::StoreError::Invalid(reason) => {
                Self::invalid_parameter(FieldError::new("", reason))
            }
            other => Self::internal(other),
        }
    }
}
