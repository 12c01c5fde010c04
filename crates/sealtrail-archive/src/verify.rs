//! Verifying segments offline: everything a manifest claims, recomputed from the files and
//! checked against the signed checkpoint, reporting the first problem of each segment.
//!
//! The order of the checks is the order of trust: the manifest must be readable and agree
//! with its own file names; its checkpoint must verify with the log's key; the segment must
//! decode completely into one line per seq of the range, in order; every record must hash
//! to its leaf hash; the counts and `range_root` must match; the leaves and the boundary
//! must rebuild the checkpoint's root; and last the file's SHA-256 and size, which only the
//! manifest vouches for (a file changed in a way that still verifies, such as recompressed,
//! is reported there).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use sealtrail_core::merkle::{Hash, leaf_hash, list_root, root_from_range};
use sealtrail_core::{Checkpoint, CheckpointVerifier};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::ArchiveError;
use crate::format::{
    FORMAT, MAX_LINE_BYTES, MAX_MANIFEST_BYTES, MAX_SEGMENT_SEQS, Manifest, parse_stem,
};

/// The first thing found wrong with a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The manifest cannot be read or parsed, or a field is malformed.
    ManifestUnreadable(String),
    /// The manifest contradicts itself or its file names (an edited range, a count larger
    /// than the range, a checkpoint too small for it).
    ManifestInconsistent(String),
    /// The checkpoint does not verify: another log's, another key's, or edited.
    BadCheckpoint(String),
    /// The segment file is missing or unreadable.
    SegmentUnreadable(String),
    /// The compressed stream is damaged or cut short (after the line of `after_seq`).
    Corrupt {
        /// The last seq read intact, if any.
        after_seq: Option<u64>,
        /// What zstd or the line reader said.
        detail: String,
    },
    /// A line is not a segment line.
    MalformedLine {
        /// The seq the line was expected to hold.
        expected_seq: u64,
        /// Why it is not.
        detail: String,
    },
    /// Lines are missing: the first absent seq and how many follow it.
    Missing {
        /// The first seq with no line.
        seq: u64,
        /// The last seq of that run of absent lines.
        through: u64,
    },
    /// A seq appears twice.
    Duplicate {
        /// The seq.
        seq: u64,
    },
    /// Every seq is there, but not in order.
    Reordered {
        /// The seq the position should hold.
        expected: u64,
        /// The seq found there.
        found: u64,
    },
    /// A line's seq lies outside the manifest's range.
    OutOfRange {
        /// The seq.
        seq: u64,
    },
    /// A record does not hash to its line's leaf hash.
    LeafMismatch {
        /// The seq.
        seq: u64,
    },
    /// The number of records differs from `archived_events`.
    ArchivedCount {
        /// What the manifest says.
        manifest: u64,
        /// What the segment holds.
        found: u64,
    },
    /// The leaves' MTH differs from `range_root`.
    RangeRootMismatch,
    /// The leaves and the boundary do not rebuild the checkpoint's root.
    CheckpointRootMismatch {
        /// The checkpoint's tree size.
        tree_size: u64,
        /// How it fails.
        detail: String,
    },
    /// The file's SHA-256 or size differs from the manifest's (or the decompressed size).
    ChecksumMismatch(String),
    /// A segment file with no manifest beside it.
    OrphanSegment,
}

