//! `GET /v1/ws`: WebSocket subscriptions.
//!
//! The client sends `{"type":"subscribe","id":"s1","filter":{...},"since":SEQ}` (the filter
//! keys are the query API's; subscribing again with the same id replaces the subscription)
//! and `{"type":"unsubscribe","id":"s1"}`. The server answers `subscribed`, then sends
//! `{"type":"event","subscription":"s1","event":{...}}` messages, one `caught_up` when the
//! replay ends and live delivery begins, `unsubscribed`, and pings. A malformed message gets
//! an `error` message; the connection stays up.
//!
//! Every subscription runs the shared [`follow`] loop in its own task; one writer task owns
//! the socket. A client that takes longer than the write timeout to accept data is
//! disconnected (close code 1008 with the reason); it resumes with the seqs it last saw.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt as _, StreamExt as _};
use sealtrail_core::{FieldError, Grant, Scope};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::{Closed, Outbox, Outgoing, Streams, SubscriberSlot, check_since, follow};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Messages waiting for the socket writer.
const WS_OUT_QUEUE: usize = 64;
/// Initial read buffer of a WebSocket connection.
const WS_READ_BUFFER_BYTES: usize = 2048;
/// The close code for a client that is too slow (RFC 6455: policy violation).
const CLOSE_TOO_SLOW: u16 = 1008;
/// The close code when the server shuts down (RFC 6455: going away).
const CLOSE_GOING_AWAY: u16 = 1001;

/// Follow events live over a WebSocket.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "streams",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; see the module documentation for the messages"),
        (status = 401, description = "No or unknown API key", body = crate::error::ErrorBody),
        (status = 403, description = "Key lacks the stream scope", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn ws(
    State(state): State<AppState>,
    auth: Auth,
    requester: crate::access::Requester,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // The key is judged before the upgrade request, so a key without the scope learns
    // nothing more than 403.
    auth.require(Scope::Stream)?;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return Err(ApiError::invalid_parameter(FieldError::new(
                "upgrade",
                format!("not a WebSocket upgrade request: {}", rejection.body_text()),
            )));
        }
    };
    let max_message = state.streams.settings.max_ws_message_bytes;
    Ok(upgrade
        // tungstenite's default buffers are 128 KiB each; an idle subscriber needs a few KiB,
        // and the read buffer grows to the message size limit if a client sends that much.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| connection(state, auth.0, requester, socket)))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        id: String,
        #[serde(default)]
        filter: serde_json::Map<String, Value>,
        since: Option<u64>,
    },
    Unsubscribe {
        id: String,
    },
}

