//! `sealtrail restore`: decrypt, unpack beside the target, check every file, verify the
//! whole log, record the restore in it, and only then move it into place.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use sealtrail_core::CheckpointVerifier;
use sha2::{Digest, Sha256};

use crate::create::{probe_manifest, sync_dir};
use crate::manifest::{MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, StoreKind};
use crate::{BackupError, Progress, Unit};

/// How to restore.
pub struct RestoreOptions<'a> {
    /// Replace a target that already holds a log (it is moved aside, never deleted).
    pub force: bool,
    /// The tenant the `backup.restored` event is recorded in.
    pub tenant: &'a str,
    /// The log's public key, pinned: without it the restored log is checked with the
    /// signing key inside the backup, which proves it intact but not whose it is (anyone
    /// who knows a recipient can make a backup).
    pub verifier: Option<&'a CheckpointVerifier>,
    /// Who restored, for the event's `user_id` (`os:alice`, say).
    pub actor: &'a str,
    /// Restore the log into this EMPTY PostgreSQL database (a backup of a PostgreSQL
    /// store needs one; a backup of the embedded store refuses one). The data directory
    /// then receives the other files (signing key, API keys, ...).
    pub database_url: Option<&'a str>,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreSummary {
    /// The manifest of the backup.
    pub manifest: Manifest,
    /// Events verified (the backup's tree size).
    pub events_verified: u64,
    /// The seq of the `backup.restored` event.
    pub restore_event_seq: u64,
    /// Where a replaced target was moved (with `force`).
    pub replaced: Option<PathBuf>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Restores the backup `from` into `data_dir`, decrypting with `identities`. Nothing is
