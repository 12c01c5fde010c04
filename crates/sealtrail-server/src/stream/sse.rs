//! `GET /v1/stream`: Server-Sent Events.
//!
//! Each message is `id: <seq>` and the event as `data`; a client that reconnects with
//! `Last-Event-ID` (or `?since=SEQ`) gets every matching event after that seq, then the
//! live ones. The body is fed through a small channel: when the client stops reading, the
//! channel fills and, after the write timeout, the subscription ends — so a stalled client
//! holds a bounded amount of memory and no live queue.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sealtrail_core::query::StreamFilterParams;
use sealtrail_core::{FieldError, Scope};
use tokio::sync::mpsc;

use super::hub::sse_message;
use super::{Closed, Outbox, Outgoing, StreamParams, check_since, follow, parse_filter};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::Params;
use crate::state::AppState;

/// Messages that may wait between a subscription and its HTTP body.
const SSE_BODY_QUEUE: usize = 8;
/// How long a client waits before reconnecting, in milliseconds (the SSE `retry` field).
const RECONNECT_DELAY_MS: u64 = 1000;

struct SseOutbox {
    body: mpsc::Sender<Bytes>,
    write_timeout: std::time::Duration,
}

impl SseOutbox {
    async fn send(&mut self, frame: Bytes) -> Result<(), Closed> {
        match tokio::time::timeout(self.write_timeout, self.body.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Closed::Client),
        }
    }
}

impl Outbox for SseOutbox {
    async fn event(&mut self, event: Outgoing<'_>) -> Result<(), Closed> {
        let frame = match event {
            Outgoing::Live(frame) => frame.sse.clone(),
            Outgoing::Replayed(seq, json) => sse_message(seq, &json),
        };
        self.send(frame).await
    }

    async fn caught_up(&mut self, seq: u64) -> Result<(), Closed> {
        self.send(Bytes::from(format!(
            "event: caught_up\ndata: {{\"seq\":{seq}}}\n\n"
        )))
        .await
    }

    async fn heartbeat(&mut self) -> Result<(), Closed> {
        self.send(Bytes::from_static(b": heartbeat\n\n")).await
    }

    async fn closed(&self) {
        self.body.closed().await
    }
}

/// Follow events live over Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "streams",
    params(
        StreamFilterParams,
        ("since" = Option<u64>, Query, description = "Resume after this seq (the Last-Event-ID header takes precedence); without either, only new events"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The last seq received, when reconnecting"),
    ),
    responses(
        (status = 200, description = "An endless text/event-stream: `id: <seq>` + `data: <event>` per event, `event: caught_up` when replay ends, `: heartbeat` comments", content_type = "text/event-stream", body = serde_json::Value),
        (status = 400, description = "A parameter is invalid", body = crate::error::ErrorBody),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Key lacks the stream scope, or asks for another tenant", body = crate::error::ErrorBody),
        (status = 503, description = "Too many subscribers", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    auth: Auth,
    requester: crate::access::Requester,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    auth.require(Scope::Stream)?;
    let StreamParams {
        mut filter,
        extra: rest,
    } = parse_filter(params.pairs(), &["since"])?;
    filter.tenant_id = auth.confine_tenant(filter.tenant_id.take())?;
    // Recorded before the stream starts, so a new stream begins after its own record.
    let recorded = crate::access::params_object(params.pairs());
    crate::access::record_subscription(&state, &auth, &requester, recorded, &filter).await?;
    let cursor = resume_cursor(&headers, &rest, state.sequencer.tree_size())?;
    let streams = state.streams.clone();
    let slot = streams.admit()?;
    let (body, frames) = mpsc::channel(SSE_BODY_QUEUE);
    let opening = Bytes::from(format!(
        "retry: {RECONNECT_DELAY_MS}\n: sealtrail stream\n\n"
    ));
    body.try_send(opening).expect("a new channel has room");
    let mut outbox = SseOutbox {
        body,
        write_timeout: streams.write_timeout(),
    };
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(Closed::Store(error)) = follow(&streams, filter, cursor, &mut outbox).await {
            tracing::error!(%error, "a stream stopped: reading the store failed");
        }
    });
    Ok(event_stream(frames))
}

/// Where a stream starts: after `Last-Event-ID` (a reconnecting client), else after
/// `since`, else at the log's end (only new events).
fn resume_cursor(
    headers: &HeaderMap,
    rest: &[(&str, &str)],
    tree_size: u64,
) -> Result<u64, ApiError> {
    let since = match headers.get("last-event-id") {
        Some(value) => Some(parse_seq(value.to_str().unwrap_or("?"), "Last-Event-ID")?),
        None => rest
            .iter()
            .find(|(k, _)| *k == "since")
            .map(|(_, v)| parse_seq(v, "since"))
            .transpose()?,
    };
    match since {
        Some(seq) => check_since(seq, tree_size, "since"),
        None => Ok(tree_size),
    }
}

/// The endless `text/event-stream` response carrying `frames`.
fn event_stream(frames: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(frames, |mut frames| async move {
        frames
            .recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), frames))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx must not buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn parse_seq(text: &str, field: &str) -> Result<u64, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::invalid_parameter(FieldError::new(field, format!("{text:?} is not a seq")))
    })
}
