//! `sealtrail tenants`: crypto-shredding of a tenant's or a subject's data keys (an admin
//! key; the server records each shredding as an event).

use std::process::ExitCode;

use clap::Subcommand;

use crate::ServerArgs;

#[derive(Subcommand, Debug)]
pub enum TenantsCommand {
    /// Destroy the tenant's data keys: its encrypted fields read as "[shredded]" forever.
    Shred {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant.
        tenant: String,
    },
    /// Destroy one data subject's key in the tenant (the value at encryption.subject).
    ShredSubject {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant.
        tenant: String,
        /// The subject's id, e.g. the user id.
        subject: String,
    },
}

pub async fn run(command: TenantsCommand) -> anyhow::Result<ExitCode> {
    let (server, tenant, subject) = match command {
        TenantsCommand::Shred { server, tenant } => (server, tenant, None),
        TenantsCommand::ShredSubject {
            server,
            tenant,
            subject,
        } => (server, tenant, Some(subject)),
    };
    let answer = server.client()?.shred(&tenant, subject.as_deref()).await?;
    println!(
        "shredded {} in tenant {tenant}; recorded as event {} (seq {})",
        if subject.is_some() {
            "the subject's key"
        } else {
            "every data key"
        },
        answer["event_id"].as_str().unwrap_or("?"),
        answer["seq"],
    );
    Ok(ExitCode::SUCCESS)
}
