//! `sealtrail migrate`: creates or upgrades the PostgreSQL schema.

use std::process::ExitCode;

use clap::Args;
use sealtrail_store::postgres;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The database (`postgres://user:password@host/db` or `host=... dbname=...`).
    #[arg(long, env = "SEALTRAIL_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The role `sealtrail serve` connects as: it is granted what the service needs (append
    /// to the log, read it) and nothing more — never UPDATE or DELETE on events.
    #[arg(long)]
    app_role: Option<String>,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let mut client = postgres::connect(&args.database_url)?;
    let applied = postgres::migrate(&mut client)?;
    let at = postgres::redact(&args.database_url);
    if let Some(role) = &args.app_role {
        postgres::grant_service_role(&mut client, role)?;
        println!("{at}: role {role} may append to the log and read it, and nothing more");
    }
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
