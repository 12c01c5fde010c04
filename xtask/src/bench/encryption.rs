//! Field encryption's cost: the same durable HTTP ingest (batches of 100, 8 clients) and
//! the same 1000-event query, with encryption off and on, in one run. The events carry
//! every field the wedding app would encrypt: the address, the user agent, the reason, the
//! changes and a value in `details`.

use std::fmt::Write as _;
use std::time::Instant;

use base64::Engine as _;
use serde_json::Value;

use super::BenchArgs;
use super::data::tenant_name;
use super::ingest::http_batched;
use super::server::{Server, create_key};
use super::stats::{Latency, ms};

/// Queries per mode (after a warm-up of a fifth as many).
const QUERIES: usize = 300;

struct Run {
    ingest_per_sec: f64,
    query: Vec<std::time::Duration>,
}

impl Run {
    /// The mean throughput and the latencies of both runs together.
    fn mean(a: Run, b: Run) -> Run {
        Run {
            ingest_per_sec: (a.ingest_per_sec + b.ingest_per_sec) / 2.0,
            query: [a.query, b.query].concat(),
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

async fn run_async(args: &BenchArgs) -> anyhow::Result<String> {
    let total = args.encryption_events;
    // Off, on, on, off: whatever drifts during the run (the VM's other tenants, the page
    // cache) weighs on both modes alike. Each figure is the mean of its two runs.
    let off_first = measure(total, false).await?;
    let on_first = measure(total, true).await?;
    let on_second = measure(total, true).await?;
    let off_second = measure(total, false).await?;
    let off = Run::mean(off_first, off_second);
    let on = Run::mean(on_first, on_second);
    let cost = 100.0 * (1.0 - on.ingest_per_sec / off.ingest_per_sec);
    let (off_query, on_query) = (Latency::of(off.query), Latency::of(on.query));
    let mut out = String::new();
    writeln!(out, "## Field encryption\n")?;
    writeln!(
        out,
        "Each mode run twice, in the order off, on, on, off (figures: the mean of a mode's two runs). {total} events ingested over HTTP (batches of 100, 8 clients), then {QUERIES} queries for the newest 1000 events of the largest tenant; encrypted fields: `ip_address`, `user_agent`, `reason`, `changes`, `/details/wedding_id` (AES-256-GCM, one data key per tenant).\n"
    )?;
    writeln!(
        out,
        "| measure | encryption off | encryption on | cost | target |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    writeln!(
        out,
        "| durable ingest | {:.0} events/s | {:.0} events/s | {cost:.1}% | ≤ 15% |",
        off.ingest_per_sec, on.ingest_per_sec
    )?;
    writeln!(
        out,
        "| 1000-event query | p50 {} / p99 {} | p50 {} / p99 {} | p99 ×{:.2} | |",
        ms(off_query.p50),
        ms(off_query.p99),
        ms(on_query.p50),
        ms(on_query.p99),
        on_query.p99.as_secs_f64() / off_query.p99.as_secs_f64()
    )?;
    writeln!(out)?;
    Ok(out)
}

async fn measure(total: usize, encrypted: bool) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let key = create_key(&data)?;
    let config = dir.path().join("sealtrail.toml");
    let master = dir.path().join("master.key");
    std::fs::write(
        &master,
        base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
    )?;
    let text = if encrypted {
        format!(
            "[encryption]\nmaster_key = {{ file = \"{}\" }}\nfields = [\"ip_address\", \"user_agent\", \"reason\", \"changes\", \"/details/wedding_id\"]\n",
            master.display()
        )
    } else {
        String::new()
    };
    std::fs::write(&config, text)?;
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap_or("")])?;
    eprintln!(
        "bench: encryption {}: ingest",
        if encrypted { "on" } else { "off" }
    );
    let (ingest_per_sec, _) = http_batched(&server, &key, total).await?;
    server.wait_until_indexed().await?;
    let http = sealtrail_testkit::http_client();
    let url = format!(
        "{}/v1/events?tenant_id={}&limit=1000",
        server.url,
        tenant_name(0)
    );
    let mut latencies = Vec::with_capacity(QUERIES);
    for run in 0..QUERIES + QUERIES / 5 {
        let started = Instant::now();
        let response = http.get(&url).bearer_auth(&key).send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "query answered {}",
            response.status()
        );
        let page: Value = response.json().await?;
        if run >= QUERIES / 5 {
            latencies.push(started.elapsed());
        }
        if encrypted && run == 0 {
            let first = &page["events"][0];
            anyhow::ensure!(
                first["ip_address"]
                    .as_str()
                    .is_some_and(|ip| ip.starts_with("203.0.")),
                "reads do not see the plaintext: {first}"
            );
        }
    }
    Ok(Run {
        ingest_per_sec,
        query: latencies,
    })
}
