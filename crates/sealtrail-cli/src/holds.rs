//! `sealtrail holds`: legal holds — place, list, release (an admin key; the server records
//! each change as an event in the hold's tenant). Retention and archival delete nothing a
//! hold covers until it is released.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use crate::ServerArgs;

#[derive(Subcommand, Debug)]
pub enum HoldsCommand {
    /// Place a hold on a tenant, on a resource type in it, or on one resource.
    Add {
        #[command(flatten)]
        server: ServerArgs,
        /// The tenant.
        tenant: String,
        /// Hold only events of this resource type.
        #[arg(long)]
        resource_type: Option<String>,
        /// Hold only events of this resource (needs --resource-type).
        #[arg(long, requires = "resource_type")]
        resource_id: Option<String>,
        /// Why (the matter, the request): 1 to 1024 characters.
        #[arg(long)]
        reason: String,
    },
    /// List holds (active ones unless --all), as a table.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this tenant's holds.
        #[arg(long)]
        tenant: Option<String>,
        /// Released holds too.
        #[arg(long)]
        all: bool,
        /// Print the JSON the API returns.
        #[arg(long)]
        json: bool,
    },
    /// Release a hold: what it covered may be deleted again.
    Release {
        #[command(flatten)]
        server: ServerArgs,
        /// The hold's id (from `holds add` or `holds list`).
        hold_id: String,
        /// Why it ends: 1 to 1024 characters.
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(command: HoldsCommand) -> anyhow::Result<ExitCode> {
    match command {
        HoldsCommand::Add {
            server,
            tenant,
            resource_type,
            resource_id,
            reason,
        } => {
            let answer = server
                .client()?
                .place_hold(
                    &tenant,
                    resource_type.as_deref(),
                    resource_id.as_deref(),
                    &reason,
                )
                .await?;
            let hold = &answer["hold"];
            println!(
                "placed hold {} on {}; recorded as event {} (seq {})",
                text(&hold["id"]),
                covered(hold),
                text(&answer["event_id"]),
                answer["seq"],
            );
        }
        HoldsCommand::List {
            server,
            tenant,
            all,
            json,
        } => {
            let holds = server.client()?.holds(tenant.as_deref(), all).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&holds)?);
            } else {
                print!("{}", table(&holds));
            }
        }
        HoldsCommand::Release {
            server,
            hold_id,
            reason,
        } => {
            let answer = server.client()?.release_hold(&hold_id, &reason).await?;
            println!(
                "released hold {} on {}; recorded as event {} (seq {})",
                text(&answer["hold"]["id"]),
                covered(&answer["hold"]),
                text(&answer["event_id"]),
                answer["seq"],
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// What a hold covers, in words: `tenant acme`, `guest * in acme`, `guest g-7 in acme`.
fn covered(hold: &Value) -> String {
    let tenant = text(&hold["tenant_id"]);
    match (hold["resource_type"].as_str(), hold["resource_id"].as_str()) {
        (None, _) => format!("tenant {tenant}"),
        (Some(rtype), None) => format!("every {rtype} in {tenant}"),
        (Some(rtype), Some(id)) => format!("{rtype} {id} in {tenant}"),
    }
}

/// The listing: one line per hold, columns padded to their widest cell.
fn table(holds: &[Value]) -> String {
    let header = [
        "ID", "TENANT", "RESOURCE", "STATE", "PLACED", "BY", "REASON",
    ];
    let rows: Vec<[String; 7]> = holds
        .iter()
        .map(|h| {
            let resource = match (h["resource_type"].as_str(), h["resource_id"].as_str()) {
                (None, _) => "*".to_owned(),
                (Some(rtype), None) => format!("{rtype}/*"),
                (Some(rtype), Some(id)) => format!("{rtype}/{id}"),
            };
            let state = match h["released_at"].as_str() {
                None => "active".to_owned(),
                Some(at) => format!("released {at}"),
            };
            [
                text(&h["id"]).to_owned(),
                text(&h["tenant_id"]).to_owned(),
                resource,
                state,
                text(&h["placed_at"]).to_owned(),
                text(&h["placed_by"]).to_owned(),
                text(&h["reason"]).replace(['\n', '\r', '\t'], " "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        out.push_str("(no holds)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_listing_is_a_table_with_one_line_per_hold() {
        let holds = [
            json!({"id": "0190-a", "tenant_id": "acme", "resource_type": null, "resource_id": null,
                "reason": "litigation\n2024-17", "placed_by": "k1", "placed_at": "2024-05-01T10:00:00Z",
                "released_at": null}),
            json!({"id": "0190-b", "tenant_id": "acme", "resource_type": "guest", "resource_id": "g-7",
                "reason": "dispute", "placed_by": "k1", "placed_at": "2024-05-02T10:00:00Z",
                "released_at": "2024-06-01T00:00:00Z"}),
        ];
        assert_eq!(
            table(&holds),
            "\
ID      TENANT  RESOURCE   STATE                          PLACED                BY  REASON
0190-a  acme    *          active                         2024-05-01T10:00:00Z  k1  litigation 2024-17
0190-b  acme    guest/g-7  released 2024-06-01T00:00:00Z  2024-05-02T10:00:00Z  k1  dispute
"
        );
        assert_eq!(table(&[]).lines().nth(1), Some("(no holds)"));
    }
}
