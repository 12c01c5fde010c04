//! `sealtrail backup`: snapshot, pack, encrypt.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use sealtrail_store::postgres::PgDump;

use crate::manifest::{
    FORMAT, FORMAT_VERSION, MANIFEST_NAME, Manifest, ManifestFile, Method, PostgresSection,
    STATE_FILES, StoreKind,
};
use crate::{BackupError, Progress, Unit};

/// The action of the event a backup of a PostgreSQL store appends to the log it backed up.
pub const BACKUP_ACTION: &str = "backup.created";

/// What to back up, and how the backup is recorded.
pub struct BackupOptions<'a> {
    /// The PostgreSQL database holding the log (`None`: the embedded store in the data
    /// directory).
    pub database_url: Option<&'a str>,
    /// The tenant the `backup.created` event is recorded in.
    pub tenant: &'a str,
    /// Who backed up, for the event's `user_id` (`os:alice`, say).
    pub actor: &'a str,
}

/// Prefix of the staging directory a backup copies into, inside the data directory (the
/// copies are as sensitive as the originals, so they stay beside them).
const STAGING_PREFIX: &str = ".sealtrail-backup-";

/// What a backup wrote.
#[derive(Clone, Debug)]
pub struct BackupSummary {
    /// The backup file.
    pub file: PathBuf,
    /// The manifest packed first.
    pub manifest: Manifest,
    /// Bytes of the files packed (before encryption).
    pub packed_bytes: u64,
    /// Size of the encrypted file.
    pub file_bytes: u64,
    /// Files of the data directory left out that are not Sealtrail's (`master.key` put
    /// there by mistake, say).
    pub left_out: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
    /// The seq of the `backup.created` event appended to the log after the backup was
    /// complete (PostgreSQL only: the embedded store has one writer, the running server).
    pub recorded_seq: Option<u64>,
}

/// Takes a consistent snapshot of the store (the embedded one in `data_dir`, or the
/// PostgreSQL database of `options`, with the data directory's other files) while the
/// server may be running, packs it with a manifest and encrypts it to `recipients` into
/// the new file `to` (written beside it first and renamed when complete, so `to` is never
/// partial). On PostgreSQL the finished backup is then recorded in the log.
pub fn create_backup(
    data_dir: &Path,
    to: &Path,
    recipients: &[Box<dyn age::Recipient + Send>],
    options: &BackupOptions<'_>,
    progress: &mut dyn Progress,
) -> Result<BackupSummary, BackupError> {
    let started = Instant::now();
    check_can_back_up(data_dir, options.database_url, to, recipients)?;
    // A bad tenant is refused before any work, not after the backup.
    crate::record::backup_event(options.tenant, options.actor, &probe_manifest(), to)?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(data_dir)
        .map_err(|e| {
            BackupError::io(
                format!("creating a staging directory in {}", data_dir.display()),
                e,
            )
        })?;
    let (copied, dump) =
        snapshot_state_files(data_dir, options.database_url, staging.path(), progress)?;
    let (manifest, now) = build_manifest(staging.path(), &copied, dump.as_ref(), progress)?;

    let packed_bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let partial = tempfile::Builder::new()
        .prefix(".sealtrail-backup-")
        .suffix(".partial")
        .tempfile_in(&parent)
        .map_err(|e| BackupError::io(format!("creating a file in {}", parent.display()), e))?;
    let mtime = (now / 1_000_000).max(0) as u64;
    pack_and_encrypt(
        &partial,
        recipients,
        &manifest,
        &copied,
        mtime,
        packed_bytes,
        progress,
    )?;
    let file_bytes = finish_backup(partial, to, &parent)?;
    drop(staging);

    let recorded_seq = match options.database_url {
        Some(url) => {
            progress.begin("record the backup in the log", 0, Unit::Events);
            let event = crate::record::backup_event(options.tenant, options.actor, &manifest, to)?;
            let seq = crate::record::append_postgres(url, data_dir, event, "the backup").map_err(
                |e| {
                    BackupError::Refused(format!(
                        "the backup {} is complete, but it could not be recorded in the log: {e}",
                        to.display()
                    ))
                },
            )?;
            progress.end();
            Some(seq)
        }
        None => None,
    };
    Ok(BackupSummary {
        file: to.to_owned(),
        manifest,
        packed_bytes,
        file_bytes,
        left_out: left_out(data_dir)?,
        elapsed: started.elapsed(),
        recorded_seq,
    })
}

