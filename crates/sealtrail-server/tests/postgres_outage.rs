//! PostgreSQL stopped (as by a crash) in the middle of concurrent ingest and started again:
//! ingest goes on acknowledging from the local spool, producers that retry whatever was
//! not acknowledged lose nothing, no event is stored twice, the seqs have no gap, and
//! `verify` passes.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use sealtrail_core::Scope;
use serde_json::json;

const PRODUCERS: usize = 4;
const BATCHES: usize = 40;
const BATCH_EVENTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_survives_a_postgresql_outage_losing_and_duplicating_nothing() {
    let (cluster, url) = common::postgres_with_schema().await;
    let server_url = url.clone();
    let server = TestServer::start_with(move |c| c.database_url = Some(server_url)).await;
    let key = server.key(&[Scope::Ingest], None);

    let acked: Arc<Mutex<HashSet<uuid::Uuid>>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let spooled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (base, key, acked, refused, spooled) = (
                server.base.clone(),
                key.clone(),
                acked.clone(),
                refused.clone(),
                spooled.clone(),
            );
            tokio::spawn(async move {
                let http = sealtrail_testkit::http_client();
                for b in 0..BATCHES {
                    let ids: Vec<uuid::Uuid> =
                        (0..BATCH_EVENTS).map(|_| uuid::Uuid::new_v4()).collect();
                    let events: Vec<_> = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            json!({
                                "id": id, "tenant_id": format!("tenant-{p}"),
                                "action": "guest.rsvp.updated", "resource_type": "guest",
                                "resource_id": format!("{b}-{i}"),
                            })
                        })
                        .collect();
                    // A producer retries the same events until they are acknowledged.
                    loop {
                        let answer = http
                            .post(format!("{base}/v1/events"))
                            .bearer_auth(&key)
                            .json(&json!({ "events": events }))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        match answer {
                            Ok(r) if r.status() == 201 => break,
                            Ok(r) if r.status() == 202 => {
                                spooled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                break;
                            }
                            _ => {
                                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    acked.lock().unwrap().extend(ids);
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        })
        .collect();

    // Let ingest run, then take PostgreSQL away mid-stream and bring it back.
    while acked.lock().unwrap().len() < PRODUCERS * BATCH_EVENTS * 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.start_again())
        .await
        .unwrap()
        .unwrap();
    for producer in producers {
        tokio::time::timeout(Duration::from_secs(120), producer)
            .await
            .expect("ingest resumes after the outage")
            .unwrap();
    }
    assert!(
        spooled.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "requests were acknowledged from the spool during the outage"
    );

    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), PRODUCERS * BATCHES * BATCH_EVENTS);
    // What the spool acknowledged enters the log once the database is back.
    common::eventually("the spool drains", async || {
        let ready: serde_json::Value =
            serde_json::from_str(&server.get_open("/readyz").await.1).unwrap();
        ready["spool_events"] == 0
    })
    .await;
    let data_dir = server.dir.path().to_owned();
    let dir = server.stop().await;
    let check_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut client = sealtrail_store::postgres::connect(&check_url).unwrap();
        let rows = client.query("SELECT id, seq FROM events", &[]).unwrap();
        let mut stored: Vec<(uuid::Uuid, i64)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        stored.sort_by_key(|(_, seq)| *seq);
        let seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(
            seqs,
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "gap-free seqs"
        );
        let ids: HashSet<uuid::Uuid> = stored.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), stored.len(), "no event stored twice");
        assert!(
            acked.is_subset(&ids),
            "every acknowledged event is stored ({} missing)",
            acked.difference(&ids).count()
        );
        let verifier = sealtrail_store::postgres::log_verifier(&check_url, &data_dir).unwrap();
        let report =
            sealtrail_store::postgres::verify_postgres(&check_url, &verifier, None, |_, _| {})
                .unwrap();
        assert_eq!(report.problem, None);
    })
    .await
    .unwrap();
    drop(dir);
}

