//! A Rust client for Sealtrail.
//!
//! Ingest is safe to retry: events without an `id` get a UUIDv7 before the first attempt,
//! so a retry after a lost answer is recognised by the server and stores nothing twice.
//! Transient failures (connection errors, 429, 502–504) are retried with exponential
//! backoff, honouring `Retry-After`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sealtrail_client::ClientError> {
//! let client = sealtrail_client::Client::new("http://127.0.0.1:7700", "st_...")?;
//! let receipt = client
//!     .ingest(vec![serde_json::json!({
//!         "action": "guest.dietary_restriction.updated",
//!         "resource_type": "guest",
//!         "resource_id": "4711",
//!         "user_id": "coordinator-17",
//!         "reason": "Guest called: now vegan",
//!     })])
//!     .await?;
//! println!("stored at seq {:?}", receipt.events[0].seq);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod event;
pub mod ids;
pub mod producer;

use std::time::Duration;

use reqwest::StatusCode;
use sealtrail_core::api::{
    CheckpointView, ConsistencyProof, ErrorBody, EventPage, EventWithProof, InclusionProof,
    IngestResponse, PublicKey, StatsResponse,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Attempts per request, the first included.
const MAX_ATTEMPTS: u32 = 6;
/// First retry delay; doubled per attempt.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between attempts, whatever `Retry-After` says.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What can go wrong talking to Sealtrail.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not usable.
    #[error("invalid server URL {0:?}")]
    InvalidUrl(String),
    /// The server could not be reached (after retries).
    #[error("cannot reach {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The server refused the request.
    #[error("{status}: {}", body.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's error.
        body: Box<ErrorBody>,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// `GET /v1/events/{id}`'s answer with the event kept as the server sent it (a JSON
/// object: members the event lacks stay absent rather than becoming nulls), for callers
/// that compare it with the stored record, such as evidence exports.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ProvenEvent {
    /// The event as shown (sealed fields opened, or `"[shredded]"`), with `leaf_hash`.
    pub event: serde_json::Map<String, Value>,
    /// Its inclusion proof.
    pub proof: InclusionProof,
    /// The latest signed checkpoint.
    pub checkpoint: CheckpointView,
    /// The verbatim stored record, when asked for.
    #[serde(default)]
    pub record: Option<String>,
}

