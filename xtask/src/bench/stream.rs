//! Live streams: latency from acknowledgement to receipt, loss, server CPU and memory, for
//! 100 / 1,000 / 10,000 subscribers over SSE and WebSocket spread over 100 tenants (each
//! following its tenant), at 100 and 1,000 events/s. In the same run, the same load on a
//! minimal broadcaster (the ceiling: loopback sockets and the client alone) and on
//! PostgreSQL LISTEN/NOTIFY (the usual Postgres-only way to go real-time).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::BenchArgs;
use super::server::{Server, cpu_seconds, create_key};
use super::stats::{Latency, ms};

const TENANTS: usize = 100;
/// Seconds of publishing per scenario.
const PUBLISH_SECS: u64 = 6;

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// What every subscriber task records: (seq, wall-clock receive time) per event.
type Received = Vec<(u64, u128)>;
/// A subscriber's receipts, shared with the scenario that reads them between phases.
type Log = Arc<Mutex<Received>>;

/// Takes every subscriber's receipts so far, leaving their logs empty.
fn harvest(logs: &[(usize, Log)]) -> Vec<(usize, Received)> {
    logs.iter()
        .map(|(tenant, log)| (*tenant, std::mem::take(&mut *log.lock().expect("lock"))))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Sse,
    Ws,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Sse => "SSE",
            Transport::Ws => "WebSocket",
        }
    }
}

struct Scenario {
    system: String,
    subscribers: usize,
    rate: u64,
    latency: Option<Latency>,
    lost: u64,
    delivered: u64,
    cpu_secs: f64,
    note: String,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let counts: Vec<usize> = args.stream_subscribers.clone();
    let mut scenarios = Vec::new();
    let mut memory = Vec::new();
    for transport in [Transport::Sse, Transport::Ws] {
        for &n in &counts {
            eprintln!("bench: streams: {} with {n} subscribers", transport.name());
            let (mut results, per_idle) = runtime.block_on(sealtrail_scenarios(transport, n))?;
            scenarios.append(&mut results);
            memory.push((transport, n, per_idle));
        }
    }
    for &n in &counts {
        for rate in [100, 1000] {
            eprintln!("bench: streams: minimal broadcaster, {n} subscribers, {rate} events/s");
            scenarios.push(runtime.block_on(broadcaster_scenario(n, rate))?);
        }
    }
    match super::super::pg::PgCluster::start(1100) {
        Ok(pg) => {
            for &n in counts.iter().filter(|&&n| n <= 1000) {
                for rate in [100, 1000] {
                    eprintln!(
                        "bench: streams: PostgreSQL LISTEN/NOTIFY, {n} listeners, {rate} events/s"
                    );
                    scenarios.push(runtime.block_on(pg_scenario(&pg, n, rate))?);
                }
            }
        }
        Err(e) => eprintln!("bench: PostgreSQL baseline skipped: {e:#}"),
    }
    Ok(report(&scenarios, &memory))
}

fn report(scenarios: &[Scenario], memory: &[(Transport, usize, f64)]) -> String {
    let mut out = String::from("## Live streams\n\n");
    out.push_str(&format!(
        "Subscribers spread over {TENANTS} tenants, each following its own tenant; events spread evenly over the \
         tenants, published for {PUBLISH_SECS} s per row. Latency: from the ingest acknowledgement (Sealtrail, \
         PostgreSQL: the NOTIFY's return) or the send (broadcaster) to receipt by the subscriber, both on the \
         same clock. Deliveries per core: events received by all subscribers per second of the server's CPU.\n\n"
    ));
    out.push_str("| system | subscribers | events/s | latency p50 / p99 / max | lost | deliveries/s | server CPU | deliveries per core-second |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for s in scenarios {
        let latency = s
            .latency
            .as_ref()
            .map(|l| format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max)))
            .unwrap_or_else(|| "—".into());
        let per_sec = s.delivered as f64 / PUBLISH_SECS as f64;
        let cpu_share = s.cpu_secs / PUBLISH_SECS as f64 * 100.0;
        let per_core = if s.cpu_secs > 0.0 {
            s.delivered as f64 / s.cpu_secs
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {latency} | {} | {per_sec:.0} | {cpu_share:.0}% of a core | {per_core:.0} |",
            s.system, s.note, s.subscribers, s.rate, s.lost
        );
    }
    out.push_str("\n| server memory per idle subscriber | |\n|---|---|\n");
    for (transport, n, per) in memory {
        let _ = writeln!(
            out,
            "| Sealtrail {} with {n} subscribers | {:.1} KiB |",
            transport.name(),
            per / 1024.0
        );
    }
    out.push('\n');
    out
}

