//! `sealtrail tail`: follow events as they happen, one readable line each (or `--json`),
//! reconnecting and resuming after the last seq seen whenever the connection drops or the
//! server restarts.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use sealtrail_client::{ClientError, StreamMessage};
use sealtrail_core::api::Event;

use crate::ServerArgs;
use crate::filter::{FilterArgs, Stream};

/// First wait before reconnecting; doubles up to [`MAX_RECONNECT_DELAY`].
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(250);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    filter: FilterArgs<Stream>,
    /// Start after this seq (replaying what matched since); without it, only new events.
    #[arg(long)]
    since: Option<u64>,
    /// One JSON event per line.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let params = args.filter.params();
    let mut last = args.since;
    let mut delay = FIRST_RECONNECT_DELAY;
    loop {
        let ended = match client.stream(&params, last).await {
            // Refusals (bad filter, wrong key) will not get better by retrying.
            Err(ClientError::Api { status, body }) if status < 500 => {
                anyhow::bail!("{status}: {}", body.message)
            }
            Err(e) => e.to_string(),
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(StreamMessage::Event(event))) => {
                        last = Some(event.seq);
                        delay = FIRST_RECONNECT_DELAY;
                        print_event(&event, args.json)?;
                    }
                    Some(Ok(StreamMessage::CaughtUp(seq))) => {
                        if last.is_none() {
                            last = Some(seq);
                        }
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "the server closed the stream".to_owned(),
                }
            },
        };
        let resume = last
            .map(|s| format!("after seq {s}"))
            .unwrap_or_else(|| "from now".into());
        eprintln!(
            "sealtrail tail: {ended}; reconnecting in {:.1}s, resuming {resume}",
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

fn print_event(event: &Event, json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(event)?)?;
    } else {
        let severity = serde_json::to_value(event.severity)?
            .as_str()
            .unwrap_or("?")
            .to_uppercase();
        let resource = match &event.resource_id {
            Some(id) => format!("{}/{id}", event.resource_type),
            None => event.resource_type.clone(),
        };
        let reason = event
            .reason
            .as_ref()
            .map(|r| format!("  \"{r}\""))
            .unwrap_or_default();
        writeln!(
            out,
            "{}  {}  {severity:<8}  {}  {} -> {resource}{reason}  #{}",
            event.occurred_at,
            event.tenant_id,
            event.action,
            event.user_id.as_deref().unwrap_or("-"),
            event.seq
        )?;
    }
    out.flush()?;
    Ok(())
}
