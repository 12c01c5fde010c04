//! Tampering with the SQLite file directly is detected by `verify`, which names the kind of
//! change and the first seq. The sequencer's start-up check is O(log n) and sees only
//! changes at the tail (the size or root no longer matching the latest signed checkpoint);
//! those it refuses to extend.

mod common;

use common::{TestLog, event, sqlite};
use rusqlite::params;
use sealtrail_store::sqlite::{insert_event_row, open_log};
use sealtrail_store::verify::verify_sqlite;
use sealtrail_store::{Finding, NewLeaf, Sequencer, SequencerConfig};

/// A stopped log of 600 events (two full level-8 Merkle nodes), ready to be tampered with.
fn stopped_log() -> (
    tempfile::TempDir,
    sealtrail_core::CheckpointVerifier,
    String,
) {
    let log = TestLog::new();
    for chunk in (0..600u64).collect::<Vec<_>>().chunks(150) {
        log.append(chunk.iter().map(|&n| event(n)).collect());
    }
    let verifier = log.verifier.clone();
    let latest_note = log.reader.latest_checkpoint().unwrap().unwrap().note;
    let dir = log.stop();
    (dir, verifier, latest_note)
}

fn verify(
    dir: &tempfile::TempDir,
    verifier: &sealtrail_core::CheckpointVerifier,
) -> Option<Finding> {
    verify_sqlite(dir.path(), verifier, None, |_, _| {})
        .unwrap()
        .problem
}

fn db(dir: &tempfile::TempDir) -> rusqlite::Connection {
    sqlite(&sealtrail_store::sqlite::log_db_path(dir.path()))
}

fn assert_sequencer_refuses(dir: &tempfile::TempDir) {
    let (backend, signer) = open_log(dir.path(), None).unwrap();
    let refused = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    );
    assert!(
        refused.is_err(),
        "the sequencer must not extend a tampered log"
    );
}

/// What a forger with write access but no signing key can do: append a well-formed event,
/// with a correct leaf hash, at `seq`.
fn insert_forged(conn: &rusqlite::Connection, seq: u64, n: u64) {
    let event = common::prepare(event(n));
    let record = event.record(seq);
    let leaf_hash = sealtrail_core::merkle::leaf_hash(&record);
    insert_event_row(
        conn,
        &NewLeaf {
            seq,
            event: &event,
            record,
            leaf_hash,
        },
    )
    .unwrap();
}

#[test]
fn an_untouched_log_verifies() {
    let (dir, verifier, _) = stopped_log();
    let report = verify_sqlite(dir.path(), &verifier, None, |_, _| {}).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.events, 600);
    assert_eq!(report.tree_size, 600);
}

#[test]
fn an_edited_record_is_named() {
    let (dir, verifier, _) = stopped_log();
    db(&dir)
        .execute(
            "UPDATE events SET record = replace(record, '\"severity\":\"info\"', '\"severity\":\"warning\"') WHERE seq = 42",
            [],
        )
        .unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(
        (finding.kind(), finding.seq()),
        ("edited", Some(42)),
        "{finding}"
    );
}

#[test]
fn an_edited_indexed_column_is_named() {
    let (dir, verifier, _) = stopped_log();
    db(&dir)
        .execute(
            "UPDATE events SET severity = 2 WHERE seq = 77 AND severity = 0",
            [],
        )
        .unwrap();
    db(&dir)
        .execute(
            "UPDATE events SET tenant_id = 'intruder' WHERE seq = 99",
            [],
        )
        .unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(
        (finding.kind(), finding.seq()),
        ("column mismatch", Some(77)),
        "{finding}"
    );
    assert!(finding.to_string().contains("severity"), "{finding}");
}

#[test]
fn a_deleted_row_is_named() {
    let (dir, verifier, _) = stopped_log();
    db(&dir)
        .execute("DELETE FROM events WHERE seq = 300", [])
        .unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(
        (finding.kind(), finding.seq()),
        ("missing", Some(300)),
        "{finding}"
    );
}

#[test]
fn a_deleted_tail_is_named() {
    let (dir, verifier, _) = stopped_log();
    db(&dir)
        .execute("DELETE FROM events WHERE seq > 590", [])
        .unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(
        (finding.kind(), finding.seq()),
        ("missing", Some(591)),
        "{finding}"
    );
    assert_sequencer_refuses(&dir);
}

#[test]
fn a_rollback_of_events_and_their_checkpoints_is_caught_by_a_kept_checkpoint() {
    let (dir, verifier, kept_note) = stopped_log();
    let conn = db(&dir);
    conn.execute("DELETE FROM events WHERE seq > 450", [])
        .unwrap();
    conn.execute("DELETE FROM checkpoints WHERE tree_size > 450", [])
        .unwrap();
    conn.execute("DELETE FROM merkle_nodes WHERE level = 8 AND idx >= 1", [])
        .unwrap();
    // The stored log is now consistent with itself...
    assert_eq!(verify(&dir, &verifier), None);
    // ...but not with the checkpoint a client kept.
    let report = verify_sqlite(dir.path(), &verifier, Some(&kept_note), |_, _| {}).unwrap();
    let finding = report.problem.unwrap();
    assert_eq!(
        (finding.kind(), finding.seq()),
        ("missing", Some(451)),
        "{finding}"
    );
}

