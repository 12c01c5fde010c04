//! `sealtrail verify`: the log in a store, or (`--archive DIR_OR_URL`) archive segments
//! offline, in a directory or an S3-compatible bucket, or (`--evidence FILE`) an evidence
//! bundle offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use sealtrail_backup::{Progress as _, Unit};
use sealtrail_core::CheckpointVerifier;
use sealtrail_store::verify::verify_sqlite;

use crate::DataDirArg;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// The log's public key (`GET /v1/public-key`'s `vkey`), or a file holding it (or that
    /// answer's JSON). Pin it: without it the key is read from the data directory (or, with
    /// --archive, from each manifest), which whoever can edit the log may also have replaced.
    #[arg(long)]
    public_key: Option<String>,
    /// Verify the archive segments in this directory or s3://bucket[/prefix] instead of a
    /// log: offline, with no server and no database (S3 settings from AWS_ENDPOINT_URL,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "DIR_OR_URL", conflicts_with_all = ["checkpoint", "database_url"])]
    archive: Option<String>,
    /// Verify an evidence bundle (`sealtrail export --evidence`) instead of a log: offline,
    /// its events' hashes and proofs, its checkpoints' signatures and their consistency.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["archive", "checkpoint", "database_url"])]
    evidence: Option<PathBuf>,
    /// A signed checkpoint kept outside the server: a file holding the note, or a witness
    /// (`[[witnesses]]`) whose latest checkpoint is read — a directory, s3://bucket[/prefix],
    /// or an http(s):// URL serving the note. Verify proves (RFC 9162) that the log's tree
    /// extends the one it signed, exposing a log rolled back or forked.
    #[arg(long, value_name = "FILE_DIR_OR_URL")]
    checkpoint: Option<String>,
    /// Verify the log in this PostgreSQL database (the data directory then only holds the
    /// signing key, used when --public-key is not given).
    #[arg(long, env = "SEALTRAIL_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// `--public-key`: a vkey, or a file holding a vkey or `GET /v1/public-key`'s JSON (whose
