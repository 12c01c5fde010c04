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
        adjust(&mut config);
        let server = sealtrail_server::start(config).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let keys = ApiKeyStore::open(dir.path()).unwrap();
        Self {
            server: Some(server),
            dir,
            base,
            http: reqwest::Client::new(),
            keys,
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

    /// Stops the server gracefully and starts a new one on the same data directory.
    pub async fn restart(mut self) -> Self {
        self.server.take().unwrap().shutdown().await.unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: self.dir.path().to_owned(),
            ..Config::default()
        };
        let server = sealtrail_server::start(config).await.unwrap();
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
