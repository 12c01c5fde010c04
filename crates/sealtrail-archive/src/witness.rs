//! Witnesses: places outside the server that keep the log's signed checkpoints, so that a
//! log rolled back (its newest events deleted together with the checkpoints that signed
//! them) or forked is caught by comparing it with what a witness kept.
//!
//! Three kinds, by how the location is written:
//!
//! - a directory: `<size>.checkpoint` for each checkpoint pushed (never overwritten) and
//!   `latest.checkpoint`, replaced atomically, each file fsync'd before the next step;
//! - `s3://bucket[/prefix]`: the same two objects in an S3-compatible bucket (written
//!   `<size>.checkpoint` first, with `If-None-Match: *`, then `latest.checkpoint`);
//! - `http(s)://…`: a C2SP tlog-witness (<https://c2sp.org/tlog-witness>): checkpoints go
//!   to `POST <url>/add-checkpoint` with the consistency proof from the size the witness
//!   last accepted; the witness checks both and answers with its cosignature, or 409 and
//!   the size it holds. Reading a kept checkpoint back is `GET <url>` of the note (what a
//!   witness or any web server publishing a copy of the note serves).
//!
//! This module moves notes; it does not judge them. The caller verifies a note it reads
//! against the log's key and the log's tree.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sealtrail_core::merkle::Hash;

use crate::ArchiveError;
use crate::s3::{PutOptions, PutOutcome, S3Bucket, S3Settings};

/// Name of the file or object holding the newest checkpoint a witness kept.
pub const LATEST_NAME: &str = "latest.checkpoint";
/// The largest note read back (a checkpoint note is a few hundred bytes).
const MAX_NOTE_BYTES: u64 = 64 << 10;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where checkpoints are kept: parsed from `DIR`, `s3://bucket[/prefix]` or an HTTP(S) URL.
#[derive(Debug)]
pub enum WitnessLocation {
    /// A local (or mounted) directory.
    Dir(PathBuf),
    /// Objects in an S3-compatible bucket.
    S3 {
        /// Boxed: the signing state and HTTP client are large beside a path.
        bucket: Box<S3Bucket>,
        /// Key prefix without slashes at either end; empty for the bucket's root.
        prefix: String,
    },
    /// A C2SP tlog-witness, or (to read from) a URL serving a note.
    Http {
        /// The URL as given, without a trailing slash.
        url: String,
        /// Sent as `Authorization: Bearer …` when set.
        token: Option<String>,
        client: reqwest::blocking::Client,
    },
}

/// What a witness said to a checkpoint pushed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Kept; for a tlog-witness, with the cosignature lines it answered.
    Accepted {
        /// The witness's cosignature lines (empty for a directory or a bucket).
        cosignature: String,
    },
    /// The witness holds another size than the one the push started from (409): push again
    /// from that size, unless it is larger than the log, which means the log lost events.
    Conflict {
        /// The size the witness holds.
        witness_size: u64,
    },
    /// The witness refused the checkpoint: its proof does not extend what the witness holds
    /// (422), its signature is not the log's (403), or it does not know the log (404).
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the witness said.
        detail: String,
    },
}

impl std::fmt::Display for WitnessLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{}", bucket.name()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{}/{prefix}", bucket.name()),
            Self::Http { url, .. } => f.write_str(url),
        }
    }
}

impl WitnessLocation {
    /// `text` as a witness: `http(s)://…`, `s3://bucket[/prefix]` (settings from the
    /// environment, [`S3Settings::from_env`]) or a directory.
    pub fn parse(text: &str, token: Option<String>) -> Result<Self, ArchiveError> {
        Self::parse_with(text, token, S3Settings::from_env)
    }

