//! `sealtrail retention plan`: what the configured retention policies make due now —
//! archive, delete, or kept by a legal hold — counted per tenant and policy, without
//! changing anything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sealtrail_core::retention_policy::Fate;
use sealtrail_server::Config;
use sealtrail_store::LogReader;
use sealtrail_store::retention::ActiveHolds;

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Show what retention would archive and delete now, per tenant and policy (reads only).
    Plan(PlanArgs),
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The server's configuration file (its `[retention]` policies, data_dir and
    /// database_url; SEALTRAIL_* variables override it as for `serve`).
    #[arg(long, env = "SEALTRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory (overrides the configuration's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Plan as of this moment (RFC 3339) instead of now.
    #[arg(long)]
    at: Option<String>,
    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: RetentionCommand) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Plan(args) = command;
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let now = match &args.at {
        Some(text) => sealtrail_core::time_format::parse_rfc3339_micros(text)
            .map_err(|e| anyhow::anyhow!("--at: {e}"))?,
        None => sealtrail_core::time_format::now_micros(),
    };
    let reader: Box<dyn LogReader> = match &config.database_url {
        Some(url) => Box::new(sealtrail_store::postgres::PgReader::open(url)?),
        None => Box::new(
            sealtrail_store::sqlite::SqliteReader::open(&config.data_dir)
                .with_context(|| format!("opening the log in {}", config.data_dir.display()))?,
        ),
    };
    // Holds are kept in the data directory (`sealtrail holds`): what they cover is planned
    // as held, never as deleted.
    // A plan changes nothing, so a data directory without holds gets no holds file.
    let holds_file = config.data_dir.join(sealtrail_store::holds::HOLDS_DB_FILE);
    let holds = match holds_file.exists() {
        true => ActiveHolds::load(&sealtrail_store::holds::HoldStore::open(&config.data_dir)?)?,
        false => ActiveHolds(Vec::new()),
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} planning {bar:40} {pos}/{len} events ({per_sec})")
            .expect("the template is valid"),
    );
    let started = std::time::Instant::now();
    let plan = sealtrail_store::retention::plan(
        &*reader,
        &config.retention,
        now,
        &holds,
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )?;
    bar.finish_and_clear();
    if args.json {
        let rows: Vec<serde_json::Value> = plan
            .rows
            .iter()
            .map(|((tenant, policy), counts)| {
                let mut row = serde_json::json!({"tenant_id": tenant, "policy": policy});
                for (fate, n) in Fate::ALL.iter().zip(counts) {
                    row[fate.as_str()] = (*n).into();
                }
                row
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", plan.table());
        println!(
            "due: {} to archive ({} of them held: bodies stay), {} to delete, {} held past retention; \
             planned in {:.1}s (nothing was changed)",
            plan.total(Fate::Archive) + plan.total(Fate::ArchiveHeld),
            plan.total(Fate::ArchiveHeld),
            plan.total(Fate::Delete),
            plan.total(Fate::Held),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
