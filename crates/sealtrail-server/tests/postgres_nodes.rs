//! Several servers on one PostgreSQL database: both take ingest, they write one log between
//! them (one at a time, gap-free), and a live stream on either delivers every event,
//! whichever server stored it; an API key made or revoked on one is honoured by all.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{SseClient, TestServer, another_server, another_server_with};
use sealtrail_core::Scope;
use serde_json::json;

const PER_SERVER_BATCHES: u64 = 30;
const BATCH_EVENTS: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_log_and_every_stream_sees_every_event() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let a_url = url.clone();
    let a = TestServer::start_with(move |c| c.database_url = Some(a_url)).await;
    let key = a.key(&[Scope::Admin], None);
    // The second server has a data directory of its own, with a copy of the log's signing
    // key (the API keys are in the database).
    let b_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        a.dir.path().join("log-signing.key"),
        b_dir.path().join("log-signing.key"),
    )
    .unwrap();
    let (b_url, b_path) = (url.clone(), b_dir.path().to_owned());
    let b = TestServer::start_with(move |c| {
        c.database_url = Some(b_url);
        c.data_dir = b_path;
    })
    .await;

    let mut streams = vec![
        SseClient::connect(&a.base, &key, "since=0", None).await,
        SseClient::connect(&b.base, &key, "since=0", None).await,
    ];
    let producers: Vec<_> = [a.base.clone(), b.base.clone()]
        .into_iter()
        .enumerate()
        .map(|(node, base)| {
            let key = key.clone();
            tokio::spawn(async move {
                let http = sealtrail_testkit::http_client();
                for batch in 0..PER_SERVER_BATCHES {
                    let events: Vec<_> = (0..BATCH_EVENTS)
                        .map(|i| {
                            json!({
                                "tenant_id": format!("node-{node}"), "action": "guest.rsvp.updated",
                                "resource_type": "guest", "resource_id": format!("{batch}-{i}"),
                            })
                        })
                        .collect();
                    let response = http
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(&key)
                        .json(&json!({ "events": events }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    let total = 2 * PER_SERVER_BATCHES * BATCH_EVENTS;
    for (name, stream) in ["first", "second"].into_iter().zip(&mut streams) {
        let mut seqs = Vec::new();
        let mut tenants = HashSet::new();
        while (seqs.len() as u64) < total {
            let (seq, event) = tokio::time::timeout(Duration::from_secs(20), stream.next_event())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the {name} server's stream stalled at {} events",
                        seqs.len()
                    )
                })
                .expect("the stream stays open");
            tenants.insert(event["tenant_id"].as_str().unwrap().to_owned());
            seqs.push(seq);
        }
        assert_eq!(
            seqs,
            (1..=total).collect::<Vec<_>>(),
            "the {name} server streams every event once, in seq order"
        );
        assert_eq!(tenants.len(), 2, "events stored through both servers");
    }
    // Each server reads what the other stored, with proofs against a durable checkpoint.
    for server in [&a, &b] {
        let (status, page) = server
            .get(&key, "/v1/events?tenant_id=node-0&limit=1000")
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            page["events"].as_array().unwrap().len() as u64,
            PER_SERVER_BATCHES * BATCH_EVENTS
        );
        let id = page["events"][0]["id"].as_str().unwrap().to_owned();
        let (status, found) = server.get(&key, &format!("/v1/events/{id}")).await;
        assert_eq!(status, 200, "{found}");
    }
    drop(streams);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_or_revoked_on_one_of_three_servers_is_honoured_by_all_within_a_second() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let a_url = url.clone();
    let a = TestServer::start_with(move |c| c.database_url = Some(a_url)).await;
    let (b, _b_dir) = another_server(&a, &url).await;
    let (c, _c_dir) = another_server(&a, &url).await;
    let admin = a.key(&[Scope::Admin], None);

    // Made through the API of server a, used at once on b and c.
    let (status, created) = a
        .post_json(
            &admin,
            "/v1/keys",
            &json!({"scopes": ["ingest", "read"], "tenant_id": "bloom"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    for server in [&b, &c] {
        let (status, body) = server.get(&key, "/v1/events?limit=1").await;
        assert_eq!(status, 200, "a key made on another server: {body}");
    }

    // Revoked through b: refused by b at once, by a and c within a second.
    let revoked = b
        .http
        .delete(b.url(&format!("/v1/keys/{key_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let started = std::time::Instant::now();
    assert_eq!(b.get(&key, "/v1/events?limit=1").await.0, 401);
    let mut refused_after = Vec::new();
    for server in [&a, &c] {
        while server.get(&key, "/v1/events?limit=1").await.0 != 401 {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "still accepted a second after the revocation"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        refused_after.push(started.elapsed());
    }
    println!("a key revoked on one server was refused by the other two after {refused_after:?}");
}

/// Field encryption with a subject key per guest and a blind index on the email, the
/// master key in a file of `dir`.
fn encryption(dir: &std::path::Path) -> sealtrail_server::config::EncryptionConfig {
    use base64::Engine as _;
    let key_file = dir.join("master.key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
    )
    .unwrap();
    let config = format!(
        r#"
        [encryption]
        master_key = {{ file = "{}" }}
        fields = ["/details/guest/dietary_notes", "/details/guest/email"]
        subject = "/details/guest/id"
        blind_index = ["/details/guest/email"]
        "#,
        key_file.display()
    );
    let parsed: sealtrail_server::Config = toml::from_str(&config).unwrap();
    parsed.encryption.unwrap()
}

fn guest_change(guest: &str) -> serde_json::Value {
    json!({
        "action": "guest.dietary_restriction.updated", "resource_type": "guest",
        "resource_id": guest, "user_id": "coord:ines",
        "details": {"guest": {"id": guest, "dietary_notes": "no shellfish",
                              "email": format!("{guest}@guests.example")}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_shredded_on_one_of_three_servers_reads_shredded_on_all_within_a_second() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let secrets = tempfile::tempdir().unwrap();
    let settings = encryption(secrets.path());
    let (a_url, a_settings) = (url.clone(), settings.clone());
    let a = TestServer::start_with(move |c| {
        c.database_url = Some(a_url);
        c.encryption = Some(a_settings);
    })
    .await;
    let mut others = Vec::new();
    for _ in 0..2 {
        let settings = settings.clone();
        others.push(another_server_with(&a, &url, move |c| c.encryption = Some(settings)).await);
    }
    let (b, c) = (&others[0].0, &others[1].0);
    let admin = a.key(&[Scope::Admin], None);
    let writer = a.key(&[Scope::Ingest, Scope::Read], Some("acme"));

    // Sealed on three servers, under one key per guest shared through the database: each
    // server opens what the others sealed.
    for (server, guest) in [(&a, "g1"), (b, "g1"), (c, "g2")] {
        let (status, body) = server
            .post_json(&writer, "/v1/events", &guest_change(guest))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let search = "/v1/events/search?field=/details/guest/email&equals=g1@guests.example";
    for server in [&a, b, c] {
        common::eventually("every event is indexed", async || {
            let (_, found) = server.get(&writer, search).await;
            found["events"].as_array().is_some_and(|e| e.len() == 2)
        })
        .await;
        let (_, page) = server.get(&writer, "/v1/events?resource_id=g1").await;
        for event in page["events"].as_array().unwrap() {
            assert_eq!(
                event["details"]["guest"]["dietary_notes"], "no shellfish",
                "{event}"
            );
        }
    }

    // Shredded through b: a and c show it within a second, and find nothing by its email.
    let (status, body) = b
        .post_json(&admin, "/v1/tenants/acme/subjects/g1/shred", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let started = std::time::Instant::now();
    let mut shredded_after = Vec::new();
    for server in [&a, c] {
        loop {
            let (_, page) = server.get(&writer, "/v1/events?resource_id=g1").await;
            let notes: Vec<_> = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["details"]["guest"]["dietary_notes"].clone())
                .collect();
            if notes.iter().all(|n| n == "[shredded]") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "still readable a second after the shredding: {notes:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shredded_after.push(started.elapsed());
        let (_, found) = server.get(&writer, search).await;
        assert_eq!(found["events"].as_array().unwrap().len(), 0, "{found}");
    }
    println!(
        "a subject shredded on one server read [shredded] on the other two after {shredded_after:?}"
    );
    // The other guest is untouched, and g1's next change gets a new key on any server.
    let (_, g2) = a.get(&writer, "/v1/events?resource_id=g2").await;
    assert_eq!(
        g2["events"][0]["details"]["guest"]["dietary_notes"],
        "no shellfish"
    );
    let (status, body) = c
        .post_json(&writer, "/v1/events", &guest_change("g1"))
        .await;
    assert_eq!(status, 201, "{body}");
    for server in [&a, b] {
        common::eventually("the new value is readable everywhere", async || {
            let (_, page) = server.get(&writer, "/v1/events?resource_id=g1").await;
            page["events"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["details"]["guest"]["dietary_notes"] == "no shellfish")
            })
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_spreading_its_requests_over_three_servers_gets_one_servers_rate() {
    const RATE: u32 = 20;
    let (_cluster, url) = common::postgres_with_schema().await;
    let limited = |c: &mut sealtrail_server::Config| {
        c.limits.key_requests_per_sec = RATE;
        c.limits.key_burst = RATE;
    };
    let a_url = url.clone();
    let a = TestServer::start_with(move |c| {
        c.database_url = Some(a_url);
        limited(c);
    })
    .await;
    let (b, _b_dir) = another_server_with(&a, &url, limited).await;
    let (c, _c_dir) = another_server_with(&a, &url, limited).await;
    let key = a.key(&[Scope::Read], None);
    // Four seconds of requests, round robin, as fast as the servers answer.
    let started = std::time::Instant::now();
    let (mut accepted, mut refused) = (0u32, 0u32);
    let mut per_second = std::collections::BTreeMap::<u64, u32>::new();
    let servers = [&a, &b, &c];
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(4) {
        match servers[i % 3].get(&key, "/v1/events?limit=1").await.0 {
            200 => {
                accepted += 1;
                let second = sealtrail_core::time_format::now_micros() as u64 / 1_000_000;
                *per_second.entry(second).or_default() += 1;
            }
            429 => refused += 1,
            other => panic!("{other}"),
        }
        i += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "rate {RATE}/s per key over three servers: {accepted} accepted, {refused} refused in {seconds:.1} s; per second {:?}",
        per_second.values().collect::<Vec<_>>()
    );
    // Each server alone would let a key through at its rate (plus a burst): three times
    // the rate over three. Shared, once the first bursts are spent, each whole second
    // lets through about the rate, and the whole run about what one server would.
    assert!(refused > 0, "the limit applies");
    let whole: Vec<u32> = per_second.values().copied().collect();
    let steady = &whole[2.min(whole.len())..whole.len().saturating_sub(1)];
    assert!(!steady.is_empty(), "{whole:?}");
    for n in steady {
        assert!(
            f64::from(*n) <= f64::from(RATE) * 1.5,
            "{n} requests in one second at {RATE}/s over three servers: {whole:?}"
        );
    }
    let one_server = f64::from(RATE) * (seconds + 1.0) + f64::from(RATE);
    assert!(
        f64::from(accepted) <= one_server * 1.3,
        "{accepted} accepted: more than one server's {one_server:.0} (three would allow {:.0})",
        3.0 * (f64::from(RATE) * seconds + f64::from(RATE))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_hold_placed_on_one_server_binds_the_others() {
    let (_cluster, url) = common::postgres_with_schema().await;
    let a_url = url.clone();
    let a = TestServer::start_with(move |c| c.database_url = Some(a_url)).await;
    let (b, _b_dir) = another_server(&a, &url).await;
    let (c, _c_dir) = another_server(&a, &url).await;
    let admin = a.key(&[Scope::Admin], None);
    let (status, placed) = a
        .post_json(
            &admin,
            "/v1/holds",
            &json!({"tenant_id": "bloom", "resource_type": "guest", "resource_id": "guest-7",
                    "reason": "dispute over the seating plan"}),
        )
        .await;
    assert_eq!(status, 201, "{placed}");
    let id = placed["hold"]["id"].as_str().unwrap().to_owned();
    // Every server's retention asks the same holds: the others list it at once.
    for server in [&b, &c] {
        let (status, holds) = server.get(&admin, "/v1/holds?tenant_id=bloom").await;
        assert_eq!(status, 200, "{holds}");
        assert_eq!(holds[0]["id"], id.as_str(), "{holds}");
    }
    // Released through c: active nowhere, released once.
    let (status, body) = c
        .post_json(
            &admin,
            &format!("/v1/holds/{id}/release"),
            &json!({"reason": "settled"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = b
        .post_json(
            &admin,
            &format!("/v1/holds/{id}/release"),
            &json!({"reason": "again"}),
        )
        .await;
    assert_eq!(status, 409, "released already, whichever server is asked");
    for server in [&a, &b] {
        let (_, holds) = server.get(&admin, "/v1/holds?tenant_id=bloom").await;
        assert_eq!(holds.as_array().unwrap().len(), 0, "{holds}");
    }
}
