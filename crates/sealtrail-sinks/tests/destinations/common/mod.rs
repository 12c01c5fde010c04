//! A real log for the sinks to follow — the SQLite store and its sequencer in a temporary
//! data directory — with the sinks started on it from `[[sinks]]`/`[[routes]]` TOML as a
//! user writes it, and the helpers the tests share.

#![allow(dead_code)]

pub mod receiver;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use sealtrail_core::time_format::now_micros;
use sealtrail_core::{EventFilter, EventLimits, TenantScope, prepare_event_value};
use sealtrail_crypto::Opener;
use sealtrail_sinks::{RouteConfig, SinkConfig, Sinks};
use sealtrail_store::sqlite::{SqliteReader, open_log};
use sealtrail_store::{LogReader, Sequencer, SequencerConfig, SequencerHandle, SequencerHooks};
use serde_json::Value;

/// The `[[sinks]]` and `[[routes]]` of a config file.
#[derive(serde::Deserialize)]
struct SinksSection {
    #[serde(default)]
    sinks: Vec<SinkConfig>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

/// Retries fast enough for a test: a 400 ms timeout, 10–50 ms backoff, the circuit open
/// after 3 failures for 150 ms.
pub fn fast_retries() -> &'static str {
    "request_timeout_ms = 400\nretry_initial_delay_ms = 10\nretry_max_delay_ms = 50\nbreaker_failures = 3\nbreaker_cooldown_ms = 150"
}

/// Writes a secret file (with a trailing newline, as editors do); its path.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path.display().to_string()
}

/// The log and the sinks following it.
pub struct TestSinks {
    pub dir: tempfile::TempDir,
    sinks_text: String,
    handle: Option<SequencerHandle>,
    thread: Option<JoinHandle<()>>,
    reader: Arc<dyn LogReader>,
    pub sinks: Option<Sinks>,
}

impl TestSinks {
    /// A new log with the sinks and routes of `toml_text`, checked as `serve` checks them.
    pub async fn start(toml_text: &str) -> Self {
        Self::open(tempfile::tempdir().unwrap(), toml_text.to_owned()).await
    }

    async fn open(dir: tempfile::TempDir, sinks_text: String) -> Self {
        let section: SinksSection = toml::from_str(&sinks_text).unwrap();
        let problems = sealtrail_sinks::check_config(&section.sinks, &section.routes);
        assert!(problems.is_empty(), "{problems:?}");
        let path = dir.path().to_owned();
        let (handle, thread, reader) = tokio::task::spawn_blocking(move || {
            let (backend, signer) = open_log(&path, Some("sealtrail.test/log")).unwrap();
            let reader = SqliteReader::open(&path).unwrap();
            let (handle, thread) = Sequencer::spawn(
                backend,
                signer,
                SequencerConfig::default(),
                SequencerHooks::default(),
            )
            .unwrap();
            (handle, thread, Arc::new(reader) as Arc<dyn LogReader>)
        })
        .await
        .unwrap();
        let sinks = Sinks::start(
            &section.sinks,
            &section.routes,
            sealtrail_sinks::SinkState::DataDir(dir.path()),
            reader.clone(),
            handle.durable_size(),
            Opener::new(None),
            &sealtrail_store::follow::Shutdown::new(),
        )
        .unwrap();
        Self {
            dir,
            sinks_text,
            handle: Some(handle),
            thread: Some(thread),
            reader,
            sinks: Some(sinks),
        }
    }

    pub fn sinks(&self) -> &Sinks {
        self.sinks.as_ref().unwrap()
    }

    /// Appends events as a key bound to `tenant` would ingest them; waits until durable.
    pub async fn ingest(&self, tenant: &str, events: Vec<Value>) {
        let scope = TenantScope::Bound(tenant.to_owned());
        let prepared = events
            .into_iter()
            .map(|e| prepare_event_value(e, &scope, now_micros(), &EventLimits::default()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        self.handle
            .as_ref()
            .unwrap()
            .append(prepared)
            .await
            .unwrap();
    }

    /// `guest_event(n)` for every n in `range`, in one request.
    pub async fn ingest_guests(&self, tenant: &str, range: std::ops::Range<u64>) {
        self.ingest(tenant, range.map(guest_event).collect()).await;
    }

    /// Every event id in the log, in log order.
    pub fn ids_in_log_order(&self) -> Vec<String> {
        let through = self.handle.as_ref().unwrap().durable_size().get();
        let page = self
            .reader
            .events_after(0, through, &EventFilter::default(), 10_000)
            .unwrap();
        let opener = Opener::new(None);
        page.events
            .iter()
            .map(|stored| {
                let event = sealtrail_sinks::event::SinkEvent::from_stored(stored, &opener);
                event.unwrap().id().to_owned()
            })
            .collect()
    }

    /// Every sink's status as `GET /v1/sinks` shows it.
    pub fn statuses(&self) -> Value {
        serde_json::to_value(self.sinks().status()).unwrap()
    }

    /// One sink's status as `GET /v1/sinks` shows it.
    pub fn status(&self, name: &str) -> Value {
        let all = self.statuses();
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    }

    /// A sink's dead letters as `GET /v1/sinks/{name}/dead-letters` shows them.
    pub fn dead_letters(&self, name: &str) -> Value {
        serde_json::to_value(self.sinks().dead_letters(name, 1000).unwrap()).unwrap()
    }

    /// Stops the sinks and the sequencer and starts both again on the same data
    /// directory, as a restart of Sealtrail does.
    pub async fn restart(mut self) -> Self {
        let dir = self.stop_in_place().await;
        let text = std::mem::take(&mut self.sinks_text);
        Self::open(dir, text).await
    }

    /// Stops the sinks (waiting for them) and the sequencer.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    async fn stop_in_place(&mut self) -> tempfile::TempDir {
        if let Some(sinks) = self.sinks.take() {
            sinks.stop().await;
        }
        drop(self.handle.take());
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

/// The guest-list change every test sends: a warning for every 4th `n`, info otherwise.
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

/// The mixed log the format tests route from: 40 guest changes of acme, 10 of another
/// tenant, then two critical venue cancellations of acme, one asking for a page. The
/// number of events.
pub async fn ingest_the_wedding(t: &TestSinks) -> u64 {
    t.ingest_guests("acme", 0..40).await;
    t.ingest_guests("other", 40..50).await;
    let page = serde_json::json!({"action": "venue.cancelled", "resource_type": "venue",
        "resource_id": "v1", "severity": "critical", "details": {"page": true}});
    let quiet = serde_json::json!({"action": "venue.cancelled", "resource_type": "venue",
        "resource_id": "v2", "severity": "critical", "details": {"page": false}});
    t.ingest("acme", vec![page]).await;
    t.ingest("acme", vec![quiet]).await;
    52
}

/// Waits until every sink's cursor is at `total` with no lag.
pub async fn caught_up(t: &TestSinks, total: u64) {
    eventually("every sink has caught up", async || {
        t.statuses()
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["cursor"] == total && x["lag_events"] == 0)
    })
    .await;
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
