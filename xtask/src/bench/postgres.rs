//! The PostgreSQL store, in one run on a throwaway cluster: durable batched ingest over
//! HTTP, single-event latency, the filtered 1000-event query on millions of events (warm,
//! and after PostgreSQL restarts), and two baselines on the same table and indexes — one
//! INSERT per event in autocommit from 8 connections (what producers writing audit rows
//! straight into their database do) and COPY of the same rows with nothing in front (the
//! ceiling) — plus what a GIN index on `details` costs that ceiling.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sealtrail_core::PreparedEvent;
use sealtrail_store::postgres::{PgBackend, copy_event_rows, migrate, open_log};
use sealtrail_store::{NewLeaf, Sequencer, SequencerConfig};

use super::BenchArgs;
use super::data::EventSource;
use super::ingest::{BATCH, CLIENTS, commit_profile, http_batched, prepared, single_events};
use super::query::{SPAN_DAYS, fill, filtered_queries};
use super::server::{Server, cpu_seconds, create_key};
use super::stats::{Latency, ms};
use sealtrail_testkit::PgCluster;

/// Rows per COPY (and per transaction) in the ceiling.
const COPY_BATCH: usize = 1000;

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    let pg = PgCluster::start(100)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let events = args.pg_ingest_events;
    let mut out = String::from("## PostgreSQL store\n\n");
    writeln!(
        out,
        "A throwaway PostgreSQL {} cluster on the same machine (`fsync` and `synchronous_commit` on, \
         `shared_buffers` 256 MB), default indexes, no GIN index on `details` unless stated.\n",
        pg.version()?
    )?;

    eprintln!("bench: postgres: naive INSERT per event, {CLIENTS} connections");
    let naive = naive_inserts(&pg.database("naive")?, 4_000)?;
    let ceilings = copy_ceilings(&pg, events)?;
    let ingest = http_ingest(&pg, &runtime, events)?;
    write_ingest_rows(&mut out, naive, ceilings, ingest)?;
    let servers = several_servers(&pg, &runtime, events)?;
    write_several_servers(&mut out, &servers)?;

    let count = args.pg_query_events;
    let queries = query_latency(&pg, &runtime, count)?;
    write_query_rows(&mut out, count, queries)?;
    Ok(out)
}

/// Only the run of several servers on one database (`--pg-servers-only`).
pub fn run_servers(args: &BenchArgs) -> anyhow::Result<String> {
    let pg = PgCluster::start(100)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = String::from(
        "## PostgreSQL store: several servers
",
    );
    let servers = several_servers(&pg, &runtime, args.pg_ingest_events)?;
    write_several_servers(&mut out, &servers)?;
    Ok(out)
}

/// PostgreSQL's own ceiling for Sealtrail's rows, in events/s: medians of three rounds.
struct CopyCeilings {
    /// COPY from 4 connections.
    ceiling: f64,
    /// COPY from one connection (one writer, as the sequencer is).
    single_writer: f64,
    /// COPY from 4 connections with a GIN index on `details`.
    ceiling_gin: f64,
}

/// Measures the COPY ceilings on fresh databases of the cluster.
fn copy_ceilings(pg: &PgCluster, events: usize) -> anyhow::Result<CopyCeilings> {
    // The COPY figures vary by a fifth from run to run on this VM: three rounds each,
    // interleaved, medians.
    let (mut ceilings, mut singles, mut gins) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        eprintln!(
            "bench: postgres: round {}/3: COPY ceilings, {events} events",
            round + 1
        );
        ceilings.push(copy_ceiling(
            &pg.database(&format!("ceiling_{round}"))?,
            events,
            false,
            4,
        )?);
        singles.push(copy_ceiling(
            &pg.database(&format!("one_{round}"))?,
            events,
            false,
            1,
        )?);
        gins.push(copy_ceiling(
            &pg.database(&format!("gin_{round}"))?,
            events,
            true,
            4,
        )?);
    }
    Ok(CopyCeilings {
        ceiling: median(ceilings),
        single_writer: median(singles),
        ceiling_gin: median(gins),
    })
}

/// What the HTTP run against a server on PostgreSQL measured.
struct HttpIngest {
    /// Durable batched ingest, events/s.
    rate: f64,
    /// Server CPU time per ingested event, µs.
    cpu_per_event_us: f64,
    /// The server's group-commit profile after the batched run.
    commits: String,
    /// Single-event ack latency, one client.
    low: Latency,
    /// Single-event ack latency, 64 concurrent clients.
    concurrent: Latency,
    /// The rate those concurrent clients reached, events/s.
    concurrent_rate: f64,
}

