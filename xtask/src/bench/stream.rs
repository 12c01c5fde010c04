//! Live streams: latency to receipt, loss, server CPU and memory, for
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

/// Each subscription is itself recorded in the log (the access log), which would add
/// events to the very streams whose deliveries are counted: off for these runs.
const NO_ACCESS_LOG: &[(&str, &str)] = &[("SEALTRAIL_ACCESS_LOG__ENABLED", "false")];

const TENANTS: usize = 100;
/// Seconds of publishing per scenario.
const PUBLISH_SECS: u64 = 6;

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// When a published event was sent and when its publisher got the acknowledgement
/// (wall-clock nanoseconds), and the tenant it went to.
#[derive(Clone, Copy)]
struct Published {
    tenant: usize,
    sent: u128,
    acked: u128,
}

/// Every published seq, with what the scoring needs; and the publishing's wall time.
struct Publication {
    events: HashMap<u64, Published>,
    wall: Duration,
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
    /// From the publisher's acknowledgement to receipt (0 when received before it).
    from_ack: Option<Latency>,
    /// From the publisher's send to receipt.
    from_send: Option<Latency>,
    /// Share of deliveries that reached the subscriber before the publisher had its ack.
    before_ack: f64,
    lost: u64,
    delivered: u64,
    wall: Duration,
    cpu_secs: f64,
    /// CPU the same publishing costs with no subscribers (Sealtrail's ingest alone).
    ingest_cpu_secs: f64,
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
    eprintln!("bench: streams: Sealtrail ingest alone, no subscribers");
    let ingest_cpu = runtime.block_on(ingest_only_cpu())?;
    for transport in [Transport::Sse, Transport::Ws] {
        for &n in &counts {
            eprintln!("bench: streams: {} with {n} subscribers", transport.name());
            let (mut results, per_idle) =
                runtime.block_on(sealtrail_scenarios(transport, n, &ingest_cpu))?;
            results.iter().for_each(|s| eprint!("{}", row(s)));
            scenarios.append(&mut results);
            memory.push((transport, n, per_idle));
        }
    }
    for &n in &counts {
        for rate in [100, 1000] {
            eprintln!("bench: streams: minimal broadcaster, {n} subscribers, {rate} events/s");
            let scenario = runtime.block_on(broadcaster_scenario(n, rate))?;
            eprint!("{}", row(&scenario));
            scenarios.push(scenario);
        }
    }
    match sealtrail_testkit::PgCluster::start(1100) {
        Ok(pg) => {
            for &n in counts.iter().filter(|&&n| n <= 1000) {
                for rate in [100, 1000] {
                    eprintln!(
                        "bench: streams: PostgreSQL LISTEN/NOTIFY, {n} listeners, {rate} events/s"
                    );
                    let scenario = runtime.block_on(pg_scenario(&pg, n, rate))?;
                    eprint!("{}", row(&scenario));
                    scenarios.push(scenario);
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
         tenants, published in batches every 10 ms for {PUBLISH_SECS} s per row. Client, server and baselines \
         share the machine's 2 cores.\n\n\
         - *ack → receipt*: from the moment the publisher has the ingest acknowledgement (Sealtrail: the 201; \
         PostgreSQL: `pg_notify`'s return) to receipt by the subscriber, same clock. Sealtrail hands a group to \
         live delivery as soon as it is durable, before the 201 is written, so most events arrive *before* the \
         publisher has its ack; those count as 0 and *before ack* gives their share.\n\
         - *send → receipt*: from the publisher sending the request (the broadcaster: writing the frame) to \
         receipt, which includes the durable ingest itself.\n\
         - *deliveries per core-second*: events received by all subscribers per second of the server's CPU. \
         For Sealtrail, *net* subtracts the CPU the same ingest costs with no subscribers (measured first), \
         so it compares delivery with delivery.\n\n"
    ));
    out.push_str("| system | subscribers | events/s | ack → receipt p50 / p99 / max | before ack | send → receipt p50 / p99 / max | lost | deliveries/s | server CPU | deliveries per core-second (net) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for s in scenarios {
        out.push_str(&row(s));
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

/// One scenario as a row of the report's table.
fn row(s: &Scenario) -> String {
    let show = |l: &Option<Latency>| {
        l.as_ref()
            .map(|l| format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max)))
            .unwrap_or_else(|| "—".into())
    };
    let wall = s.wall.as_secs_f64();
    let per_sec = s.delivered as f64 / wall;
    let cpu_share = s.cpu_secs / wall * 100.0;
    let per_core = s.delivered as f64 / s.cpu_secs.max(1e-9);
    let net = if s.ingest_cpu_secs > 0.0 {
        format!(
            " ({:.0})",
            s.delivered as f64 / (s.cpu_secs - s.ingest_cpu_secs).max(1e-9)
        )
    } else {
        String::new()
    };
    let before_ack = if s.from_ack.is_some() {
        format!("{:.0}%", s.before_ack * 100.0)
    } else {
        "—".into()
    };
    format!(
        "| {}{} | {} | {} | {} | {before_ack} | {} | {} | {per_sec:.0} | {cpu_share:.0}% of a core | {per_core:.0}{net} |\n",
        s.system,
        s.note,
        s.subscribers,
        s.rate,
        show(&s.from_ack),
        show(&s.from_send),
        s.lost
    )
}

/// Connects `n` subscribers to a fresh server, measures idle memory, then runs both rates.
async fn sealtrail_scenarios(
    transport: Transport,
    n: usize,
    ingest_cpu: &HashMap<u64, f64>,
) -> anyhow::Result<(Vec<Scenario>, f64)> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(dir.path(), &[], NO_ACCESS_LOG)?;
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
        let publication = publish_to_sealtrail(&server.url, &key, rate).await?;
        let cpu_secs = cpu_seconds(server.pid()) - cpu_before;
        let per_sub = harvest(&logs);
        let mut scenario = score(
            format!("Sealtrail {}", transport.name()),
            n,
            rate,
            &publication,
            &per_sub,
            cpu_secs,
        );
        scenario.ingest_cpu_secs = ingest_cpu.get(&rate).copied().unwrap_or(0.0);
        results.push(scenario);
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
    publication: &Publication,
    per_sub: &[(usize, Received)],
    cpu_secs: f64,
) -> Scenario {
    let published = &publication.events;
    let mut per_tenant = vec![0u64; TENANTS];
    for event in published.values() {
        per_tenant[event.tenant] += 1;
    }
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    let (mut lost, mut delivered, mut before_ack) = (0u64, 0u64, 0u64);
    for (tenant, got) in per_sub {
        let mine: Vec<(&Published, u128)> = got
            .iter()
            .filter_map(|(seq, at)| Some((published.get(seq)?, *at)))
            .collect();
        lost += per_tenant[*tenant].saturating_sub(mine.len() as u64);
        delivered += mine.len() as u64;
        for (event, at) in mine {
            if at < event.acked {
                before_ack += 1;
            }
            from_ack.push(Duration::from_nanos(at.saturating_sub(event.acked) as u64));
            from_send.push(Duration::from_nanos(at.saturating_sub(event.sent) as u64));
        }
    }
    Scenario {
        system,
        subscribers,
        rate,
        from_ack: (!from_ack.is_empty()).then(|| Latency::of(from_ack)),
        from_send: (!from_send.is_empty()).then(|| Latency::of(from_send)),
        before_ack: before_ack as f64 / delivered.max(1) as f64,
        lost,
        delivered,
        wall: publication.wall,
        cpu_secs,
        ingest_cpu_secs: 0.0,
        note: String::new(),
    }
}