impl Problem {
    /// The seq the problem is at, when it is at one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Corrupt { after_seq, .. } => after_seq.map(|s| s + 1),
            Self::MalformedLine { expected_seq, .. } => Some(*expected_seq),
            Self::Missing { seq, .. }
            | Self::Duplicate { seq }
            | Self::OutOfRange { seq }
            | Self::LeafMismatch { seq } => Some(*seq),
            Self::Reordered { expected, .. } => Some(*expected),
            _ => None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ManifestUnreadable(d) => write!(f, "manifest unreadable: {d}"),
            Self::ManifestInconsistent(d) => write!(f, "manifest inconsistent: {d}"),
            Self::BadCheckpoint(d) => write!(f, "checkpoint does not verify: {d}"),
            Self::SegmentUnreadable(d) => write!(f, "segment unreadable: {d}"),
            Self::Corrupt { after_seq, detail } => match after_seq {
                Some(seq) => write!(f, "segment corrupt or truncated after seq {seq}: {detail}"),
                None => write!(
                    f,
                    "segment corrupt or truncated before its first line: {detail}"
                ),
            },
            Self::MalformedLine {
                expected_seq,
                detail,
            } => write!(f, "seq {expected_seq}: malformed line: {detail}"),
            Self::Missing { seq, through } if seq == through => {
                write!(f, "seq {seq}: missing (a line was dropped)")
            }
            Self::Missing { seq, through } => {
                write!(
                    f,
                    "seqs {seq}..={through}: missing (lines were dropped or cut off)"
                )
            }
            Self::Duplicate { seq } => write!(f, "seq {seq}: appears twice"),
            Self::Reordered { expected, found } => write!(
                f,
                "seq {expected}: reordered (seq {found} stands where seq {expected} belongs)"
            ),
            Self::OutOfRange { seq } => {
                write!(f, "seq {seq}: outside the manifest's range")
            }
            Self::LeafMismatch { seq } => {
                write!(
                    f,
                    "seq {seq}: the record does not hash to its leaf hash (edited)"
                )
            }
            Self::ArchivedCount { manifest, found } => write!(
                f,
                "the segment holds {found} records, the manifest says archived_events = {manifest}"
            ),
            Self::RangeRootMismatch => write!(
                f,
                "the leaf hashes' MTH differs from the manifest's range_root"
            ),
            Self::CheckpointRootMismatch { tree_size, detail } => write!(
                f,
                "the leaves and the boundary do not rebuild the root of the signed checkpoint \
                 of size {tree_size}: {detail}"
            ),
            Self::ChecksumMismatch(d) => write!(f, "file differs from its manifest: {d}"),
            Self::OrphanSegment => write!(f, "segment file without a manifest"),
        }
    }
}

/// Whose key the checkpoint was checked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUsed {
    /// The key the caller gave: the segment is proved to be the log's.
    Pinned,
    /// Only the key in the manifest: the segment is self-consistent, nothing more.
    Manifest,
}

/// What was found for one segment.
#[derive(Clone, Debug)]
pub struct SegmentReport {
    /// The manifest (or, for an orphan, the segment file).
    pub path: PathBuf,
    /// The manifest's range, if it could be read.
    pub range: Option<(u64, u64)>,
    /// Lines read (seqs covered).
    pub seqs: u64,
    /// Records among them.
    pub records: u64,
    /// Compressed bytes read.
    pub segment_bytes: u64,
    /// Decompressed bytes read.
    pub ndjson_bytes: u64,
    /// Which key the checkpoint was checked with.
    pub key: KeyUsed,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// What was found for a directory of segments.
#[derive(Clone, Debug, Default)]
pub struct ArchiveReport {
    /// One per manifest and per orphan segment file, in seq order.
    pub segments: Vec<SegmentReport>,
    /// Seq ranges between the first and the last segment that no segment covers
    /// (informative: retention may archive ranges apart).
    pub gaps: Vec<(u64, u64)>,
}

impl ArchiveReport {
    /// Whether every segment verified.
    pub fn ok(&self) -> bool {
        !self.segments.is_empty() && self.segments.iter().all(|s| s.problem.is_none())
    }
}

/// Most threads verifying segments at once.
const MAX_VERIFY_THREADS: usize = 16;

/// `check` applied to each item (segments are independent) on every core, in their given
/// order.
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], check: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_VERIFY_THREADS)
        .min(items.len().max(1));
    let check = &check;
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    items
                        .iter()
                        .enumerate()
                        .skip(worker)
                        .step_by(threads)
                        .map(|(i, item)| (i, check(item)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a segment check does not panic"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Verifies every segment in `dir` (its `*.manifest.json`, and any `*.ndjson.zst` without
/// one). `key` pins the log's public key; without it each manifest's own key is used.
pub fn verify_dir(
    dir: &Path,
    key: Option<&CheckpointVerifier>,
) -> Result<ArchiveReport, ArchiveError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ArchiveError::io(format!("listing {}", dir.display()), e))?;
    let mut manifests = Vec::new();
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ArchiveError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(range) = name.strip_suffix(".manifest.json") {
            manifests.push((parse_range(range), entry.path()));
        } else if name.ends_with(".ndjson.zst") {
            segments.push(name);
        }
    }
    // Seq order; names that are no range sort last (and are reported by verify_segment).
    manifests.sort_by_key(|(range, path)| (range.unwrap_or((u64::MAX, u64::MAX)), path.clone()));
    let paths: Vec<PathBuf> = manifests.into_iter().map(|(_, path)| path).collect();
    let mut report = ArchiveReport {
        segments: in_parallel(&paths, |path| verify_segment(path, key)),
        ..ArchiveReport::default()
    };
    for name in segments {
        if !dir.join(manifest_name_of_segment(&name)).exists() {
            report
                .segments
                .push(orphan_report(dir.join(&name), &name, key));
        }
    }
    fill_gaps(&mut report);
    Ok(report)
}

