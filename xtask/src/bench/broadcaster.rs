//! The ceiling for live delivery: a minimal broadcaster that writes the same SSE frames to
//! the same sockets — no filtering, no auth, no storage, no queues — so the stream benchmark
//! can tell what the kernel's loopback and the client cost from what Sealtrail adds.
//!
//! Runs as its own process (`xtask broadcaster ...`) so its CPU can be measured apart from
//! the clients'. Subscribers send `GET /?tenant=N`; once `--subscribers` have connected it
//! publishes `--rate` events per second for `--seconds`, each to the sockets of one tenant,
//! carrying the wall-clock send time so clients can measure latency.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Args, Debug, Clone)]
pub struct BroadcasterArgs {
    /// Connections to wait for before publishing.
    #[arg(long)]
    pub subscribers: usize,
    /// Events per second.
    #[arg(long)]
    pub rate: u64,
    /// How long to publish.
    #[arg(long)]
    pub seconds: u64,
    /// Tenants the events are spread over.
    #[arg(long, default_value_t = 100)]
    pub tenants: usize,
    /// Bytes of padding per event, to match Sealtrail's event size.
    #[arg(long, default_value_t = 600)]
    pub padding: usize,
}

pub fn run(args: BroadcasterArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: BroadcasterArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    // The parent reads the port from the first line.
    println!("{}", listener.local_addr()?.port());
    // Accept and read requests concurrently (a listen backlog that overflows while one
    // slow request is read would stall the rest), until every subscriber is in or no new
    // one arrived for a while.
    let (joined, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let joined = joined.clone();
            tokio::spawn(async move {
                if let Ok(subscriber) = handshake(socket).await {
                    let _ = joined.send(subscriber);
                }
            });
        }
    });
    let mut by_tenant: Vec<Vec<TcpStream>> = (0..args.tenants).map(|_| Vec::new()).collect();
    let mut connected = 0;
    while connected < args.subscribers {
        match tokio::time::timeout(Duration::from_secs(30), arrivals.recv()).await {
            Ok(Some((tenant, socket))) => {
                by_tenant[tenant % args.tenants].push(socket);
                connected += 1;
            }
            _ => break,
        }
    }
    println!("ready {connected}");
    let padding = "x".repeat(args.padding);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    anyhow::ensure!(
        args.rate >= 100 && args.rate.is_multiple_of(100),
        "--rate must be a multiple of 100"
    );
    let per_tick = args.rate / 100;
    let ticks = args.seconds * 100;
    let mut seq = 0u64;
    for _ in 0..ticks {
        tick.tick().await;
        for _ in 0..per_tick {
            seq += 1;
            let tenant = (seq as usize * 7919) % args.tenants;
            let sent = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            let frame = format!(
                "id: {seq}\ndata: {{\"seq\":{seq},\"t\":{sent},\"tenant\":{tenant},\"padding\":\"{padding}\"}}\n\n"
            );
            for socket in &mut by_tenant[tenant] {
                socket.write_all(frame.as_bytes()).await?;
            }
        }
    }
    // The parent may have stopped reading; the count is only informative.
    let _ = writeln!(std::io::stdout(), "done {seq}");
    Ok(())
}

/// Reads a subscriber's request and answers with the stream's head; returns its tenant.
async fn handshake(mut socket: TcpStream) -> std::io::Result<(usize, TcpStream)> {
    socket.set_nodelay(true)?;
    let mut request = vec![0u8; 1024];
    let n = socket.read(&mut request).await?;
    let text = String::from_utf8_lossy(&request[..n]);
    let tenant: usize = text
        .split_once("tenant=")
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    socket
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        .await?;
    Ok((tenant, socket))
}