struct Subscription {
    task: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(
    state: AppState,
    grant: Grant,
    requester: crate::access::Requester,
    socket: WebSocket,
) {
    let streams = state.streams.clone();
    let (mut sink, mut incoming) = socket.split();
    let (out, mut queued) = mpsc::channel::<Message>(WS_OUT_QUEUE);
    let too_slow = std::sync::Arc::new(Notify::new());
    let write_timeout = streams.write_timeout();
    let heartbeat = streams.heartbeat();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(heartbeat);
        ping.tick().await;
        loop {
            let message = tokio::select! {
                message = queued.recv() => match message { Some(m) => m, None => break },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            let closing = matches!(message, Message::Close(_));
            match tokio::time::timeout(write_timeout, sink.send(message)).await {
                Ok(Ok(())) if !closing => {}
                _ => break,
            }
        }
        let _ = sink.close().await;
    });
    let mut subscriptions: HashMap<String, Subscription> = HashMap::new();
    let mut shutdown = std::pin::pin!(streams.shutdown_signal());
    loop {
        let message = tokio::select! {
            message = incoming.next() => message,
            () = &mut shutdown => {
                let reason = "the server is shutting down; reconnect and resubscribe with the last seqs seen";
                let _ = out.try_send(Message::Close(Some(CloseFrame { code: CLOSE_GOING_AWAY, reason: Utf8Bytes::from_static(reason) })));
                break;
            }
            () = too_slow.notified() => {
                let reason = "too slow to accept events; reconnect and resubscribe with the last seqs seen";
                let _ = out.try_send(Message::Close(Some(CloseFrame { code: CLOSE_TOO_SLOW, reason: Utf8Bytes::from_static(reason) })));
                break;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                send(
                    &out,
                    error_message(None, "invalid_message", "send JSON text messages"),
                )
                .await;
                continue;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
        };
        let handled = handle(
            &state,
            &grant,
            &requester,
            &text,
            &mut subscriptions,
            &out,
            &too_slow,
        );
        match handled.await {
            Ok(reply) => send(&out, reply).await,
            Err((subscription, error)) => {
                send(
                    &out,
                    error_message(
                        subscription.as_deref(),
                        &error.body().code,
                        &error.body().message,
                    ),
                )
                .await
            }
        }
    }
    drop(subscriptions);
    drop(out);
    let _ = writer.await;
}

/// Acts on one client message; returns the reply, or the error for the client.
#[allow(clippy::result_large_err)]
async fn handle(
    state: &AppState,
    grant: &Grant,
    requester: &crate::access::Requester,
    text: &str,
    subscriptions: &mut HashMap<String, Subscription>,
    out: &mpsc::Sender<Message>,
    too_slow: &std::sync::Arc<Notify>,
) -> Result<Value, (Option<String>, ApiError)> {
    let message: ClientMessage = serde_json::from_str(text).map_err(|e| {
        (
            None,
            ApiError::invalid_parameter(FieldError::new(
                "",
                format!("not a subscribe or unsubscribe message: {e}"),
            )),
        )
    })?;
    match message {
        ClientMessage::Unsubscribe { id } => unsubscribe(subscriptions, id),
        ClientMessage::Subscribe { id, filter, since } => {
            let fail = |e: ApiError| (Some(id.clone()), e);
            let (event_filter, cursor) =
                prepare_subscription(state, grant, requester, subscriptions, &id, &filter, since)
                    .await
                    .map_err(fail)?;
            // Replacing: the old subscription stops before the new one is admitted.
            subscriptions.remove(&id);
            let slot = state.streams.admit().map_err(fail)?;
            let task = tokio::spawn(run_subscription(
                state.streams.clone(),
                slot,
                event_filter,
                cursor,
                WsOutbox::new(&id, out.clone(), state.streams.write_timeout()),
                too_slow.clone(),
            ));
            subscriptions.insert(id.clone(), Subscription { task });
            Ok(json!({"type": "subscribed", "subscription": id, "since": cursor}))
        }
    }
}

/// Stops the subscription `id`; a client unsubscribing from what it never subscribed to
/// is told so, as it may have lost track of its ids.
#[allow(clippy::result_large_err)]
fn unsubscribe(
    subscriptions: &mut HashMap<String, Subscription>,
    id: String,
) -> Result<Value, (Option<String>, ApiError)> {
    if subscriptions.remove(&id).is_none() {
        return Err((
            Some(id.clone()),
            ApiError::not_found(format!("no subscription {id:?}")),
        ));
    }
    Ok(json!({"type": "unsubscribed", "subscription": id}))
}

/// Everything a subscribe message must pass before it replaces or adds a subscription:
/// the id and the connection's limit, the filter (confined to the key's tenant), the read
/// recorded in the access log, and `since`. Returns the filter and the seq to follow from.
async fn prepare_subscription(
    state: &AppState,
    grant: &Grant,
    requester: &crate::access::Requester,
    subscriptions: &HashMap<String, Subscription>,
    id: &str,
    filter: &serde_json::Map<String, Value>,
    since: Option<u64>,
) -> Result<(sealtrail_core::EventFilter, u64), ApiError> {
    check_subscription_id(
        subscriptions,
        id,
        state.streams.settings.max_ws_subscriptions,
    )?;
    let values = filter_query_values(filter)?;
    let mut event_filter =
        super::parse_filter(values.iter().map(|(k, v)| (*k, v.as_str())), &[])?.filter;
    let auth = Auth(grant.clone());
    event_filter.tenant_id = auth.confine_tenant(event_filter.tenant_id.take())?;
    let recorded = json!({"subscription": id, "filter": filter, "since": since});
    crate::access::record_subscription(state, &auth, requester, recorded, &event_filter).await?;
    let tree_size = state.sequencer.tree_size();
    let cursor = match since {
        Some(seq) => check_since(seq, tree_size, "since")?,
        None => tree_size,
    };
    Ok((event_filter, cursor))
}

/// A subscription id is 1 to 128 bytes, and a new one (not replacing) must fit within the
/// connection's `limit` of subscriptions.
fn check_subscription_id(
    subscriptions: &HashMap<String, Subscription>,
    id: &str,
    limit: usize,
) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::invalid_parameter(FieldError::new(
            "id",
            "must be 1 to 128 bytes",
        )));
    }
    let replacing = subscriptions.contains_key(id);
    if !replacing && subscriptions.len() >= limit {
        return Err(ApiError::invalid_parameter(FieldError::new(
            "id",
            format!("a connection may hold {limit} subscriptions (stream.max_ws_subscriptions)"),
        )));
    }
    Ok(())
}

