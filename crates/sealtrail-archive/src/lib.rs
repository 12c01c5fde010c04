//! Archive segments: events moved out of the live store into compressed files that can be
//! verified offline, with no server and no database, against the log's signed checkpoints.
//!
//! A **segment** covers a contiguous seq range `first..=last` of one log. Retention policies
//! archive some events of a range and not others (per tenant, per severity), so a segment
//! holds, for *every* seq of its range, the leaf hash, and for the events archived in it the
//! verbatim canonical record as well. Two files per segment, named by the range:
//!
//! (A range archived more than once — retention runs on different days archive different
//! events of it — has one segment per run, named `<first>-<last>.<label>.…`.)
//!
//! - `<first>-<last>.ndjson.zst`: zstd-compressed NDJSON (one frame, with zstd's content
//!   checksum), one line per seq in ascending order:
//!
//!   ```text
//!   {"seq":41,"leaf_hash":"6e34…"}                                  a leaf only
//!   {"seq":42,"leaf_hash":"9a1f…","record":{"action":…,"seq":42,…}} an archived event
//!   ```
//!
//!   `record` is the stored record's bytes spliced in verbatim, never re-serialised: the leaf
//!   hash is `SHA-256(0x00 || record)` over exactly those bytes, and the verifier reads them
//!   back byte for byte (serde_json's `RawValue`).
//!
//! - `<first>-<last>.manifest.json` ([`Manifest`]): the format, the log's origin, the range,
//!   how many records it archives, `range_root` = MTH (RFC 9162) of the range's leaf hashes
//!   taken as a list, the compressed file's SHA-256 and size, and the proof that ties the
//!   range to the log: a signed checkpoint (C2SP signed note) of a tree of size `n ≥ last`,
//!   the log's public key (vkey), and `boundary`, the hashes of the maximal complete subtrees
//!   of the size-`n` tree outside the range in the order a recursive MTH computation meets
//!   them ([`sealtrail_core::merkle::range_proof`]).
//!
//! The manifest is not signed; it does not need to be. What makes a segment trustworthy is
//! that its leaves and the boundary rebuild the root of a checkpoint whose signature verifies
//! with the log's key: an edited, dropped, reordered or inserted line, or an edited boundary,
//! loses that root. The SHA-256 and sizes catch accidental damage (and any change to the
//! file) cheaply; `range_root` lets a segment's leaves be compared without re-reading them.
//! Only a key given by the verifier (`--public-key`) proves the checkpoint is the log's own:
//! the key in the manifest can have been replaced together with everything else.
//!
//! [`SegmentWriter`] writes a segment from what the caller hands it (seq, leaf hash, record
//! bytes; then the checkpoint note and the boundary) and refuses to finish one that would not
//! verify. [`verify_dir`] and [`verify_segment`] check segments and report the first
//! problem of each ([`Problem`]). [`VerifiedSegment`] reads the archived events of a segment
//! back, only once it has verified, checking each line again as it is read
//! ([`list_segments`] and [`locate_event_id`] find the segment). Reading from a store is the
//! caller's job: this crate has no database code, so the CLI (and later retention) drive it
//! from a `LogReader`.
//!
//! Segments live in a directory or in a bucket of an S3-compatible object store
//! ([`ArchiveLocation`]: `DIR` or `s3://bucket[/prefix]`, settings from the standard AWS
//! variables). A location writes a segment through a local staging copy and publishes it
//! (segment, then manifest; idempotently, optionally under S3 Object Lock), lists, opens
//! and verifies its segments; objects are fetched to a temporary directory and checked by
//! the same code as a directory's.
//!
//! ```no_run
//! # fn main() -> Result<(), sealtrail_archive::ArchiveError> {
//! use sealtrail_archive::ArchiveLocation;
//! let location = ArchiveLocation::parse("s3://audit-archive/log-a")?;
//! for segment in location.list_segments()? {
//!     let opened = location.open_segment(&segment, None)?; // verified
//!     for event in opened.events()? {
//!         println!("{}", String::from_utf8_lossy(&event?.to_api_json()));
//!     }
//! }
//! let report = location.verify(None)?;
//! assert!(report.ok());
//! # Ok(()) }
//! ```

mod error;
mod format;
mod location;
mod publish;
mod read;
pub mod s3;
mod verify;
pub mod witness;
mod write;

pub use error::ArchiveError;
pub use format::{
    FORMAT, MAX_LABEL_CHARS, MAX_LINE_BYTES, MAX_MANIFEST_BYTES, MAX_SEGMENT_SEQS, Manifest,
    ManifestCheckpoint, manifest_file_name, parse_stem, segment_file_name, segment_stem,
    valid_label,
};
pub use location::{ArchiveLocation, LocatedSegment, OpenedSegment};
pub use publish::{LocationWriter, Published};
pub use read::{
    ArchivedEvent, ArchivedEvents, SegmentLocation, VerifiedSegment, list_segments, locate_event_id,
};
pub use verify::{ArchiveReport, KeyUsed, Problem, SegmentReport, verify_dir, verify_segment};
pub use witness::{PushOutcome, WitnessLocation};
pub use write::{DEFAULT_ZSTD_LEVEL, SegmentEntry, SegmentSpec, SegmentWriter};
