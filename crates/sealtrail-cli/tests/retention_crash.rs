//! A retention run killed with SIGKILL at many points: after every kill, each event is still
//! in the hot store or in a verified archive segment (never neither), the log verifies, and a
//! run on the restarted server completes the job — every event archived once, its body gone
//! from the hot store, the log and the archive verifying.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::ServeProcess;
use sealtrail_core::time_format::{format_micros, now_micros};
use sealtrail_core::{EventLimits, Scope, TenantScope, prepare_event_value};
use sealtrail_store::sqlite::{SqliteReader, open_log};
use sealtrail_store::{ApiKeyStore, LogReader, Sequencer, SequencerConfig};
use serde_json::json;

const EVENTS: u64 = 20_000;
const DAY: i64 = 86_400 * 1_000_000;

/// A log of `EVENTS` info events 100 days old (due for archival, not for deletion).
fn build_log(dir: &Path) -> String {
    let (backend, signer) = open_log(dir, Some("sealtrail.test/retention-crash")).unwrap();
    let vkey = signer.verifier().vkey();
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )
    .unwrap();
    let now = now_micros();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(1000) {
        let events = chunk
            .iter()
            .map(|n| {
                prepare_event_value(
                    json!({
                        "tenant_id": if n % 2 == 0 { "bloom" } else { "lakeside" },
                        "action": "guest.dietary_restriction.updated",
                        "resource_type": "guest",
                        "resource_id": format!("g-{}", n % 500),
                        "severity": "info",
                        "occurred_at": format_micros(now - 100 * DAY - (*n as i64) * 1_000_000),
                        "details": {"n": n, "note": "vegetarian, no nuts"},
                    }),
                    &TenantScope::Any,
                    now,
                    &EventLimits::default(),
                )
                .unwrap()
            })
            .collect();
        handle.append_blocking(events).unwrap();
    }
    drop(handle);
    thread.join().unwrap();
    vkey
}

/// Seqs with a body in the hot store, and seqs with a record in a verified segment.
fn where_events_are(data: &Path, archive: &Path, vkey: &str) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let reader = SqliteReader::open(data).unwrap();
    let through = reader.latest_checkpoint().unwrap().unwrap().tree_size;
    let mut hot = BTreeSet::new();
    let mut cursor = 0;
    while cursor < through {
        let page = reader
            .events_after(cursor, through, &Default::default(), 10_000)
            .unwrap();
        hot.extend(page.events.iter().map(|e| e.seq));
        cursor = page.scanned_through;
    }
    let verifier = sealtrail_core::CheckpointVerifier::from_vkey(vkey).unwrap();
    let mut archived = BTreeSet::new();
    if archive.exists() {
        for located in sealtrail_archive::list_segments(archive).unwrap() {
            let segment =
                sealtrail_archive::VerifiedSegment::open(&located.manifest_path, Some(&verifier))
                    .unwrap_or_else(|e| panic!("a published segment does not verify: {e}"));
            for event in segment.events().unwrap() {
                archived.insert(event.unwrap().stored.seq);
            }
        }
    }
    (hot, archived)
}

/// Returns once a manifest is in `archive`.
async fn wait_for_a_manifest(archive: &Path) {
    loop {
        let published = std::fs::read_dir(archive).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
        });
        if published {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn log_verifies(data: &Path, vkey: &str) -> u64 {
    let verifier = sealtrail_core::CheckpointVerifier::from_vkey(vkey).unwrap();
    let report = sealtrail_store::verify::verify_sqlite(data, &verifier, None, |_, _| {}).unwrap();
    assert_eq!(report.problem, None, "the log verifies");
    report.bodies_removed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_run_killed_anywhere_loses_nothing_and_the_next_run_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    let vkey = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || build_log(&data))
            .await
            .unwrap()
    };
    let (_, key) = ApiKeyStore::open(&data)
        .unwrap()
        .create(&[Scope::Admin], None, None)
        .unwrap();
    let config = tmp.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        format!(
            "[retention_run]\narchive_to = {:?}\nevery_hours = 0\n",
            archive.to_str().unwrap()
        ),
    )
    .unwrap();
    let http = sealtrail_testkit::http_client();
    let mut kills = 0;
    // Kills that landed mid-run: some events archived, some bodies still hot.
    let mut mid_run = 0;
    let mut delay_ms = 30;
    loop {
        let server = ServeProcess::start_with_config(&data, &config);
        let run = http
            .post(format!("{}/v1/retention/run", server.url))
            .bearer_auth(&key)
            .json(&json!({}))
            .send();
        // The first kill lands the moment the first segment is published (before the run
        // can record it); the later ones at growing delays.
        let kill_at = async {
            match kills {
                0 => wait_for_a_manifest(&archive).await,
                _ => tokio::time::sleep(Duration::from_millis(delay_ms)).await,
            }
        };
        let outcome = tokio::select! {
            answer = run => Ok(answer),
            () = kill_at => Err(()),
        };
        match outcome {
            Ok(answer) => {
                // The run finished before the kill: the job is done.
                let answer = answer.unwrap();
                assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
                server.stop();
                break;
            }
            Err(_) => {
                server.kill_hard();
                kills += 1;
            }
        }
        // Killed mid-run: nothing is neither hot nor archived.
        let (hot, archived) = where_events_are(&data, &archive, &vkey);
        for seq in 1..=EVENTS {
            assert!(
                hot.contains(&seq) || archived.contains(&seq),
                "after kill {kills} at {delay_ms} ms: seq {seq} is neither hot nor archived"
            );
        }
        log_verifies(&data, &vkey);
        if !archived.is_empty() && hot.len() as u64 > EVENTS / 100 {
            mid_run += 1;
        }
        delay_ms += 80;
    }
    assert!(
        kills >= 2,
        "the run was killed mid-way at least twice ({kills})"
    );
    eprintln!("the run was killed {kills} times ({mid_run} mid-run) before one completed");
    assert!(mid_run >= 1, "at least one kill landed mid-run");
    // Done: every event archived, its body gone from the hot store, everything verifies.
    let (hot, archived) = where_events_are(&data, &archive, &vkey);
    assert_eq!(archived.len() as u64, EVENTS, "every event is archived");
    // Only the run's own `retention.run` records (after the events) are hot.
    let left: Vec<&u64> = hot.iter().filter(|s| **s <= EVENTS).collect();
    assert!(left.is_empty(), "no archived body is left hot: {left:?}");
    // At least the totals in _sealtrail; a tenant's own record only if the completing run
    // still changed its events (the killed runs may have done all of it).
    assert!(
        (1..=3).contains(&hot.len()),
        "the completing run is recorded: {hot:?}"
    );
    assert_eq!(log_verifies(&data, &vkey), EVENTS);
    let out = common::sealtrail(&[
        "verify",
        "--archive",
        archive.to_str().unwrap(),
        "--public-key",
        &vkey,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