/// written to `data_dir` unless every check passed.
pub fn restore_backup(
    from: &Path,
    identities: &[Box<dyn age::Identity>],
    identity_names: &str,
    data_dir: &Path,
    options: &RestoreOptions<'_>,
    progress: &mut dyn Progress,
) -> Result<RestoreSummary, BackupError> {
    let started = Instant::now();
    // A bad tenant is refused before any work, not after the verification.
    crate::record::restore_event(options.tenant, options.actor, &probe_manifest(), from)?;
    let replace = check_target(data_dir, options.force)?;
    // Which store the backup is of decides where it can go: found out from its first
    // entry, before anything is unpacked.
    let store = peek_manifest(from, identities, identity_names)?.store;
    match (store, options.database_url) {
        (StoreKind::Sqlite, Some(_)) => {
            return Err(BackupError::Refused(format!(
                "{} is a backup of the embedded (SQLite) store; restore it into a data directory \
                 alone, without a database (--database-url or the configuration's \
                 database_url); moving a log between stores is not supported",
                from.display()
            )));
        }
        (StoreKind::Postgres, None) => {
            return Err(BackupError::Refused(format!(
                "{} is a backup of a PostgreSQL store; restore it with --database-url (or a \
                 configuration's database_url) naming a new, empty database; moving a log \
                 between stores is not supported",
                from.display()
            )));
        }
        _ => {}
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Refused(format!("{} names no directory", data_dir.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| BackupError::io(format!("creating {}", parent.display()), e))?;
    // Beside the target, so the final move is a rename on one file system.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.restore-"))
        .tempdir_in(&parent)
        .map_err(|e| BackupError::io(format!("creating a directory in {}", parent.display()), e))?;

    let manifest = unpack(from, identities, identity_names, staging.path(), progress)?;
    if manifest.store != store {
        return Err(damaged(
            from,
            "its manifest changed between two reads".into(),
        ));
    }
    let event = crate::record::restore_event(options.tenant, options.actor, &manifest, from)?;
    let expected_seq = manifest.tree_size + 1;
    let unexpected = |seq: u64| {
        format!(
            "the restore's event got seq {seq}, not {expected_seq}: something else wrote to the \
             restored log meanwhile"
        )
    };
    let (events_verified, restore_event_seq, replaced) = match options.database_url {
        None => {
            let verified = verify_restored_log(staging.path(), &manifest, options, progress)?;
            progress.begin("record the restore in the log", 0, Unit::Events);
            let seq = crate::record::append_sqlite(staging.path(), event, "the restore")?;
            progress.end();
            if seq != expected_seq {
                return Err(BackupError::Refused(unexpected(seq)));
            }
            let replaced = move_into_place(staging.path(), data_dir, &parent, &name, replace)?;
            (verified, seq, replaced)
        }
        Some(url) => {
            // Committed only once verified; from here on the database holds the log.
            let verified =
                crate::postgres::restore_tables(url, staging.path(), &manifest, options, progress)?;
            let after_commit = |detail: String| BackupError::RestoredNotRecorded {
                database: sealtrail_store::postgres::redact(url),
                data_dir: data_dir.to_owned(),
                detail,
            };
            // The table copies are in the database now; the data directory keeps the rest.
            if let Some(pg) = &manifest.postgres {
                for table in &pg.tables {
                    let copy = staging.path().join(&table.file);
                    std::fs::remove_file(&copy)
                        .map_err(|e| after_commit(format!("removing {}: {e}", copy.display())))?;
                }
            }
            // The data directory goes into place before anything else can fail: the
            // database is no longer empty, so this restore could not be run again.
            let replaced = move_into_place(staging.path(), data_dir, &parent, &name, replace)
                .map_err(|e| after_commit(e.to_string()))?;
            progress.begin("record the restore in the log", 0, Unit::Events);
            let seq = crate::record::append_postgres(url, data_dir, event, "the restore")
                .map_err(|e| after_commit(e.to_string()))?;
            progress.end();
            if seq != expected_seq {
                return Err(after_commit(unexpected(seq)));
            }
            (verified, seq, replaced)
        }
    };
    Ok(RestoreSummary {
        events_verified,
        manifest,
        restore_event_seq,
        replaced,
        elapsed: started.elapsed(),
    })
}

/// Verifies the whole unpacked log in `staging` against the checkpoint the manifest
/// names (with the pinned key, or else the log's own), returning the events verified.
fn verify_restored_log(
    staging: &Path,
    manifest: &Manifest,
    options: &RestoreOptions<'_>,
    progress: &mut dyn Progress,
) -> Result<u64, BackupError> {
    let verifier = match options.verifier {
        Some(v) => v.clone(),
        None => sealtrail_store::sqlite::log_verifier(staging)?,
    };
    progress.begin("verify the log", manifest.tree_size, Unit::Events);
    let report = sealtrail_store::verify::verify_sqlite(
        staging,
        &verifier,
        Some(&manifest.checkpoint),
        |done, total| progress.set(done, total),
    )?;
    progress.end();
    if let Some(finding) = report.problem {
        return Err(BackupError::Unverified(finding.to_string()));
    }
    if report.tree_size != manifest.tree_size {
        return Err(BackupError::Unverified(format!(
            "the restored log has tree size {}, the manifest's checkpoint {}",
            report.tree_size, manifest.tree_size
        )));
    }
    Ok(report.events)
}

/// Moves the checked `staging` directory to `data_dir` (named `name` in `parent`), first
/// moving a target being replaced aside, and makes the renames durable; returns where a
/// replaced target went.
fn move_into_place(
    staging: &Path,
    data_dir: &Path,
    parent: &Path,
    name: &str,
    replace: Target,
) -> Result<Option<PathBuf>, BackupError> {
    let replaced = match replace {
        Target::Absent | Target::Empty => None,
        Target::Replace => {
            let aside = parent.join(format!(
                "{name}.replaced-{}",
                sealtrail_core::time_format::now_micros() / 1_000_000
            ));
            std::fs::rename(data_dir, &aside).map_err(|e| {
                BackupError::io(
                    format!("moving {} aside to {}", data_dir.display(), aside.display()),
                    e,
                )
            })?;
            Some(aside)
        }
    };
    // Replaces an empty directory in one step (rename(2)).
    std::fs::rename(staging, data_dir).map_err(|e| {
        BackupError::io(
            format!("moving the restored files into {}", data_dir.display()),
            e,
        )
    })?;
    sync_dir(parent)?;
    Ok(replaced)
}

enum Target {
    Absent,
    Empty,
    Replace,
}

fn check_target(data_dir: &Path, force: bool) -> Result<Target, BackupError> {
    if !data_dir.exists() {
        return Ok(Target::Absent);
    }
    if !data_dir.is_dir() {
        return Err(BackupError::Refused(format!(
            "{} exists and is not a directory",
            data_dir.display()
        )));
    }
    let mut entries = std::fs::read_dir(data_dir)
        .map_err(|e| BackupError::io(format!("listing {}", data_dir.display()), e))?;
    if entries.next().is_none() {
        return Ok(Target::Empty);
    }
    if force {
        return Ok(Target::Replace);
    }
    let holds_log = sealtrail_store::sqlite::log_db_path(data_dir).exists();
    Err(BackupError::Refused(format!(
        "{} {}; restore into a new directory, or give --force to move it aside and replace it",
        data_dir.display(),
        if holds_log {
            "already holds a Sealtrail log"
        } else {
            "is not empty"
        }
    )))
}

/// The manifest of the backup `from`: its first entry, read without unpacking the rest.
fn peek_manifest(
    from: &Path,
    identities: &[Box<dyn age::Identity>],
    identity_names: &str,
) -> Result<Manifest, BackupError> {
    let (reader, _) = open_decrypted(from, identities, identity_names)?;
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries().map_err(|e| stream_damaged(from, e))?;
    let mut entry = entries
        .next()
        .ok_or_else(|| damaged(from, "it holds no manifest".into()))?
        .map_err(|e| damaged(from, format!("its archive is unreadable: {e}")))?;
    let name = entry_name(from, &entry)?;
    read_manifest(from, &name, &mut entry)
}

/// Decrypts and unpacks into `staging`, checking every file against the manifest.
fn unpack(
    from: &Path,
    identities: &[Box<dyn age::Identity>],
    identity_names: &str,
    staging: &Path,
    progress: &mut dyn Progress,
) -> Result<Manifest, BackupError> {
    let (reader, total) = open_decrypted(from, identities, identity_names)?;
    progress.begin("decrypt and unpack", total, Unit::Bytes);
    let mut archive = tar::Archive::new(reader);
    let mut manifest: Option<Manifest> = None;
    let mut expected: HashMap<String, (u64, String)> = HashMap::new();
    let mut done = 0u64;
    {
        let entries = archive.entries().map_err(|e| stream_damaged(from, e))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| damaged(from, format!("its archive is unreadable: {e}")))?;
            let name = entry_name(from, &entry)?;
            if manifest.is_none() {
                let parsed = read_manifest(from, &name, &mut entry)?;
                expected = parsed
                    .files
                    .iter()
                    .map(|f| (f.name.clone(), (f.bytes, f.sha256.clone())))
                    .collect();
                manifest = Some(parsed);
                continue;
            }
            let Some((bytes, sha256)) = expected.remove(&name) else {
                return Err(damaged(
                    from,
                    format!("it holds {name}, which its manifest does not list (or lists once)"),
                ));
            };
            let dest = staging.join(&name);
            let (got_bytes, got_sha256) = copy_hashing(
                &mut entry, &dest, &mut done, total, progress,
            )
            .map_err(|e| match e {
                CopyError::Read(e) => stream_damaged(from, e),
                CopyError::Write(e) => BackupError::io(format!("writing {}", dest.display()), e),
            })?;
            if got_bytes != bytes || got_sha256 != sha256 {
                return Err(damaged(
                    from,
                    format!(
                        "{name} does not match its manifest: {got_bytes} bytes with SHA-256 {got_sha256}, \
                         the manifest says {bytes} bytes with SHA-256 {sha256}"
                    ),
                ));
            }
        }
    }
    // Read to the end, so the last chunk's authentication (and the end of the stream) is
    // checked even where tar stopped early.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| stream_damaged(from, e))?;
    progress.end();
    let manifest = manifest.ok_or_else(|| damaged(from, "it holds no manifest".into()))?;
    if let Some(name) = expected.keys().next() {
        return Err(damaged(
            from,
            format!("its manifest lists {name}, which it does not hold"),
        ));
    }
    sync_dir(staging)?;
    Ok(manifest)
}

