//! Writing a segment to an [`ArchiveLocation`]: the [`SegmentWriter`] writes it into a
//! staging directory (for a directory location, a `.staging-*` directory inside it, so
//! publishing is a link on the same file system; for S3 a temporary directory), then it is
//! published — the segment file first, the manifest LAST, as in a directory: a segment
//! without a manifest was never finished — and the staging copy is removed.
//!
//! Publishing is idempotent, so a run that crashed half-way can simply run again:
//!
//! - a segment file already there with the same SHA-256 and size is kept; one that differs
//!   is refused (nothing is ever replaced);
//! - a manifest already there describing the same segment (same range, origin, records,
//!   range root, file SHA-256 and sizes; its checkpoint and time may differ, both prove
//!   the same leaves) is kept and returned; one describing another is refused.
//!
//! On S3 each PUT carries `Content-MD5` (the store checks the body), the SHA-256 as
//! `x-amz-meta-sha256`, `If-None-Match: *` (no silent overwrite of a concurrent writer's
//! object, where the store supports it) and, with Object Lock, COMPLIANCE retention; a HEAD
//! afterwards checks the stored size, SHA-256 and (for a plain MD5 ETag) the ETag.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::Digest as _;
use sealtrail_core::CheckpointVerifier;
use sealtrail_core::merkle::Hash;
use sealtrail_core::time_format::{format_micros, now_micros};

use crate::format::{MAX_MANIFEST_BYTES, Manifest};
use crate::location::{ArchiveLocation, Place};
use crate::s3::{ObjectInfo, PutOptions, PutOutcome, S3Bucket};
use crate::{ArchiveError, SegmentEntry, SegmentSpec, SegmentWriter};

/// A segment being written to a location. Push every seq of the range in order, then
/// [`finish`](Self::finish). Dropped unfinished, it leaves nothing behind.
pub struct LocationWriter<'a> {
    location: &'a ArchiveLocation,
    writer: SegmentWriter,
    staging: tempfile::TempDir,
}

/// A segment published at a location.
#[derive(Clone, Debug)]
pub struct Published {
    /// The manifest at the location: this run's, or the equal one found there.
    pub manifest: Manifest,
    /// The segment file's path or `s3://` URL.
    pub segment: String,
    /// The manifest's path or `s3://` URL.
    pub manifest_at: String,
    /// Whether the segment was there already (a rerun): nothing new was written.
    pub already_there: bool,
}

impl ArchiveLocation {
    /// Starts writing the segment `spec` here ([`SegmentWriter::create`]'s checks), staged
    /// locally until [`LocationWriter::finish`] publishes it.
    pub fn create_segment(&self, spec: SegmentSpec) -> Result<LocationWriter<'_>, ArchiveError> {
        let staging = match &self.place {
            Place::Dir(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ArchiveError::io(format!("creating {}", dir.display()), e))?;
                tempfile::Builder::new()
                    .prefix(".staging-")
                    .tempdir_in(dir)
                    .map_err(|e| ArchiveError::io(format!("staging in {}", dir.display()), e))?
            }
            Place::S3 { .. } => tempfile::Builder::new()
                .prefix("sealtrail-archive-")
                .tempdir()
                .map_err(|e| ArchiveError::io("creating a staging directory", e))?,
        };
        let writer = SegmentWriter::create(staging.path(), spec)?;
        Ok(LocationWriter {
            location: self,
            writer,
            staging,
        })
    }
}

impl LocationWriter<'_> {
    /// [`SegmentWriter::push`].
    pub fn push(&mut self, entry: SegmentEntry<'_>) -> Result<(), ArchiveError> {
        self.writer.push(entry)
    }

    /// Finishes the segment ([`SegmentWriter::finish`]: refuses one that would not
    /// verify), publishes it (segment, then manifest) and removes the staging copy.
    pub fn finish(
        self,
        note: &str,
        verifier: &CheckpointVerifier,
        boundary: &[Hash],
    ) -> Result<Published, ArchiveError> {
        let ours = self.writer.finish(note, verifier, boundary)?;
        let staging = self.staging.path();
        let location = self.location;
        // Beside its segment, with the same stem (labels included).
        let manifest_name = format!(
            "{}.manifest.json",
            ours.segment_file.trim_end_matches(".ndjson.zst")
        );
        let (segment_new, manifest) = match &location.place {
            Place::Dir(dir) => (
                publish_dir_segment(dir, staging, &ours)?,
                publish_dir_manifest(dir, staging, &manifest_name, &ours)?,
            ),
            Place::S3 { bucket, prefix } => {
                let retain_until = location.object_lock_days.map(retain_until);
                let publisher = S3Publisher {
                    bucket,
                    prefix,
                    retain_until,
                };
                (
                    publisher.segment(staging, &ours)?,
                    publisher.manifest(staging, &manifest_name, &ours)?,
                )
            }
        };
        let already_there = !segment_new && manifest.is_some();
        Ok(Published {
            segment: location.shown(&ours.segment_file),
            manifest_at: location.shown(&manifest_name),
            manifest: manifest.unwrap_or(ours),
            already_there,
        })
    }
}