/// The manifest's name for the segment file `name` (`<stem>.ndjson.zst`).
pub(crate) fn manifest_name_of_segment(name: &str) -> String {
    format!("{}.manifest.json", name.trim_end_matches(".ndjson.zst"))
}

/// The report of the segment file `name` (at `path`) that has no manifest.
pub(crate) fn orphan_report(
    path: PathBuf,
    name: &str,
    key: Option<&CheckpointVerifier>,
) -> SegmentReport {
    SegmentReport {
        path,
        range: parse_range(name.trim_end_matches(".ndjson.zst")),
        seqs: 0,
        records: 0,
        segment_bytes: 0,
        ndjson_bytes: 0,
        key: if key.is_some() {
            KeyUsed::Pinned
        } else {
            KeyUsed::Manifest
        },
        problem: Some(Problem::OrphanSegment),
    }
}

/// Records in `report` the seq ranges between its first and last segment that none covers.
pub(crate) fn fill_gaps(report: &mut ArchiveReport) {
    let mut covered: Vec<(u64, u64)> = report.segments.iter().filter_map(|s| s.range).collect();
    covered.sort_unstable();
    let mut through: Option<u64> = None;
    for (first, last) in covered {
        if let Some(t) = through
            && first > t + 1
        {
            report.gaps.push((t + 1, first - 1));
        }
        through = Some(through.map_or(last, |t| t.max(last)));
    }
}

/// The range a file name's stem names (`<first>-<last>[.<label>]`).
pub(crate) fn parse_range(stem: &str) -> Option<(u64, u64)> {
    parse_stem(stem).map(|(first, last, _)| (first, last))
}

/// One line of a segment, borrowed from the decompressed buffer: `record` is the exact
/// bytes between `"record":` and the closing brace.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Line<'a> {
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) leaf_hash: &'a str,
    #[serde(borrow, default)]
    pub(crate) record: Option<&'a RawValue>,
}

/// Counts and hashes what the decoder reads from the file.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

pub(crate) fn decode_hash(field: &str, text: &str) -> Result<Hash, String> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash)
        .map_err(|e| format!("{field} is not 64 hex digits: {e}"))?;
    Ok(hash)
}

/// Verifies the segment of the manifest at `manifest_path` (its segment file beside it).
pub fn verify_segment(manifest_path: &Path, key: Option<&CheckpointVerifier>) -> SegmentReport {
    verify_segment_leaves(manifest_path, key).0
}

