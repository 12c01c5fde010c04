//! `sealtrail migrate`: creates or upgrades the PostgreSQL schema.

use std::process::ExitCode;

use clap::Args;
use sealtrail_store::postgres;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The database (`postgres://user:password@host/db` or `host=... dbname=...`).
    #[arg(long, env = "SEALTRAIL_DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let mut client = postgres::connect(&args.database_url)?;
    let applied = postgres::migrate(&mut client)?;
    let at = postgres::redact(&args.database_url);
    if applied.is_empty() {
        println!(
            "{at}: schema already at version {}",
            postgres::SCHEMA_VERSION
        );
    } else {
        let versions: Vec<String> = applied.iter().map(i64::to_string).collect();
        println!(
            "{at}: applied migration {} (schema version {})",
            versions.join(", "),
            postgres::SCHEMA_VERSION
        );
    }
    Ok(ExitCode::SUCCESS)
}
