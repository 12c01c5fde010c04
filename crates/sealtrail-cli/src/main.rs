//! `sealtrail`: a thin command-line layer over the Sealtrail libraries.

mod archive;
mod backup;
mod demo;
mod evidence;
mod filter;
mod holds;
mod ingest;
mod keys;
mod log;
mod migrate;
mod progress;
mod query;
mod retention;
mod serve;
mod sinks;
mod spool;
mod tail;
mod tenants;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Ingest allocates and frees many small objects per event (parsed JSON, records, hashes);
/// glibc's allocator spent about a sixth of the server's CPU on that in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A tamper-evident audit log.
#[derive(Parser)]
#[command(name = "sealtrail", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (on the embedded store, or on PostgreSQL with --database-url).
    Serve(serve::ServeArgs),
    /// Create or upgrade the PostgreSQL schema.
    Migrate(migrate::MigrateArgs),
    /// Create, list and revoke API keys (works while the server runs).
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Recompute the log from its records and check every hash and signature (or, with
    /// --archive, archive segments offline).
    Verify(verify::VerifyArgs),
    /// Archive segments: write a seq range to compressed, verifiable files; find archived
    /// events again, offline.
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
    /// Send NDJSON events from a file or stdin to a server.
    Ingest(ingest::IngestArgs),
    /// Query events on a server.
    Query(query::QueryArgs),
    /// Export a tenant's events as an evidence bundle an auditor can check offline.
    Export(evidence::export::ExportArgs),
    /// Follow events live, resuming by itself after a drop or a server restart.
    Tail(tail::TailArgs),
    /// Fill a server with realistic wedding-planning audit events.
    Demo(demo::DemoArgs),
    /// Sinks: delivery state, dead letters, replay.
    Sinks {
        #[command(subcommand)]
        command: sinks::SinksCommand,
    },
    /// The outage spool: events the log refused when it drained, and receipts.
    Spool {
        #[command(subcommand)]
        command: spool::SpoolCommand,
    },
    /// Crypto-shredding: destroy a tenant's or a data subject's encryption keys.
    Tenants {
        #[command(subcommand)]
        command: tenants::TenantsCommand,
    },
    /// Back up the store (embedded or PostgreSQL; online, while the server runs), encrypted
    /// with age.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new data directory (and a new empty PostgreSQL database for
    /// a PostgreSQL backup), after verifying the whole log.
    Restore(backup::RestoreArgs),
    /// Retention: what is due for archival and deletion (plan), and running it (run).
    Retention {
        #[command(subcommand)]
        command: retention::RetentionCommand,
    },
    /// Legal holds: block retention and archival deletion of a tenant or a resource.
    Holds {
        #[command(subcommand)]
        command: holds::HoldsCommand,
    },
    /// The log's signing key: rotate it, or prepare the next one for several servers.
    Log {
        #[command(subcommand)]
        command: log::LogCommand,
    },
    /// Check a configuration file (sinks, routes, secrets, limits) without starting.
    Config {
        #[command(subcommand)]
        command: serve::ConfigCommand,
    },
}

/// Where the data directory is.
#[derive(Args, Clone, Debug)]
pub struct DataDirArg {
    /// The server's data directory.
    #[arg(long, env = "SEALTRAIL_DATA_DIR", default_value = "./sealtrail-data")]
    pub data_dir: PathBuf,
}

/// Which server to talk to, and with which key.
#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// Server URL.
    #[arg(long, env = "SEALTRAIL_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// API key (see `sealtrail keys create`).
    #[arg(long, env = "SEALTRAIL_KEY", hide_env_values = true)]
    pub key: String,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<sealtrail_client::Client> {
        Ok(sealtrail_client::Client::new(&self.url, &self.key)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEALTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("sealtrail-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            // Blocking work (files, and the PostgreSQL client, which runs its own runtime)
            // off the async workers.
            Command::Keys { command } => blocking(move || keys::run(command)).await,
            Command::Verify(args) => blocking(move || verify::run(args)).await,
            Command::Archive { command } => blocking(move || archive::run(command)).await,
            Command::Migrate(args) => blocking(move || migrate::run(args)).await,
            Command::Backup(args) => blocking(move || backup::run_backup(args)).await,
            Command::Restore(args) => blocking(move || backup::run_restore(args)).await,
            Command::Ingest(args) => ingest::run(args).await,
            Command::Query(args) => query::run(args).await,
            Command::Export(args) => evidence::export::run(args).await,
            Command::Tail(args) => tail::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Sinks { command } => sinks::run(command).await,
            Command::Spool { command } => spool::run(command).await,
            Command::Tenants { command } => tenants::run(command).await,
            Command::Holds { command } => holds::run(command).await,
            Command::Log { command } => log::run(command).await,
            Command::Config { command } => serve::check_config(command),
            Command::Retention { command } => retention::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn blocking(
    work: impl FnOnce() -> anyhow::Result<ExitCode> + Send + 'static,
) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(work).await?
}