/// A manifest for checking the backup event's fields before the real one exists.
pub(crate) fn probe_manifest() -> Manifest {
    Manifest {
        format: String::new(),
        version: 0,
        store: StoreKind::Sqlite,
        sealtrail_version: String::new(),
        created_at: "1970-01-01T00:00:00Z".into(),
        origin: String::new(),
        tree_size: 0,
        checkpoint: String::new(),
        files: Vec::new(),
        postgres: None,
    }
}

/// Refuses a backup that cannot succeed before any work: no recipient, no log in
/// `data_dir` (embedded store) or no signing key there (PostgreSQL), or a `to` that
/// already exists.
fn check_can_back_up(
    data_dir: &Path,
    database_url: Option<&str>,
    to: &Path,
    recipients: &[Box<dyn age::Recipient + Send>],
) -> Result<(), BackupError> {
    if recipients.is_empty() {
        return Err(BackupError::Key(
            "a backup needs at least one recipient (--recipient or --recipients-file)".into(),
        ));
    }
    match database_url {
        None if !sealtrail_store::sqlite::log_db_path(data_dir).exists() => {
            return Err(BackupError::Refused(format!(
                "no Sealtrail log at {} (is --data-dir right? for a PostgreSQL store give \
                 --database-url or a configuration with database_url)",
                data_dir.display()
            )));
        }
        Some(_)
            if !data_dir
                .join(sealtrail_store::identity::SIGNING_KEY_FILE)
                .exists() =>
        {
            return Err(BackupError::Refused(format!(
                "no {} in {}: a PostgreSQL store's data directory holds the log's signing key \
                 (is --data-dir the server's?)",
                sealtrail_store::identity::SIGNING_KEY_FILE,
                data_dir.display()
            )));
        }
        _ => {}
    }
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} already exists; a backup never overwrites a file",
            to.display()
        )));
    }
    Ok(())
}

/// Each packed file's name in the archive, with its copy in the staging directory.
type Copied = Vec<(String, PathBuf)>;

/// Copies each state file of `data_dir` present into `staging` (SQLite databases through
/// an online snapshot, so a running server is no obstacle), in the order of
/// [`STATE_FILES`]; returns each name with its copy. With a `database_url`, the log is
/// the database's tables, dumped in place of `log.sqlite` (so the order's invariants hold
/// for them as for the embedded log).
fn snapshot_state_files(
    data_dir: &Path,
    database_url: Option<&str>,
    staging: &Path,
    progress: &mut dyn Progress,
) -> Result<(Copied, Option<PgDump>), BackupError> {
    let mut copied: Vec<(String, PathBuf)> = Vec::new();
    let mut dump = None;
    for state in STATE_FILES {
        if let (sealtrail_store::sqlite::LOG_DB_FILE, Some(url)) = (state.name, database_url) {
            progress.begin("copy the PostgreSQL tables", 0, Unit::Bytes);
            // Bytes of the tables finished, and of the one being copied.
            let (mut finished, mut table_now, mut bytes_now) = (0u64, String::new(), 0u64);
            let dumped = sealtrail_store::postgres::dump_postgres(url, staging, |table, bytes| {
                if table != table_now {
                    finished += bytes_now;
                    table_now = table.to_owned();
                }
                bytes_now = bytes;
                progress.set(finished + bytes, 0);
            })?;
            progress.end();
            for table in &dumped.tables {
                let name = sealtrail_store::postgres::copy_file_name(&table.name);
                copied.push((name.clone(), staging.join(name)));
            }
            dump = Some(dumped);
            continue;
        }
        let source = data_dir.join(state.name);
        if !source.exists() {
            if state.required {
                return Err(BackupError::Refused(format!(
                    "{} is missing; it is part of every data directory",
                    source.display()
                )));
            }
            continue;
        }
        progress.begin(&format!("snapshot {}", state.name), 0, Unit::Bytes);
        let dest = staging.join(state.name);
        match state.method {
            Method::Sqlite => {
                sealtrail_store::snapshot::snapshot_database(&source, &dest)?;
            }
            Method::Plain => {
                std::fs::copy(&source, &dest)
                    .map_err(|e| BackupError::io(format!("copying {}", source.display()), e))?;
            }
        }
        progress.end();
        copied.push((state.name.to_owned(), dest));
    }
    Ok((copied, dump))
}

