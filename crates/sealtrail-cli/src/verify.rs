//! `sealtrail verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sealtrail_core::CheckpointVerifier;
use sealtrail_store::verify::verify_sqlite;

use crate::DataDirArg;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// The log's public key (`GET /v1/public-key`'s `vkey`). Pin it: without it the key is
    /// read from the data directory, which whoever can edit the log may also have replaced.
    #[arg(long)]
    public_key: Option<String>,
    /// A signed checkpoint kept outside the server (a file holding the note); verify checks
    /// the log still contains exactly the tree it signed, exposing a rollback.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Verify the log in this PostgreSQL database (the data directory then only holds the
    /// signing key, used when --public-key is not given).
    #[arg(long, env = "SEALTRAIL_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data.data_dir;
    let verifier = match &args.public_key {
        Some(vkey) => CheckpointVerifier::from_vkey(vkey).context("--public-key")?,
        None => match &args.database_url {
            Some(url) => sealtrail_store::postgres::log_verifier(url, dir)?,
            None => sealtrail_store::sqlite::log_verifier(dir)?,
        },
    };
    let kept = args
        .checkpoint
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} verifying {bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .expect("the template is valid"),
    );
    let started = std::time::Instant::now();
    let progress = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = match &args.database_url {
        Some(url) => {
            sealtrail_store::postgres::verify_postgres(url, &verifier, kept.as_deref(), progress)?
        }
        None => verify_sqlite(dir, &verifier, kept.as_deref(), progress)?,
    };
    bar.finish_and_clear();
    match report.problem {
        None => {
            println!(
                "ok: {} events and {} signed checkpoints verified in {:.1}s; tree size {}, root {}",
                report.events,
                report.checkpoints,
                started.elapsed().as_secs_f64(),
                report.tree_size,
                hex::encode(report.root)
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(finding) => {
            println!("FAILED: {finding}");
            Ok(ExitCode::FAILURE)
        }
    }
}
