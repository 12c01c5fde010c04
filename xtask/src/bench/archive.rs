//! Archive segments: the events of a real store written into segments by `sealtrail archive
//! write` (events/s, compression ratio), then `sealtrail verify --archive` over them, next
//! to the baseline that bounds it: SHA-256 over as many bytes as the segments decompress
//! to, measured in this process in the same run (verify hashes every record once, plus the
//! compressed files, and parses every line).

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::BenchArgs;
use super::server::binary;

/// Seqs per segment: a few segments per run, each well under the format's limit.
const SEGMENT_EVENTS: usize = 250_000;

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    let total = args.archive_events;
    let data = super::query::dataset(total)?;
    let vkey = sealtrail_store::sqlite::log_verifier(&data.dir)?.vkey();
    let out = tempfile::tempdir()?;
    let archive = out.path().join("archive");

    eprintln!("bench: archive: writing {total} events into segments of {SEGMENT_EVENTS}");
    let started = Instant::now();
    let mut from = 1;
    while from <= total {
        let to = (from + SEGMENT_EVENTS - 1).min(total);
        let status = Command::new(binary())
            .args(["archive", "write", "--data-dir"])
            .arg(&data.dir)
            .args([
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
                "--out",
            ])
            .arg(&archive)
            .status()
            .context("running sealtrail archive write")?;
        anyhow::ensure!(status.success(), "archive write {from}..={to} failed");
        from = to + 1;
    }
    let write_secs = started.elapsed().as_secs_f64();
    let (mut ndjson, mut compressed, mut segments) = (0u64, 0u64, 0usize);
    for entry in std::fs::read_dir(&archive)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".manifest.json") {
            let manifest: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            ndjson += manifest["ndjson_bytes"].as_u64().unwrap_or(0);
            compressed += manifest["segment_bytes"].as_u64().unwrap_or(0);
            segments += 1;
        }
    }

    eprintln!("bench: archive: verify --archive");
    let started = Instant::now();
    let verified = Command::new(binary())
        .args(["verify", "--archive"])
        .arg(&archive)
        .args(["--public-key", &vkey])
        .output()
        .context("running sealtrail verify --archive")?;
    let verify_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        verified.status.success(),
        "verify --archive failed: {}",
        String::from_utf8_lossy(&verified.stdout)
    );

    let sha_secs = sha256_seconds(ndjson);
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let mut report = format!("## Archive segments ({total} events, embedded store)\n\n");
    writeln!(
        report,
        "`sealtrail archive write` per segment of {SEGMENT_EVENTS} seqs (zstd level 3, every record archived), then `sealtrail verify --archive` with the pinned key over the {segments} segments; the baseline hashes the same number of bytes with SHA-256 (sha2) in one thread of this process.\n"
    )?;
    writeln!(report, "| measure | result |")?;
    writeln!(report, "|---|---|")?;
    writeln!(
        report,
        "| write | {:.0} events/s ({:.1} MB/s of NDJSON) |",
        total as f64 / write_secs,
        mb(ndjson) / write_secs
    )?;
    writeln!(
        report,
        "| compression | {:.1} MB NDJSON → {:.1} MB (ratio {:.1}) |",
        mb(ndjson),
        mb(compressed),
        ndjson as f64 / compressed.max(1) as f64
    )?;
    writeln!(
        report,
        "| verify --archive | {verify_secs:.2} s: {:.0} events/s, {:.1} MB/s |",
        total as f64 / verify_secs,
        mb(ndjson) / verify_secs
    )?;
    writeln!(
        report,
        "| SHA-256 of {:.1} MB (baseline) | {sha_secs:.2} s: {:.1} MB/s; verify takes ×{:.2} |",
        mb(ndjson),
        mb(ndjson) / sha_secs,
        verify_secs / sha_secs
    )?;
    writeln!(report)?;
    Ok(report)
}

/// Seconds SHA-256 takes over `bytes` bytes (a 1 MiB buffer hashed over and over).
fn sha256_seconds(bytes: u64) -> f64 {
    let buffer: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buffer.len() as u64) as usize;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    std::hint::black_box(hasher.finalize());
    started.elapsed().as_secs_f64()
}
