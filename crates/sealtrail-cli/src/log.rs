//! `sealtrail log`: the log's signing key — rotate it on a running server, or prepare the
//! next key in a data directory (to copy to every server of a shared database first).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use sealtrail_store::identity;

use crate::{DataDirArg, ServerArgs};

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Hand the log to a new signing key (admin key): the server records the rotation,
    /// signed by the old and the new key, in the log; from then on it signs with the new
    /// key. The new key is `log-signing.next` in the server's data directory when there is
    /// one (see `prepare-signing-key`), else a new one.
    RotateSigningKey {
        #[command(flatten)]
        server: ServerArgs,
        /// Why (recorded in the log): 1 to 1024 characters.
        #[arg(long)]
        reason: String,
    },
    /// Write the next signing key to `log-signing.next` in a data directory (or keep the
    /// one there) and print its public key. With several servers on one database, copy
    /// that file into each server's data directory before rotating: each then follows the
    /// rotation by itself.
    PrepareSigningKey {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// The log's origin (the first line of its checkpoints; `GET /v1/public-key`).
        #[arg(long)]
        origin: String,
    },
}

pub async fn run(command: LogCommand) -> anyhow::Result<ExitCode> {
    match command {
        LogCommand::RotateSigningKey { server, reason } => {
            let answer = server.client()?.rotate_signing_key(&reason).await?;
            println!(
                "rotated the signing key at tree size {}: {} -> {}; recorded as event {}",
                answer["from_size"],
                answer["old_vkey"].as_str().unwrap_or(""),
                answer["new_vkey"].as_str().unwrap_or(""),
                answer["event_id"].as_str().unwrap_or(""),
            );
        }
        LogCommand::PrepareSigningKey { data_dir, origin } => {
            let dir = data_dir.data_dir;
            let seed = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || identity::prepare_next_signing_key(&dir)
            })
            .await??;
            let signer =
                sealtrail_core::CheckpointSigner::new(&origin, &seed).context("--origin")?;
            println!(
                "{}\n(the next signing key, in {})",
                signer.verifier().vkey(),
                dir.join(identity::NEXT_SIGNING_KEY_FILE).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