/// Like [`verify_segment`], also handing back, when the segment verifies, its manifest and
/// the leaf hashes of its range in seq order: what a reader checks the file against again.
pub(crate) fn verify_segment_leaves(
    manifest_path: &Path,
    key: Option<&CheckpointVerifier>,
) -> (SegmentReport, Option<(Manifest, Vec<Hash>)>) {
    let mut report = SegmentReport {
        path: manifest_path.to_owned(),
        range: None,
        seqs: 0,
        records: 0,
        segment_bytes: 0,
        ndjson_bytes: 0,
        key: if key.is_some() {
            KeyUsed::Pinned
        } else {
            KeyUsed::Manifest
        },
        problem: None,
    };
    match check_segment(manifest_path, key, &mut report) {
        Ok(verified) => (report, Some(verified)),
        Err(problem) => {
            report.problem = Some(problem);
            (report, None)
        }
    }
}

pub(crate) fn read_manifest(path: &Path) -> Result<Manifest, Problem> {
    let unreadable = Problem::ManifestUnreadable;
    let file = File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| unreadable(e.to_string()))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(unreadable(format!(
            "larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(unreadable(format!(
            "format {:?} is not {FORMAT:?}",
            manifest.format
        )));
    }
    Ok(manifest)
}

/// The manifest's claims about itself, before any of them is trusted.
pub(crate) fn check_manifest(path: &Path, m: &Manifest) -> Result<(), Problem> {
    let inconsistent = Problem::ManifestInconsistent;
    let (first, last) = (m.first_seq, m.last_seq);
    if first == 0 || last < first {
        return Err(inconsistent(format!(
            "range {first}..={last} is empty or starts at 0"
        )));
    }
    if last - first >= MAX_SEGMENT_SEQS {
        return Err(inconsistent(format!(
            "range {first}..={last} is longer than {MAX_SEGMENT_SEQS} seqs"
        )));
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let stem = name.strip_suffix(".manifest.json").unwrap_or_default();
    let named = parse_stem(stem);
    if named.is_none_or(|(f, l, _)| (f, l) != (first, last))
        || m.segment_file != format!("{stem}.ndjson.zst")
    {
        return Err(inconsistent(format!(
            "the manifest claims seqs {first}..={last} but is named {name} and names the \
             segment {}",
            m.segment_file
        )));
    }
    if m.archived_events > last - first + 1 {
        return Err(inconsistent(format!(
            "archived_events = {} is more than the {} seqs of the range",
            m.archived_events,
            last - first + 1
        )));
    }
    if m.checkpoint.tree_size < last {
        return Err(inconsistent(format!(
            "the checkpoint's tree of size {} does not cover seq {last}",
            m.checkpoint.tree_size
        )));
    }
    Ok(())
}

/// Runs every check of one segment in the order of trust (see the module's doc), filling
/// in `report` as it learns the range and what the file holds; the first problem ends it.
/// A segment that verifies gives back its manifest and its leaves.
fn check_segment(
    manifest_path: &Path,
    key: Option<&CheckpointVerifier>,
    report: &mut SegmentReport,
) -> Result<(Manifest, Vec<Hash>), Problem> {
    let m = read_manifest(manifest_path)?;
    report.range = Some((m.first_seq, m.last_seq));
    check_manifest(manifest_path, &m)?;
    let (first, last) = (m.first_seq, m.last_seq);
    let (range_root, boundary) = decode_manifest_hashes(&m)?;
    // The checkpoint, before anything it is meant to vouch for.
    let checkpoint = verify_checkpoint(&m, key)?;
    let segment = read_segment(manifest_path, &m, report)?;
    check_line_order(first, last, &segment.lines.positions)?;
    check_record_hashes(&segment.lines)?;
    check_counts_and_range_root(&m, &segment.lines, &range_root)?;
    check_checkpoint_root(first, &segment.lines.leaves, &checkpoint, &boundary)?;
    check_digest_and_sizes(&m, &segment)?;
    Ok((m, segment.lines.leaves))
}

/// Decodes the manifest's hex hashes: its `range_root` and its `boundary`.
fn decode_manifest_hashes(m: &Manifest) -> Result<(Hash, Vec<Hash>), Problem> {
    let range_root =
        decode_hash("range_root", &m.range_root).map_err(Problem::ManifestUnreadable)?;
    let boundary = m
        .boundary
        .iter()
        .enumerate()
        .map(|(i, h)| decode_hash(&format!("boundary[{i}]"), h))
        .collect::<Result<Vec<Hash>, _>>()
        .map_err(Problem::ManifestUnreadable)?;
    Ok((range_root, boundary))
}

/// Verifies the manifest's checkpoint with the pinned `key` (or, without one, the
/// manifest's own key) and checks that it is of the manifest's log and tree size.
fn verify_checkpoint(
    m: &Manifest,
    key: Option<&CheckpointVerifier>,
) -> Result<Checkpoint, Problem> {
    let manifest_key;
    let verifier = match key {
        Some(key) => key,
        None => {
            manifest_key = CheckpointVerifier::from_vkey(&m.checkpoint.public_key)
                .map_err(|e| Problem::BadCheckpoint(format!("the manifest's public_key: {e}")))?;
            &manifest_key
        }
    };
    let checkpoint = verifier
        .verify(&m.checkpoint.note)
        .map_err(|e| Problem::BadCheckpoint(e.to_string()))?;
    if checkpoint.origin != m.origin {
        return Err(Problem::BadCheckpoint(format!(
            "it is for log {:?}, the manifest for {:?}",
            checkpoint.origin, m.origin
        )));
    }
    if checkpoint.size != m.checkpoint.tree_size {
        return Err(Problem::BadCheckpoint(format!(
            "it signs a tree of size {}, the manifest says {}",
            checkpoint.size, m.checkpoint.tree_size
        )));
    }
    Ok(checkpoint)
}

/// What the walk through a segment's lines collected.
struct SegmentLines {
    /// The seq of each line, in file order.
    positions: Vec<u64>,
    /// The leaf hash of each line, in file order.
    leaves: Vec<Hash>,
    /// The first seq whose record does not hash to its leaf hash.
    first_leaf_mismatch: Option<u64>,
    /// Lines that carry a record.
    records: u64,
    /// Decompressed bytes read.
    ndjson_bytes: u64,
}

/// A segment file read to its end: its lines, and the SHA-256 and size of the file itself.
struct SegmentRead {
    lines: SegmentLines,
    sha256: [u8; 32],
    segment_bytes: u64,
}

/// Reads the manifest's segment file in one pass through zstd, hashing the compressed
/// bytes on the way, and records in `report` what was read.
fn read_segment(
    manifest_path: &Path,
    m: &Manifest,
    report: &mut SegmentReport,
) -> Result<SegmentRead, Problem> {
    let segment_path = manifest_path.with_file_name(&m.segment_file);
    let file = File::open(&segment_path)
        .map_err(|e| Problem::SegmentUnreadable(format!("{}: {e}", segment_path.display())))?;
    let mut hashing = HashingReader {
        inner: file,
        sha: Sha256::new(),
        bytes: 0,
    };
    let lines = walk_lines(&mut hashing, m.first_seq, m.last_seq)?;
    report.seqs = lines.positions.len() as u64;
    report.records = lines.records;
    report.ndjson_bytes = lines.ndjson_bytes;
    // zstd stops at the end of its frames; hash whatever follows too (it is part of the file).
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| Problem::SegmentUnreadable(format!("{}: {e}", segment_path.display())))?;
    report.segment_bytes = hashing.bytes;
    Ok(SegmentRead {
        lines,
        sha256: hashing.sha.finalize().into(),
        segment_bytes: hashing.bytes,
    })
}

