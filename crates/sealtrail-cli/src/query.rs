//! `sealtrail query`: the API's filters as flags, a table or NDJSON out.

use std::process::ExitCode;

use clap::Args;
use sealtrail_core::api::Event;

use crate::ServerArgs;

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Comma list of info, warning, critical.
    #[arg(long)]
    severity: Option<String>,
    /// An action, or a prefix such as guest.*
    #[arg(long)]
    action: Option<String>,
    /// Acting user.
    #[arg(long)]
    user: Option<String>,
    /// Resource type.
    #[arg(long)]
    resource_type: Option<String>,
    /// Resource id.
    #[arg(long)]
    resource_id: Option<String>,
    /// From this time (RFC 3339), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Until this time (RFC 3339), exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Oldest first instead of newest first.
    #[arg(long)]
    asc: bool,
    /// At most this many events (follows pages as needed).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON event per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// The server's largest page.
const MAX_PAGE: usize = 1000;

pub async fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let mut params: Vec<(String, String)> = [
        ("tenant_id", &args.tenant),
        ("severity", &args.severity),
        ("action", &args.action),
        ("user_id", &args.user),
        ("resource_type", &args.resource_type),
        ("resource_id", &args.resource_id),
        ("from", &args.from),
        ("to", &args.to),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
    .collect();
    if args.asc {
        params.push(("order".into(), "asc".into()));
    }
    let mut events: Vec<Event> = Vec::new();
    let mut cursor: Option<String> = None;
    while events.len() < args.limit {
        let mut page_params = params.clone();
        page_params.push((
            "limit".into(),
            (args.limit - events.len()).min(MAX_PAGE).to_string(),
        ));
        if let Some(c) = &cursor {
            page_params.push(("cursor".into(), c.clone()));
        }
        let page = client.query(&page_params).await?;
        events.extend(page.events);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if args.json {
        for event in &events {
            println!("{}", serde_json::to_string(event)?);
        }
    } else {
        print_table(&events);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(events: &[Event]) {
    let rows: Vec<[String; 7]> = events
        .iter()
        .map(|e| {
            [
                e.seq.to_string(),
                e.occurred_at.clone(),
                e.tenant_id.clone(),
                serde_json::to_value(e.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                e.action.clone(),
                e.user_id.clone().unwrap_or_else(|| "-".into()),
                match &e.resource_id {
                    Some(id) => format!("{}/{id}", e.resource_type),
                    None => e.resource_type.clone(),
                },
            ]
        })
        .collect();
    let header = [
        "SEQ",
        "OCCURRED_AT",
        "TENANT",
        "SEVERITY",
        "ACTION",
        "USER",
        "RESOURCE",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 6 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    eprintln!("{} events", rows.len());
}