/// The manifest of the snapshot in `staging`: the log copy's newest signed checkpoint and
/// origin, and the size and SHA-256 of every copied file. Returns it with the time it
/// was created (microseconds since the epoch), which also stamps the archive's entries.
fn build_manifest(
    staging: &Path,
    copied: &[(String, PathBuf)],
    dump: Option<&PgDump>,
    progress: &mut dyn Progress,
) -> Result<(Manifest, i64), BackupError> {
    let (store, tree_size, checkpoint, origin, postgres) = match dump {
        Some(dump) => (
            StoreKind::Postgres,
            dump.tree_size,
            dump.checkpoint.clone(),
            dump.origin.clone(),
            Some(PostgresSection::from_dump(dump)),
        ),
        None => {
            let log_copy = staging.join(sealtrail_store::sqlite::LOG_DB_FILE);
            let (tree_size, checkpoint) = sealtrail_store::snapshot::latest_checkpoint(&log_copy)?
                .ok_or_else(|| {
                    BackupError::Refused(
                        "the log has no signed checkpoint yet (start the server on it once)".into(),
                    )
                })?;
            let origin = sealtrail_store::snapshot::log_origin(&log_copy)?.unwrap_or_default();
            (StoreKind::Sqlite, tree_size, checkpoint, origin, None)
        }
    };

    progress.begin("checksums", 0, Unit::Bytes);
    let mut files = Vec::new();
    for (name, path) in copied {
        let (bytes, sha256) = hash_file(path)?;
        files.push(ManifestFile {
            name: name.clone(),
            bytes,
            sha256,
        });
    }
    progress.end();
    let now = sealtrail_core::time_format::now_micros();
    let manifest = Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        store,
        sealtrail_version: env!("CARGO_PKG_VERSION").into(),
        created_at: sealtrail_core::time_format::format_micros(now),
        origin,
        tree_size,
        checkpoint,
        files,
        postgres,
    };
    debug_assert_eq!(
        manifest.check(),
        Ok(()),
        "a backup writes what a restore reads"
    );
    Ok((manifest, now))
}

