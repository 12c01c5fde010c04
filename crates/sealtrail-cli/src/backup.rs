//! `sealtrail backup` and `sealtrail restore`: flags and output over `sealtrail-backup`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use sealtrail_backup::{BackupOptions, RestoreOptions};

use crate::progress::Report;
use sealtrail_core::CheckpointVerifier;
use sealtrail_server::Config;

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The server's configuration file: its data_dir, and its database_url for a
    /// PostgreSQL store (SEALTRAIL_* variables override it as for `serve`).
    #[arg(long, env = "SEALTRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// The server's data directory (overrides the configuration's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Back up the log in this PostgreSQL database (overrides the configuration's
    /// database_url); the data directory's other files are backed up with it.
    #[arg(long)]
    database_url: Option<String>,
    /// The tenant the `backup.created` event is recorded in (PostgreSQL store).
    #[arg(long, default_value = "_sealtrail")]
    tenant: String,
    /// The backup file to create (never overwritten).
    #[arg(long)]
    to: PathBuf,
    /// Encrypt to this age recipient (`age1…`, from `age-keygen -y key.txt`); repeatable.
    #[arg(long = "recipient", value_name = "AGE_RECIPIENT")]
    recipients: Vec<String>,
    /// Encrypt to every recipient in this file (one per line, `#` comments); repeatable.
    #[arg(long = "recipients-file", value_name = "FILE")]
    recipients_files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    from: PathBuf,
    /// An age identity file that can decrypt it (`age-keygen`'s key.txt); repeatable.
    #[arg(long = "identity", value_name = "KEYFILE", required = true)]
    identities: Vec<PathBuf>,
    /// The data directory to create (absent or empty).
    #[arg(long)]
    data_dir: PathBuf,
    /// Restore a PostgreSQL backup's log into this new, empty database (overrides the
    /// configuration's database_url).
    #[arg(long)]
    database_url: Option<String>,
    /// A configuration file whose database_url to restore into (SEALTRAIL_* variables
    /// override it as for `serve`).
    #[arg(long, env = "SEALTRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// Replace a data directory that already holds a log; the old one is moved aside.
    #[arg(long)]
    force: bool,
    /// The tenant the `backup.restored` event is recorded in.
    #[arg(long, default_value = "_sealtrail")]
    tenant: String,
    /// The log's public key (`GET /v1/public-key`'s `vkey`): the restored log must be
    /// signed with it. Without it, the key inside the backup is trusted.
    #[arg(long)]
    public_key: Option<String>,
}

pub fn run_backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let mut recipients = args
        .recipients
        .iter()
        .map(|r| sealtrail_backup::parse_recipient(r).context("--recipient"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for file in &args.recipients_files {
        recipients
            .extend(sealtrail_backup::read_recipients_file(file).context("--recipients-file")?);
    }
    if recipients.is_empty() {
        anyhow::bail!(
            "give --recipient AGE_RECIPIENT or --recipients-file FILE: a backup is always encrypted"
        );
    }
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = args.database_url {
        config.database_url = Some(url);
    }
    let dir = &config.data_dir;
    let actor = actor();
    let options = BackupOptions {
        database_url: config.database_url.as_deref(),
        tenant: &args.tenant,
        actor: &actor,
    };
    let store = match &config.database_url {
        Some(url) => format!(
            "the PostgreSQL store at {} and {}",
            sealtrail_store::postgres::redact(url),
            dir.display()
        ),
        None => dir.display().to_string(),
    };
    let summary =
        sealtrail_backup::create_backup(dir, &args.to, &recipients, &options, &mut Report::new())
            .with_context(|| format!("backing up {store} to {}", args.to.display()))?;
    let m = &summary.manifest;
    let secs = summary.elapsed.as_secs_f64().max(1e-3);
    println!(
        "backup: {} of {}: {} files, {} bytes ({} encrypted), {} events, tree size {}, {:.1}s \
         ({:.0} events/s, {:.1} MB/s) -> {}",
        match m.store {
            sealtrail_backup::StoreKind::Sqlite => "embedded store",
            sealtrail_backup::StoreKind::Postgres => "PostgreSQL store",
        },
        dir.display(),
        m.files.len(),
        summary.packed_bytes,
        summary.file_bytes,
        m.tree_size,
        m.tree_size,
        summary.elapsed.as_secs_f64(),
        m.tree_size as f64 / secs,
        summary.packed_bytes as f64 / secs / 1e6,
        summary.file.display()
    );
    if let Some(pg) = &m.postgres {
        let tables = pg
            .tables
            .iter()
            .map(|t| format!("{} {}", t.name, t.rows))
            .collect::<Vec<_>>()
            .join(", ");
        println!("tables (rows): {tables}");
    }
    if let Some(seq) = summary.recorded_seq {
        println!(
            "backup recorded in the log as seq {seq} ({})",
            sealtrail_backup::BACKUP_ACTION
        );
    }
    if !summary.left_out.is_empty() {
        eprintln!(
            "left out, not Sealtrail state: {}",
            summary.left_out.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let mut identities = Vec::new();
    for file in &args.identities {
        identities.extend(sealtrail_backup::read_identity_file(file).context("--identity")?);
    }
    let verifier = args
        .public_key
        .as_deref()
        .map(CheckpointVerifier::from_vkey)
        .transpose()
        .context("--public-key")?;
    let actor = actor();
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(url) = args.database_url {
        config.database_url = Some(url);
    }
    let options = RestoreOptions {
        force: args.force,
        tenant: &args.tenant,
        verifier: verifier.as_ref(),
        actor: &actor,
        database_url: config.database_url.as_deref(),
    };
    let names = args
        .identities
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let summary = match sealtrail_backup::restore_backup(
        &args.from,
        &identities,
        &names,
        &args.data_dir,
        &options,
        &mut Report::new(),
    ) {
        Ok(summary) => summary,
        Err(e @ sealtrail_backup::BackupError::RestoredNotRecorded { .. }) => {
            return Err(anyhow::Error::new(e).context(format!("restoring {}", args.from.display())));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "restoring {} into {} (nothing was written there)",
                args.from.display(),
                args.data_dir.display()
            )));
        }
    };
    if let Some(aside) = &summary.replaced {
        eprintln!(
            "the previous {} is kept as {}",
            args.data_dir.display(),
            aside.display()
        );
    }
    let into = match &config.database_url {
        Some(url) => format!(
            "{} and {}",
            sealtrail_store::postgres::redact(url),
            args.data_dir.display()
        ),
        None => args.data_dir.display().to_string(),
    };
    println!(
        "restored: {} files, {} events verified, tree size {} (backup of {}), restore recorded as seq {} in {:.1}s ({:.0} events/s) -> {}",
        summary.manifest.files.len(),
        summary.events_verified,
        summary.manifest.tree_size,
        summary.manifest.created_at,
        summary.restore_event_seq,
        summary.elapsed.as_secs_f64(),
        summary.events_verified as f64 / summary.elapsed.as_secs_f64().max(1e-3),
        into
    );
    Ok(ExitCode::SUCCESS)
}

/// Who runs the command, for the events it records (`os:alice`).
fn actor() -> String {
    format!(
        "os:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}
