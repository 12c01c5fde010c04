//! `cargo xtask bench`: end-to-end figures for the log, each next to a baseline measured in
//! the same run on the same machine, printed as a Markdown report for BENCHMARKS.md.
//!
//! Client and server share the machine (loopback), as the issue that set the targets asks.
//! Request bodies are serialised before the clock starts, so the client's share of the CPU
//! is the HTTP exchange alone.

mod archive;
pub mod broadcaster;
mod clients;
mod data;
mod encryption;
mod ingest;
mod machine;
mod postgres;
mod query;
mod server;
mod sinks;
mod stats;
mod stream;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events sent in the HTTP batched-ingest run.
    #[arg(long, default_value_t = 400_000)]
    pub ingest_events: usize,
    /// Events in the store the query benchmark reads (kept in target/bench-data between
    /// runs).
    #[arg(long, default_value_t = 2_000_000)]
    pub query_store_events: usize,
    /// Only the ingest benchmarks.
    #[arg(long)]
    pub ingest_only: bool,
    /// Only the query benchmarks.
    #[arg(long)]
    pub query_only: bool,
    /// Only the live-stream benchmarks.
    #[arg(long)]
    pub stream_only: bool,
    /// Only the PostgreSQL store's benchmarks.
    #[arg(long)]
    pub postgres_only: bool,
    /// Only the run of several servers on one PostgreSQL database.
    #[arg(long)]
    pub pg_servers_only: bool,
    /// Events sent in the PostgreSQL batched-ingest run (and the COPY ceiling).
    #[arg(long, default_value_t = 200_000)]
    pub pg_ingest_events: usize,
    /// Events in the PostgreSQL store the query benchmark reads.
    #[arg(long, default_value_t = 2_000_000)]
    pub pg_query_events: usize,
    /// Only the field-encryption benchmark.
    #[arg(long)]
    pub encryption_only: bool,
    /// Events ingested in each mode of the encryption benchmark.
    #[arg(long, default_value_t = 200_000)]
    pub encryption_events: usize,
    /// Only the sink benchmarks.
    #[arg(long)]
    pub sinks_only: bool,
    /// Events each sink delivers in the throughput runs.
    #[arg(long, default_value_t = 200_000)]
    pub sink_events: usize,
    /// Only the archive benchmark.
    #[arg(long)]
    pub archive_only: bool,
    /// Events of the store written into archive segments and verified (the store is kept in
    /// target/bench-data like the query benchmark's).
    #[arg(long, default_value_t = 1_000_000)]
    pub archive_events: usize,
    /// Subscriber counts of the stream benchmark.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10000])]
    pub stream_subscribers: Vec<usize>,
    /// Only the clients' and the middleware's benchmarks.
    #[arg(long)]
    pub clients_only: bool,
    /// Events the Rust producer queues in the client benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub client_events: usize,
    /// Write the report here as well as printing it.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        // The baselines run inside this process: measure them optimised.
        crate::run_step(
            "cargo",
            &["build", "--release", "-p", "sealtrail-cli", "-p", "xtask"],
        )?;
        let exe = crate::root().join("target/release/xtask");
        let status = Command::new(exe)
            .arg("bench")
            .args(std::env::args().skip(2))
            .status()?;
        anyhow::ensure!(status.success(), "the release benchmark failed");
        return Ok(());
    }
    let mut report = String::new();
    writeln!(report, "{}", machine::describe())?;
    writeln!(
        report,
        "Command: `cargo xtask bench {}`\n",
        std::env::args().skip(2).collect::<Vec<_>>().join(" ")
    )?;
    let only = args.ingest_only
        || args.query_only
        || args.stream_only
        || args.postgres_only
        || args.pg_servers_only
        || args.sinks_only
        || args.encryption_only
        || args.archive_only
        || args.clients_only;
    if args.ingest_only || !only {
        report.push_str(&ingest::run(&args)?);
    }
    if args.query_only || !only {
        report.push_str(&query::run(&args)?);
    }
    if args.stream_only || !only {
        report.push_str(&stream::run(&args)?);
    }
    if args.postgres_only || !only {
        report.push_str(&postgres::run(&args)?);
    } else if args.pg_servers_only {
        report.push_str(&postgres::run_servers(&args)?);
    }
    if args.sinks_only || !only {
        report.push_str(&sinks::run(&args)?);
    }
    if args.encryption_only || !only {
        report.push_str(&encryption::run(&args)?);
    }
    if args.archive_only || !only {
        report.push_str(&archive::run(&args)?);
    }
    if args.clients_only || !only {
        report.push_str(&clients::run(&args)?);
    }
    println!("\n{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, &report)?;
    }
    Ok(())
}
