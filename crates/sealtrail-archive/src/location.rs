//! Where segments live: a local directory, or a bucket (and key prefix) of an S3-compatible
//! object store, behind one [`ArchiveLocation`] with the operations the CLI and the
//! retention run need: write a segment ([`ArchiveLocation::create_segment`], see
//! publish.rs), list, open (verified), find an event id, and verify the whole location.
//!
//! Objects are never read in place: a segment and its manifest are fetched into a local
//! temporary directory and checked there by the same verifier and reader as a directory's
//! ([`VerifiedSegment`], [`verify_segment`], [`locate_event_id`]), so an object store adds
//! no second verification path. Reports and refusals name the `s3://` URL, not the copy.

use std::path::{Path, PathBuf};

use sealtrail_core::CheckpointVerifier;

use crate::ArchiveError;
use crate::format::MAX_MANIFEST_BYTES;
use crate::read::{VerifiedSegment, list_segments, locate_event_id};
use crate::s3::{DEFAULT_LIST_PAGE, S3Bucket, S3Settings};
use crate::verify::{
    ArchiveReport, Problem, SegmentReport, fill_gaps, in_parallel, manifest_name_of_segment,
    orphan_report, parse_range, verify_segment,
};

/// Largest segment object fetched (a segment holds at most `MAX_SEGMENT_SEQS` lines; this
/// only stops a hostile store from filling the disk without end).
const MAX_SEGMENT_OBJECT_BYTES: u64 = 64 << 30;

/// A directory or an `s3://bucket[/prefix]` holding archive segments.
#[derive(Debug)]
pub struct ArchiveLocation {
    pub(crate) place: Place,
    /// Object Lock retention for what is published (S3 only).
    pub(crate) object_lock_days: Option<u32>,
    /// Keys per listing page (S3 only).
    list_page: usize,
}

#[derive(Debug)]
pub(crate) enum Place {
    Dir(PathBuf),
    S3 {
        /// Boxed: the signing state and HTTP client are large beside a path.
        bucket: Box<S3Bucket>,
        /// The key prefix without slashes at either end; empty for the bucket's root.
        prefix: String,
    },
}

/// A segment found at a location, by its manifest's name (not yet verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedSegment {
    /// First seq of the range its name claims.
    pub first_seq: u64,
    /// Last seq of that range (inclusive).
    pub last_seq: u64,
    /// `<first>-<last>.manifest.json`.
    pub manifest_name: String,
    /// Where it is, for messages: its path, or its `s3://` URL.
    pub shown: String,
}

/// A segment that verified, fetched to a temporary directory when it is in an object
/// store (removed when this is dropped). Derefs to the [`VerifiedSegment`].
#[derive(Debug)]
pub struct OpenedSegment {
    segment: VerifiedSegment,
    _fetched: Option<tempfile::TempDir>,
}

impl std::ops::Deref for OpenedSegment {
    type Target = VerifiedSegment;
    fn deref(&self) -> &VerifiedSegment {
        &self.segment
    }
}

impl std::fmt::Display for ArchiveLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Place::Dir(dir) => write!(f, "{}", dir.display()),
            Place::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{}", bucket.name())
            }
            Place::S3 { bucket, prefix } => write!(f, "s3://{}/{prefix}", bucket.name()),
        }
    }
}

impl ArchiveLocation {
    /// `text` as a location: `s3://bucket[/prefix]` (settings from the environment,
    /// [`S3Settings::from_env`]) or else a directory path.
    pub fn parse(text: &str) -> Result<Self, ArchiveError> {
        Self::parse_with(text, S3Settings::from_env)
    }