/// Server CPU seconds for publishing at each rate to a server with no subscribers.
async fn ingest_only_cpu() -> anyhow::Result<HashMap<u64, f64>> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(dir.path(), &[], NO_ACCESS_LOG)?;
    let key = create_key(dir.path())?;
    let mut cpu = HashMap::new();
    for rate in [100u64, 1000] {
        let before = cpu_seconds(server.pid());
        publish_to_sealtrail(&server.url, &key, rate).await?;
        cpu.insert(rate, cpu_seconds(server.pid()) - before);
    }
    Ok(cpu)
}

/// How long after publishing stops deliveries may still arrive and count.
const DRAIN: Duration = Duration::from_secs(1);

/// Publishes `rate` events/s for [`PUBLISH_SECS`] as batches every 10 ms, then waits
/// [`DRAIN`]; returns each acknowledged seq with its tenant and times.
async fn publish_to_sealtrail(url: &str, key: &str, rate: u64) -> anyhow::Result<Publication> {
    let started = Instant::now();
    let http = sealtrail_testkit::http_client();
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
            let sent = now_nanos();
            let response = http.post(url).bearer_auth(key).json(&body).send().await?;
            anyhow::ensure!(
                response.status() == 201,
                "ingest answered {}",
                response.status()
            );
            let acked = now_nanos();
            let receipt: Value = response.json().await?;
            let seqs: Vec<u64> = receipt["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["seq"].as_u64())
                .collect();
            Ok(seqs
                .into_iter()
                .zip(tenants)
                .map(|(seq, tenant)| {
                    (
                        seq,
                        Published {
                            tenant,
                            sent,
                            acked,
                        },
                    )
                })
                .collect::<Vec<_>>())
        });
        while let Some(done) = in_flight.try_join_next() {
            acked.extend(done??);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        acked.extend(done??);
    }
    tokio::time::sleep(DRAIN).await;
    Ok(Publication {
        events: acked,
        wall: started.elapsed(),
    })
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
        let metrics = sealtrail_testkit::http_client()
            .get(format!("{}/metrics", server.url))
            .send()
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

