//! `sealtrail archive write`: one archive segment of a seq range, read from the embedded
//! store, published to a directory or an `s3://` location — the building block retention
//! will call. It deletes nothing from the store.
//! `sealtrail archive get` and `archive query`: archived events found again, offline, each
//! read only from a segment that verified.
//!
//! `verify --archive` (verify.rs) checks segments offline.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use sealtrail_archive::{
    ArchiveLocation, ArchivedEvent, DEFAULT_ZSTD_LEVEL, LocationWriter, Published, SegmentEntry,
    SegmentSpec,
};
use sealtrail_backup::{Progress as _, Unit};
use sealtrail_core::CheckpointVerifier;
use sealtrail_core::query::EventFilter;
use sealtrail_store::retention::RetentionLedger;
use sealtrail_store::sqlite::SqliteReader;
use sealtrail_store::{CheckpointRow, LogReader as _};

use crate::DataDirArg;
use crate::filter::{Events, FilterArgs};
use crate::query::{TableRow, print_rows};
use crate::verify::pinned_key;

/// Events read from the store per call while writing a segment.
const READ_PAGE_EVENTS: usize = 10_000;

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// Write the events with seqs FROM..=TO to a segment and its manifest in OUT (a
    /// directory or s3://bucket[/prefix]), proved against the newest signed checkpoint.
    /// Deletes nothing from the store.
    Write(WriteArgs),
    /// Print the archived event with this seq or event id (the API's JSON), after verifying
    /// the segment it is in.
    Get(GetArgs),
    /// Print the archived events matching the filter, in seq order, verifying each segment
    /// read.
    Query(ArchiveQueryArgs),
}

/// The log's public key, to pin.
#[derive(Args, Debug)]
pub struct PublicKeyArg {
    /// The log's public key (`GET /v1/public-key`'s `vkey`), or a file holding it. Without
    /// it each manifest's own key is used, which shows a segment is self-consistent only.
    #[arg(long)]
    public_key: Option<String>,
}

impl PublicKeyArg {
    /// The pinned key, if given; says on stderr when none is.
    fn verifier(&self) -> anyhow::Result<Option<CheckpointVerifier>> {
        let key = self.public_key.as_deref().map(pinned_key).transpose()?;
        if key.is_none() {
            eprintln!(
                "note: segments checked against the key in their manifest only; pass \
                 --public-key to prove they are the log's"
            );
        }
        Ok(key)
    }
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The archive: a directory or s3://bucket[/prefix] (S3 settings from AWS_ENDPOINT_URL,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    #[arg(value_name = "DIR_OR_URL")]
    location: String,
    /// The event's seq, or its id.
    seq_or_id: String,
    #[command(flatten)]
    key: PublicKeyArg,
}

#[derive(Args, Debug)]
pub struct ArchiveQueryArgs {
    /// The archive: a directory or s3://bucket[/prefix].
    #[arg(value_name = "DIR_OR_URL")]
    location: String,
    #[command(flatten)]
    filter: FilterArgs<Events>,
    /// At most this many events.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON event per line instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    key: PublicKeyArg,
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
    /// The archive: a directory (created if needed) or s3://bucket[/prefix] (S3 settings
    /// from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// SEALTRAIL_S3_PATH_STYLE). Writing an identical segment again succeeds; a different
    /// one under the same range is refused.
    #[arg(long, value_name = "DIR_OR_URL")]
    out: String,
    /// With S3: lock the segment and manifest with Object Lock in COMPLIANCE mode for this
    /// many days (nobody can delete or overwrite them before then; the bucket must have
    /// Object Lock enabled).
    #[arg(long, value_name = "DAYS")]
    object_lock_days: Option<u32>,
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
        ArchiveCommand::Get(args) => get(args),
        ArchiveCommand::Query(args) => query(args),
    }
}

/// `archive get`: finds the segment (by the manifests' ranges for a seq, by scanning for an
/// id), verifies it, and prints the event read from it.
fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let location = ArchiveLocation::parse(&args.location)?;
    let key = args.key.verifier()?;
    let wanted = args.seq_or_id.trim();
    let (segment, seq) = match wanted.parse::<u64>() {
        Ok(seq) => {
            let segment = location
                .list_segments()?
                .into_iter()
                .find(|s| (s.first_seq..=s.last_seq).contains(&seq))
                .with_context(|| format!("seq {seq} is in no segment of {location}"))?;
            (segment, seq)
        }
        Err(_) => location
            .locate_event_id(wanted, key.as_ref())?
            .with_context(|| format!("no archived event has id {wanted} in {location}"))?,
    };
    let verified = location.open_segment(&segment, key.as_ref())?;
    let event = verified.event_at(seq)?.with_context(|| {
        format!(
            "seq {seq} is in {} as its leaf hash only: its record was not archived there",
            segment.shown
        )
    })?;
    if wanted.parse::<u64>().is_err() && !event.record.id.to_string().eq_ignore_ascii_case(wanted) {
        bail!(
            "{} changed while being read: seq {seq} no longer holds event {wanted}",
            segment.shown
        );
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&event.to_api_json())?;
    out.write_all(b"\n")?;
    Ok(ExitCode::SUCCESS)
}