    /// [`parse`](Self::parse) with the S3 settings from `settings` (called only for an
    /// `s3://` location).
    pub fn parse_with(
        text: &str,
        settings: impl FnOnce() -> Result<S3Settings, ArchiveError>,
    ) -> Result<Self, ArchiveError> {
        let place = if let Some(rest) = text.strip_prefix("s3://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(ArchiveError::Settings(format!(
                    "{text:?}: an s3:// location is s3://bucket or s3://bucket/prefix"
                )));
            }
            Place::S3 {
                bucket: Box::new(S3Bucket::new(&settings()?, name)?),
                prefix: prefix.trim_matches('/').to_owned(),
            }
        } else if text.contains("://") {
            return Err(ArchiveError::Settings(format!(
                "{text:?}: an archive is a directory or an s3://bucket[/prefix] URL"
            )));
        } else if text.trim().is_empty() {
            return Err(ArchiveError::Settings(
                "the archive location is empty: give a directory or an s3:// URL".to_owned(),
            ));
        } else {
            Place::Dir(PathBuf::from(text))
        };
        Ok(Self {
            place,
            object_lock_days: None,
            list_page: DEFAULT_LIST_PAGE,
        })
    }

    /// A local directory.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            place: Place::Dir(dir.into()),
            object_lock_days: None,
            list_page: DEFAULT_LIST_PAGE,
        }
    }

    /// Publishes every object with S3 Object Lock retention in COMPLIANCE mode for `days`
    /// days: nobody can delete or overwrite those versions before then. The bucket must
    /// have Object Lock enabled. Refused for a directory.
    pub fn with_object_lock_days(mut self, days: u32) -> Result<Self, ArchiveError> {
        if matches!(self.place, Place::Dir(_)) {
            return Err(ArchiveError::Settings(format!(
                "--object-lock-days: {self} is a directory; Object Lock needs an s3:// location"
            )));
        }
        if days == 0 {
            return Err(ArchiveError::Settings(
                "--object-lock-days must be at least 1".to_owned(),
            ));
        }
        self.object_lock_days = Some(days);
        Ok(self)
    }

    /// Removes the segment whose file names start with `stem` (retention, once every event
    /// archived in it is past its retention): the manifest first, then the segment file —
    /// the reverse of publishing — so readers, which find segments by their manifests,
    /// never find one whose file is gone; a removal cut off leaves a segment file without
    /// a manifest, which removing again takes away. Removing what is not there is no error. On S3 a delete of a versioned key adds a delete
    /// marker; versions under Object Lock stay until their retention ends.
    pub fn remove_segment(&self, stem: &str) -> Result<(), ArchiveError> {
        for name in [
            format!("{stem}.manifest.json"),
            format!("{stem}.ndjson.zst"),
        ] {
            match &self.place {
                Place::Dir(dir) => {
                    let path = dir.join(&name);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(ArchiveError::io(
                                format!("removing {}", path.display()),
                                e,
                            ));
                        }
                    }
                }
                Place::S3 { bucket, prefix } => bucket.delete(&Self::key(prefix, &name), None)?,
            }
        }
        if let Place::Dir(dir) = &self.place
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Removes what a writer cut off (a crash) left in a directory: `*.partial` files and
    /// `.staging-*` directories. Nothing to do on S3, whose staging copies are in the
    /// system's temporary directory. Call it only when no segment is being written here.
    pub fn remove_leftovers(&self) -> Result<(), ArchiveError> {
        let Place::Dir(dir) = &self.place else {
            return Ok(());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ArchiveError::io(format!("listing {}", dir.display()), e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let removed = if name.ends_with(".partial") {
                std::fs::remove_file(&path)
            } else if name.starts_with(".staging-") && path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                continue;
            };
            removed.map_err(|e| ArchiveError::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Lists `page` keys per request (S3's ListObjectsV2 `max-keys`; 1000 unless set).
    pub fn with_list_page(mut self, page: usize) -> Self {
        self.list_page = page.max(1);
        self
    }

    /// The bucket, for an `s3://` location.
    pub fn bucket(&self) -> Option<&S3Bucket> {
        match &self.place {
            Place::S3 { bucket, .. } => Some(bucket),
            Place::Dir(_) => None,
        }
    }

    /// The object key of the file `name` (S3), with the prefix.
    pub(crate) fn key(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    }

    /// The file `name` at this location, for messages: a path or an `s3://` URL.
    pub fn shown(&self, name: &str) -> String {
        match &self.place {
            Place::Dir(dir) => dir.join(name).display().to_string(),
            Place::S3 { bucket, prefix } => bucket.url_of(&Self::key(prefix, name)),
        }
    }

    /// The segments here, by their manifests' names, in seq order (names that are no
    /// range are left out; [`verify`](Self::verify) reports them).
    pub fn list_segments(&self) -> Result<Vec<LocatedSegment>, ArchiveError> {
        let mut names: Vec<String> = match &self.place {
            Place::Dir(dir) => list_segments(dir)?
                .into_iter()
                .map(|s| {
                    s.manifest_path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Place::S3 { .. } => self.object_names()?,
        };
        names.retain(|n| n.ends_with(".manifest.json"));
        let mut segments: Vec<LocatedSegment> = names
            .into_iter()
            .filter_map(|name| {
                let (first_seq, last_seq) = parse_range(name.strip_suffix(".manifest.json")?)?;
                Some(LocatedSegment {
                    first_seq,
                    last_seq,
                    shown: self.shown(&name),
                    manifest_name: name,
                })
            })
            .collect();
        segments.sort_by(|a, b| {
            (a.first_seq, a.last_seq, &a.manifest_name).cmp(&(
                b.first_seq,
                b.last_seq,
                &b.manifest_name,
            ))
        });
        Ok(segments)
    }

    /// The names of the objects directly under the prefix (S3), paginated.
    fn object_names(&self) -> Result<Vec<String>, ArchiveError> {
        let Place::S3 { bucket, prefix } = &self.place else {
            unreachable!("only called for S3")
        };
        let listed_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(bucket
            .list(&listed_prefix, self.list_page)?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&listed_prefix).map(str::to_owned))
            .collect())
    }

    /// Fetches the manifest `manifest_name` and the segment its name names into `into`
    /// (S3); returns the local manifest's path. A missing object is simply not there
    /// afterwards, for the verifier to report.
    fn fetch(&self, manifest_name: &str, into: &Path) -> Result<PathBuf, ArchiveError> {
        let Place::S3 { bucket, prefix } = &self.place else {
            unreachable!("only called for S3")
        };
        let manifest_path = into.join(manifest_name);
        if let Some(bytes) =
            bucket.get(&Self::key(prefix, manifest_name), None, MAX_MANIFEST_BYTES)?
        {
            std::fs::write(&manifest_path, bytes)
                .map_err(|e| ArchiveError::io(format!("writing {}", manifest_path.display()), e))?;
        }
        let Some(stem) = manifest_name
            .strip_suffix(".manifest.json")
            .filter(|stem| parse_range(stem).is_some())
        else {
            return Ok(manifest_path);
        };
        let segment_name = format!("{stem}.ndjson.zst");
        let segment_path = into.join(&segment_name);
        let mut file = std::fs::File::create(&segment_path)
            .map_err(|e| ArchiveError::io(format!("creating {}", segment_path.display()), e))?;
        let fetched = bucket.download(
            &Self::key(prefix, &segment_name),
            None,
            &mut file,
            MAX_SEGMENT_OBJECT_BYTES,
        )?;
        drop(file);
        if fetched.is_none() {
            let _ = std::fs::remove_file(&segment_path);
        }
        Ok(manifest_path)
    }

    /// Verifies the segment and opens it for reading ([`VerifiedSegment::open`]); refused
    /// with the verifier's finding, naming the segment's path or URL.
    pub fn open_segment(
        &self,
        segment: &LocatedSegment,
        key: Option<&CheckpointVerifier>,
    ) -> Result<OpenedSegment, ArchiveError> {
        match &self.place {
            Place::Dir(dir) => Ok(OpenedSegment {
                segment: VerifiedSegment::open(&dir.join(&segment.manifest_name), key)?,
                _fetched: None,
            }),
            Place::S3 { .. } => {
                let fetched = tempfile::tempdir()
                    .map_err(|e| ArchiveError::io("creating a temporary directory", e))?;
                let manifest_path = self.fetch(&segment.manifest_name, fetched.path())?;
                let segment = VerifiedSegment::open(&manifest_path, key)
                    .map_err(|e| shown_as(e, &segment.shown))?;
                Ok(OpenedSegment {
                    segment,
                    _fetched: Some(fetched),
                })
            }
        }
    }

    /// Finds the segment holding the event with id `id` and its seq, reading the segments
    /// in seq order ([`locate_event_id`]: a hint; read it through
    /// [`open_segment`](Self::open_segment), which verifies).
    pub fn locate_event_id(
        &self,
        id: &str,
        key: Option<&CheckpointVerifier>,
    ) -> Result<Option<(LocatedSegment, u64)>, ArchiveError> {
        if let Place::Dir(dir) = &self.place {
            let Some((found, seq)) = locate_event_id(dir, id, key)? else {
                return Ok(None);
            };
            let name = found
                .manifest_path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            return Ok(Some((
                LocatedSegment {
                    first_seq: found.first_seq,
                    last_seq: found.last_seq,
                    shown: self.shown(&name),
                    manifest_name: name,
                },
                seq,
            )));
        }
        for segment in self.list_segments()? {
            let fetched = tempfile::tempdir()
                .map_err(|e| ArchiveError::io("creating a temporary directory", e))?;
            self.fetch(&segment.manifest_name, fetched.path())?;
            if let Some((_, seq)) =
                locate_event_id(fetched.path(), id, key).map_err(|e| shown_as(e, &segment.shown))?
            {
                return Ok(Some((segment, seq)));
            }
        }
        Ok(None)
    }

    /// Verifies every segment here, as [`crate::verify_dir`] does a directory: each
    /// manifest's segment, and every segment file without a manifest (an orphan), with the
    /// gaps between them. For S3 each segment is fetched to a temporary directory, checked
    /// and removed, two at a time on two cores.
    pub fn verify(&self, key: Option<&CheckpointVerifier>) -> Result<ArchiveReport, ArchiveError> {
        if let Place::Dir(dir) = &self.place {
            return crate::verify_dir(dir, key);
        }
        let names = self.object_names()?;
        let mut manifests: Vec<(Option<(u64, u64)>, String)> = names
            .iter()
            .filter_map(|n| Some((parse_range(n.strip_suffix(".manifest.json")?), n.clone())))
            .collect();
        manifests
            .sort_by_key(|(range, name)| (range.unwrap_or((u64::MAX, u64::MAX)), name.clone()));
        let manifests: Vec<String> = manifests.into_iter().map(|(_, name)| name).collect();
        let mut report = ArchiveReport {
            segments: in_parallel(&manifests, |name| self.verify_object(name, key)),
            ..ArchiveReport::default()
        };
        for name in names.iter().filter(|n| n.ends_with(".ndjson.zst")) {
            if !names.contains(&manifest_name_of_segment(name)) {
                report
                    .segments
                    .push(orphan_report(PathBuf::from(self.shown(name)), name, key));
            }
        }
        fill_gaps(&mut report);
        Ok(report)
    }

    /// Fetches and verifies the segment of the manifest `name` (S3); a failed fetch is
    /// the segment's problem.
    fn verify_object(&self, name: &str, key: Option<&CheckpointVerifier>) -> SegmentReport {
        let shown = PathBuf::from(self.shown(name));
        let fetched = tempfile::tempdir()
            .map_err(|e| ArchiveError::io("creating a temporary directory", e))
            .and_then(|dir| self.fetch(name, dir.path()).map(|path| (dir, path)));
        match fetched {
            Ok((_dir, manifest_path)) => SegmentReport {
                path: shown,
                ..verify_segment(&manifest_path, key)
            },
            Err(e) => SegmentReport {
                path: shown,
                range: name.strip_suffix(".manifest.json").and_then(parse_range),
                seqs: 0,
                records: 0,
                segment_bytes: 0,
                ndjson_bytes: 0,
                key: if key.is_some() {
                    crate::KeyUsed::Pinned
                } else {
                    crate::KeyUsed::Manifest
                },
                problem: Some(Problem::SegmentUnreadable(e.to_string())),
            },
        }
    }
}

/// `e` with a refused segment named by `shown` (its URL) instead of its local copy.
fn shown_as(e: ArchiveError, shown: &str) -> ArchiveError {
    match e {
        ArchiveError::Refused { problem, .. } => ArchiveError::Refused {
            path: PathBuf::from(shown),
            problem,
        },
        other => other,
    }
}