/// Decompresses `compressed` and takes in its lines one by one, stopping at the first
/// that cannot be read, is not a segment line, or cannot belong to `first..=last`.
fn walk_lines(compressed: impl Read, first: u64, last: u64) -> Result<SegmentLines, Problem> {
    let seqs = (last - first + 1) as usize;
    let mut walk = SegmentLines {
        positions: Vec::with_capacity(seqs.min(1 << 20)),
        leaves: Vec::with_capacity(seqs.min(1 << 20)),
        first_leaf_mismatch: None,
        records: 0,
        ndjson_bytes: 0,
    };
    let decoder =
        zstd::stream::read::Decoder::new(compressed).map_err(|e| read_failure(&e, None))?;
    let mut lines = BufReader::with_capacity(1 << 18, decoder);
    let mut buf = Vec::with_capacity(4096);
    loop {
        let last_read = walk.positions.last().copied();
        let expected_seq = last_read.map_or(first, |s| s + 1);
        let Some(n) = read_line(&mut lines, &mut buf, last_read, expected_seq)? else {
            break;
        };
        walk.ndjson_bytes += n as u64;
        let line: Line<'_> =
            serde_json::from_slice(&buf[..n - 1]).map_err(|e| Problem::MalformedLine {
                expected_seq,
                detail: e.to_string(),
            })?;
        walk.take_line(line, first, last)?;
    }
    Ok(walk)
}