/// Connects `n` subscribers to a fresh server, measures idle memory, then runs both rates.
async fn sealtrail_scenarios(
    transport: Transport,
    n: usize,
) -> anyhow::Result<(Vec<Scenario>, f64)> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let key = create_key(dir.path())?;
    // A key bound to no tenant may follow any: each subscriber names its own.
    let stream_key = {
        let out = Command::new(super::server::binary())
            .args(["keys", "create", "--scopes", "stream", "--data-dir"])
            .arg(dir.path())
            .output()?;
        String::from_utf8(out.stdout)?.trim().to_owned()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_bytes(server.pid());
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut logs: Vec<(usize, Log)> = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let tenant = i % TENANTS;
        let log = Log::default();
        logs.push((tenant, log.clone()));
        let (address, key) = (address.clone(), stream_key.clone());
        tasks.push(tokio::spawn(async move {
            let result = match transport {
                Transport::Sse => sse_subscriber(&address, &key, tenant, log).await,
                Transport::Ws => ws_subscriber(&address, &key, tenant, log).await,
            };
            if let Err(e) = result {
                eprintln!("bench: a subscriber failed: {e:#}");
            }
        }));
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    wait_for_live(&server, n).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_idle = (rss_bytes(server.pid()).saturating_sub(rss_before)) as f64 / n as f64;

    let mut results = Vec::new();
    for rate in [100u64, 1000] {
        harvest(&logs);
        let cpu_before = cpu_seconds(server.pid());
        let acked = publish_to_sealtrail(&server.url, &key, rate).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu_secs = cpu_seconds(server.pid()) - cpu_before;
        let per_sub = harvest(&logs);
        results.push(score(
            format!("Sealtrail {}", transport.name()),
            n,
            rate,
            &acked,
            &per_sub,
            cpu_secs,
        ));
    }
    for task in tasks {
        task.abort();
    }
    drop(server);
    Ok((results, per_idle))
}

/// Per-subscriber receipts against what was acknowledged: latencies, losses, deliveries.
fn score(
    system: String,
    subscribers: usize,
    rate: u64,
    acked: &HashMap<u64, (usize, u128)>,
    per_sub: &[(usize, Received)],
    cpu_secs: f64,
) -> Scenario {
    let mut per_tenant = vec![0u64; TENANTS];
    for (tenant, _) in acked.values() {
        per_tenant[*tenant] += 1;
    }
    let mut latencies = Vec::new();
    let (mut lost, mut delivered) = (0u64, 0u64);
    for (tenant, got) in per_sub {
        let mine: Vec<&(u64, u128)> = got
            .iter()
            .filter(|(seq, _)| acked.contains_key(seq))
            .collect();
        lost += per_tenant[*tenant].saturating_sub(mine.len() as u64);
        delivered += mine.len() as u64;
        for (seq, at) in mine {
            let (_, sent) = acked[seq];
            latencies.push(Duration::from_nanos(at.saturating_sub(sent) as u64));
        }
    }
    Scenario {
        system,
        subscribers,
        rate,
        latency: (!latencies.is_empty()).then(|| Latency::of(latencies)),
        lost,
        delivered,
        cpu_secs,
        note: String::new(),
    }
}