    /// [`parse`](Self::parse) with the S3 settings from `settings` (called only for an
    /// `s3://` location).
    pub fn parse_with(
        text: &str,
        token: Option<String>,
        settings: impl FnOnce() -> Result<S3Settings, ArchiveError>,
    ) -> Result<Self, ArchiveError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("s3://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Self::S3 {
                bucket: Box::new(S3Bucket::new(&settings()?, name)?),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::blocking::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .map_err(|e| ArchiveError::Settings(format!("{text}: building a client: {e}")))?;
            return Ok(Self::Http {
                url: text.trim_end_matches('/').to_owned(),
                token,
                client,
            });
        }
        if text.contains("://") {
            return Err(ArchiveError::Settings(format!(
                "{text:?}: a witness is a directory, s3://bucket[/prefix] or an http(s):// URL"
            )));
        }
        if text.is_empty() {
            return Err(ArchiveError::Settings(
                "the witness location is empty".to_owned(),
            ));
        }
        Ok(Self::Dir(PathBuf::from(text)))
    }

    /// The newest checkpoint note the witness kept; `None` if it has none yet.
    pub fn latest(&self) -> Result<Option<String>, ArchiveError> {
        let bytes = match self {
            Self::Dir(dir) => {
                let path = dir.join(LATEST_NAME);
                match std::fs::read(&path) {
                    Ok(bytes) => Some(bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => {
                        return Err(ArchiveError::io(format!("reading {}", path.display()), e));
                    }
                }
            }
            Self::S3 { bucket, prefix } => {
                bucket.get(&key_of(prefix, LATEST_NAME), None, MAX_NOTE_BYTES)?
            }
            Self::Http { url, token, client } => {
                let mut request = client.get(url);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().map_err(|e| http_error(url, "GET", e))?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !response.status().is_success() {
                    return Err(ArchiveError::ObjectStore {
                        context: format!("GET {url}"),
                        detail: format!("answered {}", response.status()),
                    });
                }
                let body = response.bytes().map_err(|e| http_error(url, "GET", e))?;
                Some(body.to_vec())
            }
        };
        bytes
            .map(|bytes| {
                if bytes.len() as u64 > MAX_NOTE_BYTES {
                    return Err(ArchiveError::Invalid(format!(
                        "{self}: the kept checkpoint is {} bytes, more than a note can be",
                        bytes.len()
                    )));
                }
                String::from_utf8(bytes).map_err(|_| {
                    ArchiveError::Invalid(format!("{self}: the kept checkpoint is not UTF-8"))
                })
            })
            .transpose()
    }

    /// Hands the witness the checkpoint `note` of tree size `size`, with the consistency
    /// `proof` from `old_size` (the size the witness is believed to hold; 0 for none).
    pub fn push(
        &self,
        size: u64,
        note: &str,
        old_size: u64,
        proof: &[Hash],
    ) -> Result<PushOutcome, ArchiveError> {
        match self {
            Self::Dir(dir) => {
                let path = dir.join(format!("{size}.checkpoint"));
                if !write_durably(&path, note.as_bytes(), false)? {
                    return Ok(PushOutcome::Refused {
                        status: 409,
                        detail: format!(
                            "{} holds another checkpoint of size {size}",
                            path.display()
                        ),
                    });
                }
                write_durably(&dir.join(LATEST_NAME), note.as_bytes(), true)?;
                Ok(PushOutcome::Accepted {
                    cosignature: String::new(),
                })
            }
            Self::S3 { bucket, prefix } => {
                let bytes = note.as_bytes().to_vec();
                let mut options = PutOptions::for_bytes(&bytes);
                options.if_absent = true;
                let key = key_of(prefix, &format!("{size}.checkpoint"));
                if let PutOutcome::AlreadyExists =
                    bucket.put_bytes(&key, bytes.clone(), &options)?
                {
                    let kept = bucket.get(&key, None, MAX_NOTE_BYTES)?;
                    if kept.as_deref() != Some(note.as_bytes()) {
                        return Ok(PushOutcome::Refused {
                            status: 409,
                            detail: format!(
                                "{} holds another checkpoint of size {size}",
                                bucket.url_of(&key)
                            ),
                        });
                    }
                }
                let latest = PutOptions::for_bytes(&bytes);
                bucket.put_bytes(&key_of(prefix, LATEST_NAME), bytes, &latest)?;
                Ok(PushOutcome::Accepted {
                    cosignature: String::new(),
                })
            }
            Self::Http { url, token, client } => {
                let endpoint = format!("{url}/add-checkpoint");
                let mut request = client
                    .post(&endpoint)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(add_checkpoint_body(old_size, proof, note));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request
                    .send()
                    .map_err(|e| http_error(&endpoint, "POST", e))?;
                let status = response.status();
                let text = response
                    .text()
                    .map_err(|e| http_error(&endpoint, "POST", e))?;
                match status.as_u16() {
                    200..=299 => Ok(PushOutcome::Accepted { cosignature: text }),
                    409 => match text.trim().parse::<u64>() {
                        Ok(witness_size) => Ok(PushOutcome::Conflict { witness_size }),
                        Err(_) => Err(ArchiveError::ObjectStore {
                            context: format!("POST {endpoint}"),
                            detail: format!("409 without a tree size in its body: {text:?}"),
                        }),
                    },
                    code @ (403 | 404 | 422) => Ok(PushOutcome::Refused {
                        status: code,
                        detail: text.trim().to_owned(),
                    }),
                    _ => Err(ArchiveError::ObjectStore {
                        context: format!("POST {endpoint}"),
                        detail: format!("answered {status}: {}", text.trim()),
                    }),
                }
            }
        }
    }
}

