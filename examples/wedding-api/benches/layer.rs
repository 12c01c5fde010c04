//! The audit layer's cost per request, measured with criterion on the example service
//! (`GET /guests/{id}`, in process, no network): without the layer (the baseline), with it
//! and Sealtrail up (a real server in this process receiving the events), and with it and
//! Sealtrail down (events spooled to disk). `cargo xtask bench --clients-only` runs this
//! pinned to one core with a release Sealtrail pinned to the other (`SEALTRAIL_BENCH_URL`,
//! `SEALTRAIL_BENCH_KEY`), as it would run on a machine of its own, and reads the medians
//! from `target/criterion`; without those variables Sealtrail runs in this process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use sealtrail_client::Client;
use sealtrail_client::producer::{Producer, ProducerConfig};
use sealtrail_core::Scope;
use sealtrail_tower::TrustedProxies;
use tower::ServiceExt as _;

fn request() -> Request<Body> {
    let mut request = Request::get("/guests/1")
        .header("authorization", "Bearer ines-token")
        .header("user-agent", "bench/1.0")
        .body(Body::empty())
        .expect("a request");
    let peer: SocketAddr = "192.0.2.10:40000".parse().expect("an address");
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn app(producer: Option<Producer>) -> Router {
    let sessions = wedding_api::parse_sessions("ines-token=coord:ines").expect("sessions");
    wedding_api::router(
        wedding_api::WeddingApp::new(sessions),
        producer,
        TrustedProxies::none(),
    )
}

fn producer_config(spool: Option<&std::path::Path>) -> ProducerConfig {
    let mut config = ProducerConfig::new("wedding-api-bench");
    config.tenant_id = Some("bench".into());
    config.batch_size = 1000;
    config.queue_capacity = 100_000;
    config.spool_dir = spool.map(std::path::Path::to_owned);
    config.max_spool_bytes = 8 << 30;
    config
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let data = tempfile::tempdir().expect("a temp dir");
    let spool = tempfile::tempdir().expect("a temp dir");
    let (server, up, down) = runtime.block_on(async {
        let mut config = sealtrail_server::Config {
            listen: "127.0.0.1:0".parse().expect("an address"),
            data_dir: data.path().to_owned(),
            ..sealtrail_server::Config::default()
        };
        config.access_log.enabled = false;
        let server = sealtrail_server::start(config)
            .await
            .expect("sealtrail starts");
        let keys = sealtrail_store::ApiKeyStore::open(data.path()).expect("keys");
        let key = keys.create(&[Scope::Ingest], None, None).expect("a key").1;
        let (url, key) = match (
            std::env::var("SEALTRAIL_BENCH_URL"),
            std::env::var("SEALTRAIL_BENCH_KEY"),
        ) {
            (Ok(url), Ok(key)) => (url, key),
            _ => (format!("http://{}", server.local_addr()), key),
        };
        let up = Producer::start(
            Client::new(&url, &key).expect("client"),
            producer_config(None),
        )
        .expect("producer");
        // Nothing listens on port 9 (discard) here: Sealtrail is down.
        let gone = Client::new("http://127.0.0.1:9", &key).expect("client");
        let down = Producer::start(gone, producer_config(Some(spool.path()))).expect("producer");
        (server, up, down)
    });
    let mut group = c.benchmark_group("wedding-api GET /guests/{id}");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, producer) in [
        ("without the layer", None),
        ("layer, Sealtrail up", Some(up.clone())),
        ("layer, Sealtrail down", Some(down.clone())),
    ] {
        let router = app(producer.clone());
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut elapsed = Duration::ZERO;
                    let mut started = Instant::now();
                    for _ in 0..iterations {
                        let response = router.clone().oneshot(request()).await.expect("answered");
                        assert_eq!(response.status(), 404, "the guest does not exist: a lookup");
                        // The loop makes requests far faster than one Sealtrail core takes
                        // events; the queue filling would measure Sealtrail's ingest rate
                        // (backpressure), not the layer. So the clock stops while the queue
                        // drains: this is the request path's cost when Sealtrail keeps up.
                        if let Some(producer) = &producer
                            && producer.metrics().queued > 50_000
                        {
                            elapsed += started.elapsed();
                            while producer.metrics().queued > 5_000 {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            started = Instant::now();
                        }
                    }
                    elapsed + started.elapsed()
                })
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        up.shutdown(Duration::from_secs(30)).await;
        down.shutdown(Duration::from_secs(1)).await;
        server.shutdown().await.expect("sealtrail stops");
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
