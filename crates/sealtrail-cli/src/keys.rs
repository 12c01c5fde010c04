//! `sealtrail keys`.

use std::process::ExitCode;

use clap::Subcommand;
use sealtrail_core::Scope;
use sealtrail_core::time_format::format_micros;
use sealtrail_store::ApiKeyStore;

use crate::DataDirArg;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        #[command(flatten)]
        data: DataDirArg,
        /// Comma-separated scopes: ingest, read, stream, admin.
        #[arg(long)]
        scopes: String,
        /// Bind the key to one tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// A note on what the key is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Revoke a key by its id; the server refuses it at once.
    Revoke {
        #[command(flatten)]
        data: DataDirArg,
        /// The key id (the part after `st_`, before the second `_`).
        key_id: String,
    },
}

pub fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create {
            data,
            scopes,
            tenant,
            description,
        } => {
            let scopes = Scope::parse_list(&scopes).map_err(anyhow::Error::msg)?;
            let store = ApiKeyStore::open(&data.data_dir)?;
            let (info, secret) =
                store.create(&scopes, tenant.as_deref(), description.as_deref())?;
            println!("{secret}");
            eprintln!(
                "created key {} with scopes {}{}",
                info.key_id,
                Scope::join(&info.scopes),
                info.tenant_id
                    .map(|t| format!(" for tenant {t}"))
                    .unwrap_or_default()
            );
        }
        KeysCommand::List { data } => {
            let store = ApiKeyStore::open(&data.data_dir)?;
            println!(
                "{:<14} {:<20} {:<24} {:<28} STATUS",
                "KEY ID", "SCOPES", "TENANT", "CREATED"
            );
            for key in store.list()? {
                let status = match key.revoked_at {
                    Some(at) => format!("revoked {}", format_micros(at)),
                    None => "active".into(),
                };
                println!(
                    "{:<14} {:<20} {:<24} {:<28} {status}",
                    key.key_id,
                    Scope::join(&key.scopes),
                    key.tenant_id.as_deref().unwrap_or("(all)"),
                    format_micros(key.created_at),
                );
            }
        }
        KeysCommand::Revoke { data, key_id } => {
            let store = ApiKeyStore::open(&data.data_dir)?;
            if !store.revoke(&key_id)? {
                anyhow::bail!("no active key with id {key_id}");
            }
            eprintln!("revoked key {key_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