/// The backup `from` as a stream of its decrypted contents, with its encrypted size (for
/// progress). Tells a file that is not age-encrypted from one for other identities.
fn open_decrypted(
    from: &Path,
    identities: &[Box<dyn age::Identity>],
    identity_names: &str,
) -> Result<(impl Read, u64), BackupError> {
    let file =
        File::open(from).map_err(|e| BackupError::io(format!("reading {}", from.display()), e))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let decryptor =
        age::Decryptor::new_buffered(BufReader::new(file)).map_err(|e| BackupError::Decrypt {
            file: from.to_owned(),
            detail: format!("it is not an age-encrypted file, or its header is damaged: {e}"),
        })?;
    let reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => BackupError::WrongIdentity {
                file: from.to_owned(),
                identity: identity_names.to_owned(),
            },
            other => BackupError::Decrypt {
                file: from.to_owned(),
                detail: other.to_string(),
            },
        })?;
    Ok((reader, total))
}

/// The name of an archive entry of `from`, refusing anything but a regular file with a
/// plain name (no directories, links or paths that could land outside the staging
/// directory).
fn entry_name<R: Read>(from: &Path, entry: &tar::Entry<'_, R>) -> Result<String, BackupError> {
    let path = entry
        .path()
        .map_err(|e| damaged(from, format!("an entry has an unreadable name: {e}")))?
        .into_owned();
    let name = plain_name(&path).ok_or_else(|| {
        damaged(
            from,
            format!("it holds {:?}, which is not a plain file name", path),
        )
    })?;
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(damaged(from, format!("{name} is not a regular file")));
    }
    Ok(name)
}