/// `rotations`, when the log's key was rotated, give the whole key chain the pinned key
/// belongs to).
pub(crate) fn pinned_key(arg: &str) -> anyhow::Result<CheckpointVerifier> {
    let path = Path::new(arg);
    let (text, rotations) = if !arg.contains('+') && path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --public-key {}", path.display()))?;
        match serde_json::from_str::<sealtrail_core::api::PublicKey>(&text) {
            Ok(answer) => (answer.vkey, answer.rotations),
            Err(_) => (text, Vec::new()),
        }
    } else {
        (arg.to_owned(), Vec::new())
    };
    let key = CheckpointVerifier::from_vkey(&text).context("--public-key")?;
    key.anchored(&rotations).context("--public-key's rotations")
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(bundle) = &args.evidence {
        let key = args.public_key.as_deref().map(pinned_key).transpose()?;
        return verify_evidence(bundle, key);
    }
    if let Some(archive) = &args.archive {
        let key = args.public_key.as_deref().map(pinned_key).transpose()?;
        return verify_archive(archive, key.as_ref());
    }
    let dir = &args.data.data_dir;
    let verifier = match &args.public_key {
        // The pinned key is trusted; `verify_*` extend it by the store's rotations (each
        // signed by both its keys) only if they pass through it.
        Some(vkey) => pinned_key(vkey)?,
        None => match &args.database_url {
            Some(url) => sealtrail_store::postgres::log_verifier(url, dir)?,
            None => sealtrail_store::sqlite::log_verifier(dir)?,
        },
    };
    let kept = args
        .checkpoint
        .as_deref()
        .map(kept_checkpoint)
        .transpose()?;
    let mut steps = crate::progress::Report::new();
    steps.begin("verifying the log", 0, Unit::Events);
    let started = std::time::Instant::now();
    let progress = |done, total| steps.set(done, total);
    let report = match &args.database_url {
        Some(url) => {
            sealtrail_store::postgres::verify_postgres(url, &verifier, kept.as_deref(), progress)?
        }
        None => verify_sqlite(dir, &verifier, kept.as_deref(), progress)?,
    };
    steps.end();
    match report.problem {
        None => {
            println!(
                "ok: {} events and {} signed checkpoints verified in {:.1}s; tree size {}, root {}",
                report.events,
                report.checkpoints,
                started.elapsed().as_secs_f64(),
                report.tree_size,
                hex::encode(report.root)
            );
            if report.bodies_removed > 0 {
                println!(
                    "    {} of them had their bodies removed by retention (archived or past \
                     retention): checked by their leaf hashes",
                    report.bodies_removed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(finding) => {
            println!("FAILED: {finding}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `--checkpoint`: the note in a file, or the latest one a witness kept.
fn kept_checkpoint(place: &str) -> anyhow::Result<String> {
    let path = Path::new(place);
    if path.is_file() {
        return std::fs::read_to_string(path).with_context(|| format!("reading {place}"));
    }
    if !place.contains("://") && !path.exists() {
        anyhow::bail!("--checkpoint {place}: no such file or directory");
    }
    let witness = sealtrail_archive::WitnessLocation::parse(place, None).context("--checkpoint")?;
    witness
        .latest()
        .with_context(|| format!("reading the kept checkpoint from {witness}"))?
        .with_context(|| {
            format!(
                "{witness} holds no checkpoint (no {})",
                sealtrail_archive::witness::LATEST_NAME
            )
        })
}

fn verify_archive(location: &str, key: Option<&CheckpointVerifier>) -> anyhow::Result<ExitCode> {
    let location = sealtrail_archive::ArchiveLocation::parse(location).context("--archive")?;
    let started = std::time::Instant::now();
    let report = location.verify(key)?;
    let secs = started.elapsed().as_secs_f64();
    if report.segments.is_empty() {
        println!("FAILED: no archive segments (*.manifest.json) in {location}");
        return Ok(ExitCode::FAILURE);
    }
    let (mut seqs, mut records, mut ndjson, mut compressed, mut failed) = (0, 0, 0, 0, 0);
    for segment in &report.segments {
        seqs += segment.seqs;
        records += segment.records;
        ndjson += segment.ndjson_bytes;
        compressed += segment.segment_bytes;
        let name = segment.path.display();
        match &segment.problem {
            None => println!(
                "ok: {name}: {} seqs, {} records",
                segment.seqs, segment.records
            ),
            Some(problem) => {
                failed += 1;
                println!("FAILED: {name}: {problem}");
            }
        }
    }
    for (first, last) in &report.gaps {
        println!("note: seqs {first}..={last} are in no segment of this archive");
    }
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "{} segments ({failed} failed): {seqs} seqs, {records} records, {:.1} MB of NDJSON \
         ({:.1} MB compressed) in {secs:.2}s: {:.0} events/s, {:.1} MB/s",
        report.segments.len(),
        mb(ndjson),
        mb(compressed),
        seqs as f64 / secs.max(1e-9),
        mb(ndjson) / secs.max(1e-9)
    );
    if key.is_none() {
        println!(
            "note: signature checked against the key in the manifest only; pass --public-key \
             to prove the segments are the log's"
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify_evidence(bundle: &Path, pinned: Option<CheckpointVerifier>) -> anyhow::Result<ExitCode> {
    let evidence = crate::evidence::read_bundle(bundle)?;
    let is_pinned = pinned.is_some();
    let key = match pinned {
        Some(key) => key,
        None => {
            CheckpointVerifier::from_vkey(&evidence.log.vkey).context("log.vkey in the bundle")?
        }
    }
    // The bundle's rotations extend the key only if they pass through it.
    .anchored(&evidence.log.rotations)
    .context("log.rotations in the bundle")?;
    let report = crate::evidence::check::check(&evidence, &key);
    for problem in &report.problems {
        println!("FAILED: {problem}");
    }
    let size = |s: Option<u64>| s.map_or("?".to_owned(), |s| s.to_string());
    println!(
        "{}: {} of {} events verified ({} sealed values, {} shredded) against the checkpoint \
         of tree size {}, consistent with tree size {}",
        if report.ok() { "ok" } else { "FAILED" },
        report.events_ok,
        evidence.events.len(),
        report.sealed,
        report.shredded,
        size(report.tree_size),
        size(report.newest_size),
    );
    if !is_pinned {
        println!(
            "note: checked against the key written in the bundle only; pass --public-key to \
             prove the events are the log's"
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
