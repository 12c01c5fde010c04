//! A local stand-in for the services sinks deliver to. Each path checks the wire format
//! the service documents (not what our code happens to send) and answers as the service
//! does; faults can be queued: an HTTP status (with `Retry-After`), a delay past the
//! client's timeout, a dropped connection, per-item bulk errors, or a long outage.
//!
//! - `/_bulk` (Elasticsearch bulk API): NDJSON of action/document pairs ending in a
//!   newline, `create` or `index` with `_index`; a real `_id` store, so a second `create`
//!   of an id answers 409 `version_conflict_engine_exception` per item.
//! - `/api/v2/logs` (Datadog Logs intake v2): `DD-API-KEY`, JSON array (gzip or plain),
//!   ≤ 1,000 logs, ≤ 5 MB uncompressed, ≤ 1 MB per log; 202.
//! - `/slack` (incoming webhook): JSON with `text` and/or `blocks` of known block types,
//!   header text ≤ 150 characters, section fields ≤ 10; 200 `ok` or 400 `invalid_blocks`.
//! - `/v2/enqueue` (PagerDuty Events API v2): `routing_key`, `event_action`, `payload` with
//!   `summary` (≤ 1024), `source`, `severity` (critical, error, warning, info); `dedup_key`
//!   ≤ 255; 202 with `dedup_key`, or 400 `invalid event`.
//! - `/hook` (Standard Webhooks): `webhook-id`, `webhook-timestamp` within five minutes,
//!   `webhook-signature` `v1,` base64 HMAC-SHA256 of `id.timestamp.body` under the
//!   base64-decoded `whsec_` secret.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

/// The webhook secret the receiver verifies signatures with.
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The Datadog API key it expects.
pub const DD_API_KEY: &str = "dd-test-key-0123456789";
/// The PagerDuty routing key it expects.
pub const PD_ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";

/// What the next request gets instead of its normal answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This status, with `Retry-After: secs` if given.
    Status(u16, Option<u64>),
    /// Answer only after this long.
    Delay(Duration),
    /// Send the head, then cut the connection.
    Drop,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    faults: Mutex<VecDeque<Fault>>,
    item_faults: Mutex<VecDeque<u16>>,
    down: AtomicBool,
    /// Elasticsearch: `_id` → (document, order of first arrival).
    docs: Mutex<BTreeMap<String, (Value, usize)>>,
    /// Requests that broke the documented format, and why.
    violations: Mutex<Vec<String>>,
    /// Payloads accepted per path (for Datadog: each log; Slack/PagerDuty/webhook: each body).
    accepted: Mutex<Vec<(String, Value)>>,
    /// A request whose body contains this is refused with 400 (a "poison" event).
    poison: Mutex<Option<String>>,
}

pub struct Receiver {
    pub base: String,
    state: Arc<State>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(state, method, uri, headers, body).await }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, state }
    }

    pub fn fault(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push_back(fault);
    }

    pub fn item_faults(&self, statuses: &[u16]) {
        self.state.item_faults.lock().unwrap().extend(statuses);
    }

    /// Refuses (400) every request whose body contains `marker`.
    pub fn refuse_containing(&self, marker: &str) {
        *self.state.poison.lock().unwrap() = Some(marker.to_owned());
    }

    /// While down, every request gets 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        let all = self.state.requests.lock().unwrap();
        all.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Elasticsearch ids in order of first arrival.
    pub fn doc_ids(&self) -> Vec<String> {
        let docs = self.state.docs.lock().unwrap();
        let mut ids: Vec<(usize, String)> =
            docs.iter().map(|(id, (_, n))| (*n, id.clone())).collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    pub fn doc(&self, id: &str) -> Option<Value> {
        self.state
            .docs
            .lock()
            .unwrap()
            .get(id)
            .map(|(d, _)| d.clone())
    }

    pub fn accepted(&self, path: &str) -> Vec<Value> {
        let accepted = self.state.accepted.lock().unwrap();
        accepted
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }
}