/// Whether two manifests describe the same segment (their checkpoints, boundaries and
/// times may differ: each proves the same leaves).
fn same_segment(a: &Manifest, b: &Manifest) -> bool {
    (
        &a.format,
        &a.origin,
        a.first_seq,
        a.last_seq,
        a.archived_events,
        &a.only_tenant,
        &a.range_root,
        &a.segment_file,
        &a.segment_sha256,
        a.segment_bytes,
        a.ndjson_bytes,
    ) == (
        &b.format,
        &b.origin,
        b.first_seq,
        b.last_seq,
        b.archived_events,
        &b.only_tenant,
        &b.range_root,
        &b.segment_file,
        &b.segment_sha256,
        b.segment_bytes,
        b.ndjson_bytes,
    )
}

fn differs(shown: &str, what: String) -> ArchiveError {
    ArchiveError::Invalid(format!(
        "{shown} already exists and differs from this segment ({what}); nothing is replaced: \
         verify the archive, or write this range elsewhere"
    ))
}

/// `retain_until` for `days` days from now, to the second (RFC 3339, UTC).
fn retain_until(days: u32) -> String {
    let micros = now_micros() + i64::from(days) * 86_400 * 1_000_000;
    let text = format_micros(micros);
    format!("{}Z", &text[..19])
}

/// SHA-256 and MD5 of the file at `path`, and its size.
fn digests(path: &Path) -> Result<([u8; 32], [u8; 16], u64), ArchiveError> {
    let mut file =
        File::open(path).map_err(|e| ArchiveError::io(format!("reading {}", path.display()), e))?;
    let (mut sha, mut md5, mut len) = (sha2::Sha256::new(), md5::Md5::new(), 0u64);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ArchiveError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        len += n as u64;
    }
    Ok((sha.finalize().into(), md5.finalize().into(), len))
}

/// Links the staged segment file into `dir` (a link fails rather than replace a file);
/// `true` if it was new, `false` if an identical one was there.
fn publish_dir_segment(dir: &Path, staging: &Path, ours: &Manifest) -> Result<bool, ArchiveError> {
    let target = dir.join(&ours.segment_file);
    match link_new(&staging.join(&ours.segment_file), &target) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let (sha, _, len) = digests(&target)?;
            if hex::encode(sha) == ours.segment_sha256 && len == ours.segment_bytes {
                Ok(false)
            } else {
                Err(differs(
                    &target.display().to_string(),
                    format!(
                        "SHA-256 {} of {len} bytes, this one's {} of {}",
                        hex::encode(sha),
                        ours.segment_sha256,
                        ours.segment_bytes
                    ),
                ))
            }
        }
        Err(e) => Err(ArchiveError::io(
            format!("publishing {}", target.display()),
            e,
        )),
    }
}

/// Links the staged manifest into `dir`, last; the one found there instead if it describes
/// the same segment (`Some`), refused if another.
fn publish_dir_manifest(
    dir: &Path,
    staging: &Path,
    name: &str,
    ours: &Manifest,
) -> Result<Option<Manifest>, ArchiveError> {
    let target = dir.join(name);
    match link_new(&staging.join(name), &target) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(&target)
                .map_err(|e| ArchiveError::io(format!("reading {}", target.display()), e))?;
            existing_manifest(&target.display().to_string(), &bytes, ours).map(Some)
        }
        Err(e) => Err(ArchiveError::io(
            format!("publishing {}", target.display()),
            e,
        )),
    }
}

/// The manifest `bytes` found at `shown`, if it describes the segment `ours` does.
fn existing_manifest(shown: &str, bytes: &[u8], ours: &Manifest) -> Result<Manifest, ArchiveError> {
    let theirs: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| differs(shown, format!("it is no readable manifest: {e}")))?;
    if same_segment(&theirs, ours) {
        Ok(theirs)
    } else {
        Err(differs(
            shown,
            format!(
                "it archives {} records with SHA-256 {}, this one {} with {}",
                theirs.archived_events,
                theirs.segment_sha256,
                ours.archived_events,
                ours.segment_sha256
            ),
        ))
    }
}

/// Puts `staged` at `target` unless something is there (`AlreadyExists`): a hard link,
/// which never replaces a file; on a file system without hard links, a rename after
/// checking the name is free.
fn link_new(staged: &Path, target: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(staged, target) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            if target.exists() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(staged, target)
        }
        other => other,
    }
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ArchiveError::io(format!("syncing {}", dir.display()), e))
}

/// Publishes to one bucket and prefix.
struct S3Publisher<'a> {
    bucket: &'a S3Bucket,
    prefix: &'a str,
    retain_until: Option<String>,
}

