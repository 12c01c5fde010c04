//! The events backups and restores write into the log about themselves: `backup.created`
//! (a PostgreSQL store's backup, once complete) and `backup.restored` (every restore, in
//! the restored log before it is accepted). Both are ordinary producer events, validated
//! like any other, appended with the log's own sequencer and waited for until durable.

use std::path::Path;

use sealtrail_core::{EventLimits, PreparedEvent, TenantScope};
use sealtrail_store::{LogBackend, Sequencer, SequencerConfig, SequencerHooks};
use serde_json::{Value, json};

use crate::BackupError;
use crate::manifest::Manifest;

/// The action of the event a restore appends to the restored log.
pub const RESTORE_ACTION: &str = "backup.restored";

/// What both events say about the backup.
fn backup_details(manifest: &Manifest, file: &Path) -> Value {
    let backup_file = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut details = json!({
        "backup_created_at": manifest.created_at,
        "backup_file": backup_file,
        "store": manifest.store,
        "tree_size": manifest.tree_size,
        "origin": manifest.origin,
        "files": manifest.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
    });
    if let Some(pg) = &manifest.postgres {
        details["tables"] = pg
            .tables
            .iter()
            .map(|t| (t.name.clone(), json!(t.rows)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    details
}

/// One system event about a backup, validated like a producer's. Not sealed: it holds
/// nothing sensitive (as the shredding records).
fn event(
    tenant: &str,
    actor: &str,
    action: &str,
    severity: &str,
    manifest: &Manifest,
    file: &Path,
) -> Result<PreparedEvent, BackupError> {
    let value = json!({
        "tenant_id": tenant,
        "action": action,
        "actor_type": "system",
        "user_id": actor,
        "resource_type": "backup",
        "resource_id": manifest.created_at,
        "severity": severity,
        "details": backup_details(manifest, file),
    });
    sealtrail_core::prepare_event_value(
        value,
        &TenantScope::Any,
        sealtrail_core::time_format::now_micros(),
        &EventLimits::default(),
    )
    .map_err(|e| BackupError::Refused(format!("the {action} event cannot be recorded: {e}")))
}

/// The `backup.restored` event of a restore of `from`.
pub(crate) fn restore_event(
    tenant: &str,
    actor: &str,
    manifest: &Manifest,
    from: &Path,
) -> Result<PreparedEvent, BackupError> {
    event(tenant, actor, RESTORE_ACTION, "warning", manifest, from)
}

/// The `backup.created` event of the backup `to`.
pub(crate) fn backup_event(
    tenant: &str,
    actor: &str,
    manifest: &Manifest,
    to: &Path,
) -> Result<PreparedEvent, BackupError> {
    event(tenant, actor, crate::BACKUP_ACTION, "info", manifest, to)
}

/// Appends `event` to the embedded log in `dir` (no server may be running on it).
pub(crate) fn append_sqlite(
    dir: &Path,
    event: PreparedEvent,
    what: &str,
) -> Result<u64, BackupError> {
    let (backend, signer) = sealtrail_store::sqlite::open_log(dir, None)?;
    append(backend, signer, event, what)
}

/// Appends `event` to the PostgreSQL log at `url`, signing with the key in `data_dir`.
/// Servers may be writing it too: the PostgreSQL store is shared by design, each writer
/// taking the log's lock per commit and adopting what others appended.
pub(crate) fn append_postgres(
    url: &str,
    data_dir: &Path,
    event: PreparedEvent,
    what: &str,
) -> Result<u64, BackupError> {
    let (backend, signer) = sealtrail_store::postgres::open_log(url, data_dir, None)?;
    append(backend, signer, event, what)
}

/// Appends `event` with the log's own sequencer (which first checks the stored tree
/// against its newest signed checkpoint) and waits until it is durable; returns its seq.
fn append<B: LogBackend + Send + 'static>(
    backend: B,
    signer: sealtrail_core::CheckpointSigner,
    event: PreparedEvent,
    what: &str,
) -> Result<u64, BackupError> {
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        SequencerHooks::default(),
    )?;
    let outcome = handle.append_blocking(vec![event]);
    drop(handle);
    let _ = thread.join();
    let outcome =
        outcome.map_err(|e| BackupError::Refused(format!("recording {what} in the log: {e}")))?;
    Ok(outcome
        .receipts
        .first()
        .map(|r| r.seq)
        .expect("one event appended, one receipt"))
}