/// A Sealtrail server and the API key to use with it.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Without the request timeout: streams last as long as they are read.
    http_stream: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:7700`).
    pub fn new(base_url: &str, key: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidUrl(base_url.to_owned()));
        }
        // reqwest is built with rustls and no crypto provider of its own: ring is installed
        // (Err means one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        let http_stream = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.clone(),
                source,
            })?;
        Ok(Self {
            http,
            http_stream,
            base,
            key: key.to_owned(),
        })
    }

    /// Appends events (all or none) and returns where they landed. Events without an `id`
    /// are given one first, so retries are idempotent.
    pub async fn ingest(&self, mut events: Vec<Value>) -> Result<IngestResponse, ClientError> {
        for event in &mut events {
            assign_id(event);
        }
        let body = serde_json::to_vec(&serde_json::json!({ "events": events }))
            .expect("JSON values serialise");
        self.send_body("/v1/events", "application/json", body).await
    }

    /// Appends NDJSON lines as they are (give them ids for idempotent retries; see
    /// [`with_derived_id`]).
    pub async fn ingest_ndjson(&self, body: Vec<u8>) -> Result<IngestResponse, ClientError> {
        self.send_body("/v1/events", "application/x-ndjson", body)
            .await
    }

    /// One page of events; `params` are the query parameters of `GET /v1/events`.
    pub async fn query(&self, params: &[(String, String)]) -> Result<EventPage, ClientError> {
        self.get("/v1/events", params).await
    }

    /// Every event matching `params` (the filters of `GET /v1/events`), oldest first,
    /// read page by page.
    pub async fn query_all(
        &self,
        params: &[(String, String)],
    ) -> Result<Vec<sealtrail_core::api::Event>, ClientError> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_params = params.to_vec();
            page_params.push(("order".into(), "asc".into()));
            page_params.push(("limit".into(), "1000".into()));
            page_params.extend(cursor.take().map(|c| ("cursor".to_owned(), c)));
            let page = self.query(&page_params).await?;
            events.extend(page.events);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(events),
            }
        }
    }

    /// One event with its inclusion proof.
    pub async fn event(&self, id: &str) -> Result<EventWithProof, ClientError> {
        self.get(&format!("/v1/events/{id}"), &[]).await
    }

    /// One event with its inclusion proof against the tree of `tree_size` leaves (a
    /// checkpoint the caller holds; `None`: the latest) and, with `record`, the verbatim
    /// stored record the leaf hash covers.
    pub async fn event_proof(
        &self,
        id: &str,
        tree_size: Option<u64>,
        record: bool,
    ) -> Result<ProvenEvent, ClientError> {
        let mut params = vec![("record".to_owned(), record.to_string())];
        if let Some(size) = tree_size {
            params.push(("tree_size".into(), size.to_string()));
        }
        self.get(&path_of(&["v1", "events", id]), &params).await
    }

    /// The key the log signs its checkpoints with (`GET /v1/public-key`).
    pub async fn public_key(&self) -> Result<PublicKey, ClientError> {
        self.get("/v1/public-key", &[]).await
    }

    /// The id of this client's API key: the public part of `st_<key id>_<secret>`, as the
    /// access log names it (`None` for a key not of that form).
    pub fn key_id(&self) -> Option<&str> {
        let rest = self.key.strip_prefix("st_")?;
        let (id, _secret) = rest.split_once('_')?;
        Some(id)
    }

    /// The server's URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Counts; `params` are those of `GET /v1/stats`.
    pub async fn stats(&self, params: &[(String, String)]) -> Result<StatsResponse, ClientError> {
        self.get("/v1/stats", params).await
    }

    /// The latest signed checkpoint.
    pub async fn checkpoint(&self) -> Result<CheckpointView, ClientError> {
        self.get("/v1/checkpoint", &[]).await
    }

    /// A consistency proof between two tree sizes.
    pub async fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, ClientError> {
        self.get(
            "/v1/proofs/consistency",
            &[
                ("from".into(), from.to_string()),
                ("to".into(), to.to_string()),
            ],
        )
        .await
    }

    /// Destroys a tenant's data keys (or one subject's, the value at `encryption.subject`):
    /// their encrypted fields read as `"[shredded]"` from now on.
    pub async fn shred(&self, tenant: &str, subject: Option<&str>) -> Result<Value, ClientError> {
        let path = match subject {
            None => path_of(&["v1", "tenants", tenant, "shred"]),
            Some(subject) => path_of(&["v1", "tenants", tenant, "subjects", subject, "shred"]),
        };
        self.send_body(&path, "application/json", b"{}".to_vec())
            .await
    }

    /// Places a legal hold on a tenant, a resource type in it, or one resource
    /// (`POST /v1/holds`; admin key): the hold and the event recording it.
    pub async fn place_hold(
        &self,
        tenant: &str,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
        reason: &str,
    ) -> Result<Value, ClientError> {
        let body = serde_json::json!({
            "tenant_id": tenant,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "reason": reason,
        });
        self.send_body(
            "/v1/holds",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// Legal holds, of one tenant or of every tenant the key may see; released ones too
    /// with `all` (`GET /v1/holds`; admin key).
    pub async fn holds(&self, tenant: Option<&str>, all: bool) -> Result<Vec<Value>, ClientError> {
        let mut params = vec![("all".to_owned(), all.to_string())];
        if let Some(tenant) = tenant {
            params.push(("tenant_id".into(), tenant.into()));
        }
        self.get("/v1/holds", &params).await
    }

    /// Releases a legal hold (`POST /v1/holds/{id}/release`; admin key): the hold and the
    /// event recording the release.
    pub async fn release_hold(&self, hold_id: &str, reason: &str) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "reason": reason })
            .to_string()
            .into_bytes();
        self.send_body(
            &path_of(&["v1", "holds", hold_id, "release"]),
            "application/json",
            body,
        )
        .await
    }

    /// Rotates the log's signing key (`POST /v1/log/signing-key/rotate`; admin key): the
    /// event recording it, the size from which the new key signs, both keys and the
    /// statement signed by both.
    pub async fn rotate_signing_key(&self, reason: &str) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "reason": reason })
            .to_string()
            .into_bytes();
        self.send_body("/v1/log/signing-key/rotate", "application/json", body)
            .await
    }

    /// Runs retention now, or with `dry_run` shows what a run would do (as of `at`, RFC
    /// 3339, for a dry run) (`POST /v1/retention/run`; admin key bound to no tenant).
    pub async fn retention_run(
        &self,
        dry_run: bool,
        at: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "dry_run": dry_run, "at": at })
            .to_string()
            .into_bytes();
        self.send_body("/v1/retention/run", "application/json", body)
            .await
    }

    /// Every sink's state (`GET /v1/sinks`; admin key).
    pub async fn sinks(&self) -> Result<Vec<Value>, ClientError> {
        self.get("/v1/sinks", &[]).await
    }

    /// A sink's dead letters, oldest first.
    pub async fn dead_letters(&self, sink: &str, limit: usize) -> Result<Vec<Value>, ClientError> {
        self.get(
            &format!("/v1/sinks/{sink}/dead-letters"),
            &[("limit".into(), limit.to_string())],
        )
        .await
    }

    /// Queues dead letters for another delivery (those seqs, or all); how many.
    pub async fn replay_dead_letters(
        &self,
        sink: &str,
        seqs: Option<&[u64]>,
    ) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "seqs": seqs }).to_string().into_bytes();
        self.send_body(
            &format!("/v1/sinks/{sink}/dead-letters/replay"),
            "application/json",
            body,
        )
        .await
    }

    /// What became of an acknowledged event (`GET /v1/receipts/{id}`): `status` is
    /// `stored` (with `seq`), `spooled` or `refused` (with the reasons in `refused`).
    pub async fn receipt(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/v1/receipts/{id}"), &[]).await
    }

    /// Spooled events the log refused when the spool drained, oldest first
    /// (`GET /v1/spool/rejected`; admin key bound to no tenant).
    pub async fn spool_rejected(&self) -> Result<Vec<Value>, ClientError> {
        let list: Value = self.get("/v1/spool/rejected", &[]).await?;
        Ok(match list.get("rejected") {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.with_retries(&url, || {
            self.http.get(&url).query(params).bearer_auth(&self.key)
        })
        .await
    }

    async fn send_body<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.with_retries(&url, || {
            self.http
                .post(&url)
                .bearer_auth(&self.key)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone())
        })
        .await
    }

    async fn with_retries<T: DeserializeOwned>(
        &self,
        url: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= MAX_ATTEMPTS;
            let backoff = RETRY_BASE_DELAY * 2u32.pow(attempt - 1);
            match request().send().await {
                Err(source)
                    if !last
                        && (source.is_connect() || source.is_timeout() || source.is_request()) =>
                {
                    tokio::time::sleep(backoff.min(RETRY_MAX_DELAY)).await;
                }
                Err(source) => {
                    return Err(ClientError::Transport {
                        url: url.to_owned(),
                        source,
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    if !last && is_transient(status) {
                        let wait = retry_after(&response).unwrap_or(backoff);
                        tokio::time::sleep(wait.min(RETRY_MAX_DELAY)).await;
                        continue;
                    }
                    let bytes =
                        response
                            .bytes()
                            .await
                            .map_err(|source| ClientError::Transport {
                                url: url.to_owned(),
                                source,
                            })?;
                    if status.is_success() {
                        return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                            url: url.to_owned(),
                            reason: e.to_string(),
                        });
                    }
                    return Err(ClientError::Api {
                        status: status.as_u16(),
                        body: Box::new(error_body(&bytes)),
                    });
                }
            }
        }
    }
}

/// Of an ingest answer, what the producer reads: which events were refused (the ids,
/// seqs and hashes of the stored ones are skipped, not built).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct BatchAnswer {
    pub(crate) events: Vec<BatchResult>,
}

/// One event's result in a [`BatchAnswer`].
#[derive(Debug, serde::Deserialize)]
pub(crate) struct BatchResult {
    pub(crate) index: Option<usize>,
    pub(crate) error: Option<sealtrail_core::api::EventError>,
}

/// What one attempt at `POST /v1/events` came to.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Stored (or spooled by the server): durable.
    Accepted(BatchAnswer),
    /// Worth trying again: unreachable, timed out, overloaded, or the key not (yet) valid.
    Transient {
        /// What happened, for the producer's `last_error`.
        reason: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The server will never take this request as it is.
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's error.
        body: Box<ErrorBody>,
    },
}

impl Client {
    /// One attempt at sending `{"events": [...]}` (already serialised) with per-event
    /// results (`partial=true`), so one bad event does not hold back the others.
    pub(crate) async fn send_events_once(&self, body: Vec<u8>) -> Attempt {
        let url = format!("{}/v1/events?partial=true", self.base);
        let sent = self
            .http
            .post(&url)
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Transient {
                    reason: format!("cannot reach {url}: {error}"),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => {
                return Attempt::Transient {
                    reason: format!("the answer from {url} was cut off: {error}"),
                    retry_after: None,
                };
            }
        };
        if status.is_success() {
            return match serde_json::from_slice(&bytes) {
                Ok(answer) => Attempt::Accepted(answer),
                // Stored, but the answer is unreadable: sending again is safe (same ids).
                Err(error) => Attempt::Transient {
                    reason: format!("unexpected answer from {url}: {error}"),
                    retry_after: None,
                },
            };
        }
        let body = error_body(&bytes);
        // 401/403: a revoked or mistyped key is fixed by an operator, and the events must
        // wait for that rather than be lost.
        let waits = is_transient(status)
            || status.is_server_error()
            || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        if waits {
            Attempt::Transient {
                reason: format!("{status}: {}", body.message),
                retry_after,
            }
        } else {
            Attempt::Refused {
                status: status.as_u16(),
                body: Box::new(body),
            }
        }
    }
}

fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice::<ErrorBody>(bytes).unwrap_or_else(|_| ErrorBody {
        code: "http_error".into(),
        message: String::from_utf8_lossy(bytes).into_owned(),
        field: None,
        reason: None,
        errors: Vec::new(),
    })
}

fn is_transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::REQUEST_TIMEOUT
    )
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// Gives an event object a fresh UUIDv7 `id` if it has none.
pub fn assign_id(event: &mut Value) {
    if let Value::Object(map) = event
        && map.get("id").is_none_or(Value::is_null)
    {
        map.insert("id".into(), Value::String(uuid::Uuid::now_v7().to_string()));
    }
}

/// One NDJSON line with an `id` added if it had none; lines that are not JSON objects are
/// returned unchanged for the server to judge.
///
/// The id is derived from `import_id`, the line's number and its bytes (a UUIDv8 from their
/// SHA-256), so sending the same import again — after an interruption, say — yields the same
/// ids and the server stores nothing twice.
pub fn with_derived_id(import_id: &[u8], line_number: u64, line: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(mut map)) => {
            if map.get("id").is_none_or(Value::is_null) {
                let id = derived_id(import_id, line_number, line);
                map.insert("id".into(), Value::String(id.to_string()));
            }
            serde_json::to_vec(&map).expect("JSON values serialise")
        }
        _ => line.to_vec(),
    }
}

/// A UUIDv8 from SHA-256(import id, line number, line).
pub fn derived_id(import_id: &[u8], line_number: u64, line: &[u8]) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update((import_id.len() as u64).to_be_bytes());
    hasher.update(import_id);
    hasher.update(line_number.to_be_bytes());
    hasher.update(line);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes)
}

#[cfg(test)]
mod tests {

    #[test]
    fn path_segments_are_encoded_one_by_one() {
        assert_eq!(
            path_of(&["v1", "tenants", "acme", "subjects", "guest 17/a?b", "shred"]),
            "/v1/tenants/acme/subjects/guest%2017%2Fa%3Fb/shred"
        );
    }

    use super::*;

    #[test]
    fn derived_ids_are_stable_per_import_and_line() {
        let line = br#"{"action":"a.b","resource_type":"g"}"#;
        let a = with_derived_id(b"import-1", 7, line);
        assert_eq!(
            a,
            with_derived_id(b"import-1", 7, line),
            "a re-run sends the same id"
        );
        assert_ne!(
            a,
            with_derived_id(b"import-1", 8, line),
            "another line, another id"
        );
        assert_ne!(
            a,
            with_derived_id(b"import-2", 7, line),
            "another import, another id"
        );
        let kept = with_derived_id(b"x", 1, br#"{"id":"0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d"}"#);
        assert!(
            String::from_utf8(kept).unwrap().contains("0190f0e4"),
            "a producer id is kept"
        );
        assert_eq!(with_derived_id(b"x", 1, b"not json"), b"not json");
    }
}

/// One message of a live stream.
#[derive(Clone, Debug)]
pub enum StreamMessage {
    /// An event (its seq is the resume point).
    Event(Box<sealtrail_core::api::Event>),
    /// Replay has ended here; what follows is live.
    CaughtUp(u64),
}

/// A live stream of events (`GET /v1/stream`), read message by message.
pub struct EventStream {
    url: String,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
}

impl Client {
    /// Opens a live stream with the query API's filters in `params`, resuming after seq
    /// `after` (every matching event after it is replayed first) or, without it, from now.
    pub async fn stream(
        &self,
        params: &[(String, String)],
        after: Option<u64>,
    ) -> Result<EventStream, ClientError> {
        let url = format!("{}/v1/stream", self.base);
        let mut request = self
            .http_stream
            .get(&url)
            .query(params)
            .bearer_auth(&self.key);
        if let Some(seq) = after {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.unwrap_or_default();
            let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
                code: "http_error".into(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
                field: None,
                reason: None,
                errors: Vec::new(),
            });
            return Err(ClientError::Api {
                status: status.as_u16(),
                body: Box::new(body),
            });
        }
        Ok(EventStream {
            url,
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        })
    }
}

impl EventStream {
    /// The next message; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<StreamMessage, ClientError>> {
        use futures_util::StreamExt as _;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(message) = self.parse(&block) {
                    return Some(message);
                }
                continue;
            }
            match self.body.next().await? {
                Ok(chunk) => self.buffer.extend_from_slice(&chunk),
                Err(source) => {
                    return Some(Err(ClientError::Transport {
                        url: self.url.clone(),
                        source,
                    }));
                }
            }
        }
    }

    /// One SSE message; comments (heartbeats) and fields we do not use give `None`.
    fn parse(&self, block: &[u8]) -> Option<Result<StreamMessage, ClientError>> {
        let text = String::from_utf8_lossy(block);
        let (mut kind, mut data) = (None, String::new());
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if data.is_empty() {
            return None;
        }
        let decode = |reason: String| ClientError::Decode {
            url: self.url.clone(),
            reason,
        };
        Some(match kind.as_deref() {
            Some("caught_up") => serde_json::from_str::<Value>(&data)
                .ok()
                .and_then(|v| v["seq"].as_u64())
                .map(StreamMessage::CaughtUp)
                .ok_or_else(|| decode(format!("bad caught_up message {data:?}"))),
            _ => serde_json::from_str(&data)
                .map(|e| StreamMessage::Event(Box::new(e)))
                .map_err(|e| decode(e.to_string())),
        })
    }
}

/// A path made of `segments`, each percent-encoded as a path segment (by the URL crate).
fn path_of(segments: &[&str]) -> String {
    let mut url = reqwest::Url::parse("http://sealtrail.invalid/").expect("a constant URL");
    url.path_segments_mut()
        .expect("an http URL has a path")
        .extend(segments);
    url.path().to_owned()
}
