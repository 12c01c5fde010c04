//! A real server on a free port over a temporary data directory, and an HTTP client.

#![allow(dead_code)]

use sealtrail_core::Scope;
use sealtrail_server::{Config, RunningServer};
use sealtrail_store::ApiKeyStore;
use serde_json::Value;

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    keys: ApiKeyStore,
    config: Config,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        // Reads would add `audit_log.*` events these tests do not count on; the access
        // log has its own tests (tests/access.rs), which turn it back on.
        config.access_log.enabled = false;
        adjust(&mut config);
        let server = sealtrail_server::start(config.clone()).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        // Where the server reads its keys: PostgreSQL when it has a database.
        let keys = match &config.database_url {
            Some(url) => ApiKeyStore::open_postgres(url, None).unwrap().0,
            None => ApiKeyStore::open(dir.path()).unwrap(),
        };
        Self {
            server: Some(server),
            dir,
            base,
            http: sealtrail_testkit::http_client(),
            keys,
            config,
        }
    }

    pub fn key(&self, scopes: &[Scope], tenant: Option<&str>) -> String {
        self.keys.create(scopes, tenant, None).unwrap().1
    }

    pub fn revoke(&self, key: &str) {
        let id = key.split('_').nth(1).unwrap();
        assert!(self.keys.revoke(id).unwrap());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, key: &str, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    /// A batch of `guest_event(n)` for every n in `range`.
    pub async fn post_batch(&self, key: &str, range: std::ops::Range<u64>) -> (u16, Value) {
        let events: Vec<Value> = range.map(guest_event).collect();
        self.post_json(key, "/v1/events", &serde_json::json!({ "events": events }))
            .await
    }

    pub async fn post_raw(&self, key: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/v1/events"))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    /// An unauthenticated GET (operations endpoints): status and body text.
    pub async fn get_open(&self, path: &str) -> (u16, String) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn tree_size(&self) -> u64 {
        let ready: Value = serde_json::from_str(&self.get_open("/readyz").await.1).unwrap();
        ready["tree_size"].as_u64().unwrap()
    }

    /// Stops the server gracefully and starts a new one on the same data directory, with
    /// the same configuration.
    pub async fn restart(mut self) -> Self {
        self.server.take().unwrap().shutdown().await.unwrap();
        let server = sealtrail_server::start(self.config.clone()).await.unwrap();
        self.base = format!("http://{}", server.local_addr());
        self.server = Some(server);
        self
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().shutdown().await.unwrap();
        self.dir
    }
}

async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

pub fn guest_event(n: u64) -> Value {
    serde_json::json!({
        "action": "guest.dietary_restriction.updated",
        "resource_type": "guest",
        "resource_id": format!("guest-{n}"),
        "user_id": "coord:ines",
        "severity": if n.is_multiple_of(4) { "warning" } else { "info" },
        "reason": "guest called",
        "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
    })
}

/// One Server-Sent Events message.
#[derive(Debug, Clone)]
pub struct SseMessage {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: String,
}

/// A minimal SSE client over reqwest's byte stream.
pub struct SseClient {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    buffer: Vec<u8>,
}

impl SseClient {
    /// Opens `/v1/stream?{query}`, resuming after `last_event_id` if given.
    pub async fn connect(base: &str, key: &str, query: &str, last_event_id: Option<u64>) -> Self {
        Self::try_connect(base, key, query, last_event_id)
            .await
            .expect("the server answers")
    }

    /// As [`connect`](Self::connect), but `None` if the server cannot be reached.
    pub async fn try_connect(
        base: &str,
        key: &str,
        query: &str,
        last_event_id: Option<u64>,
    ) -> Option<Self> {
        let mut request = sealtrail_testkit::http_client()
            .get(format!("{base}/v1/stream?{query}"))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.ok()?;
        assert_eq!(
            response.status(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
        Some(Self {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        })
    }

    /// The next message (comments skipped), or None when the stream ends.
    pub async fn next(&mut self) -> Option<SseMessage> {
        use futures_util::StreamExt as _;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut message = SseMessage {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        message.id = Some(v.parse().unwrap());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        message.event = Some(v.to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        message.data.push_str(v);
                        any = true;
                    }
                }
                if any {
                    return Some(message);
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// The next event's seq and body, skipping `caught_up`.
    pub async fn next_event(&mut self) -> Option<(u64, Value)> {
        loop {
            let message = self.next().await?;
            if message.event.as_deref() == Some("caught_up") {
                continue;
            }
            return Some((
                message.id.unwrap(),
                serde_json::from_str(&message.data).unwrap(),
            ));
        }
    }
}

/// A WebSocket client speaking the `/v1/ws` protocol.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    pub async fn connect(base: &str, key: &str) -> Self {
        Self::try_connect(base, key)
            .await
            .expect("the server answers")
    }

    /// As [`connect`](Self::connect), but `None` if the server cannot be reached.
    pub async fn try_connect(base: &str, key: &str) -> Option<Self> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
        Some(Self { socket })
    }

    pub async fn send(&mut self, value: Value) {
        use futures_util::SinkExt as _;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::text(
                value.to_string(),
            ))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt as _;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
    }

    /// The next JSON message (pings skipped), or None when the connection ends.
    pub async fn next(&mut self) -> Option<Value> {
        use futures_util::StreamExt as _;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                _ => return None,
            }
        }
    }
}

/// Waits for `condition` with a deadline, polling.
pub async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A PostgreSQL cluster of the test's own (so it may stop and start it) with the log's
/// schema in its `postgres` database; that database's URL.
pub async fn postgres_with_schema() -> (std::sync::Arc<sealtrail_testkit::PgCluster>, String) {
    tokio::task::spawn_blocking(|| {
        let cluster = sealtrail_testkit::PgCluster::start(60).unwrap();
        let url = cluster.database_url("postgres");
        let mut client = sealtrail_store::postgres::connect(&url).unwrap();
        sealtrail_store::postgres::migrate(&mut client).unwrap();
        (std::sync::Arc::new(cluster), url)
    })
    .await
    .unwrap()
}

/// A server on `url` sharing the signing key of `first`.
pub async fn another_server(first: &TestServer, url: &str) -> (TestServer, tempfile::TempDir) {
    another_server_with(first, url, |_| {}).await
}

/// [`another_server`] with more configuration.
pub async fn another_server_with(
    first: &TestServer,
    url: &str,
    more: impl FnOnce(&mut sealtrail_server::Config) + Send + 'static,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.dir.path().join("log-signing.key"),
        dir.path().join("log-signing.key"),
    )
    .unwrap();
    let (url, path) = (url.to_owned(), dir.path().to_owned());
    let server = TestServer::start_with(move |c| {
        c.database_url = Some(url);
        c.data_dir = path;
        more(c);
    })
    .await;
    (server, dir)
}
