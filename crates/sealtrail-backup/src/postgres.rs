//! The PostgreSQL side of a restore: the unpacked table copies into an empty database,
//! committed only once the whole log verifies (see
//! [`sealtrail_store::postgres::restore_postgres`]).

use std::path::Path;

use sealtrail_store::postgres::RestoreStep;

use crate::manifest::Manifest;
use crate::restore::RestoreOptions;
use crate::{BackupError, Progress, Unit};

/// Restores the tables unpacked in `staging` into the database at `url` and verifies the
/// log against the manifest's checkpoint, with the pinned key or else the signing key
/// inside the backup; returns the events verified. On any failure the database is left
/// as it was (empty).
pub(crate) fn restore_tables(
    url: &str,
    staging: &Path,
    manifest: &Manifest,
    options: &RestoreOptions<'_>,
    progress: &mut dyn Progress,
) -> Result<u64, BackupError> {
    let section = manifest
        .postgres
        .as_ref()
        .expect("a checked PostgreSQL manifest has its section");
    let verifier = match options.verifier {
        Some(v) => v.clone(),
        None => {
            let seed = sealtrail_store::identity::read_signing_key(staging)?;
            sealtrail_core::CheckpointSigner::new(&manifest.origin, &seed)
                .map_err(|e| BackupError::Unverified(format!("the backup's origin: {e}")))?
                .verifier()
                .clone()
        }
    };
    let dump = section.to_dump(manifest);
    let mut current: Option<String> = None;
    let mut verifying = false;
    let report =
        sealtrail_store::postgres::restore_postgres(url, &dump, staging, &verifier, |step| {
            match step {
                RestoreStep::Copy {
                    table,
                    bytes,
                    total,
                } => {
                    if current.as_deref() != Some(table) {
                        if current.is_some() {
                            progress.end();
                        }
                        progress.begin(&format!("copy table {table} in"), total, Unit::Bytes);
                        current = Some(table.to_owned());
                    }
                    progress.set(bytes, total);
                }
                RestoreStep::Verify { done, total } => {
                    if !verifying {
                        if current.take().is_some() {
                            progress.end();
                        }
                        progress.begin("verify the log", manifest.tree_size, Unit::Events);
                        verifying = true;
                    }
                    progress.set(done, total);
                }
            }
        })
        .map_err(|e| match e {
            sealtrail_store::StoreError::Integrity(detail) => BackupError::Unverified(detail),
            other => BackupError::Store(other),
        })?;
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
