//! Project automation in Rust rather than shell: `cargo xtask test` runs every check CI
//! runs; `cargo xtask bench` measures the service against baselines in the same run.

mod api_fuzz;
mod bench;
mod fuzz;
mod test;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Formatting, lints and every test (what CI runs).
    Test,
    /// Benchmarks with baselines measured in the same run (builds in release).
    Bench(bench::BenchArgs),
    /// Starts a throwaway PostgreSQL cluster for running tests by hand, prints the
    /// `SEALTRAIL_TEST_POSTGRES` value for it, and keeps it until interrupted.
    Postgres,
    /// The minimal SSE broadcaster the stream benchmark measures as its ceiling.
    #[command(hide = true)]
    Broadcaster(bench::broadcaster::BroadcasterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Test => test::run(),
        Task::Bench(args) => bench::run(args),
        Task::Broadcaster(args) => bench::broadcaster::run(args),
        Task::Postgres => postgres_until_interrupted(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs a command in the workspace root, echoing it, failing on a non-zero exit.
pub fn run_step(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: $ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "`{program} {}` failed ({status})",
        args.join(" ")
    );
    Ok(())
}

/// `cargo xtask postgres`: a cluster for tests run by hand.
fn postgres_until_interrupted() -> anyhow::Result<()> {
    let cluster = sealtrail_testkit::PgCluster::start(300)?;
    println!(
        "export {}='{}'",
        sealtrail_testkit::pg::TEST_ENV,
        cluster.url()
    );
    eprintln!("xtask: PostgreSQL is running; Ctrl-C stops and removes it");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tokio::signal::ctrl_c())?;
    drop(cluster);
    Ok(())
}