impl S3Publisher<'_> {
    fn key(&self, name: &str) -> String {
        ArchiveLocation::key(self.prefix, name)
    }

    /// Uploads the staged segment file; `true` if it was new, `false` if an identical one
    /// was there.
    fn segment(&self, staging: &Path, ours: &Manifest) -> Result<bool, ArchiveError> {
        let key = self.key(&ours.segment_file);
        let shown = self.bucket.url_of(&key);
        if let Some(info) = self.bucket.head(&key)? {
            return same_object(&shown, &info, ours).map(|()| false);
        }
        let path = staging.join(&ours.segment_file);
        let (sha256, md5, len) = digests(&path)?;
        if hex::encode(sha256) != ours.segment_sha256 || len != ours.segment_bytes {
            return Err(ArchiveError::Invalid(format!(
                "{} changed after it was written",
                path.display()
            )));
        }
        let options = PutOptions {
            md5,
            sha256,
            retain_until: self.retain_until.clone(),
            if_absent: true,
        };
        match self.bucket.put_file(&key, &path, &options)? {
            PutOutcome::AlreadyExists => {
                let info = self.bucket.head(&key)?.ok_or_else(|| vanished(&shown))?;
                same_object(&shown, &info, ours).map(|()| false)
            }
            PutOutcome::Written { .. } => {
                self.check_upload(&key, sha256, md5, len)?;
                Ok(true)
            }
        }
    }

    /// Uploads the staged manifest, last; the one found there instead if it describes the
    /// same segment (`Some`), refused if another.
    fn manifest(
        &self,
        staging: &Path,
        name: &str,
        ours: &Manifest,
    ) -> Result<Option<Manifest>, ArchiveError> {
        let key = self.key(name);
        let shown = self.bucket.url_of(&key);
        if let Some(bytes) = self.bucket.get(&key, None, MAX_MANIFEST_BYTES)? {
            return existing_manifest(&shown, &bytes, ours).map(Some);
        }
        let path = staging.join(name);
        let bytes = std::fs::read(&path)
            .map_err(|e| ArchiveError::io(format!("reading {}", path.display()), e))?;
        let options = PutOptions {
            retain_until: self.retain_until.clone(),
            if_absent: true,
            ..PutOptions::for_bytes(&bytes)
        };
        let (sha256, md5, len) = (options.sha256, options.md5, bytes.len() as u64);
        match self.bucket.put_bytes(&key, bytes, &options)? {
            PutOutcome::AlreadyExists => {
                let bytes = self
                    .bucket
                    .get(&key, None, MAX_MANIFEST_BYTES)?
                    .ok_or_else(|| vanished(&shown))?;
                existing_manifest(&shown, &bytes, ours).map(Some)
            }
            PutOutcome::Written { .. } => {
                self.check_upload(&key, sha256, md5, len)?;
                Ok(None)
            }
        }
    }

    /// Checks with a HEAD that the object at `key` is what was sent: its size, the SHA-256
    /// kept with it, and its ETag where that is the body's MD5.
    fn check_upload(
        &self,
        key: &str,
        sha256: [u8; 32],
        md5: [u8; 16],
        len: u64,
    ) -> Result<(), ArchiveError> {
        let shown = self.bucket.url_of(key);
        let info = self.bucket.head(key)?.ok_or_else(|| vanished(&shown))?;
        let etag_ok = match &info.etag {
            Some(etag) if etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) => {
                etag.eq_ignore_ascii_case(&hex::encode(md5))
            }
            _ => true,
        };
        if info.size != len || info.sha256.as_deref() != Some(&hex::encode(sha256)) || !etag_ok {
            return Err(ArchiveError::ObjectStore {
                context: format!("checking the upload of {shown}"),
                detail: format!(
                    "the store holds {} bytes (SHA-256 {:?}, ETag {:?}); {len} bytes with \
                     SHA-256 {} and MD5 {} were sent",
                    info.size,
                    info.sha256,
                    info.etag,
                    hex::encode(sha256),
                    hex::encode(md5)
                ),
            });
        }
        Ok(())
    }
}

/// Whether the object `info` describes is the segment file of `ours`.
fn same_object(shown: &str, info: &ObjectInfo, ours: &Manifest) -> Result<(), ArchiveError> {
    if info.size == ours.segment_bytes && info.sha256.as_deref() == Some(&ours.segment_sha256) {
        Ok(())
    } else {
        Err(differs(
            shown,
            format!(
                "{} bytes with SHA-256 {}, this one {} bytes with {}",
                info.size,
                info.sha256.as_deref().unwrap_or("unrecorded"),
                ours.segment_bytes,
                ours.segment_sha256
            ),
        ))
    }
}

fn vanished(shown: &str) -> ArchiveError {
    ArchiveError::ObjectStore {
        context: shown.to_owned(),
        detail: "the object vanished while being published".to_owned(),
    }
}
