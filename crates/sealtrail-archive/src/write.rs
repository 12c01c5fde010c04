//! Writing one segment: lines streamed through zstd into a `.partial` file, then the
//! checks that it will verify, then the renames that publish it (segment first, manifest
//! last: a segment without its manifest was never finished).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sealtrail_core::merkle::{Hash, leaf_hash, list_root, root_from_range};
use sealtrail_core::time_format::{format_micros, now_micros};
use sealtrail_core::{Checkpoint, CheckpointVerifier};
use sha2::{Digest, Sha256};

use crate::ArchiveError;
use crate::format::{
    FORMAT, MAX_LABEL_CHARS, MAX_LINE_BYTES, MAX_SEGMENT_SEQS, Manifest, ManifestCheckpoint,
    segment_stem, valid_label,
};

/// zstd's level for segments unless the caller asks for another: its default, which
/// compresses audit NDJSON several times over at a few hundred MB/s on one core.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// What segment to write.
#[derive(Clone, Debug)]
pub struct SegmentSpec {
    /// The log's origin.
    pub origin: String,
    /// First seq of the range.
    pub first_seq: u64,
    /// Last seq of the range (inclusive).
    pub last_seq: u64,
    /// Recorded in the manifest when only this tenant's events are archived.
    pub only_tenant: Option<String>,
    /// zstd compression level.
    pub zstd_level: i32,
    /// Names the segment `<first>-<last>.<label>` ([`segment_stem`]): a range archived
    /// more than once (by retention runs) has one segment per run.
    pub label: Option<String>,
}

impl SegmentSpec {
    /// The stem of the segment's file names.
    pub fn stem(&self) -> String {
        segment_stem(self.first_seq, self.last_seq, self.label.as_deref())
    }

    fn segment_file(&self) -> String {
        format!("{}.ndjson.zst", self.stem())
    }

    fn manifest_file(&self) -> String {
        format!("{}.manifest.json", self.stem())
    }
}

/// One seq of the range as the caller hands it over.
#[derive(Clone, Copy, Debug)]
pub struct SegmentEntry<'a> {
    /// Its seq.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The verbatim canonical record when the event is archived in this segment.
    pub record: Option<&'a [u8]>,
}

