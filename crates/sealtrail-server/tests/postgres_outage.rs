//! PostgreSQL stopped (as by a crash) in the middle of concurrent ingest and started again:
//! producers that retry until acknowledged lose nothing, no event is stored twice, the seqs
//! have no gap, and `verify` passes.

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
    let cluster = tokio::task::spawn_blocking(|| sealtrail_testkit::PgCluster::start(50))
        .await
        .unwrap()
        .unwrap();
    let cluster = Arc::new(cluster);
    let url = cluster.database_url("postgres");
    let migrate_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut client = sealtrail_store::postgres::connect(&migrate_url).unwrap();
        sealtrail_store::postgres::migrate(&mut client).unwrap();
    })
    .await
    .unwrap();
    let server_url = url.clone();
    let server = TestServer::start_with(move |c| c.database_url = Some(server_url)).await;
    let key = server.key(&[Scope::Ingest], None);

    let acked: Arc<Mutex<HashSet<uuid::Uuid>>> = Arc::default();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (base, key, acked, refused) = (
                server.base.clone(),
                key.clone(),
                acked.clone(),
                refused.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::new();
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
        refused.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the outage was felt by the producers"
    );

    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), PRODUCERS * BATCHES * BATCH_EVENTS);
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
