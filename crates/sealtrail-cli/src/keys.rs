//! `sealtrail keys`.

use std::process::ExitCode;

use clap::Subcommand;
use sealtrail_core::Scope;
use sealtrail_core::time_format::format_micros;
use sealtrail_store::ApiKeyStore;

use crate::DataDirArg;

/// Where the keys are: the data directory's `keys.sqlite`, or with a database URL the
/// PostgreSQL database every server on it shares.
#[derive(clap::Args, Debug)]
pub struct KeysAt {
    #[command(flatten)]
    data: DataDirArg,
    /// The PostgreSQL database of the servers (their keys are there, not in the data
    /// directory).
    #[arg(long, env = "SEALTRAIL_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl KeysAt {
    fn open(&self) -> anyhow::Result<ApiKeyStore> {
        Ok(match &self.database_url {
            Some(url) => {
                sealtrail_store::postgres::check_schema(&mut sealtrail_store::postgres::connect(
                    url,
                )?)?;
                ApiKeyStore::open_postgres(url, Some(&self.data.data_dir))?.0
            }
            None => ApiKeyStore::open(&self.data.data_dir)?,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it (it is shown only this once).
    Create {
        #[command(flatten)]
        data: KeysAt,
        /// Comma-separated scopes: ingest, read, stream, admin.
        #[arg(long)]
        scopes: String,
        /// Bind the key to one tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// A note on what the key is for.
        #[arg(long)]
        description: Option<String>,
        /// Refuse the key after this long: 90d, 12h, 30m, 3600s.
        #[arg(long, value_parser = parse_duration_micros)]
        expires_in: Option<i64>,
    },
    /// Replace a key with a new one of the same scopes and tenant (printed once); the old
    /// one is refused at once, or after --grace.
    Rotate {
        #[command(flatten)]
        data: KeysAt,
        /// The key id.
        key_id: String,
        /// Keep the old key working this long: 1h, 7d, ...
        #[arg(long, value_parser = parse_duration_micros)]
        grace: Option<i64>,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        data: KeysAt,
    },
    /// Wrap every field-encryption data key by the configuration's master_key, each
    /// still wrapped by one of its previous_master_keys; online, while the servers run
    /// with both configured. Afterwards the previous keys open nothing: remove them.
    RotateMaster {
        /// The server's configuration file ([encryption], data_dir, database_url;
        /// SEALTRAIL_* variables override it as for `serve`).
        #[arg(long, env = "SEALTRAIL_CONFIG")]
        config: Option<std::path::PathBuf>,
        /// The server's data directory (overrides the configuration's).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// The servers' PostgreSQL database (overrides the configuration's).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Revoke a key by its id; the server refuses it at once.
    Revoke {
        #[command(flatten)]
        data: KeysAt,
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
            expires_in,
        } => {
            let scopes = Scope::parse_list(&scopes).map_err(anyhow::Error::msg)?;
            let store = data.open()?;
            let expires_at = expires_in.map(|d| sealtrail_core::time_format::now_micros() + d);
            let (info, secret) = store.create_expiring(
                &scopes,
                tenant.as_deref(),
                description.as_deref(),
                expires_at,
            )?;
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
            let store = data.open()?;
            println!(
                "{:<14} {:<20} {:<24} {:<28} STATUS",
                "KEY ID", "SCOPES", "TENANT", "CREATED"
            );
            let now = sealtrail_core::time_format::now_micros();
            for key in store.list()? {
                let status = key.state(now);
                println!(
                    "{:<14} {:<20} {:<24} {:<28} {status}",
                    key.key_id,
                    Scope::join(&key.scopes),
                    key.tenant_id.as_deref().unwrap_or("(all)"),
                    format_micros(key.created_at),
                );
            }
        }
        KeysCommand::Rotate {
            data,
            key_id,
            grace,
        } => {
            let store = data.open()?;
            let Some((info, secret)) = store.rotate(&key_id, grace)? else {
                anyhow::bail!("no live key with id {key_id}");
            };
            println!("{secret}");
            eprintln!(
                "key {} replaces {key_id}, which is {}",
                info.key_id,
                match grace {
                    Some(_) => "refused after the grace period",
                    None => "refused from now on",
                }
            );
        }
        KeysCommand::RotateMaster {
            config,
            data_dir,
            database_url,
        } => return rotate_master(config.as_deref(), data_dir, database_url),
        KeysCommand::Revoke { data, key_id } => {
            let store = data.open()?;
            if !store.revoke(&key_id)? {
                anyhow::bail!("no active key with id {key_id}");
            }
            eprintln!("revoked key {key_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys rotate-master`: rewraps the data keys of the configured store.
fn rotate_master(
    config: Option<&std::path::Path>,
    data_dir: Option<std::path::PathBuf>,
    database_url: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut config = sealtrail_server::Config::load(config, std::env::vars())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    if database_url.is_some() {
        config.database_url = database_url;
    }
    if config.database_url.is_none() && !config.data_dir.is_dir() {
        anyhow::bail!(
            "{} is not a data directory (give --data-dir or the configuration's data_dir)",
            config.data_dir.display()
        );
    }
    let Some(encryption) = &config.encryption else {
        anyhow::bail!("the configuration has no [encryption]: there are no data keys");
    };
    if encryption.previous_master_keys.is_empty() {
        anyhow::bail!(
            "encryption.previous_master_keys is empty: set encryption.master_key to the new \
             key, list the old one in previous_master_keys, restart the servers with it, then \
             run this"
        );
    }
    let cipher = sealtrail_server::open_cipher(
        &config.data_dir,
        config.database_url.as_deref(),
        encryption,
    )?;
    let report = cipher.rewrap_under_current_master()?;
    if report.stranded > 0 {
        anyhow::bail!(
            "{} data keys were wrapped by the new master key, but {} still are not (a server \
             still running with the old master_key alone files new keys under it): restart \
             every server with the new master_key and previous_master_keys, then run this \
             again; keep previous_master_keys until it succeeds",
            report.rewrapped,
            report.stranded
        );
    }
    println!(
        "{} data keys wrapped by the new master key, {} were already, {} destroyed meanwhile; \
         the previous master keys can now be removed from the configuration",
        report.rewrapped, report.already, report.gone_meanwhile
    );
    Ok(ExitCode::SUCCESS)
}

/// `90d`, `12h`, `30m`, `45s` (or plain seconds) in microseconds.
fn parse_duration_micros(text: &str) -> Result<i64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90d, 12h, 30m or 45s"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    if n == 0 {
        return Err("a duration must be more than zero".into());
    }
    n.checked_mul(unit_secs * 1_000_000)
        .filter(|&m| m <= 10 * 365 * 86_400 * 1_000_000)
        .ok_or_else(|| format!("{text:?} is longer than ten years"))
}