/// Counts and hashes what the encoder writes, so the file's SHA-256 costs no second read.
struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one segment. Push every seq of the range in order, then [`finish`](Self::finish).
/// Dropped unfinished, it removes its partial file.
pub struct SegmentWriter {
    dir: PathBuf,
    spec: SegmentSpec,
    partial: PathBuf,
    encoder: Option<zstd::stream::write::Encoder<'static, HashingWriter<BufWriter<File>>>>,
    next_seq: u64,
    leaves: Vec<Hash>,
    archived: u64,
    ndjson_bytes: u64,
    line: Vec<u8>,
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

impl SegmentWriter {
    /// Starts the segment `spec` in `dir` (created if needed). Refuses a range that is
    /// empty, starts at 0, is longer than [`MAX_SEGMENT_SEQS`], or is already archived there.
    pub fn create(dir: &Path, spec: SegmentSpec) -> Result<Self, ArchiveError> {
        let SegmentSpec {
            first_seq,
            last_seq,
            ..
        } = spec;
        if first_seq == 0 || last_seq < first_seq {
            return Err(ArchiveError::Invalid(format!(
                "no segment for seqs {first_seq}..={last_seq}: seqs start at 1 and the range \
                 must not be empty"
            )));
        }
        if let Some(label) = spec.label.as_deref()
            && !valid_label(label)
        {
            return Err(ArchiveError::Invalid(format!(
                "segment label {label:?}: use 1 to {MAX_LABEL_CHARS} letters, digits, _ or -"
            )));
        }
        let seqs = last_seq - first_seq + 1;
        if seqs > MAX_SEGMENT_SEQS {
            return Err(ArchiveError::Invalid(format!(
                "seqs {first_seq}..={last_seq} are {seqs} seqs; a segment covers at most \
                 {MAX_SEGMENT_SEQS}: split the range"
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| ArchiveError::io(format!("creating {}", dir.display()), e))?;
        for name in [spec.segment_file(), spec.manifest_file()] {
            if dir.join(&name).exists() {
                return Err(ArchiveError::Invalid(format!(
                    "{} already exists: seqs {first_seq}..={last_seq} are archived there",
                    dir.join(name).display()
                )));
            }
        }
        let partial = partial_path(&dir.join(spec.segment_file()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| ArchiveError::io(format!("creating {}", partial.display()), e))?;
        let sink = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            sha: Sha256::new(),
            bytes: 0,
        };
        let zstd_error =
            |e| ArchiveError::io(format!("starting zstd for {}", partial.display()), e);
        let mut encoder =
            zstd::stream::write::Encoder::new(sink, spec.zstd_level).map_err(zstd_error)?;
        encoder.include_checksum(true).map_err(zstd_error)?;
        Ok(Self {
            dir: dir.to_owned(),
            partial,
            encoder: Some(encoder),
            next_seq: first_seq,
            leaves: Vec::with_capacity(seqs.min(1 << 20) as usize),
            archived: 0,
            ndjson_bytes: 0,
            line: Vec::with_capacity(4096),
            spec,
        })
    }

    /// Appends the next seq of the range. Checks the seq is the next one and that a record
    /// hashes to its leaf hash, so no segment can hold what the log did not.
    pub fn push(&mut self, entry: SegmentEntry<'_>) -> Result<(), ArchiveError> {
        if entry.seq != self.next_seq || entry.seq > self.spec.last_seq {
            return Err(ArchiveError::Invalid(format!(
                "seq {} handed to the segment of {}..={} where seq {} was due",
                entry.seq, self.spec.first_seq, self.spec.last_seq, self.next_seq
            )));
        }
        self.line.clear();
        self.line.extend_from_slice(b"{\"seq\":");
        self.line
            .extend_from_slice(entry.seq.to_string().as_bytes());
        self.line.extend_from_slice(b",\"leaf_hash\":\"");
        self.line
            .extend_from_slice(hex::encode(entry.leaf_hash).as_bytes());
        self.line.push(b'"');
        if let Some(record) = entry.record {
            if leaf_hash(record) != entry.leaf_hash {
                return Err(ArchiveError::Invalid(format!(
                    "the record of seq {} does not hash to its leaf hash",
                    entry.seq
                )));
            }
            // Canonical JSON is an object and escapes every newline; anything else would
            // break the line structure the verifier relies on.
            if record.first() != Some(&b'{') || record.contains(&b'\n') {
                return Err(ArchiveError::Invalid(format!(
                    "the record of seq {} is not a one-line JSON object",
                    entry.seq
                )));
            }
            self.line.extend_from_slice(b",\"record\":");
            self.line.extend_from_slice(record);
            self.archived += 1;
        }
        self.line.extend_from_slice(b"}\n");
        if self.line.len() > MAX_LINE_BYTES {
            return Err(ArchiveError::Invalid(format!(
                "the line of seq {} is {} bytes; readers accept at most {MAX_LINE_BYTES}",
                entry.seq,
                self.line.len()
            )));
        }
        self.encoder
            .as_mut()
            .expect("the encoder is only taken by finish, which consumes the writer")
            .write_all(&self.line)
            .map_err(|e| ArchiveError::io(format!("writing {}", self.partial.display()), e))?;
        self.ndjson_bytes += self.line.len() as u64;
        self.leaves.push(entry.leaf_hash);
        self.next_seq += 1;
        Ok(())
    }

    /// Ends the segment: checks that every seq was pushed, that `note` is a checkpoint of
    /// this log signed with `verifier`'s key covering the range, and that the pushed leaves
    /// and `boundary` rebuild its root; then syncs and publishes both files.
    pub fn finish(
        mut self,
        note: &str,
        verifier: &CheckpointVerifier,
        boundary: &[Hash],
    ) -> Result<Manifest, ArchiveError> {
        self.check_complete()?;
        let checkpoint = self.check_checkpoint(note, verifier, boundary)?;
        let segment = self.publish_segment()?;
        let manifest = self.manifest(segment, &checkpoint, note, verifier, boundary);
        self.publish_manifest(&manifest)?;
        Ok(manifest)
    }

    /// Checks that every seq of the range was pushed.
    fn check_complete(&self) -> Result<(), ArchiveError> {
        let (first, last) = (self.spec.first_seq, self.spec.last_seq);
        if self.next_seq != last + 1 {
            return Err(ArchiveError::Invalid(format!(
                "the segment of {first}..={last} ends at seq {}",
                self.next_seq - 1
            )));
        }
        Ok(())
    }

    /// Verifies `note` with `verifier` and checks that it is this log's, covers the range,
    /// and has the root the pushed leaves and `boundary` rebuild.
    fn check_checkpoint(
        &self,
        note: &str,
        verifier: &CheckpointVerifier,
        boundary: &[Hash],
    ) -> Result<Checkpoint, ArchiveError> {
        let (first, last) = (self.spec.first_seq, self.spec.last_seq);
        let checkpoint = verifier
            .verify(note)
            .map_err(|e| ArchiveError::Invalid(format!("the checkpoint: {e}")))?;
        if checkpoint.origin != self.spec.origin {
            return Err(ArchiveError::Invalid(format!(
                "the checkpoint is for log {:?}, the segment for {:?}",
                checkpoint.origin, self.spec.origin
            )));
        }
        if checkpoint.size < last {
            return Err(ArchiveError::Invalid(format!(
                "the checkpoint's tree of size {} does not cover seq {last}",
                checkpoint.size
            )));
        }
        if root_from_range(first - 1, &self.leaves, checkpoint.size, boundary)
            != Some(checkpoint.root)
        {
            return Err(ArchiveError::Invalid(format!(
                "the leaves of {first}..={last} and the boundary do not rebuild the root of \
                 the checkpoint of size {}: the store and its checkpoint disagree, run \
                 `sealtrail verify`",
                checkpoint.size
            )));
        }
        Ok(checkpoint)
    }

    /// Ends the zstd stream, syncs the partial file and renames it to the segment's name.
    /// From here on the writer no longer removes the partial file when dropped.
    fn publish_segment(&mut self) -> Result<PublishedSegment, ArchiveError> {
        let encoder = self.encoder.take().expect("the encoder is only taken here");
        let context = |what: &str| format!("{what} {}", self.partial.display());
        let sink = encoder
            .finish()
            .map_err(|e| ArchiveError::io(context("finishing"), e))?;
        let sha256: [u8; 32] = sink.sha.finalize().into();
        let file = sink
            .inner
            .into_inner()
            .map_err(|e| ArchiveError::io(context("writing"), e.into_error()))?;
        file.sync_all()
            .map_err(|e| ArchiveError::io(context("syncing"), e))?;
        drop(file);
        let file_name = self.spec.segment_file();
        std::fs::rename(&self.partial, self.dir.join(&file_name))
            .map_err(|e| ArchiveError::io(context("renaming"), e))?;
        Ok(PublishedSegment {
            file_name,
            sha256,
            bytes: sink.bytes,
        })
    }

    /// The manifest of the published `segment`, proved against `checkpoint`.
    fn manifest(
        &self,
        segment: PublishedSegment,
        checkpoint: &Checkpoint,
        note: &str,
        verifier: &CheckpointVerifier,
        boundary: &[Hash],
    ) -> Manifest {
        Manifest {
            format: FORMAT.to_owned(),
            origin: self.spec.origin.clone(),
            first_seq: self.spec.first_seq,
            last_seq: self.spec.last_seq,
            archived_events: self.archived,
            only_tenant: self.spec.only_tenant.clone(),
            range_root: hex::encode(list_root(&self.leaves)),
            segment_file: segment.file_name,
            segment_sha256: hex::encode(segment.sha256),
            segment_bytes: segment.bytes,
            ndjson_bytes: self.ndjson_bytes,
            checkpoint: ManifestCheckpoint {
                tree_size: checkpoint.size,
                note: note.to_owned(),
                // The key that signed this note, which after a rotation need not be the
                // log's current one (a manifest is checked with its key alone).
                public_key: verifier
                    .verify_signer(note)
                    .map(|(_, vkey)| vkey)
                    .unwrap_or_else(|_| verifier.vkey()),
            },
            boundary: boundary.iter().map(hex::encode).collect(),
            created_at: format_micros(now_micros()),
        }
    }

    /// Writes `manifest` beside its segment through a synced partial file and a rename,
    /// then syncs the directory so both renames are durable. The manifest comes last: a
    /// segment without one was never finished.
    fn publish_manifest(&self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let manifest_path = self.dir.join(self.spec.manifest_file());
        let partial_manifest = partial_path(&manifest_path);
        let mut text = serde_json::to_vec_pretty(manifest)
            .expect("a manifest is plain data and always serialises");
        text.push(b'\n');
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&partial_manifest)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&partial_manifest, &manifest_path)?;
            // The renames are durable once the directory is.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| ArchiveError::io(format!("writing {}", manifest_path.display()), e))
    }
}

/// A segment file renamed into place: its name, SHA-256 and size, for its manifest.
struct PublishedSegment {
    file_name: String,
    sha256: [u8; 32],
    bytes: u64,
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if self.encoder.is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