async fn handle(
    state: Arc<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let fault = state.faults.lock().unwrap().pop_front();
    let down = state.down.load(Ordering::SeqCst);
    let poisoned = state
        .poison
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|marker| String::from_utf8_lossy(&body).contains(marker));
    let fault = if poisoned && fault.is_none() {
        Some(Fault::Status(400, None))
    } else {
        fault
    };
    let response = match (fault, down) {
        (_, true) => status_response(503, None, "down for maintenance"),
        (Some(Fault::Status(code, retry)), _) => status_response(code, retry, "injected"),
        (Some(Fault::Delay(wait)), _) => {
            tokio::time::sleep(wait).await;
            status_response(503, None, "too late")
        }
        (Some(Fault::Drop), _) => {
            let stream = futures_util::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("connection dropped"))
            });
            Response::builder()
                .status(200)
                .header("content-length", "100")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        (None, false) => {
            if method != Method::POST {
                violation(
                    &state,
                    format!("{path}: method {method}, the service takes POST"),
                );
                status_response(405, None, "POST only")
            } else {
                match path.as_str() {
                    "/_bulk" => bulk(&state, &headers, &body),
                    "/api/v2/logs" => datadog(&state, &headers, &body),
                    "/slack" => slack(&state, &headers, &body),
                    "/v2/enqueue" => pagerduty(&state, &body),
                    "/hook" => webhook(&state, &headers, &body),
                    _ => status_response(404, None, "no such path"),
                }
            }
        }
    };
    state.requests.lock().unwrap().push(Recorded {
        path,
        headers,
        body: body.to_vec(),
        at: Instant::now(),
        status: response.status().as_u16(),
    });
    response
}

fn status_response(code: u16, retry_after: Option<u64>, text: &str) -> Response {
    let mut response = (StatusCode::from_u16(code).unwrap(), text.to_owned()).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

fn violation(state: &State, what: String) {
    state.violations.lock().unwrap().push(what);
}

fn bad(state: &State, code: u16, what: String) -> Response {
    violation(state, what.clone());
    status_response(code, None, &what)
}

fn bulk(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    if header(headers, "content-type") != "application/x-ndjson" {
        return bad(
            state,
            406,
            "bulk: Content-Type must be application/x-ndjson".into(),
        );
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return bad(state, 400, "bulk: body is not UTF-8".into());
    };
    if !text.ends_with('\n') {
        return bad(state, 400, "bulk: the body must end with a newline".into());
    }
    let lines: Vec<&str> = text.lines().collect();
    if !lines.len().is_multiple_of(2) {
        return bad(
            state,
            400,
            "bulk: action and document lines must pair up".into(),
        );
    }
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let (Ok(action), Ok(doc)) = (
            serde_json::from_str::<Value>(pair[0]),
            serde_json::from_str::<Value>(pair[1]),
        ) else {
            return bad(state, 400, "bulk: a line is not JSON".into());
        };
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return bad(state, 400, "bulk: empty action".into());
        };
        if op != "create" && op != "index" {
            return bad(state, 400, format!("bulk: unexpected action {op}"));
        }
        let (Some(index), Some(id)) = (meta["_index"].as_str(), meta["_id"].as_str()) else {
            return bad(state, 400, "bulk: action without _index or _id".into());
        };
        if !doc.is_object() {
            return bad(state, 400, "bulk: the document is not an object".into());
        }
        // A queued 2xx means "this item as usual".
        let injected = state
            .item_faults
            .lock()
            .unwrap()
            .pop_front()
            .filter(|&c| c >= 300);
        let item = if let Some(code) = injected {
            errors = true;
            let kind = if code == 429 {
                "es_rejected_execution_exception"
            } else {
                "mapper_parsing_exception"
            };
            json!({"_index": index, "_id": id, "status": code, "error": {"type": kind, "reason": "injected"}})
        } else {
            let mut docs = state.docs.lock().unwrap();
            if docs.contains_key(id) && op == "create" {
                errors = true;
                json!({"_index": index, "_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "document already exists"}})
            } else {
                let order = docs.len();
                docs.insert(id.to_owned(), (doc, order));
                json!({"_index": index, "_id": id, "status": 201, "result": "created"})
            }
        };
        items.push(json!({ op.clone(): item }));
    }
    axum::Json(json!({"took": 1, "errors": errors, "items": items})).into_response()
}

fn datadog(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    if header(headers, "dd-api-key") != DD_API_KEY {
        return bad(state, 403, "datadog: missing or wrong DD-API-KEY".into());
    }
    if !header(headers, "content-type").starts_with("application/json") {
        return bad(
            state,
            400,
            "datadog: Content-Type must be application/json".into(),
        );
    }
    let raw = match header(headers, "content-encoding").as_str() {
        "gzip" => {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .is_err()
            {
                return bad(state, 400, "datadog: body is not gzip".into());
            }
            out
        }
        "" => body.to_vec(),
        other => return bad(state, 415, format!("datadog: unexpected encoding {other}")),
    };
    if raw.len() > 5 * 1024 * 1024 {
        return bad(state, 413, "datadog: payload over 5 MB".into());
    }
    let Ok(Value::Array(logs)) = serde_json::from_slice::<Value>(&raw) else {
        return bad(state, 400, "datadog: body is not a JSON array".into());
    };
    if logs.len() > 1000 {
        return bad(state, 400, "datadog: more than 1000 logs".into());
    }
    for log in &logs {
        if log.to_string().len() > 1024 * 1024 {
            return bad(state, 400, "datadog: a log over 1 MB".into());
        }
        for key in ["ddsource", "service", "ddtags", "message", "status"] {
            if !log[key].is_string() {
                return bad(state, 400, format!("datadog: log without string {key}"));
            }
        }
    }
    let mut accepted = state.accepted.lock().unwrap();
    accepted.extend(logs.into_iter().map(|l| ("/api/v2/logs".to_owned(), l)));
    (StatusCode::ACCEPTED, "{}").into_response()
}

fn slack(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    if !header(headers, "content-type").starts_with("application/json") {
        return bad(state, 400, "slack: invalid_payload (Content-Type)".into());
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return bad(state, 400, "slack: invalid_payload".into());
    };
    if !message["text"].is_string() && !message["blocks"].is_array() {
        return bad(state, 400, "slack: no_text".into());
    }
    for block in message["blocks"].as_array().into_iter().flatten() {
        let kind = block["type"].as_str().unwrap_or("");
        let ok = match kind {
            "header" => {
                block["text"]["type"] == "plain_text"
                    && block["text"]["text"]
                        .as_str()
                        .is_some_and(|t| t.chars().count() <= 150)
            }
            "section" => {
                block["text"].is_object()
                    || block["fields"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty() && f.len() <= 10)
            }
            "context" => block["elements"]
                .as_array()
                .is_some_and(|e| !e.is_empty() && e.len() <= 10),
            "actions" => block["elements"].as_array().is_some_and(|e| {
                e.iter()
                    .all(|b| b["type"] == "button" && b["text"]["type"] == "plain_text")
            }),
            "divider" => true,
            _ => false,
        };
        if !ok {
            return bad(state, 400, format!("slack: invalid_blocks ({kind})"));
        }
    }
    state
        .accepted
        .lock()
        .unwrap()
        .push(("/slack".into(), message));
    (StatusCode::OK, "ok").into_response()
}

fn pagerduty(state: &State, body: &[u8]) -> Response {
    let Ok(event) = serde_json::from_slice::<Value>(body) else {
        return bad(state, 400, "pagerduty: invalid event (not JSON)".into());
    };
    let problems: Vec<&str> = [
        (event["routing_key"] != PD_ROUTING_KEY, "routing_key"),
        (
            !matches!(
                event["event_action"].as_str(),
                Some("trigger" | "acknowledge" | "resolve")
            ),
            "event_action",
        ),
        (
            !event["payload"]["summary"]
                .as_str()
                .is_some_and(|s| !s.is_empty() && s.chars().count() <= 1024),
            "payload.summary",
        ),
        (
            event["payload"]["source"]
                .as_str()
                .is_none_or(str::is_empty),
            "payload.source",
        ),
        (
            !matches!(
                event["payload"]["severity"].as_str(),
                Some("critical" | "error" | "warning" | "info")
            ),
            "payload.severity",
        ),
        (
            event["dedup_key"]
                .as_str()
                .is_some_and(|k| k.chars().count() > 255),
            "dedup_key",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, field)| bad.then_some(field))
    .collect();
    if !problems.is_empty() {
        violation(state, format!("pagerduty: invalid {problems:?}"));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": problems})),
        )
            .into_response();
    }
    let dedup_key = event["dedup_key"].clone();
    state
        .accepted
        .lock()
        .unwrap()
        .push(("/v2/enqueue".into(), event));
    (
        StatusCode::ACCEPTED,
        axum::Json(
            json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        ),
    )
        .into_response()
}

