//! `sealtrail ingest FILE|-`: NDJSON in, batched and in parallel. Events without an id get
//! one derived from the input and the line (see `with_derived_id`), so an interrupted import
//! of a file can simply be run again; for standard input, pass `--import-id` to get that.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::ServerArgs;

/// Largest batch the CLI sends (the server's default limit).
const MAX_BATCH_EVENTS: usize = 1000;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// NDJSON file, or - for standard input.
    input: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
    /// Events per request (at most the server's limits.max_batch_events).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=MAX_BATCH_EVENTS as i64))]
    batch_size: u16,
    /// Names this import for deriving event ids: the same name and input give the same ids,
    /// so re-running stores nothing twice. Defaults to the SHA-256 of the file's contents;
    /// standard input without it gets a random one (a re-run would store events again).
    #[arg(long)]
    import_id: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=64))]
    parallel: u8,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let import_id = import_id(&args)?;
    let (reader, total_bytes): (Box<dyn std::io::BufRead + Send>, Option<u64>) =
        if args.input.as_os_str() == "-" {
            (Box::new(std::io::BufReader::new(std::io::stdin())), None)
        } else {
            let file = std::fs::File::open(&args.input)
                .with_context(|| format!("opening {}", args.input.display()))?;
            let len = file.metadata().map(|m| m.len()).ok();
            (Box::new(std::io::BufReader::new(file)), len)
        };
    let bar = match total_bytes {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} (eta {eta})")
                .expect("valid template"),
        ),
        None => ProgressBar::new_spinner(),
    };
    let started = Instant::now();
    let mut in_flight = JoinSet::new();
    let mut sent_events = 0usize;
    let mut stored = 0usize;
    let mut batch = Vec::new();
    let mut batch_events = 0usize;
    let mut batch_bytes = 0u64;
    let mut lines = reader.lines();
    let mut line_number = 0u64;
    loop {
        let line = lines.next().transpose().context("reading the input")?;
        let end = line.is_none();
        if let Some(line) = line {
            line_number += 1;
            batch_bytes += line.len() as u64 + 1;
            if !line.trim().is_empty() {
                batch.extend_from_slice(&sealtrail_client::with_derived_id(
                    &import_id,
                    line_number,
                    line.as_bytes(),
                ));
                batch.push(b'\n');
                batch_events += 1;
            }
        }
        if batch_events == usize::from(args.batch_size) || (end && batch_events > 0) {
            while in_flight.len() >= usize::from(args.parallel) {
                stored += collect(&mut in_flight).await?;
            }
            let client = client.clone();
            let body = std::mem::take(&mut batch);
            let first = sent_events + 1;
            in_flight.spawn(async move {
                client
                    .ingest_ndjson(body)
                    .await
                    .map(|r| r.events.len())
                    .with_context(|| format!("events {first}..{}", first + batch_events - 1))
            });
            sent_events += batch_events;
            batch_events = 0;
            bar.inc(batch_bytes);
            batch_bytes = 0;
            bar.set_message(format!("{sent_events} events"));
        }
        if end {
            break;
        }
    }
    while !in_flight.is_empty() {
        stored += collect(&mut in_flight).await?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {stored} events in {secs:.1}s ({:.0} events/s)",
        stored as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// The import's identity: given, or the SHA-256 of the file, or random for stdin.
fn import_id(args: &IngestArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(id) = &args.import_id {
        return Ok(id.as_bytes().to_vec());
    }
    if args.input.as_os_str() == "-" {
        return Ok(uuid::Uuid::new_v4().as_bytes().to_vec());
    }
    use std::io::Read as _;
    let mut file = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;
    let mut hasher = sha2::Sha256::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).context("reading the input")?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    Ok(sha2::Digest::finalize(hasher).to_vec())
}

async fn collect(in_flight: &mut JoinSet<anyhow::Result<usize>>) -> anyhow::Result<usize> {
    match in_flight.join_next().await {
        Some(result) => result.context("an upload task failed")?,
        None => Ok(0),
    }
}