#[test]
fn an_inserted_row_is_named() {
    let (dir, verifier, _) = stopped_log();
    // A forger appends a well-formed event with a correct leaf hash but cannot sign.
    let conn = db(&dir);
    insert_forged(&conn, 601, 9999);
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(
        (finding.kind(), finding.seq()),
        ("inserted", Some(601)),
        "{finding}"
    );
    assert_sequencer_refuses(&dir);
}

#[test]
fn a_row_inserted_in_the_middle_is_named() {
    let (dir, verifier, _) = stopped_log();
    let conn = db(&dir);
    // Shift seqs 200.. up by one (from the top, to keep the key unique) and put a forged
    // event at 200, records and hashes all self-consistent.
    conn.execute("UPDATE events SET seq = -seq WHERE seq >= 200", [])
        .unwrap();
    conn.execute("UPDATE events SET seq = 1 - seq WHERE seq < 0", [])
        .unwrap();
    insert_forged(&conn, 200, 200);
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(finding.kind(), "inserted", "{finding}");
    assert!(matches!(finding.seq(), Some(200)), "{finding}");
}

#[test]
fn swapped_rows_are_named() {
    let (dir, verifier, _) = stopped_log();
    let conn = db(&dir);
    conn.execute("UPDATE events SET seq = -1 WHERE seq = 120", [])
        .unwrap();
    conn.execute("UPDATE events SET seq = 120 WHERE seq = 130", [])
        .unwrap();
    conn.execute("UPDATE events SET seq = 130 WHERE seq = -1", [])
        .unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(
        (finding.kind(), finding.seq()),
        ("reordered", Some(120)),
        "{finding}"
    );
}

#[test]
fn a_record_rewritten_with_its_leaf_hash_is_caught_by_the_tree() {
    let (dir, verifier, _) = stopped_log();
    let conn = db(&dir);
    let record: Vec<u8> = conn
        .query_row("SELECT record FROM events WHERE seq = 333", [], |r| {
            r.get(0)
        })
        .unwrap();
    let edited = String::from_utf8(record)
        .unwrap()
        .replace("coord-", "someone-else-");
    let leaf = sealtrail_core::merkle::leaf_hash(edited.as_bytes());
    conn.execute(
        "UPDATE events SET record = ?1, leaf_hash = ?2, user_id = replace(user_id, 'coord-', 'someone-else-') WHERE seq = 333",
        params![edited.as_bytes(), leaf],
    )
    .unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(finding.kind(), "rewritten", "{finding}");
    match finding {
        Finding::Rewritten { first, last, .. } => {
            assert!(first <= 333 && 333 <= last, "{first}..={last}")
        }
        other => panic!("{other}"),
    }
    // Without the stored Merkle nodes, the signed checkpoints still catch it.
    conn.execute("DELETE FROM merkle_nodes", []).unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert!(
        matches!(finding.kind(), "rewritten" | "missing"),
        "{finding}"
    );
}

#[test]
fn a_forged_checkpoint_signature_is_named() {
    let (dir, verifier, _) = stopped_log();
    db(&dir)
        .execute("UPDATE checkpoints SET note = replace(note, char(10) || '300' || char(10), char(10) || '301' || char(10)) WHERE tree_size = 300", [])
        .unwrap();
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(finding.kind(), "bad signature", "{finding}");
    assert!(finding.to_string().contains("300"), "{finding}");
}

#[test]
fn a_row_with_a_seq_the_sequencer_never_writes_is_named() {
    let (dir, verifier, _) = stopped_log();
    insert_forged(&db(&dir), 0, 5);
    let finding = verify(&dir, &verifier).unwrap();
    assert_eq!(finding.kind(), "inserted", "{finding}");
    assert!(finding.to_string().contains("seq 0"), "{finding}");
}

/// A record of a key rotation must be one the sequencer filed: producers may not write the
/// action, so one that is not filed is a rotation whose filing was removed (which would let
/// a retired key sign again) or a record written past the server.
#[test]
fn a_key_rotation_record_that_is_not_filed_is_found() {
    let log = TestLog::new();
    log.append((0..10).map(event).collect());
    let mut unfiled = event(10);
    unfiled["action"] = serde_json::json!(sealtrail_core::checkpoint::SIGNING_KEY_ROTATED_ACTION);
    log.append(vec![unfiled]);
    log.append((11..20).map(event).collect());
    let verifier = log.verifier.clone();
    let dir = log.stop();
    match verify(&dir, &verifier) {
        Some(Finding::Edited { seq: 11, detail }) => {
            assert!(
                detail.contains("not among the log's filed rotations"),
                "{detail}"
            )
        }
        other => panic!("expected the unfiled rotation record at seq 11, got {other:?}"),
    }
}