/// Starts a server on a fresh database and measures batched ingest, then single-event
/// latency.
fn http_ingest(
    pg: &PgCluster,
    runtime: &tokio::runtime::Runtime,
    events: usize,
) -> anyhow::Result<HttpIngest> {
    eprintln!("bench: postgres: HTTP batched ingest, {events} events");
    let url = pg.database("ingest")?;
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(dir.path(), &["--database-url", &url])?;
    let key = create_key(dir.path())?;
    let cpu_before = cpu_seconds(server.pid());
    let (rate, sent) = runtime.block_on(http_batched(&server, &key, events))?;
    let cpu_per_event_us = (cpu_seconds(server.pid()) - cpu_before) / sent as f64 * 1e6;
    let commits = runtime.block_on(commit_profile(&server))?;
    eprintln!("bench: postgres: single-event latency");
    let (low, concurrent, concurrent_rate) = runtime.block_on(single_events(&server, &key))?;
    drop(server);
    Ok(HttpIngest {
        rate,
        cpu_per_event_us,
        commits,
        low,
        concurrent,
        concurrent_rate,
    })
}

/// Servers on one database in the run of [`several_servers`].
const MAX_SERVERS: usize = 3;

/// One row of [`several_servers`].
struct ServersRun {
    servers: usize,
    /// Events sent.
    events: usize,
    /// Durable events per second.
    rate: f64,
    /// Group commits, all servers together.
    commits: f64,
    /// CPU seconds of all servers during the run.
    cpu_seconds: f64,
}

/// Durable batched ingest with 1..=[`MAX_SERVERS`] servers on one database, the clients
/// spread over them: every group commit takes the writers' advisory lock, so the servers
/// take turns as the one writer. Each count gets a database of its own.
fn several_servers(
    pg: &PgCluster,
    runtime: &tokio::runtime::Runtime,
    events: usize,
) -> anyhow::Result<Vec<ServersRun>> {
    let mut runs = Vec::new();
    for n in 1..=MAX_SERVERS {
        eprintln!("bench: postgres: {n} servers on one database, {events} events");
        let url = pg.database(&format!("servers_{n}"))?;
        let dirs: Vec<tempfile::TempDir> = (0..n)
            .map(|_| tempfile::tempdir())
            .collect::<Result<_, _>>()?;
        let mut servers = vec![Server::start_with(
            dirs[0].path(),
            &["--database-url", &url],
        )?];
        for dir in &dirs[1..] {
            std::fs::copy(
                dirs[0].path().join("log-signing.key"),
                dir.path().join("log-signing.key"),
            )?;
            servers.push(Server::start_with(dir.path(), &["--database-url", &url])?);
        }
        let out = std::process::Command::new(super::server::binary())
            .args([
                "keys",
                "create",
                "--scopes",
                "ingest,read",
                "--database-url",
                &url,
            ])
            .output()?;
        anyhow::ensure!(out.status.success(), "keys create: {out:?}");
        let key = String::from_utf8(out.stdout)?.trim().to_owned();
        let cpu = |servers: &[Server]| servers.iter().map(|s| cpu_seconds(s.pid())).sum::<f64>();
        let cpu_before = cpu(&servers);
        let all: Vec<&Server> = servers.iter().collect();
        let (rate, sent) =
            runtime.block_on(super::ingest::http_batched_across(&all, &key, events))?;
        let cpu_seconds = cpu(&servers) - cpu_before;
        let mut commits = 0.0;
        for server in &servers {
            commits += runtime.block_on(commit_count(server))?;
        }
        runs.push(ServersRun {
            servers: n,
            events: sent,
            rate,
            commits,
            cpu_seconds,
        });
    }
    Ok(runs)
}

