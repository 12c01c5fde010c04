//! The writer and the verifier on a log held in memory: what the writer refuses, and the
//! problems the verifier names (the CLI's tests do the same on a real store).

use std::path::Path;

use sealtrail_archive::{
    KeyUsed, Problem, SegmentEntry, SegmentSpec, SegmentWriter, verify_dir, verify_segment,
};
use sealtrail_core::CheckpointSigner;
use sealtrail_core::merkle::{Hash, LeafSlice, leaf_hash, list_root, range_proof};

const ORIGIN: &str = "sealtrail.test/log";

fn records(n: u64) -> Vec<Vec<u8>> {
    (1..=n)
        .map(|seq| format!("{{\"n\":\"event {seq}\",\"seq\":{seq}}}").into_bytes())
        .collect()
}

fn spec(first_seq: u64, last_seq: u64) -> SegmentSpec {
    SegmentSpec {
        origin: ORIGIN.into(),
        first_seq,
        last_seq,
        only_tenant: None,
        zstd_level: 3,
        label: None,
    }
}

/// Writes seqs first..=last of a 100-event log, every other record archived.
fn write(dir: &Path, signer: &CheckpointSigner, first: u64, last: u64) {
    write_spec(dir, signer, spec(first, last));
}

fn write_spec(dir: &Path, signer: &CheckpointSigner, spec: SegmentSpec) {
    let (first, last) = (spec.first_seq, spec.last_seq);
    let records = records(100);
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
    let note = signer.sign(100, list_root(&leaves)).note;
    let boundary = range_proof(&mut LeafSlice(&leaves), first - 1, last, 100).unwrap();
    let mut writer = SegmentWriter::create(dir, spec).unwrap();
    for seq in first..=last {
        let i = (seq - 1) as usize;
        writer
            .push(SegmentEntry {
                seq,
                leaf_hash: leaves[i],
                record: (seq % 2 == 0).then_some(records[i].as_slice()),
            })
            .unwrap();
    }
    let manifest = writer.finish(&note, signer.verifier(), &boundary).unwrap();
    assert_eq!(
        manifest.archived_events,
        (first..=last).filter(|s| s % 2 == 0).count() as u64
    );
}

#[test]
fn segments_verify_and_gaps_between_them_are_noted() {
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap();
    write(dir.path(), &signer, 1, 40);
    write(dir.path(), &signer, 61, 100);
    let report = verify_dir(dir.path(), Some(signer.verifier())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.segments.len(), 2);
    assert_eq!(report.segments[0].seqs, 40);
    assert_eq!(report.segments[0].records, 20);
    assert_eq!(report.segments[0].key, KeyUsed::Pinned);
    assert_eq!(report.gaps, vec![(41, 60)]);
    let unpinned = verify_segment(&dir.path().join("61-100.manifest.json"), None);
    assert_eq!(unpinned.problem, None);
    assert_eq!(unpinned.key, KeyUsed::Manifest);
    // No partial files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".partial")), "{names:?}");
}

#[test]
fn one_range_archived_twice_has_a_labelled_segment_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap();
    let labelled = |label: &str| SegmentSpec {
        label: Some(label.into()),
        ..spec(1, 40)
    };
    write(dir.path(), &signer, 1, 40);
    write_spec(dir.path(), &signer, labelled("r2"));
    let report = verify_dir(dir.path(), Some(signer.verifier())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.segments.len(), 2);
    assert!(dir.path().join("1-40.r2.ndjson.zst").exists());
    // The same label twice, or a label that would not split back out of the name, is refused.
    assert!(SegmentWriter::create(dir.path(), labelled("r2")).is_err());
    assert!(SegmentWriter::create(dir.path(), labelled("a.b")).is_err());
    // A labelled manifest renamed to another range no longer matches its name.
    std::fs::rename(
        dir.path().join("1-40.r2.manifest.json"),
        dir.path().join("1-41.r2.manifest.json"),
    )
    .unwrap();
    let moved = verify_segment(&dir.path().join("1-41.r2.manifest.json"), None);
    assert!(
        matches!(moved.problem, Some(Problem::ManifestInconsistent(_))),
        "{moved:?}"
    );
}

#[test]
fn another_key_is_refused_when_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap();
    write(dir.path(), &signer, 10, 20);
    let other = CheckpointSigner::new(ORIGIN, &[8; 32]).unwrap();
    let report = verify_segment(
        &dir.path().join("10-20.manifest.json"),
        Some(other.verifier()),
    );
    assert!(
        matches!(report.problem, Some(Problem::BadCheckpoint(_))),
        "{report:?}"
    );
}

#[test]
fn the_writer_refuses_what_would_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap();
    let records = records(10);
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
    let note = signer.sign(10, list_root(&leaves)).note;
    let boundary = range_proof(&mut LeafSlice(&leaves), 2, 5, 10).unwrap();
    let entry = |seq: u64, record: Option<&'static [u8]>| SegmentEntry {
        seq,
        leaf_hash: leaves[(seq - 1) as usize],
        record,
    };
    assert!(SegmentWriter::create(dir.path(), spec(0, 5)).is_err());
    assert!(SegmentWriter::create(dir.path(), spec(6, 5)).is_err());
    let mut writer = SegmentWriter::create(dir.path(), spec(3, 5)).unwrap();
    // Out of order, and a record that is not the leaf's.
    assert!(writer.push(entry(4, None)).is_err());
    assert!(writer.push(entry(3, Some(&b"{\"forged\":1}"[..]))).is_err());
    writer.push(entry(3, None)).unwrap();
    writer.push(entry(4, None)).unwrap();
    // Unfinished: too early; then a boundary that does not rebuild the root.
    let early = SegmentWriter::create(dir.path(), spec(6, 8)).unwrap();
    assert!(early.finish(&note, signer.verifier(), &boundary).is_err());
    writer.push(entry(5, None)).unwrap();
    let mut bad = boundary.clone();
    bad[0][0] ^= 1;
    assert!(writer.finish(&note, signer.verifier(), &bad).is_err());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing published"
    );
}
