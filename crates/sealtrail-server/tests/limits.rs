//! Limits against abuse: per-key request rates (429 with Retry-After), request head size
//! (431), a cap on open connections, and idle connections closed.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::TestServer;
use sealtrail_core::Scope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not() {
    let s = TestServer::start_with(|c| {
        c.limits.key_requests_per_sec = 1;
        c.limits.key_burst = 3;
    })
    .await;
    let busy = s.key(&[Scope::Read], Some("acme"));
    let calm = s.key(&[Scope::Read], Some("acme"));
    for _ in 0..3 {
        assert_eq!(s.get(&busy, "/v1/events").await.0, 200);
    }
    let response = s
        .http
        .get(s.url("/v1/events"))
        .bearer_auth(&busy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limits.key_requests_per_sec")
    );
    assert_eq!(
        s.get(&calm, "/v1/events").await.0,
        200,
        "another key is not affected"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.get(&busy, "/v1/events").await.0, 200, "a token came back");
}

fn address(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_limit_gets_431() {
    let s = TestServer::start_with(|c| c.limits.max_header_bytes = 8192).await;
    let address = address(&s);
    // A stream request's head is read without hyper (serve/first_request.rs): same answer.
    for path in ["/healthz", "/v1/stream"] {
        let address = address.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut socket = std::net::TcpStream::connect(address).unwrap();
            let head = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
                "a".repeat(20_000)
            );
            let _ = socket.write_all(head.as_bytes());
            let mut answer = String::new();
            let _ = socket.read_to_string(&mut answer);
            answer
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 431"), "{path}: {answer:?}");
    }
    assert_eq!(
        s.get_open("/healthz").await.0,
        200,
        "a normal request is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_idle_ones_are_cut_off() {
    let s = TestServer::start_with(|c| {
        c.limits.max_connections = 2;
        c.limits.request_timeout_secs = 2;
    })
    .await;
    let address = address(&s);
    tokio::task::spawn_blocking(move || {
        let first = std::net::TcpStream::connect(&address).unwrap();
        let second = std::net::TcpStream::connect(&address).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut third = std::net::TcpStream::connect(&address).unwrap();
        third
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(third.read(&mut buf).unwrap(), 0, "closed at once");
        drop((first, second));
        std::thread::sleep(Duration::from_millis(100));

        // A kept-alive connection that goes quiet is closed after the request timeout.
        let mut idle = std::net::TcpStream::connect(&address).unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = [0u8; 512];
        let n = idle.read(&mut answer).unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
        let quiet = Instant::now();
        loop {
            match idle.read(&mut answer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let waited = quiet.elapsed();
        assert!(
            waited < Duration::from_secs(5),
            "idle connection lived {waited:?}"
        );
    })
    .await
    .unwrap();
}