/// Group commits a server made (its `sealtrail_commit_events_count`).
async fn commit_count(server: &Server) -> anyhow::Result<f64> {
    let text = sealtrail_testkit::http_client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("sealtrail_commit_events_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

fn write_several_servers(out: &mut String, runs: &[ServersRun]) -> anyhow::Result<()> {
    let one = runs.first().map_or(1.0, |r| r.rate);
    writeln!(
        out,
        "
Several servers on one database (the same batches, {CLIENTS} clients spread over the servers; each group commit holds the writers' advisory lock):
"
    )?;
    writeln!(
        out,
        "| servers | events/s | against 1 server | group commits | events per commit | server CPU (all servers) |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for run in runs {
        writeln!(
            out,
            "| {} | {:.0} | {:.2}× | {:.0} | {:.0} | {:.1} s |",
            run.servers,
            run.rate,
            run.rate / one,
            run.commits,
            run.events as f64 / run.commits.max(1.0),
            run.cpu_seconds
        )?;
    }
    Ok(())
}

/// The table's header and its ingest rows, each against its baseline.
fn write_ingest_rows(
    out: &mut String,
    naive: f64,
    ceilings: CopyCeilings,
    ingest: HttpIngest,
) -> anyhow::Result<()> {
    let CopyCeilings {
        ceiling,
        single_writer,
        ceiling_gin,
    } = ceilings;
    let HttpIngest {
        rate,
        cpu_per_event_us,
        commits,
        low,
        concurrent,
        concurrent_rate,
    } = ingest;
    writeln!(
        out,
        "| measure | result | baseline in the same run | ratio | target |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    writeln!(
        out,
        "| durable ingest over HTTP, batches of {BATCH}, {CLIENTS} clients | **{rate:.0}** events/s | naive INSERT per event, autocommit, {CLIENTS} connections: {naive:.0} events/s | {:.1}× | ≥ 40,000/s, ≥ 5× |",
        rate / naive
    )?;
    writeln!(
        out,
        "| the same, against COPY of the same rows with nothing in front | {rate:.0} events/s | ceiling: {ceiling:.0} events/s (COPY, {COPY_BATCH} rows per transaction, 4 connections, median of 3) | {:.0}% | ≥ 70% |",
        100.0 * rate / ceiling
    )?;
    writeln!(
        out,
        "| the same, against COPY from one connection (one writer, as Sealtrail's sequencer is) | {rate:.0} events/s | {single_writer:.0} events/s | {:.0}% | |",
        100.0 * rate / single_writer
    )?;
    writeln!(
        out,
        "| the ceiling with a GIN index (`jsonb_path_ops`) on `details` (medians of 3) | {ceiling_gin:.0} events/s | without: {ceiling:.0} events/s | COPY takes {:+.0}% longer | |",
        100.0 * (ceiling / ceiling_gin - 1.0)
    )?;
    writeln!(
        out,
        "| server CPU per ingested event (HTTP run) | {cpu_per_event_us:.1} µs | | | |"
    )?;
    writeln!(out, "| group commits in the HTTP run | {commits} | | | |")?;
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
    Ok(())
}

/// The filtered-query latencies on a store of many events, warm and after PostgreSQL
/// restarts, and how fast that store was built.
struct QueryLatency {
    /// Events per second the sequencer wrote while building the store.
    build_rate: f64,
    /// Latency with warm caches.
    warm: Latency,
    /// Events returned per query, on average.
    returned: f64,
    /// Latency after the restart.
    cold: Latency,
    /// Whether the OS page cache was dropped too (root only).
    caches_dropped: bool,
}

/// Builds a `count`-event store through the sequencer, starts a server on it and runs the
/// filtered queries warm, then again after restarting PostgreSQL.
fn query_latency(
    pg: &PgCluster,
    runtime: &tokio::runtime::Runtime,
    count: usize,
) -> anyhow::Result<QueryLatency> {
    eprintln!("bench: postgres: building a {count}-event store");
    let url = pg.database("queries")?;
    let dir = tempfile::tempdir()?;
    let built = Instant::now();
    let end = fill_postgres(&url, dir.path(), count)?;
    let build_rate = count as f64 / built.elapsed().as_secs_f64();
    let server = Server::start_with(dir.path(), &["--database-url", &url])?;
    let key = create_key(dir.path())?;
    postgres::Client::connect(&url, postgres::NoTls)?.batch_execute("VACUUM ANALYZE")?;
    let (warm, returned) = runtime.block_on(filtered_queries(&server, &key, end))?;
    eprintln!("bench: postgres: restarting PostgreSQL for the cold run");
    pg.restart()?;
    let caches_dropped = drop_os_caches();
    let (cold, _) = runtime.block_on(filtered_queries(&server, &key, end))?;
    drop(server);
    Ok(QueryLatency {
        build_rate,
        warm,
        returned,
        cold,
        caches_dropped,
    })
}

/// The query rows and the note on the data set they ran on.
fn write_query_rows(out: &mut String, count: usize, queries: QueryLatency) -> anyhow::Result<()> {
    let QueryLatency {
        build_rate,
        warm,
        returned,
        cold,
        caches_dropped,
    } = queries;
    writeln!(
        out,
        "| 1000 filtered events: tenant + severity + 7-day range, {count} events ({} queries, avg {returned:.0} returned), warm | p50 {} / p99 {} / max {} | | | p99 ≤ 50 ms |",
        warm.count,
        ms(warm.p50),
        ms(warm.p99),
        ms(warm.max)
    )?;
    writeln!(
        out,
        "| the same after a restart of PostgreSQL{} | p50 {} / p99 {} / max {} | | | |",
        if caches_dropped {
            " and dropping the OS page cache"
        } else {
            " (the OS page cache could not be dropped here)"
        },
        ms(cold.p50),
        ms(cold.p99),
        ms(cold.max)
    )?;
    writeln!(
        out,
        "\nData set for the queries: {count} events over {SPAN_DAYS} days, 20 tenants (one holds half), written \
         through the sequencer in-process at {build_rate:.0} events/s.\n"
    )?;
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One INSERT per event, each its own (durable) transaction, from [`CLIENTS`] connections.
fn naive_inserts(url: &str, total: usize) -> anyhow::Result<f64> {
    let mut source = EventSource::new(7);
    let events = Arc::new(prepared(&mut source, total));
    let mut setup = postgres::Client::connect(url, postgres::NoTls)?;
    ensure_partitions(&mut setup, &events)?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (events, next, url) = (events.clone(), next.clone(), url.to_owned());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                let insert = client.prepare(
                    "INSERT INTO events (seq, id, tenant_id, occurred_at, received_at, severity,
                                         action, user_id, resource_type, resource_id,
                                         content_hash, leaf_hash, record)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(e) = events.get(i) else {
                        return Ok(());
                    };
                    let seq = i as i64 + 1;
                    let record = e.record(seq as u64);
                    let leaf_hash = sealtrail_core::merkle::leaf_hash(&record);
                    let content_hash = e.content_hash.as_ref().map(|h| h.as_slice());
                    client.execute(
                        &insert,
                        &[
                            &seq,
                            &e.id,
                            &e.tenant_id,
                            &e.occurred_at,
                            &e.received_at,
                            &(e.severity.code() as i16),
                            &e.action,
                            &e.user_id,
                            &e.resource_type,
                            &e.resource_id,
                            &content_hash,
                            &leaf_hash.as_slice(),
                            &record,
                        ],
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

fn ensure_partitions(
    client: &mut postgres::Client,
    events: &[PreparedEvent],
) -> anyhow::Result<()> {
    let times: Vec<i64> = events.iter().map(|e| e.occurred_at).collect();
    // One call per day present is plenty (the function creates each month once).
    client.execute(
        "SELECT sealtrail_ensure_partition(min(t)) FROM unnest($1::bigint[]) AS t
         GROUP BY t / 86400000000",
        &[&times],
    )?;
    Ok(())
}

/// COPY of the rows Sealtrail writes (events and their ids), [`COPY_BATCH`] per
/// transaction, from `connections` connections: PostgreSQL's own ceiling for these rows.
fn copy_ceiling(url: &str, total: usize, gin: bool, connections: usize) -> anyhow::Result<f64> {
    let mut source = EventSource::new(11);
    let events = prepared(&mut source, total);
    let mut setup = postgres::Client::connect(url, postgres::NoTls)?;
    ensure_partitions(&mut setup, &events)?;
    if gin {
        setup.batch_execute(
            "CREATE INDEX events_details_gin ON events USING gin (details jsonb_path_ops)",
        )?;
    }
    let leaves: Vec<(u64, Vec<u8>, sealtrail_core::merkle::Hash)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let record = e.record(i as u64 + 1);
            let hash = sealtrail_core::merkle::leaf_hash(&record);
            (i as u64 + 1, record, hash)
        })
        .collect();
    let events = Arc::new(events);
    let leaves = Arc::new(leaves);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (events, leaves, next, url) =
                (events.clone(), leaves.clone(), next.clone(), url.to_owned());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                loop {
                    let first = next.fetch_add(COPY_BATCH, Ordering::Relaxed);
                    if first >= events.len() {
                        return Ok(());
                    }
                    let last = (first + COPY_BATCH).min(events.len());
                    let batch: Vec<NewLeaf<'_>> = (first..last)
                        .map(|i| NewLeaf {
                            seq: leaves[i].0,
                            event: &events[i],
                            record: leaves[i].1.clone(),
                            leaf_hash: leaves[i].2,
                        })
                        .collect();
                    let mut tx = client.transaction()?;
                    copy_event_rows(&mut tx, &batch)?;
                    tx.commit()?;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("copy thread")?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Writes `count` events spread over [`SPAN_DAYS`] through the sequencer on PostgreSQL;
/// returns the newest `occurred_at`.
fn fill_postgres(url: &str, data_dir: &std::path::Path, count: usize) -> anyhow::Result<i64> {
    let (backend, signer): (PgBackend, _) = open_log(url, data_dir, Some("bench/queries"))?;
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )?;
    let end = fill(&handle, count);
    drop(handle);
    thread.join().expect("sequencer");
    Ok(end)
}

/// Migrates a new database of the cluster; its URL.
trait Databases {
    fn database(&self, name: &str) -> anyhow::Result<String>;
}

impl Databases for PgCluster {
    fn database(&self, name: &str) -> anyhow::Result<String> {
        let mut admin = postgres::Client::connect(&self.url(), postgres::NoTls)?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let url = format!("{} dbname={name}", self.url());
        migrate(&mut postgres::Client::connect(&url, postgres::NoTls)?)?;
        Ok(url)
    }
}

/// Asks the kernel to drop clean page-cache pages (root only); whether it did.
fn drop_os_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}
