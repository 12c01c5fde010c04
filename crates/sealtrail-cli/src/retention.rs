//! `sealtrail retention plan`: what the configured retention policies make due now —
//! archive, delete, or kept by a legal hold — counted per tenant and policy, read from the
//! store without changing anything (no server needed). `sealtrail retention run`: asks the
//! server to run retention (or, with `--dry-run`, to report what a run would do).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sealtrail_backup::{Progress as _, Unit};
use sealtrail_core::retention_policy::Fate;
use sealtrail_server::Config;
use sealtrail_store::LogReader;
use sealtrail_store::retention::{ActiveHolds, RetentionLedger};

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Show what retention would archive and delete now, per tenant and policy (reads the
    /// store only; no server needed).
    Plan(PlanArgs),
    /// Run retention on the server now: archive, remove archived bodies from the hot
    /// store, delete what is past its retention; recorded in the log (admin key).
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    server: crate::ServerArgs,
    /// Print what a run would archive and delete, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: as of this moment (RFC 3339) instead of now.
    #[arg(long, requires = "dry_run")]
    at: Option<String>,
    /// Print the server's report as JSON.
    #[arg(long)]
    json: bool,
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

pub async fn run(command: RetentionCommand) -> anyhow::Result<ExitCode> {
    match command {
        RetentionCommand::Plan(args) => tokio::task::spawn_blocking(move || plan(args)).await?,
        RetentionCommand::Run(args) => run_on_server(args).await,
    }
}

async fn run_on_server(args: RunArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let report = args
        .server
        .client()?
        .retention_run(args.dry_run, args.at.as_deref())
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut plan = sealtrail_core::retention_policy::RetentionPlan::default();
    for row in report["plan"].as_array().into_iter().flatten() {
        let counts = ["keep", "archive", "archive_held", "delete", "held"]
            .map(|key| row[key].as_u64().unwrap_or(0));
        plan.rows.insert(
            (text(&row["tenant_id"]).into(), text(&row["policy"]).into()),
            counts,
        );
    }
    print!("{}", plan.table());
    let n = |key: &str| -> u64 {
        report["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t[key].as_u64().unwrap_or(0))
            .sum()
    };
    let segments = |key: &str| report[key].as_array().map_or(0, Vec::len);
    if args.dry_run {
        println!(
            "dry run {} as of {} over seqs 1..={}: nothing was changed",
            text(&report["run"]),
            text(&report["at"]),
            report["through_seq"]
        );
    } else {
        println!(
            "run {} over seqs 1..={}: {} archived into {} segments, {} bodies removed from the \
             hot store, {} deleted, {} kept by legal holds, {} segments removed; took {:.1}s",
            text(&report["run"]),
            report["through_seq"],
            n("archived"),
            segments("segments_written"),
            n("bodies_removed"),
            n("deleted"),
            n("held"),
            segments("segments_removed"),
            started.elapsed().as_secs_f64()
        );
        if n("not_archived") > 0 {
            println!(
                "{} events are due for archival but stay in the hot store: set \
                 retention_run.archive_to",
                n("not_archived")
            );
        }
        for refused in report["segments_refused"].as_array().into_iter().flatten() {
            println!("warning: archive segment left alone: {}", text(refused));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or("")
}

fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let now = match &args.at {
        Some(text) => sealtrail_core::time_format::parse_rfc3339_micros(text)
            .map_err(|e| anyhow::anyhow!("--at: {e}"))?,
        None => sealtrail_core::time_format::now_micros(),
    };
    let (reader, ledger): (Box<dyn LogReader>, Box<dyn RetentionLedger>) =
        match &config.database_url {
            Some(url) => (
                Box::new(sealtrail_store::postgres::PgReader::open(url)?),
                Box::new(sealtrail_store::postgres::PgLedger::open(url)?),
            ),
            None => {
                let opening = || format!("opening the log in {}", config.data_dir.display());
                (
                    Box::new(
                        sealtrail_store::sqlite::SqliteReader::open(&config.data_dir)
                            .with_context(opening)?,
                    ),
                    Box::new(
                        sealtrail_store::sqlite::SqliteLedger::open(&config.data_dir)
                            .with_context(opening)?,
                    ),
                )
            }
        };
    let through = reader.latest_checkpoint()?.map_or(0, |c| c.tree_size);
    // Holds are kept in the data directory, or in the database on PostgreSQL (`sealtrail
    // holds`): what they cover is planned as held, never as deleted.
    // A plan changes nothing, so a data directory without holds gets no holds file.
    let holds_file = config.data_dir.join(sealtrail_store::holds::HOLDS_DB_FILE);
    let holds = match (&config.database_url, holds_file.exists()) {
        (Some(url), _) => {
            ActiveHolds::load(&sealtrail_store::holds::HoldStore::open_postgres(url, None)?.0)?
        }
        (None, true) => {
            ActiveHolds::load(&sealtrail_store::holds::HoldStore::open(&config.data_dir)?)?
        }
        (None, false) => ActiveHolds(Vec::new()),
    };
    let mut progress = crate::progress::Report::new();
    progress.begin("planning retention", through, Unit::Events);
    let started = std::time::Instant::now();
    let plan = sealtrail_store::retention::plan(
        &*ledger,
        &config.retention,
        now,
        through,
        &holds,
        |done, total| progress.set(done, total),
    )?;
    progress.end();
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
