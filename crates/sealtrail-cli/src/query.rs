//! `sealtrail query`: the API's filters as flags, a table or NDJSON out.

use std::process::ExitCode;

use clap::Args;
use sealtrail_core::api::Event;

use crate::ServerArgs;
use crate::filter::{Events, FilterArgs};

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    filter: FilterArgs<Events>,
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
    let mut params = args.filter.params();
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
    let rows: Vec<TableRow> = events
        .iter()
        .map(|e| TableRow {
            seq: e.seq,
            occurred_at: &e.occurred_at,
            tenant_id: &e.tenant_id,
            severity: serde_json::to_value(e.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            action: &e.action,
            user_id: e.user_id.as_deref(),
            resource_type: &e.resource_type,
            resource_id: e.resource_id.as_deref(),
        })
        .collect();
    print_rows(&rows);
}

/// One event's columns in the table (shared with `archive query`, which has no `Event`).
pub(crate) struct TableRow<'a> {
    pub seq: u64,
    pub occurred_at: &'a str,
    pub tenant_id: &'a str,
    pub severity: String,
    pub action: &'a str,
    pub user_id: Option<&'a str>,
    pub resource_type: &'a str,
    pub resource_id: Option<&'a str>,
}

/// Prints events as a compact table, and their count on stderr.
pub(crate) fn print_rows(events: &[TableRow<'_>]) {
    let rows: Vec<[String; 7]> = events
        .iter()
        .map(|e| {
            [
                e.seq.to_string(),
                e.occurred_at.to_owned(),
                e.tenant_id.to_owned(),
                e.severity.clone(),
                e.action.to_owned(),
                e.user_id.unwrap_or("-").to_owned(),
                match e.resource_id {
                    Some(id) => format!("{}/{id}", e.resource_type),
                    None => e.resource_type.to_owned(),
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