/// While PostgreSQL is down, ingest acknowledges from the local spool (202); the spool
/// depth shows in /readyz; when the database is back the spool drains into the log in the
/// order it was acknowledged, each event once, and the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgresql_is_down_ingest_is_spooled_then_drained_in_order() {
    let (cluster, url) = common::postgres_with_schema().await;
    let server_url = url.clone();
    let server = TestServer::start_with(move |c| c.database_url = Some(server_url)).await;
    let key = server.key(&[Scope::Ingest, Scope::Read], None);
    let batch = |from: u64, to: u64| {
        // Half with producer ids, half with ids the server chooses.
        let events: Vec<_> = (from..to)
            .map(|n| {
                let mut event = json!({"tenant_id": "bloom", "action": "guest.rsvp.updated",
                                        "resource_type": "guest", "resource_id": n.to_string()});
                if n % 2 == 0 {
                    event["id"] = json!(uuid::Uuid::new_v4());
                }
                event
            })
            .collect();
        json!({ "events": events })
    };
    let (status, _) = server.post_json(&key, "/v1/events", &batch(0, 10)).await;
    assert_eq!(status, 201, "stored directly while the database is up");

    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
    let mut spooled = Vec::new();
    for b in 1..6u64 {
        let (status, body) = server
            .post_json(&key, "/v1/events", &batch(b * 10, b * 10 + 10))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["spooled"], true);
        for receipt in body["events"].as_array().unwrap() {
            assert!(receipt["seq"].is_null(), "no seq while spooled");
            spooled.push(receipt["id"].as_str().unwrap().to_owned());
        }
    }
    let ready: serde_json::Value =
        serde_json::from_str(&server.get_open("/readyz").await.1).unwrap();
    assert_eq!(ready["spool_events"], 50);

    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.start_again())
        .await
        .unwrap()
        .unwrap();
    common::eventually("the spool drains", async || {
        let ready: serde_json::Value =
            serde_json::from_str(&server.get_open("/readyz").await.1).unwrap();
        ready["spool_events"] == 0
    })
    .await;
    let (status, _) = server.post_json(&key, "/v1/events", &batch(60, 70)).await;
    assert_eq!(status, 201, "direct again once drained");

    let data_dir = server.dir.path().to_owned();
    let dir = server.stop().await;
    tokio::task::spawn_blocking(move || {
        let mut client = sealtrail_store::postgres::connect(&url).unwrap();
        let rows = client
            .query(
                "SELECT id::text, seq, resource_id FROM events ORDER BY seq",
                &[],
            )
            .unwrap();
        let resource_ids: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
        assert_eq!(
            resource_ids,
            (0..70).map(|n| n.to_string()).collect::<Vec<_>>(),
            "every event once, in the order acknowledged"
        );
        let seqs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
        assert_eq!(seqs, (1..=70).collect::<Vec<i64>>());
        let stored: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        assert!(
            spooled.iter().all(|id| stored.contains(id)),
            "spooled ids kept"
        );
        let verifier = sealtrail_store::postgres::log_verifier(&url, &data_dir).unwrap();
        let report =
            sealtrail_store::postgres::verify_postgres(&url, &verifier, None, |_, _| {}).unwrap();
        assert_eq!(report.problem, None);
    })
    .await
    .unwrap();
    drop(dir);
}

