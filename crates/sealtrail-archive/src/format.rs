//! The on-disk format: file names, the manifest, and the limits a reader enforces.

use serde::{Deserialize, Serialize};

/// The manifest's `format` value for this version of the format.
pub const FORMAT: &str = "sealtrail-archive-segment/1";

/// Most seqs one segment may cover. The verifier holds every leaf hash of a segment (32
/// bytes each) to rebuild the checkpoint root: 2^22 seqs is 128 MiB at most.
pub const MAX_SEGMENT_SEQS: u64 = 1 << 22;

/// Longest line a reader accepts, in bytes (decompressed). A record is bounded by the
/// event limits (64 KiB of details by default, a few KiB of other fields); this leaves room
/// for raised limits while bounding what a damaged or hostile file can make a reader buffer.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// Largest manifest a reader accepts, in bytes (it is a few KiB: the boundary holds at most
/// two hashes per tree level).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Longest label a segment name may carry.
pub const MAX_LABEL_CHARS: usize = 64;

/// `<first>-<last>.ndjson.zst`: the segment file of a range.
pub fn segment_file_name(first_seq: u64, last_seq: u64) -> String {
    format!("{}.ndjson.zst", segment_stem(first_seq, last_seq, None))
}

/// `<first>-<last>.manifest.json`: the manifest of a range.
pub fn manifest_file_name(first_seq: u64, last_seq: u64) -> String {
    format!("{}.manifest.json", segment_stem(first_seq, last_seq, None))
}

/// What both of a segment's file names start with: `<first>-<last>`, or
/// `<first>-<last>.<label>` when one range is archived more than once (retention archives
/// the events of a range that reach their archive age on different days, each run into a
/// segment of its own, labelled by the run).
pub fn segment_stem(first_seq: u64, last_seq: u64, label: Option<&str>) -> String {
    match label {
        Some(label) => format!("{first_seq}-{last_seq}.{label}"),
        None => format!("{first_seq}-{last_seq}"),
    }
}

/// Whether `label` may label a segment: 1 to [`MAX_LABEL_CHARS`] ASCII letters, digits,
/// `_` or `-` (no dot, so a name splits back into range and label).
pub fn valid_label(label: &str) -> bool {
    (1..=MAX_LABEL_CHARS).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The range and label of a stem ([`segment_stem`]), if it is one.
pub fn parse_stem(stem: &str) -> Option<(u64, u64, Option<&str>)> {
    let (range, label) = match stem.split_once('.') {
        Some((range, label)) => (range, Some(label)),
        None => (stem, None),
    };
    if label.is_some_and(|l| !valid_label(l)) {
        return None;
    }
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?, label))
}

/// A segment's manifest (`<first>-<last>.manifest.json`). Hashes are lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The log's origin (the checkpoint's first line).
    pub origin: String,
    /// First seq of the range.
    pub first_seq: u64,
    /// Last seq of the range (inclusive).
    pub last_seq: u64,
    /// How many lines carry a record (the others are leaf hashes only).
    pub archived_events: u64,
    /// When only one tenant's events were archived: that tenant. Informative; the records'
    /// authenticity rests on their leaf hashes, not on this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_tenant: Option<String>,
    /// MTH of the range's leaf hashes taken as a list (RFC 9162 §2.1.1).
    pub range_root: String,
    /// The segment file's name.
    pub segment_file: String,
    /// SHA-256 of the segment file as stored (compressed).
    pub segment_sha256: String,
    /// Size of the segment file, in bytes.
    pub segment_bytes: u64,
    /// Size of the NDJSON it decompresses to, in bytes.
    pub ndjson_bytes: u64,
    /// The signed checkpoint the range is proved against.
    pub checkpoint: ManifestCheckpoint,
    /// The range proof: the hashes of the maximal complete subtrees of the checkpoint's tree
    /// outside the range, in the order a recursive MTH computation meets them.
    pub boundary: Vec<String>,
    /// When the segment was written (RFC 3339, UTC). Informative.
    pub created_at: String,
}

/// The checkpoint part of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestCheckpoint {
    /// Its tree size (also in the note).
    pub tree_size: u64,
    /// The complete C2SP signed note.
    pub note: String,
    /// The log's verifier key (`name+keyid+base64`) as the writer knew it. Checking against
    /// it only shows the segment is self-consistent; pin the key to show it is the log's.
    pub public_key: String,
}
