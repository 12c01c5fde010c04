//! What an idle subscriber costs the server: heap bytes, counted by a global allocator,
//! for SSE and WebSocket subscribers that connect, subscribe and then wait. The target is
//! at most 20 KiB each, so that 10,000 watchers fit in 200 MiB. A WebSocket leaves hyper
//! after its upgrade; an SSE stream opened as a connection's first request is served
//! without hyper (`serve/first_request.rs`), whose fixed 8 KiB read and 8 KiB write buffers
//! per connection would otherwise be most of it. Measured: ≈ 8 KiB (SSE), ≈ 12 KiB (WS).
//!
//! The clients are plain blocking sockets on their own thread that allocate nothing while
//! they are measured, so every byte counted belongs to the server. Both transports run in
//! one test so that nothing else in this binary allocates while it measures.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::{TestServer, eventually};
use sealtrail_core::Scope;

/// The system allocator, keeping a running total of the bytes it has outstanding.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is only
// bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SUBSCRIBERS: usize = 500;
const TENANTS: usize = 100;
const LIMIT_BYTES: isize = 20 * 1024;
/// An SSE subscriber's bound: what it measured (≈ 8 KiB) with room for allocator noise,
/// well under hyper's 16 KiB of buffers alone, so a stream falling back to hyper fails it.
const SSE_LIMIT_BYTES: isize = 10 * 1024;

/// Opens an SSE stream and reads its headers; the socket then stays idle.
fn sse_subscriber(address: &str, key: &str, tenant: usize) -> TcpStream {
    let mut socket = TcpStream::connect(address).expect("connect");
    // One write, as real clients send a request head (`write!` would send each piece).
    let request = format!(
        "GET /v1/stream?tenant_id=tenant-{tenant} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .expect("send the request");
    read_until_blank_line(&mut socket);
    socket
}

/// Opens a WebSocket, reads the handshake answer and sends one masked `subscribe` frame.
fn ws_subscriber(address: &str, key: &str, tenant: usize) -> TcpStream {
    let mut socket = TcpStream::connect(address).expect("connect");
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    socket
        .write_all(request.as_bytes())
        .expect("send the handshake");
    let head = read_until_blank_line(&mut socket);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let payload =
        format!(r#"{{"type":"subscribe","id":"s","filter":{{"tenant_id":"tenant-{tenant}"}}}}"#);
    assert!(payload.len() < 126, "one-byte length");
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&frame).expect("send subscribe");
    socket
}

fn read_until_blank_line(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).expect("read the answer");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("ASCII head")
}

/// Live stream subscribers registered with the hub, read from `/metrics`.
fn live_subscribers(address: &str) -> usize {
    let mut socket = TcpStream::connect(address).expect("connect");
    write!(
        socket,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    socket.read_to_string(&mut text).expect("read metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("sealtrail_stream_live_subscribers "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Heap bytes per subscriber after `SUBSCRIBERS` more idle ones have connected.
async fn bytes_per_idle_subscriber(
    address: &str,
    key: &str,
    connect: fn(&str, &str, usize) -> TcpStream,
) -> (isize, Vec<TcpStream>) {
    let live_before = live_subscribers(address);
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    // Warm up: the first connections grow tables and thread caches once.
    let (address_owned, key_owned) = (address.to_owned(), key.to_owned());
    let mut sockets = tokio::task::spawn_blocking(move || {
        let mut sockets = Vec::with_capacity(SUBSCRIBERS + TENANTS);
        for tenant in 0..TENANTS {
            sockets.push(connect(&address_owned, &key_owned, tenant));
        }
        sockets
    })
    .await
    .unwrap();
    eventually("the warm-up subscribers are live", async || {
        live_subscribers(address) == live_before + TENANTS
    })
    .await;
    settle().await;
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    let (address_owned, key_owned) = (address.to_owned(), key.to_owned());
    sockets = tokio::task::spawn_blocking(move || {
        for i in 0..SUBSCRIBERS {
            sockets.push(connect(&address_owned, &key_owned, i % TENANTS));
        }
        sockets
    })
    .await
    .unwrap();
    eventually("every subscriber is live", async || {
        live_subscribers(address) == live_before + TENANTS + SUBSCRIBERS
    })
    .await;
    settle().await;
    let after = LIVE_BYTES.load(Ordering::SeqCst);
    ((after - before) / SUBSCRIBERS as isize, sockets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_subscriber_costs_little_server_memory() {
    let server = TestServer::start().await;
    let key = server.key(&[Scope::Stream], None);
    let address = server.base.trim_start_matches("http://").to_owned();

    let (sse, sse_sockets) = bytes_per_idle_subscriber(&address, &key, sse_subscriber).await;
    let (ws, ws_sockets) = bytes_per_idle_subscriber(&address, &key, ws_subscriber).await;
    println!("heap per idle subscriber: SSE {sse} bytes, WebSocket {ws} bytes");
    assert!(
        sse <= SSE_LIMIT_BYTES,
        "an idle SSE subscriber holds {sse} bytes"
    );
    assert!(
        ws <= LIMIT_BYTES,
        "an idle WebSocket subscriber holds {ws} bytes"
    );
    drop((sse_sockets, ws_sockets));
}
