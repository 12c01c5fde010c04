//! Reading archived events back: the records of a segment that verified, in seq order, with
//! their seq and leaf hash.
//!
//! A segment is verified first ([`VerifiedSegment::open`], the verifier of
//! [`crate::verify_segment`]), keeping its leaf hashes; reading then takes a second pass
//! through the file and checks every line again against those verified leaves (its seq, its
//! leaf hash, its record's hash), so a file changed between the two passes yields an error,
//! never an unverified record. Holding the leaves costs 32 bytes a seq, bounded like the
//! verifier's by [`crate::MAX_SEGMENT_SEQS`].

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use sealtrail_core::merkle::{Hash, leaf_hash};
use sealtrail_core::query::EventColumns;
use sealtrail_core::time_format::parse_rfc3339_micros;
use sealtrail_core::{CheckpointVerifier, StoredEvent, StoredRecord};

use crate::ArchiveError;
use crate::format::Manifest;
use crate::verify::{
    Line, SegmentReport, decode_hash, parse_range, read_line, verify_segment, verify_segment_leaves,
};

/// Where a segment is, by its manifest's file name (not yet verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentLocation {
    /// First seq of the range its name claims.
    pub first_seq: u64,
    /// Last seq of that range (inclusive).
    pub last_seq: u64,
    /// Its `<first>-<last>.manifest.json`.
    pub manifest_path: PathBuf,
}

/// The segments in `dir`, by their manifests' names, in seq order. Names that are no range
/// are left out (`verify_dir` reports them).
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentLocation>, ArchiveError> {
    let listing = |e| ArchiveError::io(format!("listing {}", dir.display()), e);
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((first_seq, last_seq)) =
            name.strip_suffix(".manifest.json").and_then(parse_range)
        {
            segments.push(SegmentLocation {
                first_seq,
                last_seq,
                manifest_path: entry.path(),
            });
        }
    }
    segments.sort_by(|a, b| {
        (a.first_seq, a.last_seq, &a.manifest_path).cmp(&(
            b.first_seq,
            b.last_seq,
            &b.manifest_path,
        ))
    });
    Ok(segments)
}

/// An archived event: the stored event (verbatim record and leaf hash) and its parsed
/// columns.
#[derive(Clone, Debug)]
pub struct ArchivedEvent {
    /// As the store held it.
    pub stored: StoredEvent,
    /// Its record's fields that filters look at.
    pub record: StoredRecord,
}

impl ArchivedEvent {
    /// The columns an [`sealtrail_core::EventFilter`] is evaluated on.
    pub fn columns(&self) -> EventColumns<'_> {
        EventColumns {
            tenant_id: &self.record.tenant_id,
            occurred_at: self.stored.occurred_at,
            severity: self.record.severity,
            action: &self.record.action,
            user_id: self.record.user_id.as_deref(),
            resource_type: &self.record.resource_type,
            resource_id: self.record.resource_id.as_deref(),
        }
    }

    /// The event as the API returns it ([`StoredEvent::to_api_json`]).
    pub fn to_api_json(&self) -> Vec<u8> {
        self.stored.to_api_json()
    }
}

/// A segment that verified, ready to be read.
///
/// ```no_run
/// # fn main() -> Result<(), sealtrail_archive::ArchiveError> {
/// use std::path::Path;
/// let segment = sealtrail_archive::VerifiedSegment::open(Path::new("archive/1-300.manifest.json"), None)?;
/// for event in segment.events()? {
///     println!("{}", String::from_utf8_lossy(&event?.to_api_json()));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct VerifiedSegment {
    report: SegmentReport,
    manifest: Manifest,
    leaves: Vec<Hash>,
}