/// Publishes `rate` events/s for [`PUBLISH_SECS`] as batches every 10 ms; returns each
/// acknowledged seq's tenant and acknowledgement time.
async fn publish_to_sealtrail(
    url: &str,
    key: &str,
    rate: u64,
) -> anyhow::Result<HashMap<u64, (usize, u128)>> {
    let http = reqwest::Client::new();
    let per_tick = (rate / 100).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut acked = HashMap::new();
    let mut n = 0usize;
    let mut in_flight = tokio::task::JoinSet::new();
    for _ in 0..PUBLISH_SECS * 100 {
        tick.tick().await;
        let events: Vec<(usize, Value)> = (0..per_tick)
            .map(|_| {
                n += 1;
                let tenant = (n * 7919) % TENANTS;
                (tenant, bench_event(tenant, n))
            })
            .collect();
        let (http, url, key) = (http.clone(), format!("{url}/v1/events"), key.to_owned());
        in_flight.spawn(async move {
            let tenants: Vec<usize> = events.iter().map(|(t, _)| *t).collect();
            let body = json!({ "events": events.into_iter().map(|(_, e)| e).collect::<Vec<_>>() });
            let response = http.post(url).bearer_auth(key).json(&body).send().await?;
            anyhow::ensure!(
                response.status() == 201,
                "ingest answered {}",
                response.status()
            );
            let receipt: Value = response.json().await?;
            let at = now_nanos();
            let seqs: Vec<u64> = receipt["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["seq"].as_u64())
                .collect();
            Ok(seqs
                .into_iter()
                .zip(tenants)
                .map(|(seq, t)| (seq, (t, at)))
                .collect::<Vec<_>>())
        });
        while let Some(done) = in_flight.try_join_next() {
            acked.extend(done??);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        acked.extend(done??);
    }
    Ok(acked)
}

fn bench_event(tenant: usize, n: usize) -> Value {
    json!({
        "tenant_id": format!("tenant-{tenant:03}"),
        "action": "guest.dietary_restriction.updated",
        "resource_type": "guest",
        "resource_id": format!("guest-{n}"),
        "user_id": "coord-17",
        "severity": "warning",
        "ip_address": "203.0.113.9",
        "reason": "Guest called: severe peanut allergy",
        "changes": [{"field": "dietary_restriction", "before": "none", "after": "peanut allergy (anaphylaxis)"}],
        "details": {"wedding_id": "wedding-2027-05-14", "table": 12, "notify": ["vendor:caterer:sabores-do-tejo"]},
    })
}

async fn wait_for_live(server: &Server, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let metrics = reqwest::get(format!("{}/metrics", server.url))
            .await?
            .text()
            .await?;
        let live = metrics
            .lines()
            .find(|l| l.starts_with("sealtrail_stream_live_subscribers "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
            .unwrap_or(0);
        if live >= n {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "only {live} of {n} subscribers connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads an SSE stream over a raw socket (HTTP/1.1, chunked or not), logging each `id:`.
async fn raw_sse(mut socket: tokio::net::TcpStream, log: Log) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut carry = Vec::new();
    loop {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        let at = now_nanos();
        carry.extend_from_slice(&buffer[..n]);
        let mut start = 0;
        while let Some(pos) = find(&carry[start..], b"id: ") {
            let digits_at = start + pos + 4;
            let len = carry[digits_at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits_at + len >= carry.len() {
                break;
            }
            let seq: u64 = std::str::from_utf8(&carry[digits_at..digits_at + len])?.parse()?;
            log.lock().expect("lock").push((seq, at));
            start = digits_at + len;
        }
        carry.drain(..start);
        if carry.len() > 64 * 1024 {
            carry.clear();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn sse_subscriber(address: &str, key: &str, tenant: usize, log: Log) -> anyhow::Result<()> {
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    socket.set_nodelay(true)?;
    let request = format!(
        "GET /v1/stream?tenant_id=tenant-{tenant:03} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    raw_sse(socket, log).await
}

async fn ws_subscriber(address: &str, key: &str, tenant: usize, log: Log) -> anyhow::Result<()> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{address}/v1/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let subscribe = json!({"type": "subscribe", "id": "t", "filter": {"tenant_id": format!("tenant-{tenant:03}")}});
    socket.send(Message::text(subscribe.to_string())).await?;
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message? {
            let at = now_nanos();
            if let Some(pos) = text.find("\"seq\":") {
                let digits: String = text[pos + 6..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                if let Ok(seq) = digits.parse() {
                    log.lock().expect("lock").push((seq, at));
                }
            }
        }
    }
    Ok(())
}

async fn broadcaster_scenario(n: usize, rate: u64) -> anyhow::Result<Scenario> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "broadcaster",
            "--subscribers",
            &n.to_string(),
            "--rate",
            &rate.to_string(),
            "--seconds",
            &PUBLISH_SECS.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let port: u16 = lines
        .next()
        .transpose()?
        .unwrap_or_default()
        .trim()
        .parse()?;
    let mut logs: Vec<(usize, Log)> = Vec::with_capacity(n);
    let mut tasks = Vec::new();
    for i in 0..n {
        let tenant = i % TENANTS;
        let log = Log::default();
        logs.push((tenant, log.clone()));
        tasks.push(tokio::spawn(async move {
            let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            let _ = socket.set_nodelay(true);
            if socket
                .write_all(format!("GET /?tenant={tenant} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let _ = raw_sse(socket, log).await;
        }));
    }
    let pid = child.id();
    let ready = tokio::task::spawn_blocking(move || lines.next().transpose()).await??;
    anyhow::ensure!(
        ready.as_deref() == Some("ready"),
        "the broadcaster did not get ready"
    );
    let cpu_before = cpu_seconds(pid);
    let mut cpu_secs = 0.0;
    // Sample CPU until it exits (its CPU counters vanish with it).
    while child.try_wait()?.is_none() {
        cpu_secs = cpu_seconds(pid) - cpu_before;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for task in tasks {
        task.abort();
    }
    // The broadcaster stamps each event's send time and its tenant into the frame; recover
    // them from the seq the way it chose them.
    let published = PUBLISH_SECS * rate;
    let acked: HashMap<u64, (usize, u128)> = (1..=published)
        .map(|seq| (seq, ((seq as usize * 7919) % TENANTS, 0)))
        .collect();
    let per_sub = harvest(&logs);
    let mut scenario = score(
        "minimal broadcaster (ceiling)".into(),
        n,
        rate,
        &acked,
        &per_sub,
        cpu_secs,
    );
    scenario.latency = None;
    scenario.note = " (latency not comparable: no ingest)".into();
    Ok(scenario)
}

async fn pg_scenario(
    pg: &super::super::pg::PgCluster,
    n: usize,
    rate: u64,
) -> anyhow::Result<Scenario> {
    use futures_util::StreamExt as _;
    let mut logs: Vec<(usize, Log)> = Vec::with_capacity(n);
    let mut tasks = Vec::new();
    let mut listeners = Vec::new();
    let mut connected = 0usize;
    for i in 0..n {
        let tenant = i % TENANTS;
        let (client, mut connection) =
            match tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("bench: PostgreSQL accepted {connected} listeners, then: {e}");
                    break;
                }
            };
        connected += 1;
        let log = Log::default();
        logs.push((tenant, log.clone()));
        tasks.push(tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(note) = message {
                    let at = now_nanos();
                    let seq = note.payload().split_once("\"seq\":").and_then(|(_, rest)| {
                        rest.split(|c: char| !c.is_ascii_digit())
                            .next()?
                            .parse()
                            .ok()
                    });
                    if let Some(seq) = seq {
                        log.lock().expect("lock").push((seq, at));
                    }
                }
            }
        }));
        client.batch_execute(&format!("LISTEN t{tenant}")).await?;
        listeners.push(client);
    }
    let (publisher, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let backends = backend_pids(&publisher).await?;
    let cpu_before: f64 = backends.iter().map(|&p| cpu_seconds(p)).sum();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut acked = HashMap::new();
    let mut seq = 0u64;
    let statement = publisher.prepare("SELECT pg_notify($1, $2)").await?;
    for _ in 0..PUBLISH_SECS * 100 {
        tick.tick().await;
        for _ in 0..per_tick {
            seq += 1;
            let tenant = (seq as usize * 7919) % TENANTS;
            let mut event = bench_event(tenant, seq as usize);
            event["seq"] = json!(seq);
            publisher
                .execute(&statement, &[&format!("t{tenant}"), &event.to_string()])
                .await?;
            acked.insert(seq, (tenant, now_nanos()));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_secs: f64 = backends.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu_before;
    let per_sub = harvest(&logs);
    drop(listeners);
    for task in tasks {
        task.abort();
    }
    let mut scenario = score(
        "PostgreSQL LISTEN/NOTIFY".into(),
        n,
        rate,
        &acked,
        &per_sub,
        cpu_secs,
    );
    if connected < n {
        scenario.note = format!(" (only {connected} connections)");
    }
    Ok(scenario)
}

/// The pids of every PostgreSQL backend, for their CPU.
async fn backend_pids(client: &tokio_postgres::Client) -> anyhow::Result<Vec<u32>> {
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
