//! `sealtrail spool`: what the outage spool could not hand to the log (spooled events the
//! log refused when it drained, each with the reason) and the receipt of one event.

use std::process::ExitCode;

use clap::Subcommand;

use crate::ServerArgs;

#[derive(Subcommand, Debug)]
pub enum SpoolCommand {
    /// Spooled events the log refused when the spool drained, oldest first, with the
    /// reason (an admin key bound to no tenant). Exits 1 when there are any.
    Rejected {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the JSON the API returns.
        #[arg(long)]
        json: bool,
    },
    /// What became of an acknowledged event: stored (with its seq), still spooled, or
    /// refused (with the reason).
    Receipt {
        #[command(flatten)]
        server: ServerArgs,
        /// The event id the 201 or 202 answer named.
        id: String,
    },
}

pub async fn run(command: SpoolCommand) -> anyhow::Result<ExitCode> {
    match command {
        SpoolCommand::Rejected { server, json } => {
            let rejected = server.client()?.spool_rejected().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rejected)?);
            } else {
                for r in &rejected {
                    println!(
                        "{} tenant {} {} {} (received {}, refused {})\n    {}",
                        r["id"].as_str().unwrap_or(""),
                        r["tenant_id"].as_str().unwrap_or(""),
                        r["action"].as_str().unwrap_or(""),
                        r["resource_type"].as_str().unwrap_or(""),
                        r["received_at"].as_str().unwrap_or(""),
                        r["refused_at"].as_str().unwrap_or(""),
                        r["reason"].as_str().unwrap_or(""),
                    );
                }
                eprintln!("{} spooled events refused by the log", rejected.len());
            }
            // A refused event was acknowledged: someone has to look at it.
            Ok(if rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        SpoolCommand::Receipt { server, id } => {
            let receipt = server.client()?.receipt(&id).await?;
            println!("{}", serde_json::to_string_pretty(&receipt)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