/// A spooled request holding an event the log refuses when it drains (its id was reused
/// with other content while the database was down): the request's other events enter the
/// log, the refused one is kept in the rejected list with its reason — never dropped — and
/// every producer can look up what became of each id it was acknowledged for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_event_the_log_refuses_is_kept_with_its_reason_and_its_request_enters() {
    let (cluster, url) = common::postgres_with_schema().await;
    let server_url = url.clone();
    let server = TestServer::start_with(move |c| c.database_url = Some(server_url)).await;
    let key = server.key(&[Scope::Ingest, Scope::Read], None);
    let admin = server.key(&[Scope::Admin], None);
    let other_tenant = server.key(&[Scope::Ingest, Scope::Read], Some("harbor"));
    let reused = uuid::Uuid::new_v4();
    let event = |id: Option<uuid::Uuid>, resource: &str| {
        let mut e = json!({"tenant_id": "bloom", "action": "guest.dietary_restriction.updated",
                           "resource_type": "guest", "resource_id": resource});
        if let Some(id) = id {
            e["id"] = json!(id);
        }
        e
    };
    let (status, body) = server
        .post_json(
            &key,
            "/v1/events",
            &json!({"events": [event(Some(reused), "guest-1")]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let stored_seq = body["events"][0]["seq"].as_u64().unwrap();

    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .unwrap();
    // Down: the spool cannot know the id is taken, and acknowledges.
    let (before, after) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (status, body) = server
        .post_json(
            &key,
            "/v1/events",
            &json!({"events": [event(Some(before), "guest-2"), event(Some(reused), "guest-9"),
                               event(Some(after), "guest-3")]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, receipt) = server.get(&key, &format!("/v1/receipts/{before}")).await;
    assert_eq!(
        (status, receipt["status"].as_str()),
        (200, Some("spooled")),
        "{receipt}"
    );
    let (status, _) = server
        .post_json(
            &key,
            "/v1/events",
            &json!({"events": [event(None, "guest-4")]}),
        )
        .await;
    assert_eq!(status, 202);

    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.start_again())
        .await
        .unwrap()
        .unwrap();
    common::eventually("the spool drains", async || {
        let ready: serde_json::Value =
            serde_json::from_str(&server.get_open("/readyz").await.1).unwrap();
        ready["spool_events"] == 0
    })
    .await;

    // The refused event's neighbours and the request after it are in the log.
    for id in [before, after] {
        let (status, receipt) = server.get(&key, &format!("/v1/receipts/{id}")).await;
        assert_eq!(status, 200, "{receipt}");
        assert_eq!(receipt["status"], "stored", "{receipt}");
        assert!(receipt["seq"].as_u64().unwrap() > stored_seq, "{receipt}");
    }
    let (_, page) = server
        .get(
            &key,
            "/v1/events?tenant_id=bloom&action=guest.dietary_restriction.updated&limit=100",
        )
        .await;
    let mut resources: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource_id"].as_str().unwrap())
        .collect();
    resources.sort_unstable();
    assert_eq!(
        resources,
        ["guest-1", "guest-2", "guest-3", "guest-4"],
        "{page}"
    );

    // The refused one: its receipt names the stored event and the refusal, the list keeps
    // it, and /readyz and the metrics say so.
    let (status, receipt) = server.get(&key, &format!("/v1/receipts/{reused}")).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["status"], "stored");
    assert_eq!(receipt["seq"], stored_seq);
    let reason = receipt["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("other content"), "{receipt}");
    let (status, list) = server.get(&admin, "/v1/spool/rejected").await;
    assert_eq!(status, 200, "{list}");
    let rejected = list["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{list}");
    assert_eq!(rejected[0]["id"], reused.to_string());
    assert_eq!(rejected[0]["tenant_id"], "bloom");
    let ready: serde_json::Value =
        serde_json::from_str(&server.get_open("/readyz").await.1).unwrap();
    assert_eq!(ready["spool_rejected_events"], 1, "{ready}");
    assert!(
        ready["warnings"][0]
            .as_str()
            .unwrap()
            .contains("spool rejected"),
        "{ready}"
    );
    let metrics = server.get_open("/metrics").await.1;
    assert!(
        metrics.contains("sealtrail_spool_rejected_events 1"),
        "{metrics}"
    );

    // Another tenant's key finds none of it; a tenant-bound key may not list the spool.
    let (status, _) = server
        .get(&other_tenant, &format!("/v1/receipts/{reused}"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .get(&other_tenant, &format!("/v1/receipts/{before}"))
        .await;
    assert_eq!(status, 404);
    let bound_admin = server.key(&[Scope::Admin], Some("bloom"));
    let (status, _) = server.get(&bound_admin, "/v1/spool/rejected").await;
    assert_eq!(status, 403);
    let (status, _) = server
        .get(&key, &format!("/v1/receipts/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, 404);
    let (status, body) = server.get(&key, "/v1/receipts/not-a-uuid").await;
    assert_eq!(status, 400, "{body}");

    // A restart keeps the list.
    let server = server.restart().await;
    let (_, list) = server.get(&admin, "/v1/spool/rejected").await;
    assert_eq!(list["rejected"].as_array().unwrap().len(), 1, "{list}");
}
