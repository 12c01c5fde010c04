//! `sealtrail backup` and `sealtrail restore`: flags and output over `sealtrail-backup`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sealtrail_backup::{Progress, RestoreOptions, Unit};
use sealtrail_core::CheckpointVerifier;

use crate::DataDirArg;

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    data: DataDirArg,
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
    let dir = &args.data.data_dir;
    let summary =
        sealtrail_backup::create_backup(dir, &args.to, &recipients, &mut Report::new())
            .with_context(|| format!("backing up {} to {}", dir.display(), args.to.display()))?;
    let m = &summary.manifest;
    println!(
        "backup: {} files, {} bytes ({} encrypted), {} events, tree size {}, {:.1}s -> {}",
        m.files.len(),
        summary.packed_bytes,
        summary.file_bytes,
        m.tree_size,
        m.tree_size,
        summary.elapsed.as_secs_f64(),
        summary.file.display()
    );
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
    let actor = format!(
        "os:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let options = RestoreOptions {
        force: args.force,
        tenant: &args.tenant,
        verifier: verifier.as_ref(),
        actor: &actor,
    };
    let names = args
        .identities
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let summary = sealtrail_backup::restore_backup(
        &args.from,
        &identities,
        &names,
        &args.data_dir,
        &options,
        &mut Report::new(),
    )
    .with_context(|| {
        format!(
            "restoring {} into {} (nothing was written there)",
            args.from.display(),
            args.data_dir.display()
        )
    })?;
    if let Some(aside) = &summary.replaced {
        eprintln!(
            "the previous {} is kept as {}",
            args.data_dir.display(),
            aside.display()
        );
    }
    println!(
        "restored: {} files, {} events verified, tree size {} (backup of {}), restore recorded as seq {} in {:.1}s -> {}",
        summary.manifest.files.len(),
        summary.events_verified,
        summary.manifest.tree_size,
        summary.manifest.created_at,
        summary.restore_event_seq,
        summary.elapsed.as_secs_f64(),
        args.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on a terminal; otherwise one plain line per step on stderr.
struct Report {
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl Report {
    fn new() -> Self {
        Self {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for Report {
    fn begin(&mut self, step: &str, total: u64, unit: Unit) {
        if !self.terminal {
            eprintln!("{step}");
            return;
        }
        let template = match unit {
            Unit::Bytes => "{spinner} {msg} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})",
            Unit::Events => "{spinner} {msg} {bar:40} {pos}/{len} events ({per_sec})",
        };
        let bar = ProgressBar::new(total)
            .with_style(ProgressStyle::with_template(template).expect("the template is valid"));
        bar.set_message(step.to_owned());
        self.bar = Some(bar);
    }

    fn set(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    fn end(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