/// Writes the archive, age-encrypted to `recipients`, into `partial` and fsyncs it: the
/// manifest first, then the copied files in its order, reporting the bytes packed.
fn pack_and_encrypt(
    partial: &tempfile::NamedTempFile,
    recipients: &[Box<dyn age::Recipient + Send>],
    manifest: &Manifest,
    copied: &[(String, PathBuf)],
    mtime: u64,
    packed_bytes: u64,
    progress: &mut dyn Progress,
) -> Result<(), BackupError> {
    let write_context = || format!("writing {}", partial.path().display());
    progress.begin("encrypt and write", packed_bytes, Unit::Bytes);
    {
        let encryptor = age::Encryptor::with_recipients(
            recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .map_err(|e| BackupError::Key(format!("encrypting to the recipients: {e}")))?;
        let output = BufWriter::new(partial.as_file());
        let encrypted = encryptor
            .wrap_output(output)
            .map_err(|e| BackupError::io(write_context(), e))?;
        let mut archive = tar::Builder::new(encrypted);
        let manifest_json =
            serde_json::to_vec_pretty(manifest).expect("the manifest serialises to JSON");
        append(
            &mut archive,
            MANIFEST_NAME,
            manifest_json.len() as u64,
            mtime,
            &manifest_json[..],
        )
        .map_err(|e| BackupError::io(write_context(), e))?;
        let mut done = 0u64;
        for (entry, (name, path)) in manifest.files.iter().zip(copied) {
            debug_assert_eq!(entry.name, *name);
            assert!(
                crate::manifest::state_file(name).is_some() || name.ends_with(".copy"),
                "only state files and table copies are ever packed"
            );
            let file = File::open(path)
                .map_err(|e| BackupError::io(format!("reading {}", path.display()), e))?;
            let reader = Counting {
                inner: file,
                done: &mut done,
                total: packed_bytes,
                progress: &mut *progress,
            };
            append(&mut archive, name, entry.bytes, mtime, reader)
                .map_err(|e| BackupError::io(write_context(), e))?;
        }
        let encrypted = archive
            .into_inner()
            .map_err(|e| BackupError::io(write_context(), e))?;
        let mut output = encrypted
            .finish()
            .map_err(|e| BackupError::io(write_context(), e))?;
        output
            .flush()
            .map_err(|e| BackupError::io(write_context(), e))?;
    }
    partial
        .as_file()
        .sync_all()
        .map_err(|e| BackupError::io(write_context(), e))?;
    progress.end();
    Ok(())
}

/// Moves the complete `partial` file to `to` (never over an existing file) and makes the
/// rename in `parent` durable; returns the backup's size.
fn finish_backup(
    partial: tempfile::NamedTempFile,
    to: &Path,
    parent: &Path,
) -> Result<u64, BackupError> {
    let file_bytes = partial
        .as_file()
        .metadata()
        .map(|m| m.len())
        .map_err(|e| BackupError::io(format!("writing {}", partial.path().display()), e))?;
    partial
        .persist_noclobber(to)
        .map_err(|e| BackupError::io(format!("moving the backup to {}", to.display()), e.error))?;
    sync_dir(parent)?;
    Ok(file_bytes)
}

/// Appends a regular file entry (owner read/write only).
fn append<W: Write>(
    archive: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    archive.append_data(&mut header, name, data)
}

/// Size and SHA-256 (hex) of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file =
        File::open(path).map_err(|e| BackupError::io(format!("reading {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| BackupError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// Names in the data directory a backup leaves out that are not Sealtrail's own (a
/// `master.key` put there by mistake, say), for the summary. Not listed: the WAL and
/// shared-memory files of the state files (their commits are in the snapshots), the
/// derived query index, and backups' staging directories.
fn left_out(data_dir: &Path) -> Result<Vec<String>, BackupError> {
    let entries = std::fs::read_dir(data_dir)
        .map_err(|e| BackupError::io(format!("listing {}", data_dir.display()), e))?;
    let index = sealtrail_store::sqlite::INDEX_DB_FILE;
    let mut names = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| BackupError::io(format!("listing {}", data_dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = name
            .strip_suffix("-wal")
            .or_else(|| name.strip_suffix("-shm"))
            .unwrap_or(&name);
        let ours = crate::manifest::state_file(base).is_some()
            || base == index
            || name.starts_with(STAGING_PREFIX);
        if !ours {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io(format!("syncing {}", dir.display()), e))
}

/// A reader that reports the bytes read so far.
struct Counting<'a, R> {
    inner: R,
    done: &'a mut u64,
    total: u64,
    progress: &'a mut dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.done += n as u64;
        self.progress.set(*self.done, self.total);
        Ok(n)
    }
}
