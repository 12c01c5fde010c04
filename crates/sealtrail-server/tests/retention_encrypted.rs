//! Retention with field encryption on: archive segments hold the sealed values only (never
//! the plaintext), a subject shredded before or after archival reads as "[shredded]" from
//! the archive too, and the log still verifies after archival and shredding.

mod common;

use base64::Engine as _;
use common::TestServer;
use sealtrail_core::time_format::{format_micros, now_micros};
use sealtrail_core::{CheckpointVerifier, Scope};
use serde_json::{Value, json};

const DAY: i64 = 86_400 * 1_000_000;

fn change(guest: &str, notes: &str, now: i64) -> Value {
    json!({
        "tenant_id": "bloom",
        "action": "guest.dietary_restriction.updated", "resource_type": "guest",
        "resource_id": guest, "user_id": "coord:ines", "severity": "info",
        "occurred_at": format_micros(now - 100 * DAY),
        "details": {"guest": {"id": guest, "dietary_notes": notes}},
    })
}

async fn archived_view(s: &TestServer, key: &str, guest: &str) -> Value {
    let (status, page) = s
        .get(
            key,
            &format!(
                "/v1/events?tenant_id=bloom&resource_type=guest&resource_id={guest}&include_archived=true"
            ),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["events"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_hold_ciphertext_and_shredded_subjects_stay_shredded_in_them() {
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("master.key");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
    )
    .unwrap();
    let parsed: sealtrail_server::Config = toml::from_str(&format!(
        r#"
        [encryption]
        master_key = {{ file = "{}" }}
        fields = ["/details/guest/dietary_notes"]
        subject = "/details/guest/id"
        "#,
        key_file.display()
    ))
    .unwrap();
    let archive = tempfile::tempdir().unwrap();
    let archive_to = archive.path().to_string_lossy().into_owned();
    let s = TestServer::start_with(move |c| {
        c.encryption = parsed.encryption;
        c.retention_run.archive_to = Some(archive_to);
        c.retention_run.every_hours = 0;
    })
    .await;
    let admin = s.key(&[Scope::Admin, Scope::Ingest, Scope::Read], None);
    let now = now_micros();
    let notes = [
        ("g1", "anaphylaxis to peanuts"),
        ("g2", "gluten free, please"),
        ("g3", "no shellfish"),
    ];
    let events: Vec<Value> = notes.iter().map(|(g, n)| change(g, n, now)).collect();
    let (status, body) = s
        .post_json(&admin, "/v1/events", &json!({ "events": events }))
        .await;
    assert_eq!(status, 201, "{body}");

    // g2 is shredded before the run, g1 after it.
    let (status, body) = s
        .post_json(&admin, "/v1/tenants/bloom/subjects/g2/shred", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, ran) = s.post_json(&admin, "/v1/retention/run", &json!({})).await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["tenants"][0]["bodies_removed"], 3, "{ran}");

    // The segments hold the sealed values, never the plaintext.
    let (_, key_view) = s.get(&admin, "/v1/public-key").await;
    let verifier = CheckpointVerifier::from_vkey(key_view["vkey"].as_str().unwrap()).unwrap();
    let mut records = 0;
    for located in sealtrail_archive::list_segments(archive.path()).unwrap() {
        let segment =
            sealtrail_archive::VerifiedSegment::open(&located.manifest_path, Some(&verifier))
                .unwrap();
        for event in segment.events().unwrap() {
            let record = String::from_utf8(event.unwrap().stored.record).unwrap();
            if !record.contains("guest.dietary_restriction") {
                continue;
            }
            records += 1;
            assert!(record.contains("sealtrail:enc:v1:"), "{record}");
            for (_, plain) in notes {
                assert!(
                    !record.contains(plain),
                    "plaintext in the archive: {record}"
                );
            }
        }
    }
    assert_eq!(records, 3);

    // Read back from the archive: opened where the key exists, shredded where not.
    assert_eq!(
        archived_view(&s, &admin, "g1").await["details"]["guest"]["dietary_notes"],
        "anaphylaxis to peanuts"
    );
    assert_eq!(
        archived_view(&s, &admin, "g2").await["details"]["guest"]["dietary_notes"],
        "[shredded]"
    );
    let (status, body) = s
        .post_json(&admin, "/v1/tenants/bloom/subjects/g1/shred", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        archived_view(&s, &admin, "g1").await["details"]["guest"]["dietary_notes"],
        "[shredded]",
        "shredding after archival reaches the archive: it holds ciphertext only"
    );
    assert_eq!(
        archived_view(&s, &admin, "g3").await["details"]["guest"]["dietary_notes"],
        "no shellfish"
    );

    // The log still verifies after archival and shredding.
    let dir = s.stop().await;
    let report =
        sealtrail_store::verify::verify_sqlite(dir.path(), &verifier, None, |_, _| {}).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.bodies_removed, 3);
}
