//! Reads on a large store: 1000 filtered events (tenant + severity + 7-day range) on at
//! least 2 million events, and stats over 1 million.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sealtrail_core::time_format::{MICROS_PER_SECOND, format_micros, now_micros};
use sealtrail_core::{EventLimits, PreparedEvent, TenantScope, prepare_event_value};
use sealtrail_store::sqlite::{Indexer, IndexerConfig, open_log};
use sealtrail_store::{Sequencer, SequencerConfig};
use serde_json::Value;

use super::BenchArgs;
use super::data::{EventSource, tenant_name};
use super::server::{Server, create_key};
use super::stats::{Latency, ms};

/// The data set spans this many days before its creation.
pub(super) const SPAN_DAYS: i64 = 90;
const DAY: i64 = 86_400 * MICROS_PER_SECOND;

pub(super) struct DataSet {
    pub(super) dir: PathBuf,
    /// Newest occurred_at in the set.
    end: i64,
    notes: String,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    // Let the writeback of earlier benchmarks (hundreds of MB) finish first, so it does not
    // land in these latencies.
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
    let data = dataset(args.query_store_events)?;
    let server = Server::start(&data.dir)?;
    let key = create_key(&data.dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // A store built by an older index version is re-indexed by the server: wait for it.
    runtime.block_on(server.wait_until_indexed())?;
    let (queries, returned) = runtime.block_on(filtered_queries(&server, &key, data.end))?;
    let (stats_severity, stats_total) =
        runtime.block_on(stats_queries(&server, &key, "group_by=severity"))?;
    let (stats_daily, _) =
        runtime.block_on(stats_queries(&server, &key, "group_by=action&interval=day"))?;
    drop(server);

    let mut out = format!(
        "## Queries ({} events, embedded store)\n\n{}\n\n",
        args.query_store_events, data.notes
    );
    writeln!(out, "| measure | result | target |")?;
    writeln!(out, "|---|---|---|")?;
    writeln!(
        out,
        "| 1000 filtered events: tenant + severity + 7-day range ({} queries, avg {returned:.0} events returned) | p50 {} / p99 {} / max {} | p99 ≤ 50 ms |",
        queries.count,
        ms(queries.p50),
        ms(queries.p99),
        ms(queries.max)
    )?;
    writeln!(
        out,
        "| stats by severity over {stats_total} events (one tenant, all time) | p50 {} / p99 {} | ≤ 100 ms |",
        ms(stats_severity.p50),
        ms(stats_severity.p99)
    )?;
    writeln!(
        out,
        "| stats by action per day over the same {stats_total} events | p50 {} / p99 {} | |",
        ms(stats_daily.p50),
        ms(stats_daily.p99)
    )?;
    out.push('\n');
    Ok(out)
}

/// Builds (or reuses) a store of `count` events in target/bench-data.
pub(super) fn dataset(count: usize) -> anyhow::Result<DataSet> {
    let dir = crate::root().join(format!("target/bench-data/store-{count}"));
    let marker = dir.join("complete");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let (end, notes) = text.split_once('\n').unwrap_or(("0", ""));
        eprintln!(
            "bench: reusing the {count}-event store in {}",
            dir.display()
        );
        return Ok(DataSet {
            dir,
            end: end.parse()?,
            notes: notes.trim().to_owned(),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    eprintln!("bench: building a {count}-event store in {}", dir.display());
    let (backend, signer) = open_log(&dir, Some("bench/queries"))?;
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )?;
    let append_started = Instant::now();
    let end = fill(&handle, count);
    let append_secs = append_started.elapsed().as_secs_f64();
    drop(handle);
    thread.join().expect("sequencer");
    let index_started = Instant::now();
    Indexer::open(&dir, IndexerConfig::default())?.catch_up()?;
    let index_secs = index_started.elapsed().as_secs_f64();
    let bytes = dir_size(&dir);
    let notes = format!(
        "Data set: {count} events over {SPAN_DAYS} days, 20 tenants (one holds half), severities 80/15/5% info/warning/critical; \
         built in-process at {:.0} events/s (validation + sequencer), indexed at {:.0} events/s; {:.0} bytes/event on disk.",
        count as f64 / append_secs,
        count as f64 / index_secs,
        bytes as f64 / count as f64
    );
    std::fs::write(&marker, format!("{end}\n{notes}\n"))?;
    Ok(DataSet { dir, end, notes })
}

/// Appends `count` events spread evenly over the [`SPAN_DAYS`] before yesterday, from two
/// producer threads in batches of 1000; returns the newest `occurred_at`.
pub(super) fn fill(handle: &sealtrail_store::SequencerHandle, count: usize) -> i64 {
    let end = now_micros() - DAY;
    let start = end - SPAN_DAYS * DAY;
    let producers: Vec<_> = (0..2usize)
        .map(|p| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let mut source = EventSource::new(100 + p as u64);
                let limits = EventLimits::default();
                let step = (end - start) / count as i64;
                for chunk_start in (p * 1000..count).step_by(2000) {
                    let batch: Vec<PreparedEvent> = (chunk_start..(chunk_start + 1000).min(count))
                        .map(|i| {
                            let at = start + i as i64 * step;
                            prepare_event_value(
                                source.event(at),
                                &TenantScope::Any,
                                at + 1000,
                                &limits,
                            )
                            .expect("valid")
                        })
                        .collect();
                    handle.append_blocking(batch).expect("append");
                }
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    end
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

pub(super) async fn filtered_queries(
    server: &Server,
    key: &str,
    end: i64,
) -> anyhow::Result<(Latency, f64)> {
    let http = sealtrail_testkit::http_client();
    let mut rng = SmallRng::seed_from_u64(42);
    let mut latencies = Vec::new();
    let mut returned = 0usize;
    let (warmup, runs) = (50, 300);
    for run in 0..warmup + runs {
        let tenant = tenant_name(if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(1..4)
        });
        let severity = if tenant == tenant_name(0) {
            "critical"
        } else {
            "warning,critical"
        };
        let to = end - rng.random_range(0..(SPAN_DAYS - 7)) * DAY;
        let from = to - 7 * DAY;
        let url = format!(
            "{}/v1/events?tenant_id={tenant}&severity={severity}&from={}&to={}&limit=1000",
            server.url,
            format_micros(from),
            format_micros(to)
        );
        let started = Instant::now();
        let response = http.get(&url).bearer_auth(key).send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "query answered {}",
            response.status()
        );
        let page: Value = response.json().await?;
        let elapsed = started.elapsed();
        if run >= warmup {
            latencies.push(elapsed);
            returned += page["events"].as_array().map(Vec::len).unwrap_or(0);
        }
    }
    Ok((Latency::of(latencies), returned as f64 / runs as f64))
}

async fn stats_queries(server: &Server, key: &str, params: &str) -> anyhow::Result<(Latency, u64)> {
    let http = sealtrail_testkit::http_client();
    let url = format!(
        "{}/v1/stats?tenant_id={}&{params}",
        server.url,
        tenant_name(0)
    );
    let mut latencies: Vec<Duration> = Vec::new();
    let mut total = 0;
    for run in 0..25 {
        let started = Instant::now();
        let response = http.get(&url).bearer_auth(key).send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "stats answered {}",
            response.status()
        );
        let body: Value = response.json().await?;
        if run >= 5 {
            latencies.push(started.elapsed());
        }
        total = body["total"].as_u64().unwrap_or(0);
    }
    Ok((Latency::of(latencies), total))
}