/// The subscribe message's JSON filter as the query API's `key=value` pairs, so that both
/// are parsed by the same code: strings as they are, a `severity` list joined with commas.
fn filter_query_values(
    filter: &serde_json::Map<String, Value>,
) -> Result<Vec<(&str, String)>, ApiError> {
    let mut values = Vec::with_capacity(filter.len());
    for (key, value) in filter {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Array(items) if key == "severity" => items
                .iter()
                .map(|i| i.as_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join(","),
            other => {
                return Err(ApiError::invalid_parameter(FieldError::new(
                    format!("filter.{key}"),
                    format!("must be a string, not {other}"),
                )));
            }
        };
        values.push((key.as_str(), text));
    }
    Ok(values)
}

async fn run_subscription(
    streams: Streams,
    slot: SubscriberSlot,
    filter: sealtrail_core::EventFilter,
    cursor: u64,
    mut outbox: WsOutbox,
    too_slow: std::sync::Arc<Notify>,
) {
    let _slot = slot;
    match follow(&streams, filter, cursor, &mut outbox).await {
        Err(Closed::Client) if !outbox.out.is_closed() => too_slow.notify_one(),
        Err(Closed::Store(error)) => {
            tracing::error!(%error, "a subscription stopped: reading the store failed");
            let _ = outbox.out.try_send(text(error_message(
                Some(&outbox.id),
                "internal",
                "the subscription failed; subscribe again",
            )));
        }
        _ => {}
    }
}

struct WsOutbox {
    id: String,
    /// `{"type":"event","subscription":"<id>","event":` — the envelope before the event.
    prefix: Vec<u8>,
    out: mpsc::Sender<Message>,
    write_timeout: Duration,
}

impl WsOutbox {
    fn new(id: &str, out: mpsc::Sender<Message>, write_timeout: Duration) -> Self {
        let prefix = format!(
            "{{\"type\":\"event\",\"subscription\":{},\"event\":",
            Value::String(id.to_owned())
        );
        Self {
            id: id.to_owned(),
            prefix: prefix.into_bytes(),
            out,
            write_timeout,
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), Closed> {
        match tokio::time::timeout(self.write_timeout, self.out.send(message)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Closed::Client),
        }
    }
}

impl Outbox for WsOutbox {
    async fn event(&mut self, event: Outgoing<'_>) -> Result<(), Closed> {
        // The event's JSON is made once per event (live) or per replay; only the small
        // envelope with this subscription's id is added here.
        let json: &[u8] = match &event {
            Outgoing::Live(frame) => &frame.json,
            Outgoing::Replayed(_, json) => json,
        };
        let mut message = Vec::with_capacity(self.prefix.len() + json.len() + 1);
        message.extend_from_slice(&self.prefix);
        message.extend_from_slice(json);
        message.push(b'}');
        let message = String::from_utf8(message).expect("records and envelopes are UTF-8 JSON");
        self.send(Message::Text(Utf8Bytes::from(message))).await
    }

    async fn caught_up(&mut self, seq: u64) -> Result<(), Closed> {
        let message = json!({"type": "caught_up", "subscription": self.id, "seq": seq});
        self.send(text(message)).await
    }

    async fn heartbeat(&mut self) -> Result<(), Closed> {
        // The writer pings the whole connection.
        Ok(())
    }

    async fn closed(&self) {
        self.out.closed().await
    }
}

fn text(value: Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn error_message(subscription: Option<&str>, code: &str, message: &str) -> Value {
    let mut error = json!({"type": "error", "code": code, "message": message});
    if let Some(id) = subscription {
        error["subscription"] = json!(id);
    }
    error
}

async fn send(out: &mpsc::Sender<Message>, value: Value) {
    let _ = out.send(text(value)).await;
}