/// Connects, retrying a few times: with thousands of simultaneous connects the listen
/// backlog overflows and some are refused or time out.
async fn connect_with_retries(address: &str) -> std::io::Result<tokio::net::TcpStream> {
    let mut attempt = 0;
    loop {
        match tokio::net::TcpStream::connect(address).await {
            Ok(socket) => return Ok(socket),
            Err(_) if attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn sse_subscriber(address: &str, key: &str, tenant: usize, log: Log) -> anyhow::Result<()> {
    let mut socket = connect_with_retries(address).await?;
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
    // tungstenite's default buffers are 128 KiB each; 10,000 clients would need gigabytes.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
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
            let Ok(mut socket) = connect_with_retries(&format!("127.0.0.1:{port}")).await else {
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
    let connected: usize = ready
        .as_deref()
        .and_then(|line| line.strip_prefix("ready "))
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the broadcaster did not get ready: {ready:?}"))?;
    let started = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let mut cpu_secs = 0.0;
    // Sample CPU until it exits (its CPU counters vanish with it).
    while child.try_wait()?.is_none() {
        cpu_secs = cpu_seconds(pid) - cpu_before;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(DRAIN).await;
    for task in tasks {
        task.abort();
    }
    // The broadcaster chooses each seq's tenant this way.
    let publication = Publication {
        events: (1..=PUBLISH_SECS * rate)
            .map(|seq| {
                let tenant = (seq as usize * 7919) % TENANTS;
                let unknown = Published {
                    tenant,
                    sent: 0,
                    acked: 0,
                };
                (seq, unknown)
            })
            .collect(),
        wall: started.elapsed(),
    };
    let per_sub = harvest(&logs);
    let mut scenario = score(
        "minimal broadcaster (ceiling)".into(),
        n,
        rate,
        &publication,
        &per_sub,
        cpu_secs,
    );
    // It stores nothing and acknowledges nothing: only its throughput compares.
    scenario.from_ack = None;
    scenario.from_send = None;
    if connected < n {
        scenario.note = format!(" (only {connected} connected)");
    }
    Ok(scenario)
}

async fn pg_scenario(
    pg: &sealtrail_testkit::PgCluster,
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
    let mut published = HashMap::new();
    let mut seq = 0u64;
    let statement = publisher.prepare("SELECT pg_notify($1, $2)").await?;
    let started = Instant::now();
    for _ in 0..PUBLISH_SECS * 100 {
        tick.tick().await;
        for _ in 0..per_tick {
            seq += 1;
            let tenant = (seq as usize * 7919) % TENANTS;
            let mut event = bench_event(tenant, seq as usize);
            event["seq"] = json!(seq);
            let sent = now_nanos();
            publisher
                .execute(&statement, &[&format!("t{tenant}"), &event.to_string()])
                .await?;
            let acked = now_nanos();
            published.insert(
                seq,
                Published {
                    tenant,
                    sent,
                    acked,
                },
            );
        }
    }
    tokio::time::sleep(DRAIN).await;
    let publication = Publication {
        events: published,
        wall: started.elapsed(),
    };
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
        &publication,
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