/// `archive query`: reads the segments in seq order, each only once it has verified, and
/// prints the events the filter lets through, up to `--limit`.
fn query(args: ArchiveQueryArgs) -> anyhow::Result<ExitCode> {
    let mut filter = EventFilter::default();
    for (name, value) in args.filter.params() {
        filter
            .apply_param(&name, &value)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    filter.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let location = ArchiveLocation::parse(&args.location)?;
    let key = args.key.verifier()?;
    let mut out = std::io::stdout().lock();
    let mut table: Vec<ArchivedEvent> = Vec::new();
    let mut printed = 0;
    // Overlapping segments hold some seqs twice: each is printed once, in seq order.
    let mut through = 0;
    'segments: for segment in location.list_segments()? {
        if printed >= args.limit {
            break;
        }
        let verified = location.open_segment(&segment, key.as_ref())?;
        for event in verified.events()? {
            let event = event?;
            if event.stored.seq <= through || !filter.matches(&event.columns()) {
                continue;
            }
            through = event.stored.seq;
            if args.json {
                out.write_all(&event.to_api_json())?;
                out.write_all(b"\n")?;
            } else {
                table.push(event);
            }
            printed += 1;
            if printed >= args.limit {
                break 'segments;
            }
        }
    }
    if !args.json {
        let rows: Vec<TableRow<'_>> = table
            .iter()
            .map(|e| TableRow {
                seq: e.stored.seq,
                occurred_at: &e.record.occurred_at,
                tenant_id: &e.record.tenant_id,
                severity: e.record.severity.as_str().to_owned(),
                action: &e.record.action,
                user_id: e.record.user_id.as_deref(),
                resource_type: &e.record.resource_type,
                resource_id: e.record.resource_id.as_deref(),
            })
            .collect();
        print_rows(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// `archive write`: checks the range, finds the newest signed checkpoint covering it,
/// streams the range's events into a segment proved against that checkpoint, and reports.
fn write(args: WriteArgs) -> anyhow::Result<ExitCode> {
    check_range(args.from, args.to)?;
    let mut location = ArchiveLocation::parse(&args.out).context("--out")?;
    if let Some(days) = args.object_lock_days {
        location = location.with_object_lock_days(days)?;
    }
    let dir = &args.data.data_dir;
    let verifier = sealtrail_store::sqlite::log_verifier(dir)?;
    // The server may have committed its newest checkpoint without having fsync'd it yet.
    sealtrail_store::sqlite::sync_committed(dir)?;
    let reader = SqliteReader::open(dir)?;
    let checkpoint = covering_checkpoint(&reader, args.to)?;
    let mut writer = location.create_segment(SegmentSpec {
        origin: verifier.origin().to_owned(),
        first_seq: args.from,
        last_seq: args.to,
        only_tenant: args.only_tenant.clone(),
        zstd_level: args.zstd_level,
        label: None,
    })?;
    let mut progress = crate::progress::Report::new();
    progress.begin(
        &format!("archiving seqs {}..={}", args.from, args.to),
        args.to - args.from + 1,
        Unit::Events,
    );
    let started = std::time::Instant::now();
    push_range(&reader, &mut writer, &args, &mut progress)?;
    let boundary = reader.range_proof(args.from, args.to, checkpoint.tree_size)?;
    let published = writer.finish(&checkpoint.note, &verifier, &boundary)?;
    progress.end();
    print_summary(&published, started.elapsed().as_secs_f64());
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

/// Pushes every seq of `args.from..=args.to` from the store into `writer`, a page at a
/// time, with the record only when `--only-tenant` lets it in. Seqs whose bodies retention
/// removed go in as their leaf hashes (from the retention ledger); a seq absent from the
/// log is an error.
fn push_range(
    reader: &SqliteReader,
    writer: &mut LocationWriter<'_>,
    args: &WriteArgs,
    progress: &mut crate::progress::Report,
) -> anyhow::Result<()> {
    let all = EventFilter::default();
    let ledger = sealtrail_store::sqlite::SqliteLedger::open(&args.data.data_dir)?;
    let mut after = args.from - 1;
    while after < args.to {
        let page = reader.events_after(after, args.to, &all, READ_PAGE_EVENTS)?;
        for event in &page.events {
            push_leaves_only(&ledger, writer, after, event.seq - 1)?;
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
        after = push_leaves_only(&ledger, writer, after, page.scanned_through)?;
        progress.set(after - args.from + 1, args.to - args.from + 1);
    }
    Ok(())
}

/// Pushes seqs `after+1..=upto`, which hot reads skipped: each must be an event whose body
/// retention removed. Returns `upto`.
fn push_leaves_only(
    ledger: &dyn RetentionLedger,
    writer: &mut LocationWriter<'_>,
    after: u64,
    upto: u64,
) -> anyhow::Result<u64> {
    let mut cursor = after;
    while cursor < upto {
        let rows = ledger.rows(cursor, upto, READ_PAGE_EVENTS)?;
        for row in &rows {
            if row.seq != cursor + 1 || row.has_body {
                bail!(
                    "seq {} is missing from the log: run `sealtrail verify`",
                    cursor + 1
                );
            }
            writer.push(SegmentEntry {
                seq: row.seq,
                leaf_hash: row.leaf_hash,
                record: None,
            })?;
            cursor = row.seq;
        }
        if rows.is_empty() {
            bail!(
                "seq {} is missing from the log: run `sealtrail verify`",
                cursor + 1
            );
        }
    }
    Ok(upto.max(after))
}

/// Prints what was written: where, the range, the records, the compression, the time
/// taken and the checkpoint it was proved against.
fn print_summary(published: &Published, secs: f64) {
    let manifest = &published.manifest;
    println!(
        "{} {}: seqs {}..={}, {} records, {} bytes ({:.1}x smaller than its {} bytes of NDJSON) in {secs:.1}s; \
         proved against the signed checkpoint of size {} ({} boundary hashes)",
        if published.already_there {
            "already archived, identical:"
        } else {
            "wrote"
        },
        published.segment,
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