fn webhook(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let id = header(headers, "webhook-id");
    let timestamp = header(headers, "webhook-timestamp");
    let signatures = header(headers, "webhook-signature");
    if id.is_empty() || timestamp.is_empty() || signatures.is_empty() {
        return bad(
            state,
            400,
            "webhook: missing webhook-id/-timestamp/-signature".into(),
        );
    }
    let Ok(ts) = timestamp.parse::<i64>() else {
        return bad(state, 400, "webhook: timestamp is not an integer".into());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts).abs() > 300 {
        return bad(
            state,
            400,
            "webhook: timestamp outside the 5 minute tolerance".into(),
        );
    }
    let key = BASE64
        .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    // Space-separated list of `version,signature`.
    let valid = signatures
        .split(' ')
        .any(|s| s.split_once(',') == Some(("v1", expected.as_str())));
    if !valid {
        return bad(state, 401, "webhook: no valid v1 signature".into());
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return bad(state, 400, "webhook: body is not JSON".into());
    };
    if !message["type"].is_string()
        || !message["timestamp"].is_string()
        || message["data"].is_null()
    {
        return bad(
            state,
            400,
            "webhook: body lacks type, timestamp or data".into(),
        );
    }
    state
        .accepted
        .lock()
        .unwrap()
        .push(("/hook".into(), json!({"id": id, "message": message})));
    StatusCode::NO_CONTENT.into_response()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}