/// Reads and checks the manifest from `entry`, the first of the archive `from` (named
/// `name`), refusing an archive that does not start with one or one too large.
fn read_manifest(from: &Path, name: &str, entry: &mut impl Read) -> Result<Manifest, BackupError> {
    if name != MANIFEST_NAME {
        return Err(damaged(
            from,
            format!("its first entry is {name}, not {MANIFEST_NAME}: it is not a Sealtrail backup"),
        ));
    }
    let mut text = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| stream_damaged(from, e))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(damaged(
            from,
            format!("its manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
        ));
    }
    let parsed: Manifest = serde_json::from_slice(&text)
        .map_err(|e| damaged(from, format!("its manifest is not valid: {e}")))?;
    parsed.check().map_err(|detail| damaged(from, detail))?;
    Ok(parsed)
}

/// The error for a backup `file` whose contents are damaged or not what they claim.
pub(crate) fn damaged(file: &Path, detail: String) -> BackupError {
    BackupError::Damaged {
        file: file.to_owned(),
        detail,
    }
}

/// The error for a failed read of the decrypted stream of `file`: age authenticates every
/// 64 KiB chunk as it is read, so an altered byte fails the read of its chunk, and a
/// cut-off file fails at the end.
fn stream_damaged(file: &Path, e: io::Error) -> BackupError {
    damaged(
        file,
        format!("decryption failed in its contents ({e}): the file was altered or cut off"),
    )
}

/// The single normal component of an archive path, if that is all it is.
fn plain_name(path: &Path) -> Option<String> {
    let mut components = path.components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(name)), None) => name.to_str().map(str::to_owned),
        _ => None,
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into the new file `dest` (fsync'd), returning its size and SHA-256.
fn copy_hashing(
    from: &mut impl Read,
    dest: &Path,
    done: &mut u64,
    total: u64,
    progress: &mut dyn Progress,
) -> Result<(u64, String), CopyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(dest).map_err(CopyError::Write)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = from.read(&mut buffer).map_err(CopyError::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(CopyError::Write)?;
        bytes += n as u64;
        // Encrypted bytes run ahead of plain ones by 16 per 64 KiB: close enough.
        *done += n as u64;
        progress.set((*done).min(total), total);
    }
    file.sync_all().map_err(CopyError::Write)?;
    Ok((bytes, hex::encode(hasher.finalize())))
}
