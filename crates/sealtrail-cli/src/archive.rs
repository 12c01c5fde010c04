//! `sealtrail archive write`: one archive segment of a seq range, read from the embedded
//! store — the building block retention will call. It deletes nothing from the store.
//!
//! `verify --archive` (verify.rs) checks segments offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sealtrail_archive::{DEFAULT_ZSTD_LEVEL, Manifest, SegmentEntry, SegmentSpec, SegmentWriter};
use sealtrail_core::query::EventFilter;
use sealtrail_store::sqlite::SqliteReader;
use sealtrail_store::{CheckpointRow, LogReader as _};

use crate::DataDirArg;

/// Events read from the store per call while writing a segment.
const READ_PAGE_EVENTS: usize = 10_000;

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// Write the events with seqs FROM..=TO to a segment and its manifest in OUT, proved
    /// against the newest signed checkpoint. Deletes nothing from the store.
    Write(WriteArgs),
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// First seq of the range.
    #[arg(long)]
    from: u64,
    /// Last seq of the range (inclusive).
    #[arg(long)]
    to: u64,
    /// The archive directory (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// Archive only this tenant's records; the other seqs of the range keep their leaf
    /// hashes only, so the segment still verifies.
    #[arg(long)]
    only_tenant: Option<String>,
    /// zstd compression level (1–19).
    #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    zstd_level: i32,
}

pub fn run(command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArchiveCommand::Write(args) => write(args),
    }
}

/// `archive write`: checks the range, finds the newest signed checkpoint covering it,
/// streams the range's events into a segment proved against that checkpoint, and reports.
fn write(args: WriteArgs) -> anyhow::Result<ExitCode> {
    check_range(args.from, args.to)?;
    let dir = &args.data.data_dir;
    let verifier = sealtrail_store::sqlite::log_verifier(dir)?;
    // The server may have committed its newest checkpoint without having fsync'd it yet.
    sealtrail_store::sqlite::sync_committed(dir)?;
    let reader = SqliteReader::open(dir)?;
    let checkpoint = covering_checkpoint(&reader, args.to)?;
    let mut writer = SegmentWriter::create(
        &args.out,
        SegmentSpec {
            origin: verifier.origin().to_owned(),
            first_seq: args.from,
            last_seq: args.to,
            only_tenant: args.only_tenant.clone(),
            zstd_level: args.zstd_level,
        },
    )?;
    let bar = progress_bar(args.to - args.from + 1);
    let started = std::time::Instant::now();
    push_range(&reader, &mut writer, &args, &bar)?;
    let boundary = reader.range_proof(args.from, args.to, checkpoint.tree_size)?;
    let manifest = writer.finish(&checkpoint.note, &verifier, &boundary)?;
    bar.finish_and_clear();
    print_summary(&args.out, &manifest, started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// Refuses `--from`/`--to` that name no range of seqs.
fn check_range(from: u64, to: u64) -> anyhow::Result<()> {
    if from == 0 || to < from {
        bail!("--from {from} --to {to}: seqs start at 1 and --to must not be below --from");
    }
    Ok(())
}

/// The newest signed checkpoint, which must cover seq `to`.
fn covering_checkpoint(reader: &SqliteReader, to: u64) -> anyhow::Result<CheckpointRow> {
    let checkpoint = reader
        .latest_checkpoint()?
        .context("the log has no signed checkpoint yet")?;
    if checkpoint.tree_size < to {
        bail!(
            "the newest signed checkpoint covers seqs up to {}; seq {to} is not in the log yet",
            checkpoint.tree_size
        );
    }
    Ok(checkpoint)
}

/// The progress bar of a segment of `seqs` seqs.
fn progress_bar(seqs: u64) -> ProgressBar {
    ProgressBar::new(seqs).with_style(
        ProgressStyle::with_template(
            "{spinner} archiving {bar:40} {pos}/{len} seqs ({per_sec}, eta {eta})",
        )
        .expect("the template is valid"),
    )
}

/// Pushes every seq of `args.from..=args.to` from the store into `writer`, a page at a
/// time, with the record only when `--only-tenant` lets it in. A seq absent from the log
/// is an error.
fn push_range(
    reader: &SqliteReader,
    writer: &mut SegmentWriter,
    args: &WriteArgs,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let all = EventFilter::default();
    let mut after = args.from - 1;
    while after < args.to {
        let page = reader.events_after(after, args.to, &all, READ_PAGE_EVENTS)?;
        if page.events.is_empty() {
            bail!(
                "seq {} is missing from the log: run `sealtrail verify`",
                after + 1
            );
        }
        for event in &page.events {
            if event.seq != after + 1 {
                bail!(
                    "seq {} is missing from the log: run `sealtrail verify`",
                    after + 1
                );
            }
            let archived = args
                .only_tenant
                .as_ref()
                .is_none_or(|tenant| *tenant == event.tenant_id);
            writer.push(SegmentEntry {
                seq: event.seq,
                leaf_hash: event.leaf_hash,
                record: archived.then_some(event.record.as_slice()),
            })?;
            after = event.seq;
        }
        bar.set_position(after - args.from + 1);
    }
    Ok(())
}

/// Prints what was written: where, the range, the records, the compression, the time
/// taken and the checkpoint it was proved against.
fn print_summary(out: &Path, manifest: &Manifest, secs: f64) {
    println!(
        "wrote {}: seqs {}..={}, {} records, {} bytes ({:.1}x smaller than its {} bytes of NDJSON) in {secs:.1}s; \
         proved against the signed checkpoint of size {} ({} boundary hashes)",
        out.join(&manifest.segment_file).display(),
        manifest.first_seq,
        manifest.last_seq,
        manifest.archived_events,
        manifest.segment_bytes,
        manifest.ndjson_bytes as f64 / manifest.segment_bytes.max(1) as f64,
        manifest.ndjson_bytes,
        manifest.checkpoint.tree_size,
        manifest.boundary.len()
    );
}
