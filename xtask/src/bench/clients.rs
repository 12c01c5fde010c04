//! The clients and the middleware: how fast application code can hand events to the
//! producers, and what the audit layer adds to a request of the example service.
//!
//! - Rust producer: 8 tasks queue events (the queue large enough never to wait), then the
//!   producer delivers them to a release server; baseline: the same 8 tasks calling
//!   `Client::ingest` with batches of 100 and awaiting each.
//! - TypeScript producer: `clients/typescript/bench/queue.mjs` (one Node process).
//! - The layer per request, with criterion (`examples/wedding-api/benches/layer.rs`), and
//!   under a load generator against the release `wedding-api` without and with the layer,
//!   with Sealtrail up and down. The service and the load generator are pinned to CPU 0
//!   and Sealtrail to CPU 1 (`taskset`), as Sealtrail would run on a machine of its own.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sealtrail_client::event::Event;
use sealtrail_client::producer::{Producer, ProducerConfig};

use super::BenchArgs;
use super::server::{Server, create_key};
use super::stats::{Latency, ms};

/// Concurrent connections of the load generator.
const LOAD_CONNECTIONS: usize = 16;
/// How long each load run lasts.
const LOAD_SECONDS: u64 = 8;

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    crate::run_step("cargo", &["build", "--release", "-p", "wedding-api"])?;
    let mut report = String::from("## Clients and middleware\n\n");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    report.push_str(&runtime.block_on(rust_producer(args.client_events))?);
    report.push_str(&typescript_producer()?);
    let sealtrail_dir = tempfile::tempdir()?;
    let sealtrail = PinnedSealtrail::start(sealtrail_dir.path())?;
    report.push_str(&layer_criterion(&sealtrail)?);
    report.push_str(&layer_under_load(&sealtrail)?);
    Ok(report)
}

fn guest_event(n: usize) -> Event {
    Event::new("guest.dietary_restriction.updated", "guest")
        .resource_id(n.to_string())
        .user("coord:ines.marques")
        .reason("Guest called")
        .change("dietary_restriction", "none", "vegan")
}

