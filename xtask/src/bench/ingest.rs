//! Ingest: durable batched throughput over HTTP, single-event ack latency, and the two
//! baselines on the same schema — one INSERT-and-commit per event (the naive design) and
//! the store's own batched append without HTTP (the ceiling).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealtrail_core::time_format::now_micros;
use sealtrail_core::{EventLimits, PreparedEvent, TenantScope, prepare_event_value};
use sealtrail_store::sqlite::{insert_event_row, log_db_path, open_log};
use sealtrail_store::{NewLeaf, Sequencer, SequencerConfig};
use serde_json::{Value, json};

use super::BenchArgs;
use super::data::EventSource;
use super::server::{Server, cpu_seconds, create_key};
use super::stats::{Latency, ms};

/// Rounds of each throughput measurement.
const ROUNDS: usize = 3;

/// Median and range of a few measurements.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} [{:.0}–{:.0}]", self.median, self.min, self.max)
    }
}

/// Concurrent clients in the batched runs (the setup).
pub(super) const CLIENTS: usize = 8;
/// Events per batch.
pub(super) const BATCH: usize = 100;

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = String::from("## Ingest (embedded store)\n\n");

    // Throughput on this shared VM varies by ±20% from run to run, so every throughput is
    // measured in several rounds, interleaved so that a slow spell hits all of them alike,
    // and reported as median [min–max].
    let (mut naive_1, mut naive_8, mut ceilings, mut http) = (vec![], vec![], vec![], vec![]);
    let mut last_run = None;
    for round in 1..=ROUNDS {
        eprintln!("bench: round {round}/{ROUNDS}: naive baseline (one INSERT + COMMIT per event)");
        naive_1.push(naive_inserts(1, 3_000)?);
        naive_8.push(naive_inserts(CLIENTS, 3_000)?);
        eprintln!("bench: round {round}/{ROUNDS}: ceiling (sequencer without HTTP)");
        ceilings.push(ceiling(args.ingest_events.min(400_000))?);
        eprintln!(
            "bench: round {round}/{ROUNDS}: HTTP batched ingest, {} events",
            args.ingest_events
        );
        let dir = tempfile::tempdir()?;
        let server = Server::start(dir.path())?;
        let key = create_key(dir.path())?;
        let cpu_before = cpu_seconds(server.pid());
        let (rate, sent) = runtime.block_on(http_batched(&server, &key, args.ingest_events))?;
        let (lag_at_end, catch_up) = runtime.block_on(server.wait_until_indexed())?;
        let commits = runtime.block_on(commit_profile(&server))?;
        // Counted until the index has caught up, so deferred work is not hidden.
        let cpu_per_event_us = (cpu_seconds(server.pid()) - cpu_before) / sent as f64 * 1e6;
        http.push(rate);
        last_run = Some((cpu_per_event_us, commits, lag_at_end, catch_up));
    }
    let (cpu_per_event_us, commits, lag_at_end, catch_up) = last_run.expect("at least one round");
    let naive_1 = Spread::of(naive_1);
    let naive_8 = Spread::of(naive_8);
    let naive = if naive_1.median >= naive_8.median {
        naive_1.median
    } else {
        naive_8.median
    };
    let ceiling = Spread::of(ceilings);
    let http = Spread::of(http);

    eprintln!("bench: single-event latency");
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let key = create_key(dir.path())?;
    let (low, concurrent, concurrent_rate) = runtime.block_on(single_events(&server, &key))?;
    drop(server);

    writeln!(
        out,
        "| measure | result | baseline in the same run | ratio | target |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    writeln!(
        out,
        "| durable ingest over HTTP, batches of {BATCH}, {CLIENTS} clients | **{http}** events/s | naive INSERT+COMMIT per event: {naive:.0} events/s (1 connection {naive_1}, {CLIENTS} connections {naive_8}) | {:.1}× | ≥ 100,000/s, ≥ 25× |",
        http.median / naive
    )?;
    writeln!(
        out,
        "| the same, against the store's batched append without HTTP | {:.0} events/s | ceiling: {ceiling} events/s | {:.0}% | ≥ 50% |",
        http.median,
        100.0 * http.median / ceiling.median
    )?;
    writeln!(
        out,
        "| server CPU per ingested event (HTTP run, indexing included) | {cpu_per_event_us:.1} µs | | | |"
    )?;
    writeln!(out, "| group commits in the HTTP run | {commits} | | | |")?;
    writeln!(
        out,
        "| query index lag when the burst ended | {lag_at_end} events, indexed {:.1} s later | | | |",
        catch_up.as_secs_f64()
    )?;
    writeln!(
        out,
        "| single-event ack latency, 1 client | p50 {} / p99 {} / max {} | | | p99 ≤ 5 ms |",
        ms(low.p50),
        ms(low.p99),
        ms(low.max)
    )?;
    writeln!(
        out,
        "| single-event ack latency, 64 concurrent clients | p50 {} / p99 {} / max {} ({concurrent_rate:.0} events/s) | | | |",
        ms(concurrent.p50),
        ms(concurrent.p99),
        ms(concurrent.max)
    )?;
    out.push('\n');
    Ok(out)
}

pub(super) fn prepared(source: &mut EventSource, count: usize) -> Vec<PreparedEvent> {
    let now = now_micros();
    let limits = EventLimits::default();
    (0..count)
        .map(|i| {
            let event = source.event(now - (count - i) as i64 * 1000);
            prepare_event_value(event, &TenantScope::Any, now, &limits)
                .expect("benchmark events are valid")
        })
        .collect()
}