impl VerifiedSegment {
    /// Verifies the segment of the manifest at `manifest_path` (with the pinned `key`, or
    /// the manifest's own without one); [`ArchiveError::Refused`] names the verifier's
    /// finding if it does not verify.
    pub fn open(
        manifest_path: &Path,
        key: Option<&CheckpointVerifier>,
    ) -> Result<Self, ArchiveError> {
        match verify_segment_leaves(manifest_path, key) {
            (report, Some((manifest, leaves))) => Ok(Self {
                report,
                manifest,
                leaves,
            }),
            (report, None) => Err(refused(report)),
        }
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What the verifier found (no problem).
    pub fn report(&self) -> &SegmentReport {
        &self.report
    }

    /// Its archived events in seq order, each checked against the verified leaves.
    pub fn events(&self) -> Result<ArchivedEvents<'_>, ArchiveError> {
        ArchivedEvents::open(&self.report.path, &self.manifest, Some(&self.leaves))
    }

    /// The event at `seq`: `None` if the range holds only its leaf hash (its record was
    /// not archived here) or does not cover it.
    pub fn event_at(&self, seq: u64) -> Result<Option<ArchivedEvent>, ArchiveError> {
        if seq < self.manifest.first_seq || seq > self.manifest.last_seq {
            return Ok(None);
        }
        for event in self.events()? {
            let event = event?;
            if event.stored.seq >= seq {
                return Ok((event.stored.seq == seq).then_some(event));
            }
        }
        Ok(None)
    }
}

fn refused(report: SegmentReport) -> ArchiveError {
    ArchiveError::Refused {
        path: report.path,
        problem: report
            .problem
            .expect("a segment that did not verify has a problem"),
    }
}

/// Finds the seq of the event with id `id` (lowercase or not) by reading every segment in
/// `dir` in seq order, unverified: a hint to read through [`VerifiedSegment`], which checks
/// it. A segment that cannot be read is verified, and refused with the verifier's finding.
pub fn locate_event_id(
    dir: &Path,
    id: &str,
    key: Option<&CheckpointVerifier>,
) -> Result<Option<(SegmentLocation, u64)>, ArchiveError> {
    let id = id.to_ascii_lowercase();
    for segment in list_segments(dir)? {
        match scan_for_id(&segment.manifest_path, &id) {
            Ok(Some(seq)) => return Ok(Some((segment, seq))),
            Ok(None) => {}
            Err(unreadable) => {
                let report = verify_segment(&segment.manifest_path, key);
                return Err(match report.problem {
                    Some(_) => refused(report),
                    None => unreadable,
                });
            }
        }
    }
    Ok(None)
}

fn scan_for_id(manifest_path: &Path, id: &str) -> Result<Option<u64>, ArchiveError> {
    let manifest =
        crate::verify::read_manifest(manifest_path).map_err(|problem| ArchiveError::Refused {
            path: manifest_path.to_owned(),
            problem,
        })?;
    crate::verify::check_manifest(manifest_path, &manifest).map_err(|problem| {
        ArchiveError::Refused {
            path: manifest_path.to_owned(),
            problem,
        }
    })?;
    for event in ArchivedEvents::open(manifest_path, &manifest, None)? {
        let event = event?;
        if event.record.id.to_string() == id {
            return Ok(Some(event.stored.seq));
        }
    }
    Ok(None)
}

/// The archived events of a segment, read from its file in seq order (see the module's doc).
pub struct ArchivedEvents<'a> {
    segment_path: PathBuf,
    first_seq: u64,
    last_seq: u64,
    /// The verified leaves every line must match; `None` only for an unverified scan.
    leaves: Option<&'a [Hash]>,
    lines: BufReader<zstd::stream::read::Decoder<'static, BufReader<File>>>,
    buf: Vec<u8>,
    /// Lines read so far.
    read: u64,
    done: bool,
}

/// What one line of the segment gave.
enum Step {
    Event(Box<ArchivedEvent>),
    LeafOnly,
    End,
}