async fn rust_producer(total: usize) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let key = create_key(dir.path())?;
    let client = sealtrail_client::Client::new(&server.url, &key)?;
    let tasks = 8;
    let per_task = total / tasks;

    eprintln!("bench: Rust producer, {total} events from {tasks} tasks");
    let mut config = ProducerConfig::new("bench");
    config.tenant_id = Some("bench".into());
    config.batch_size = 1000;
    config.queue_capacity = total + 1;
    let producer = Producer::start(client.clone(), config)?;
    let started = Instant::now();
    let senders: Vec<_> = (0..tasks)
        .map(|task| {
            let producer = producer.clone();
            tokio::spawn(async move {
                for n in 0..per_task {
                    producer.send(guest_event(task * per_task + n)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    let queued = started.elapsed();
    let report = producer.flush().await?;
    let delivered = started.elapsed();
    anyhow::ensure!(report.all_delivered(), "not delivered: {report:?}");
    anyhow::ensure!(producer.metrics().delivered as usize == per_task * tasks);
    producer.shutdown(Duration::from_secs(10)).await;
    let queued_rate = (per_task * tasks) as f64 / queued.as_secs_f64();
    let delivered_rate = (per_task * tasks) as f64 / delivered.as_secs_f64();

    // The baseline: what the same tasks get awaiting each batch themselves.
    let baseline_total = total / 4;
    let started = Instant::now();
    let senders: Vec<_> = (0..tasks)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                for chunk in 0..baseline_total / tasks / 100 {
                    let events = (0..100)
                        .map(|n| {
                            let mut event = serde_json::to_value(guest_event(
                                task * 1_000_000 + chunk * 100 + n,
                            ))
                            .expect("an event serialises");
                            event["tenant_id"] = "bench".into();
                            event
                        })
                        .collect();
                    client.ingest(events).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    let baseline_rate =
        (baseline_total / tasks / 100 * 100 * tasks) as f64 / started.elapsed().as_secs_f64();
    let mut out = String::new();
    writeln!(
        out,
        "Rust producer (`sealtrail-client`), 8 tasks, {} events: **{queued_rate:.0} events/s \
         queued** (target ≥ 200,000), {:.1}× the baseline of the same tasks awaiting \
         `Client::ingest` batches of 100 ({baseline_rate:.0} events/s); all delivered to the \
         release server at {delivered_rate:.0} events/s end to end.\n",
        per_task * tasks,
        queued_rate / baseline_rate
    )?;
    Ok(out)
}

fn typescript_producer() -> anyhow::Result<String> {
    eprintln!("bench: TypeScript producer");
    let out = Command::new("node")
        .arg("clients/typescript/bench/queue.mjs")
        .current_dir(crate::root())
        .stderr(Stdio::inherit())
        .output()
        .context("running node clients/typescript/bench/queue.mjs")?;
    anyhow::ensure!(out.status.success(), "the TypeScript benchmark failed");
    let text = String::from_utf8(out.stdout)?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .with_context(|| format!("no {name} in {text:?}"))
    };
    let queued = field("ts_client_queued_events_per_sec")?;
    let delivered = field("ts_client_delivered_events_per_sec")?;
    Ok(format!(
        "TypeScript producer (`clients/typescript`, one Node {} process, 500,000 events into a \
         local HTTP sink answering 201): **{queued} events/s queued** (target ≥ 100,000), \
         {delivered} events/s delivered.\n\n",
        node_version()
    ))
}

fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// A release Sealtrail on CPU 1, and a key for it.
struct PinnedSealtrail {
    /// Stopped when dropped.
    _server: Server,
    url: String,
    key: String,
}

impl PinnedSealtrail {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let key = create_key(dir)?;
        let server = Server::start_pinned(dir, 1)?;
        let url = server.url.clone();
        Ok(Self {
            _server: server,
            url,
            key,
        })
    }
}

/// The criterion run, and each case's median from its estimates.
fn layer_criterion(sealtrail: &PinnedSealtrail) -> anyhow::Result<String> {
    eprintln!("bench: the audit layer under criterion");
    let status = Command::new("taskset")
        .args([
            "-c",
            "0",
            "cargo",
            "bench",
            "-p",
            "wedding-api",
            "--bench",
            "layer",
        ])
        .current_dir(crate::root())
        .env("SEALTRAIL_BENCH_URL", &sealtrail.url)
        .env("SEALTRAIL_BENCH_KEY", &sealtrail.key)
        .status()?;
    anyhow::ensure!(status.success(), "the criterion benchmark failed");
    let median = |function: &str| -> anyhow::Result<f64> {
        let dir = crate::root().join("target/criterion");
        for group in std::fs::read_dir(&dir)? {
            for case in std::fs::read_dir(group?.path())? {
                let case = case?.path();
                let Ok(meta) = std::fs::read_to_string(case.join("new/benchmark.json")) else {
                    continue;
                };
                let meta: serde_json::Value = serde_json::from_str(&meta)?;
                if meta["function_id"] == function {
                    let estimates: serde_json::Value = serde_json::from_str(
                        &std::fs::read_to_string(case.join("new/estimates.json"))?,
                    )?;
                    return estimates["median"]["point_estimate"]
                        .as_f64()
                        .context("a median");
                }
            }
        }
        anyhow::bail!("no criterion results for {function:?} in {}", dir.display())
    };
    let base = median("without the layer")? / 1000.0;
    let up = median("layer, Sealtrail up")? / 1000.0;
    let down = median("layer, Sealtrail down")? / 1000.0;
    let mut out = String::new();
    writeln!(
        out,
        "The audit layer per request (criterion, `GET /guests/{{id}}` through the router in \
         process, medians; the bench on CPU 0, Sealtrail on CPU 1):\n\n\
         | | median | added by the layer (target ≤ 5 µs) |\n|---|---|---|\n\
         | without the layer (baseline) | {base:.2} µs | |\n\
         | layer, Sealtrail up | {up:.2} µs | {:.2} µs |\n\
         | layer, Sealtrail down (spooling) | {down:.2} µs | {:.2} µs |\n",
        up - base,
        down - base
    )?;
    Ok(out)
}

/// The release example service on CPU 0.
struct WeddingApi {
    child: Child,
    url: String,
}

impl WeddingApi {
    fn start(args: &[&str], spool: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(crate::root().join("target/release/wedding-api"))
            .args(["--listen", "127.0.0.1:0", "--spool-dir"])
            .arg(spool)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("taskset -c 0 wedding-api")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        anyhow::ensure!(url.starts_with("http://"), "wedding-api said {line:?}");
        Ok(Self { child, url })
    }
}

impl Drop for WeddingApi {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Requests/s and latencies of `GET /guests/1` from [`LOAD_CONNECTIONS`] keep-alive
/// connections for [`LOAD_SECONDS`], the load generator on CPU 0 beside the service.
fn load(url: &str) -> anyhow::Result<(f64, Latency)> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        pin_this_thread_to_cpu0();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let http = sealtrail_testkit::http_client();
            let created = http
                .post(format!("{url}/guests"))
                .bearer_auth("ines-token")
                .json(&serde_json::json!({"name": "Rosa Almeida"}))
                .send()
                .await?;
            anyhow::ensure!(
                created.status() == 201,
                "POST /guests: {}",
                created.status()
            );
            let stop = Arc::new(AtomicBool::new(false));
            let workers: Vec<_> = (0..LOAD_CONNECTIONS)
                .map(|_| {
                    let (http, url, stop) = (http.clone(), url.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        while !stop.load(Ordering::Relaxed) {
                            let started = Instant::now();
                            let answer = http
                                .get(format!("{url}/guests/1"))
                                .bearer_auth("ines-token")
                                .send()
                                .await?;
                            anyhow::ensure!(answer.status() == 200, "{}", answer.status());
                            answer.bytes().await?;
                            latencies.push(started.elapsed());
                        }
                        anyhow::Ok(latencies)
                    })
                })
                .collect();
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(LOAD_SECONDS)).await;
            stop.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for worker in workers {
                all.extend(worker.await??);
            }
            let rate = all.len() as f64 / started.elapsed().as_secs_f64();
            Ok((rate, Latency::of(all)))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the load generator panicked"))?
}

fn pin_this_thread_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn layer_under_load(sealtrail: &PinnedSealtrail) -> anyhow::Result<String> {
    let spool = tempfile::tempdir()?;
    let mut rows = Vec::new();
    for (name, args) in [
        ("without the layer (baseline)", vec!["--no-audit"]),
        ("layer, Sealtrail up", vec![]),
        ("layer, Sealtrail down (spooling)", vec![]),
    ] {
        eprintln!("bench: wedding-api under load, {name}");
        let target = if name.contains("down") {
            "http://127.0.0.1:9".to_owned()
        } else {
            sealtrail.url.clone()
        };
        let mut all = vec![
            "--sealtrail-url",
            target.as_str(),
            "--sealtrail-key",
            sealtrail.key.as_str(),
            "--tenant",
            "bench",
        ];
        all.extend(args);
        let api = WeddingApi::start(&all, spool.path())?;
        rows.push((name, load(&api.url)?));
        drop(api);
    }
    let base = rows[0].1.0;
    let mut out = format!(
        "The example service under a load generator ({LOAD_CONNECTIONS} keep-alive connections, \
         {LOAD_SECONDS} s per run, `GET /guests/{{id}}` → 200; service and generator on CPU 0, \
         Sealtrail on CPU 1):\n\n\
         | | requests/s | vs baseline (target ≥ 0.95) | CPU 0 time per request | added per request | p50 (16 in flight) | p99 |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for (name, (rate, latency)) in &rows {
        let (per_request, base_per_request) = (1e6 / rate, 1e6 / base);
        writeln!(
            out,
            "| {name} | {rate:.0} | {:.2} | {per_request:.1} µs | {:.1} µs | {} | {} |",
            rate / base,
            per_request - base_per_request,
            ms(latency.p50),
            ms(latency.p99)
        )?;
    }
    out.push('\n');
    Ok(out)
}
