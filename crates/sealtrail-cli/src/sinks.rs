//! `sealtrail sinks`: each sink's delivery state, its dead letters, and replaying them
//! (an admin key bound to no tenant).

use std::process::ExitCode;

use clap::Subcommand;

use crate::ServerArgs;

/// Most dead letters listed.
const MAX_LISTED: usize = 1000;

#[derive(Subcommand, Debug)]
pub enum SinksCommand {
    /// Every sink: cursor, lag, last success and error, retry and circuit state.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the JSON the API returns.
        #[arg(long)]
        json: bool,
    },
    /// Events a sink's receiver refused for good, with its answer.
    DeadLetters {
        #[command(flatten)]
        server: ServerArgs,
        /// The sink.
        sink: String,
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_LISTED as u64))]
        limit: u64,
    },
    /// Send dead letters again (all of the sink's, or those named by --seq).
    Replay {
        #[command(flatten)]
        server: ServerArgs,
        /// The sink.
        sink: String,
        /// Only this event (repeatable).
        #[arg(long = "seq")]
        seqs: Vec<u64>,
    },
}

pub async fn run(command: SinksCommand) -> anyhow::Result<ExitCode> {
    match command {
        SinksCommand::List { server, json } => {
            let sinks = server.client()?.sinks().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sinks)?);
                return Ok(ExitCode::SUCCESS);
            }
            if sinks.is_empty() {
                println!("no sinks are configured");
            }
            for s in &sinks {
                println!(
                    "{:<20} {:<14} cursor {:<10} lag {} events / {:.1}s  circuit {}  delivered {}  dead letters {}",
                    s["name"].as_str().unwrap_or(""),
                    s["kind"].as_str().unwrap_or(""),
                    s["cursor"],
                    s["lag_events"],
                    s["lag_seconds"].as_f64().unwrap_or(0.0),
                    s["circuit"].as_str().unwrap_or(""),
                    s["delivered_events"],
                    s["dead_letters"],
                );
                if let Some(at) = s["last_success_at"].as_str() {
                    println!("    last success {at}");
                }
                if let Some(error) = s["last_error"].as_object() {
                    println!(
                        "    last error   {} {}",
                        error["at"].as_str().unwrap_or(""),
                        error["message"].as_str().unwrap_or("")
                    );
                }
                if let Some(next) = s["next_attempt_at"].as_str() {
                    println!(
                        "    retrying     after {} failures, next at {next}",
                        s["consecutive_failures"]
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SinksCommand::DeadLetters {
            server,
            sink,
            limit,
        } => {
            let letters = server.client()?.dead_letters(&sink, limit as usize).await?;
            for d in &letters {
                println!(
                    "seq {} id {} attempts {} since {}{}\n    {}",
                    d["seq"],
                    d["event_id"].as_str().unwrap_or(""),
                    d["attempts"],
                    d["created_at"].as_str().unwrap_or(""),
                    if d["replay_requested"] == true {
                        " (replay queued)"
                    } else {
                        ""
                    },
                    d["error"].as_str().unwrap_or("")
                );
            }
            eprintln!("{} dead letters", letters.len());
            Ok(ExitCode::SUCCESS)
        }
        SinksCommand::Replay { server, sink, seqs } => {
            let seqs = (!seqs.is_empty()).then_some(seqs);
            let answer = server
                .client()?
                .replay_dead_letters(&sink, seqs.as_deref())
                .await?;
            println!("{} dead letters queued for replay", answer["queued"]);
            Ok(ExitCode::SUCCESS)
        }
    }
}
