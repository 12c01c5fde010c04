//! HTTPS: the server with a certificate, through a real TLS client (reqwest with rustls)
//! that trusts only the test CA.

mod common;

use std::time::Duration;

use common::{TestServer, guest_event};
use sealtrail_core::Scope;
use sealtrail_server::config::TlsSettings;
use tokio::io::AsyncReadExt;

fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    sealtrail_testkit::tls::make_certificates(dir.path()).unwrap();
    dir
}

/// A server with the test certificate (and `adjust`), its https:// base, and a client that
/// trusts the test CA.
async fn tls_server(
    certs: &tempfile::TempDir,
    adjust: impl FnOnce(&mut sealtrail_server::Config),
) -> (TestServer, String, reqwest::Client) {
    let s = TestServer::start_with(|c| {
        c.tls = Some(TlsSettings {
            cert_file: certs.path().join("cert.pem"),
            key_file: certs.path().join("key.pem"),
        });
        adjust(c);
    })
    .await;
    let https = s.base.replace("http://", "https://");
    let ca = std::fs::read(certs.path().join("ca.pem")).unwrap();
    let client = sealtrail_testkit::http_client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    (s, https, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_tls_to_a_client_that_trusts_the_ca() {
    let certs = certificates();
    let (s, https, client) = tls_server(&certs, |c| c.limits.request_timeout_secs = 1).await;

    let health = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    let key = s.key(&[Scope::Ingest, Scope::Read], Some("acme"));
    let stored = client
        .post(format!("{https}/v1/events"))
        .bearer_auth(&key)
        .json(&guest_event(1))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 201);
    let listed: serde_json::Value = client
        .get(format!("{https}/v1/events"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["events"].as_array().unwrap().len(), 1);

    // A client that does not trust the CA refuses the server.
    let untrusting = sealtrail_testkit::http_client();
    assert!(
        untrusting
            .get(format!("{https}/healthz"))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = sealtrail_testkit::http_client()
        .get(format!("{}/healthz", s.base))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that connects and never starts the handshake is cut off.
    let mut idle = tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the server closes a silent connection within its timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_certificate_is_named_at_start() {
    let certs = certificates();
    let other = certificates();
    let dir = tempfile::tempdir().unwrap();
    let config = sealtrail_server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        tls: Some(TlsSettings {
            cert_file: certs.path().join("cert.pem"),
            key_file: other.path().join("key.pem"),
        }),
        ..sealtrail_server::Config::default()
    };
    let error = sealtrail_server::start(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("does not fit the certificate"), "{error}");
    let config = sealtrail_server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        tls: Some(TlsSettings {
            cert_file: dir.path().join("missing.pem"),
            key_file: other.path().join("key.pem"),
        }),
        ..sealtrail_server::Config::default()
    };
    let error = sealtrail_server::start(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("tls.cert_file") && error.contains("missing.pem"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_served_over_tls_too() {
    use futures_util::StreamExt as _;
    let certs = certificates();
    let (s, https, client) = tls_server(&certs, |_| {}).await;
    let key = s.key(&[Scope::Ingest, Scope::Stream], Some("acme"));
    // A fresh connection whose first request is the stream (served without hyper).
    let stream = client
        .get(format!("{https}/v1/stream?since=0"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let stored = client
        .post(format!("{https}/v1/events"))
        .bearer_auth(&key)
        .json(&guest_event(7))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 201);
    let mut body = stream.bytes_stream();
    let mut text = String::new();
    while !text.contains("guest-7") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("the event arrives")
            .expect("the stream goes on")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("id: 1\n"), "{text}");
}