impl<'a> ArchivedEvents<'a> {
    fn open(
        manifest_path: &Path,
        manifest: &Manifest,
        leaves: Option<&'a [Hash]>,
    ) -> Result<Self, ArchiveError> {
        let segment_path = manifest_path.with_file_name(&manifest.segment_file);
        let file = File::open(&segment_path)
            .map_err(|e| ArchiveError::io(format!("opening {}", segment_path.display()), e))?;
        let decoder = zstd::stream::read::Decoder::new(file)
            .map_err(|e| ArchiveError::io(format!("reading {}", segment_path.display()), e))?;
        Ok(Self {
            segment_path,
            first_seq: manifest.first_seq,
            last_seq: manifest.last_seq,
            leaves,
            lines: BufReader::with_capacity(1 << 18, decoder),
            buf: Vec::with_capacity(4096),
            read: 0,
            done: false,
        })
    }

    fn changed(&self, detail: impl Into<String>) -> ArchiveError {
        ArchiveError::Changed {
            path: self.segment_path.clone(),
            detail: detail.into(),
        }
    }

    fn step(&mut self) -> Result<Step, ArchiveError> {
        let expected_seq = self.first_seq + self.read;
        let last_read = self.read.checked_sub(1).map(|i| self.first_seq + i);
        let Some(n) = read_line(&mut self.lines, &mut self.buf, last_read, expected_seq)
            .map_err(|p| self.changed(p.to_string()))?
        else {
            let seqs = self.last_seq - self.first_seq + 1;
            if self.leaves.is_some() && self.read != seqs {
                return Err(self.changed(format!("it now ends before seq {expected_seq}")));
            }
            return Ok(Step::End);
        };
        let line: Line<'_> = serde_json::from_slice(&self.buf[..n - 1])
            .map_err(|e| self.changed(format!("seq {expected_seq}: malformed line: {e}")))?;
        if line.seq != expected_seq || line.seq > self.last_seq {
            return Err(self.changed(format!(
                "seq {} stands where seq {expected_seq} belongs",
                line.seq
            )));
        }
        let leaf = decode_hash("leaf_hash", line.leaf_hash)
            .map_err(|e| self.changed(format!("seq {expected_seq}: {e}")))?;
        if let Some(leaves) = self.leaves
            && leaves.get(self.read as usize) != Some(&leaf)
        {
            return Err(self.changed(format!("seq {expected_seq}: its leaf hash")));
        }
        self.read += 1;
        let Some(record) = line.record else {
            return Ok(Step::LeafOnly);
        };
        let record = record.get().as_bytes();
        if leaf_hash(record) != leaf {
            return Err(self.changed(format!(
                "seq {expected_seq}: the record does not hash to its leaf hash"
            )));
        }
        let parsed = StoredRecord::parse(record).map_err(|e| ArchiveError::UnreadableRecord {
            path: self.segment_path.clone(),
            seq: expected_seq,
            detail: e,
        })?;
        let occurred_at = parse_rfc3339_micros(&parsed.occurred_at).map_err(|e| {
            ArchiveError::UnreadableRecord {
                path: self.segment_path.clone(),
                seq: expected_seq,
                detail: format!("occurred_at: {e}"),
            }
        })?;
        if parsed.seq != expected_seq {
            return Err(ArchiveError::UnreadableRecord {
                path: self.segment_path.clone(),
                seq: expected_seq,
                detail: format!("the record says seq {}", parsed.seq),
            });
        }
        Ok(Step::Event(Box::new(ArchivedEvent {
            stored: StoredEvent {
                seq: expected_seq,
                tenant_id: parsed.tenant_id.clone(),
                occurred_at,
                leaf_hash: leaf,
                record: record.to_vec(),
            },
            record: parsed,
        })))
    }
}

impl Iterator for ArchivedEvents<'_> {
    type Item = Result<ArchivedEvent, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.step() {
                Ok(Step::Event(event)) => return Some(Ok(*event)),
                Ok(Step::LeafOnly) => {}
                Ok(Step::End) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}