/// What a failed read of a segment says: the system could not read the file (which may
/// be passing), or what it read does not decompress (which is in the file).
fn read_failure(e: &std::io::Error, after_seq: Option<u64>) -> Problem {
    match e.raw_os_error() {
        Some(_) => Problem::SegmentUnreadable(e.to_string()),
        None => Problem::Corrupt {
            after_seq,
            detail: e.to_string(),
        },
    }
}

/// Reads one line, newline included, into `buf`: its length, or `None` at the end of the
/// stream. A line longer than [`MAX_LINE_BYTES`] or cut off without a newline is a problem.
pub(crate) fn read_line(
    lines: &mut impl BufRead,
    buf: &mut Vec<u8>,
    last_read: Option<u64>,
    expected_seq: u64,
) -> Result<Option<usize>, Problem> {
    buf.clear();
    let n = lines
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| read_failure(&e, last_read))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n > MAX_LINE_BYTES {
            Problem::MalformedLine {
                expected_seq,
                detail: format!("longer than {MAX_LINE_BYTES} bytes"),
            }
        } else {
            Problem::Corrupt {
                after_seq: last_read,
                detail: "the last line is cut off (no newline)".into(),
            }
        });
    }
    Ok(Some(n))
}

impl SegmentLines {
    /// Takes in one parsed line of the range `first..=last`. A seq outside the range, one
    /// line more than the range has seqs, or a malformed leaf hash ends the walk; a record
    /// that does not hash to its leaf hash is only remembered, since the order of the lines
    /// is reported before it.
    fn take_line(&mut self, line: Line<'_>, first: u64, last: u64) -> Result<(), Problem> {
        if line.seq < first || line.seq > last {
            return Err(Problem::OutOfRange { seq: line.seq });
        }
        if self.positions.len() == (last - first + 1) as usize {
            // More lines than seqs, all in range: some seq is there twice.
            return Err(first_sequence_problem(
                first,
                last,
                &self.positions,
                Some(line.seq),
            ));
        }
        let leaf =
            decode_hash("leaf_hash", line.leaf_hash).map_err(|detail| Problem::MalformedLine {
                expected_seq: line.seq,
                detail,
            })?;
        if let Some(record) = line.record {
            self.records += 1;
            if self.first_leaf_mismatch.is_none() && leaf_hash(record.get().as_bytes()) != leaf {
                self.first_leaf_mismatch = Some(line.seq);
            }
        }
        self.positions.push(line.seq);
        self.leaves.push(leaf);
        Ok(())
    }
}

/// Checks that the lines hold every seq of `first..=last` once, in order.
fn check_line_order(first: u64, last: u64, positions: &[u64]) -> Result<(), Problem> {
    let seqs = (last - first + 1) as usize;
    if positions
        .iter()
        .enumerate()
        .any(|(i, &seq)| seq != first + i as u64)
        || positions.len() != seqs
    {
        return Err(first_sequence_problem(first, last, positions, None));
    }
    Ok(())
}