/// The tlog-witness `add-checkpoint` request body: `old <size>`, one base64 proof hash per
/// line, an empty line, the note.
pub fn add_checkpoint_body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut body = format!("old {old_size}\n");
    for hash in proof {
        body.push_str(&b64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

fn key_of(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

fn http_error(url: &str, method: &str, e: reqwest::Error) -> ArchiveError {
    ArchiveError::ObjectStore {
        context: format!("{method} {url}"),
        detail: e.to_string(),
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync'd, renamed and the directory
/// fsync'd. Without `replace`, an existing file is left alone (a kept checkpoint is never
/// overwritten), and false returned if its bytes are not these.
fn write_durably(path: &Path, bytes: &[u8], replace: bool) -> Result<bool, ArchiveError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| ArchiveError::io(format!("creating {}", dir.display()), e))?;
    if !replace {
        match std::fs::read(path) {
            Ok(kept) => return Ok(kept == bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(format!("reading {}", path.display()), e)),
        }
    }
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| ArchiveError::io(format!("creating a file in {}", dir.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| ArchiveError::io(format!("writing {}", path.display()), e))?;
    file.persist(path)
        .map_err(|e| ArchiveError::io(format!("renaming to {}", path.display()), e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ArchiveError::io(format!("syncing {}", dir.display()), e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_every_size_and_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let witness = WitnessLocation::parse(dir.path().to_str().unwrap(), None).unwrap();
        assert_eq!(witness.latest().unwrap(), None);
        for (size, note) in [
            (3, "log\n3\nAAA=\n\n— sig\n"),
            (5, "log\n5\nBBB=\n\n— sig\n"),
        ] {
            let outcome = witness.push(size, note, 0, &[]).unwrap();
            assert_eq!(
                outcome,
                PushOutcome::Accepted {
                    cosignature: String::new()
                }
            );
        }
        assert_eq!(
            witness.latest().unwrap().as_deref(),
            Some("log\n5\nBBB=\n\n— sig\n")
        );
        assert!(dir.path().join("3.checkpoint").is_file());
        // The same checkpoint again is fine; another one of a kept size is refused.
        witness.push(5, "log\n5\nBBB=\n\n— sig\n", 3, &[]).unwrap();
        let outcome = witness.push(5, "log\n5\nCCC=\n\n— sig\n", 3, &[]).unwrap();
        assert!(
            matches!(outcome, PushOutcome::Refused { status: 409, .. }),
            "{outcome:?}"
        );
        assert_eq!(
            witness.latest().unwrap().as_deref(),
            Some("log\n5\nBBB=\n\n— sig\n")
        );
    }

    #[test]
    fn the_add_checkpoint_body_is_old_size_proof_lines_blank_line_note() {
        let body = add_checkpoint_body(2, &[[0u8; 32], [255u8; 32]], "note\n");
        assert_eq!(
            body,
            "old 2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
             //////////////////////////////////////////8=\n\nnote\n"
        );
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        let err = WitnessLocation::parse("ftp://x/y", None).unwrap_err();
        assert!(
            err.to_string().contains("a witness is a directory"),
            "{err}"
        );
    }
}