/// One INSERT per event in autocommit mode (each an fsync'd transaction), on the log's
/// schema and pragmas, from `connections` threads: what producers writing audit rows
/// straight into their database do.
fn naive_inserts(connections: usize, total: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    drop(open_log(dir.path(), Some("bench/naive"))?);
    let mut source = EventSource::new(7);
    let events = prepared(&mut source, total);
    let next = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(events);
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (events, next, path) = (events.clone(), next.clone(), log_db_path(dir.path()));
            std::thread::spawn(move || -> anyhow::Result<()> {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(30))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(event) = events.get(i) else {
                        return Ok(());
                    };
                    let seq = i as u64 + 1;
                    let record = event.record(seq);
                    let leaf_hash = sealtrail_core::merkle::leaf_hash(&record);
                    insert_event_row(
                        &conn,
                        &NewLeaf {
                            seq,
                            event,
                            record,
                            leaf_hash,
                        },
                    )?;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("naive insert thread")?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The sequencer fed directly by 8 threads with batches of 100 already-validated events.
fn ceiling(total: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let (backend, signer) = open_log(dir.path(), Some("bench/ceiling"))?;
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )?;
    let mut source = EventSource::new(11);
    let batches: Vec<Vec<PreparedEvent>> = prepared(&mut source, total)
        .chunks(BATCH)
        .map(<[PreparedEvent]>::to_vec)
        .collect();
    let per_client: Vec<Vec<Vec<PreparedEvent>>> = (0..CLIENTS)
        .map(|c| batches.iter().skip(c).step_by(CLIENTS).cloned().collect())
        .collect();
    drop(batches);
    let started = Instant::now();
    let threads: Vec<_> = per_client
        .into_iter()
        .map(|mine| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for batch in mine {
                    handle.append_blocking(batch).expect("ceiling append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("ceiling thread");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    drop(handle);
    thread.join().expect("sequencer thread");
    Ok(rate)
}

pub(super) async fn http_batched(
    server: &Server,
    key: &str,
    total: usize,
) -> anyhow::Result<(f64, usize)> {
    http_batched_across(&[server], key, total).await
}

/// [`http_batched`] with the clients spread over `servers` (client `c` sends to server
/// `c % n`), all on one store.
pub(super) async fn http_batched_across(
    servers: &[&Server],
    key: &str,
    total: usize,
) -> anyhow::Result<(f64, usize)> {
    let mut source = EventSource::new(3);
    let now = now_micros();
    let bodies: Vec<Vec<u8>> = (0..total / BATCH)
        .map(|b| {
            let events: Vec<Value> = (0..BATCH)
                .map(|i| source.event(now - ((total - b * BATCH - i) as i64) * 1000))
                .collect();
            serde_json::to_vec(&json!({ "events": events })).expect("serialises")
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let http = sealtrail_testkit::http_client();
    eprintln!("bench: burst of {} requests starts", bodies.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let url = format!("{}/v1/events", servers[client % servers.len()].url);
        let (bodies, next, http, key) =
            (bodies.clone(), next.clone(), http.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                post(&http, &url, &key, body.clone()).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = bodies.len() * BATCH;
    Ok((sent as f64 / elapsed, sent))
}

/// Events per group commit and commit latency, from the server's own metrics.
pub(super) async fn commit_profile(server: &Server) -> anyhow::Result<String> {
    let text = sealtrail_testkit::http_client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = value("sealtrail_commit_events_count").max(1.0);
    let requests = value("sealtrail_ingest_duration_seconds_count").max(1.0);
    Ok(format!(
        "{count:.0} commits, {:.0} events and {:.1} ms (queue to durable) each on average; \
         ingest requests took {:.1} ms on average in the server",
        value("sealtrail_commit_events_sum") / count,
        value("sealtrail_commit_duration_seconds_sum") / count * 1000.0,
        value("sealtrail_ingest_duration_seconds_sum") / requests * 1000.0
    ))
}

pub(super) async fn single_events(
    server: &Server,
    key: &str,
) -> anyhow::Result<(Latency, Latency, f64)> {
    let http = sealtrail_testkit::http_client();
    let url = format!("{}/v1/events", server.url);
    let mut source = EventSource::new(5);
    let now = now_micros();
    let bodies: Vec<Vec<u8>> = (0..2200)
        .map(|i| serde_json::to_vec(&source.event(now - i)).expect("json"))
        .collect();
    let mut low = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let started = Instant::now();
        post(&http, &url, key, body).await?;
        if i >= 200 {
            low.push(started.elapsed());
        }
    }
    let per_client = 150;
    let mut tasks = Vec::new();
    let started = Instant::now();
    for c in 0..64u64 {
        let bodies: Vec<Vec<u8>> = (0..per_client)
            .map(|i| serde_json::to_vec(&source.event(now - (c * 1000 + i) as i64)).expect("json"))
            .collect();
        let (http, url, key) = (http.clone(), url.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for body in bodies {
                let t = Instant::now();
                post(&http, &url, &key, body).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut concurrent = Vec::new();
    for t in tasks {
        concurrent.extend(t.await??);
    }
    let rate = concurrent.len() as f64 / started.elapsed().as_secs_f64();
    Ok((Latency::of(low), Latency::of(concurrent), rate))
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let response = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 201,
        "ingest answered {}",
        response.status()
    );
    response.bytes().await?;
    Ok(())
}