/// Reports the first record that does not hash to its line's leaf hash.
fn check_record_hashes(lines: &SegmentLines) -> Result<(), Problem> {
    match lines.first_leaf_mismatch {
        Some(seq) => Err(Problem::LeafMismatch { seq }),
        None => Ok(()),
    }
}

/// Checks the manifest's `archived_events` against the records read, and its
/// `range_root` against the MTH of the leaves.
fn check_counts_and_range_root(
    m: &Manifest,
    lines: &SegmentLines,
    range_root: &Hash,
) -> Result<(), Problem> {
    if lines.records != m.archived_events {
        return Err(Problem::ArchivedCount {
            manifest: m.archived_events,
            found: lines.records,
        });
    }
    if list_root(&lines.leaves) != *range_root {
        return Err(Problem::RangeRootMismatch);
    }
    Ok(())
}

/// Checks that the leaves of the range starting at `first` and the `boundary` rebuild the
/// signed checkpoint's root.
fn check_checkpoint_root(
    first: u64,
    leaves: &[Hash],
    checkpoint: &Checkpoint,
    boundary: &[Hash],
) -> Result<(), Problem> {
    match root_from_range(first - 1, leaves, checkpoint.size, boundary) {
        Some(root) if root == checkpoint.root => Ok(()),
        Some(_) => Err(Problem::CheckpointRootMismatch {
            tree_size: checkpoint.size,
            detail: "the root differs (a leaf hash or a boundary hash was changed)".into(),
        }),
        None => Err(Problem::CheckpointRootMismatch {
            tree_size: checkpoint.size,
            detail: format!(
                "the boundary's {} hashes do not fit the range in that tree",
                boundary.len()
            ),
        }),
    }
}

/// Checks the file's SHA-256, its size and its decompressed size against the manifest's:
/// the claims only the manifest vouches for, so checked last.
fn check_digest_and_sizes(m: &Manifest, segment: &SegmentRead) -> Result<(), Problem> {
    if hex::encode(segment.sha256) != m.segment_sha256 {
        return Err(Problem::ChecksumMismatch(format!(
            "SHA-256 {} but the manifest says {}",
            hex::encode(segment.sha256),
            m.segment_sha256
        )));
    }
    let ndjson_bytes = segment.lines.ndjson_bytes;
    if segment.segment_bytes != m.segment_bytes || ndjson_bytes != m.ndjson_bytes {
        return Err(Problem::ChecksumMismatch(format!(
            "{} bytes ({} decompressed) but the manifest says {} ({})",
            segment.segment_bytes, ndjson_bytes, m.segment_bytes, m.ndjson_bytes
        )));
    }
    Ok(())
}

/// Names what is wrong with the order of the lines read (`extra`: one more line, beyond
/// the range's count): a duplicate, a dropped line, or lines out of order.
fn first_sequence_problem(first: u64, last: u64, positions: &[u64], extra: Option<u64>) -> Problem {
    let seqs = (last - first + 1) as usize;
    let mut seen = vec![false; seqs];
    for &seq in positions.iter().chain(extra.iter()) {
        let slot = &mut seen[(seq - first) as usize];
        if *slot {
            return Problem::Duplicate { seq };
        }
        *slot = true;
    }
    if let Some(absent) = seen.iter().position(|s| !s) {
        let run = seen[absent..].iter().take_while(|s| !**s).count();
        let seq = first + absent as u64;
        return Problem::Missing {
            seq,
            through: seq + run as u64 - 1,
        };
    }
    let (i, &found) = positions
        .iter()
        .enumerate()
        .find(|&(i, &seq)| seq != first + i as u64)
        .expect("every seq is present once and not in order, so one is out of place");
    Problem::Reordered {
        expected: first + i as u64,
        found,
    }
}
