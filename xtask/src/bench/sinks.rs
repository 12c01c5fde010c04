//! Sinks: delivery throughput into a local receiver in the Elasticsearch bulk and webhook
//! formats (at-least-once, with cursor commits), each against the receiver's own capacity
//! measured in the same run (the same request bodies posted straight to it, one request
//! at a time as a sink sends them), and end-to-end lag (ingest acknowledged → receiver got
//! it) at 1,000 events/s.
//!
//! Throughput is measured as catch-up: the log is filled with the sink not configured,
//! then the server restarts with it, and the clock runs until its cursor reaches the end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::Uri;
use sealtrail_core::time_format::now_micros;
use serde_json::{Value, json};

use super::BenchArgs;
use super::data::EventSource;
use super::ingest::http_batched;
use super::server::{Server, create_key};
use super::stats::{Latency, ms};

/// Events per request the sinks send (and the baseline posts).
const SINK_BATCH: usize = 1000;
/// The lag run's rate and length.
const LAG_RATE: u64 = 1000;
const LAG_SECONDS: u64 = 10;

/// A receiver that takes bulk and webhook requests, counts events and notes when each id
/// arrived.
#[derive(Clone, Default)]
struct Receiver {
    events: Arc<Mutex<u64>>,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    track_ids: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> anyhow::Result<String> {
        let this = self.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
            let this = this.clone();
            async move { this.take(uri.path(), &body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(base)
    }

    fn take(&self, path: &str, body: &[u8]) -> (axum::http::StatusCode, &'static str) {
        let track = self.track_ids.load(std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let mut ids = Vec::new();
        let count = if path == "/_bulk" {
            let lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty());
            let mut n = 0;
            for (i, line) in lines.enumerate() {
                if i % 2 == 0 {
                    n += 1;
                    if track && let Ok(action) = serde_json::from_slice::<Value>(line) {
                        ids.push(action["create"]["_id"].as_str().unwrap_or("").to_owned());
                    }
                }
            }
            n
        } else {
            let message: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let events = message["data"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if track {
                ids.extend(
                    events
                        .iter()
                        .map(|e| e["id"].as_str().unwrap_or("").to_owned()),
                );
            }
            events.len() as u64
        };
        *self.events.lock().expect("count lock") += count;
        if track {
            let mut arrivals = self.arrivals.lock().expect("arrivals lock");
            for id in ids {
                arrivals.entry(id).or_insert(now);
            }
        }
        if path == "/_bulk" {
            (
                axum::http::StatusCode::OK,
                r#"{"took":0,"errors":false,"items":[]}"#,
            )
        } else {
            (axum::http::StatusCode::NO_CONTENT, "")
        }
    }

    fn count(&self) -> u64 {
        *self.events.lock().expect("count lock")
    }
}

fn sink_toml(kind: &str, name: &str, base: &str, secret_file: &Path) -> String {
    let target = match kind {
        "elasticsearch" => format!("kind = \"elasticsearch\"\nurl = \"{base}\""),
        _ => format!(
            "kind = \"webhook\"\nurl = \"{base}/hook\"\nsecret = {{ file = \"{}\" }}",
            secret_file.display()
        ),
    };
    format!(
        "[[sinks]]\nname = \"{name}\"\n{target}\nmax_batch_events = {SINK_BATCH}\n\n[[routes]]\nsinks = [\"{name}\"]\n"
    )
}

async fn sink_cursor(server: &Server, key: &str, name: &str) -> anyhow::Result<u64> {
    let sinks: Value = sealtrail_testkit::http_client()
        .get(format!("{}/v1/sinks", server.url))
        .bearer_auth(key)
        .send()
        .await?
        .json()
        .await?;
    Ok(sinks
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .and_then(|s| s["cursor"].as_u64())
        .unwrap_or(0))
}

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

async fn run_async(args: &BenchArgs) -> anyhow::Result<String> {
    let setup = SinkBench::prepare(args.sink_events).await?;
    let total = setup.total;

    let mut out = String::new();
    writeln!(out, "## Sinks\n")?;
    writeln!(
        out,
        "{total} events in the log, delivered by one sink in requests of {SINK_BATCH} to a local receiver (loopback, same machine) that counts them and answers as the service does.\n"
    )?;
    writeln!(
        out,
        "| measure | result | baseline in the same run | ratio | target |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    for (kind, label) in [
        ("elasticsearch", "Elasticsearch `_bulk`"),
        ("webhook", "webhook (Standard Webhooks signed, batches)"),
    ] {
        let Throughput {
            rate,
            delivered,
            ceiling,
        } = setup.catch_up_throughput(kind).await?;
        writeln!(
            out,
            "| sink throughput, {label} | **{rate:.0}** events/s ({delivered} delivered) | the receiver's capacity, same bodies posted one at a time: {ceiling:.0} events/s | {:.0}% | ≥ 50,000/s (bulk) |",
            rate / ceiling * 100.0
        )?;
        eprintln!("bench: {kind} sink {rate:.0} events/s, receiver capacity {ceiling:.0}");
    }

    let lag = setup.lag_at_paced_rate().await?;
    writeln!(
        out,
        "| end-to-end lag at {LAG_RATE} events/s (ingest ack → receiver), Elasticsearch format, {} events | p50 {} / p99 {} / max {} | | | p99 ≤ 100 ms |",
        lag.count,
        ms(lag.p50),
        ms(lag.p99),
        ms(lag.max)
    )?;
    writeln!(out)?;
    Ok(out)
}

/// What every sink run shares: a data directory whose log holds `total` events, the keys
/// to write and to read sink status, the webhook secret and the running receiver.
struct SinkBench {
    /// The temporary directory holding everything below; removed when the bench ends.
    dir: tempfile::TempDir,
    data: PathBuf,
    secret: PathBuf,
    /// An ingest key.
    key: String,
    /// An admin key, for the sinks' status.
    admin: String,
    total: usize,
    receiver: Receiver,
    /// The receiver's base URL.
    base: String,
}

/// One sink's catch-up run against the receiver's own capacity.
struct Throughput {
    /// Events per second the sink delivered.
    rate: f64,
    /// Events the receiver got from it (at least once, so possibly more than the log).
    delivered: u64,
    /// Events per second the receiver takes when posted the same bodies directly.
    ceiling: f64,
}

impl SinkBench {
    /// Creates the data directory, keys and webhook secret, fills the log through a server
    /// with no sink configured, and starts the receiver.
    async fn prepare(total: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let secret = dir.path().join("webhook-secret");
        std::fs::write(&secret, "whsec_c2VhbHRyYWlsLWJlbmNobWFyay1zZWNyZXQ=")?;
        let key = create_key(&data)?;
        let admin = {
            let out = std::process::Command::new(super::server::binary())
                .args(["keys", "create", "--scopes", "admin", "--data-dir"])
                .arg(&data)
                .output()?;
            String::from_utf8(out.stdout)?.trim().to_owned()
        };
        {
            let server = Server::start(&data)?;
            eprintln!("bench: filling the log with {total} events for the sink runs");
            http_batched(&server, &key, total).await?;
        }
        let receiver = Receiver::default();
        let base = receiver.start().await?;
        Ok(Self {
            dir,
            data,
            secret,
            key,
            admin,
            total,
            receiver,
            base,
        })
    }

    /// Restarts the server with a `kind` sink configured and times it catching up with the
    /// whole log; then measures the receiver's capacity for the same bodies.
    async fn catch_up_throughput(&self, kind: &str) -> anyhow::Result<Throughput> {
        let total = self.total;
        let name = format!("bench-{kind}");
        let config = self.dir.path().join(format!("{kind}.toml"));
        std::fs::write(&config, sink_toml(kind, &name, &self.base, &self.secret))?;
        let before = self.receiver.count();
        let server = Server::start_with(&self.data, &["--config", config.to_str().unwrap_or("")])?;
        let started = Instant::now();
        loop {
            if sink_cursor(&server, &self.admin, &name).await? >= total as u64 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "the {kind} sink did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        drop(server);
        let delivered = self.receiver.count() - before;
        anyhow::ensure!(
            delivered >= total as u64,
            "the {kind} receiver got {delivered} of {total}"
        );
        let rate = total as f64 / elapsed;
        let ceiling = receiver_capacity(&self.base, kind, total).await?;
        Ok(Throughput {
            rate,
            delivered,
            ceiling,
        })
    }

    /// Lag at [`LAG_RATE`] events/s, Elasticsearch format: once an Elasticsearch sink has
    /// caught up, publishes at a steady pace and measures, per event, acknowledgement to
    /// arrival at the receiver.
    async fn lag_at_paced_rate(&self) -> anyhow::Result<Latency> {
        let name = "bench-lag";
        let config = self.dir.path().join("lag.toml");
        std::fs::write(
            &config,
            sink_toml("elasticsearch", name, &self.base, &self.secret),
        )?;
        let server = Server::start_with(&self.data, &["--config", config.to_str().unwrap_or("")])?;
        while sink_cursor(&server, &self.admin, name).await? < self.total as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.receiver
            .track_ids
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let acks = publish_paced(&server, &self.key).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let arrivals = self
            .receiver
            .arrivals
            .lock()
            .expect("arrivals lock")
            .clone();
        let mut lags = Vec::with_capacity(acks.len());
        let mut missing = 0;
        for (id, acked) in &acks {
            match arrivals.get(id) {
                Some(at) => lags.push(at.saturating_duration_since(*acked)),
                None => missing += 1,
            }
        }
        anyhow::ensure!(missing == 0, "{missing} events never reached the receiver");
        Ok(Latency::of(lags))
    }
}

/// Posts the sink's own request bodies straight to the receiver, one at a time.
async fn receiver_capacity(base: &str, kind: &str, total: usize) -> anyhow::Result<f64> {
    let mut source = EventSource::new(11);
    let now = now_micros();
    let bodies: Vec<Vec<u8>> = (0..total / SINK_BATCH)
        .map(|b| {
            let events: Vec<Value> = (0..SINK_BATCH)
                .map(|i| {
                    let mut e = source.event(now - ((b * SINK_BATCH + i) as i64) * 1000);
                    e["id"] = json!(uuid::Uuid::now_v7().to_string());
                    e["tenant_id"] = json!("t");
                    e["seq"] = json!(b * SINK_BATCH + i);
                    e["leaf_hash"] = json!("00".repeat(32));
                    e
                })
                .collect();
            let mut body = Vec::new();
            if kind == "elasticsearch" {
                for e in &events {
                    body.extend_from_slice(
                        json!({"create": {"_index": "sealtrail-2026.12.01", "_id": e["id"]}})
                            .to_string()
                            .as_bytes(),
                    );
                    body.push(b'\n');
                    body.extend_from_slice(e.to_string().as_bytes());
                    body.push(b'\n');
                }
            } else {
                body = json!({"type": "audit_events.created", "timestamp": "x", "data": {"events": events}})
                    .to_string()
                    .into_bytes();
            }
            body
        })
        .collect();
    let http = sealtrail_testkit::http_client();
    let url = if kind == "elasticsearch" {
        format!("{base}/_bulk")
    } else {
        format!("{base}/hook")
    };
    let started = Instant::now();
    for body in bodies {
        let response = http.post(&url).body(body).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "receiver answered {}",
            response.status()
        );
        response.bytes().await?;
    }
    Ok((total / SINK_BATCH * SINK_BATCH) as f64 / started.elapsed().as_secs_f64())
}

/// Ingests at LAG_RATE for LAG_SECONDS in batches of 10 every 10 ms; each event's id and
/// the moment its batch was acknowledged.
async fn publish_paced(server: &Server, key: &str) -> anyhow::Result<Vec<(String, Instant)>> {
    let http = sealtrail_testkit::http_client();
    let url = format!("{}/v1/events", server.url);
    let mut source = EventSource::new(5);
    let per_tick = (LAG_RATE / 100) as usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut acks = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..LAG_SECONDS * 100 {
        ticker.tick().await;
        let events: Vec<Value> = (0..per_tick)
            .map(|_| {
                let mut e = source.event(now_micros());
                e["id"] = json!(uuid::Uuid::now_v7().to_string());
                e
            })
            .collect();
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or("").to_owned())
            .collect();
        let body = serde_json::to_vec(&json!({ "events": events }))?;
        let (http, url, key) = (http.clone(), url.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "ingest answered {}",
                response.status()
            );
            let acked = Instant::now();
            Ok::<_, anyhow::Error>(ids.into_iter().map(|id| (id, acked)).collect::<Vec<_>>())
        }));
    }
    for t in tasks {
        acks.extend(t.await??);
    }
    Ok(acks)
}
