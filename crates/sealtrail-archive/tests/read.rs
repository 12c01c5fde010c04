//! Reading archived events back from segments that verified: in seq order with their leaf
//! hashes, leaf-only seqs skipped, and a file changed after verification never read.

use std::path::Path;

use sealtrail_archive::{
    ArchiveError, SegmentEntry, SegmentSpec, SegmentWriter, VerifiedSegment, list_segments,
    locate_event_id,
};
use sealtrail_core::CheckpointSigner;
use sealtrail_core::merkle::{Hash, LeafSlice, leaf_hash, list_root, range_proof};

const ORIGIN: &str = "sealtrail.test/log";
const LOG_SIZE: u64 = 40;

/// A stored record's shape (canonical key order), enough for the reader to parse.
fn record(seq: u64, detail: u64) -> Vec<u8> {
    format!(
        "{{\"action\":\"guest.invited\",\"details\":{{\"n\":{detail}}},\
         \"id\":\"00000000-0000-4000-8000-{seq:012}\",\"occurred_at\":\"2026-11-01T10:00:00Z\",\
         \"received_at\":\"2026-11-01T10:00:01Z\",\"resource_type\":\"guest\",\"seq\":{seq},\
         \"severity\":\"info\",\"tenant_id\":\"bloom\"}}"
    )
    .into_bytes()
}

fn records() -> Vec<Vec<u8>> {
    (1..=LOG_SIZE).map(|seq| record(seq, seq)).collect()
}

/// Writes seqs first..=last, the records of even seqs archived; returns the leaves.
fn write(dir: &Path, signer: &CheckpointSigner, first: u64, last: u64) -> Vec<Hash> {
    let records = records();
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
    let note = signer.sign(LOG_SIZE, list_root(&leaves)).note;
    let boundary = range_proof(&mut LeafSlice(&leaves), first - 1, last, LOG_SIZE).unwrap();
    let spec = SegmentSpec {
        origin: ORIGIN.into(),
        first_seq: first,
        last_seq: last,
        only_tenant: None,
        zstd_level: 3,
        label: None,
    };
    let mut writer = SegmentWriter::create(dir, spec).unwrap();
    for seq in first..=last {
        let i = (seq - 1) as usize;
        writer
            .push(SegmentEntry {
                seq,
                leaf_hash: leaves[i],
                record: seq.is_multiple_of(2).then_some(records[i].as_slice()),
            })
            .unwrap();
    }
    writer.finish(&note, signer.verifier(), &boundary).unwrap();
    leaves
}

#[test]
fn a_verified_segment_yields_its_records_in_seq_order_with_their_leaf_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap();
    let leaves = write(dir.path(), &signer, 21, 30);
    write(dir.path(), &signer, 3, 12);
    let segments = list_segments(dir.path()).unwrap();
    let ranges: Vec<(u64, u64)> = segments.iter().map(|s| (s.first_seq, s.last_seq)).collect();
    assert_eq!(ranges, [(3, 12), (21, 30)]);
    let segment =
        VerifiedSegment::open(&segments[1].manifest_path, Some(signer.verifier())).unwrap();
    let events: Vec<_> = segment.events().unwrap().map(Result::unwrap).collect();
    let seqs: Vec<u64> = events.iter().map(|e| e.stored.seq).collect();
    assert_eq!(seqs, [22, 24, 26, 28, 30]);
    for event in &events {
        let seq = event.stored.seq;
        assert_eq!(event.stored.leaf_hash, leaves[(seq - 1) as usize]);
        assert_eq!(event.stored.record, record(seq, seq));
        assert_eq!(event.columns().tenant_id, "bloom");
    }
    assert_eq!(segment.event_at(26).unwrap().unwrap().stored.seq, 26);
    assert!(segment.event_at(25).unwrap().is_none(), "a leaf only");
    assert!(segment.event_at(31).unwrap().is_none(), "outside the range");
    let id = "00000000-0000-4000-8000-000000000010".to_uppercase();
    let (found, seq) = locate_event_id(dir.path(), &id, None).unwrap().unwrap();
    assert_eq!((found.first_seq, seq), (3, 10));
}

#[test]
fn a_segment_that_does_not_verify_is_refused_with_the_verifiers_finding() {
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap();
    write(dir.path(), &signer, 1, 10);
    let other = CheckpointSigner::new(ORIGIN, &[8; 32]).unwrap();
    let refused = VerifiedSegment::open(
        &dir.path().join("1-10.manifest.json"),
        Some(other.verifier()),
    )
    .unwrap_err();
    assert!(
        matches!(refused, ArchiveError::Refused { .. }),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .contains("does not verify: checkpoint does not verify"),
        "{refused}"
    );
}

#[test]
fn a_file_changed_after_verification_stops_the_reader_at_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap();
    write(dir.path(), &signer, 1, 10);
    let manifest = dir.path().join("1-10.manifest.json");
    let segment = VerifiedSegment::open(&manifest, Some(signer.verifier())).unwrap();
    // Swapped for a segment whose seq 6 record is another (re-hashed, so self-consistent).
    let other = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for seq in 1..=10u64 {
        let r = record(seq, if seq == 6 { 666 } else { seq });
        let leaf = hex::encode(leaf_hash(&r));
        lines.push(if seq.is_multiple_of(2) {
            format!(
                "{{\"seq\":{seq},\"leaf_hash\":\"{leaf}\",\"record\":{}}}\n",
                String::from_utf8(r).unwrap()
            )
        } else {
            format!("{{\"seq\":{seq},\"leaf_hash\":\"{leaf}\"}}\n")
        });
    }
    let swapped = zstd::encode_all(lines.concat().as_bytes(), 3).unwrap();
    std::fs::write(other.path().join("x"), &swapped).unwrap();
    std::fs::copy(other.path().join("x"), dir.path().join("1-10.ndjson.zst")).unwrap();
    let read: Vec<_> = segment.events().unwrap().collect();
    assert_eq!(read.len(), 3, "seqs 2 and 4, then the error");
    assert_eq!(read[1].as_ref().unwrap().stored.seq, 4);
    let changed = read[2].as_ref().unwrap_err();
    assert!(
        matches!(changed, ArchiveError::Changed { .. }),
        "{changed:?}"
    );
    assert!(
        changed.to_string().contains("seq 6: its leaf hash"),
        "{changed}"
    );
}
