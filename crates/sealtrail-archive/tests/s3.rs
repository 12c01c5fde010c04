//! Archive locations on a real S3-compatible server (moto, one per test; see
//! sealtrail-testkit's s3.rs): publishing (segment then manifest, checked after upload,
//! idempotent, never replacing), listing across pages, verifying and reading back, Object
//! Lock, and the errors a missing bucket or an unreachable store give. The same publishing
//! rules are checked on a directory.

use sealtrail_archive::s3::{PutOptions, S3Bucket, S3Settings};
use sealtrail_archive::{
    ArchiveError, ArchiveLocation, Problem, Published, SegmentEntry, SegmentSpec,
};
use sealtrail_core::CheckpointSigner;
use sealtrail_core::merkle::{Hash, LeafSlice, leaf_hash, list_root, range_proof};
use sealtrail_testkit::s3::MotoServer;

const ORIGIN: &str = "sealtrail.test/log";
const LOG_SIZE: u64 = 200;

/// A stored record's shape (canonical key order), enough for the reader to parse.
fn record(seq: u64) -> Vec<u8> {
    format!(
        "{{\"action\":\"guest.invited\",\"details\":{{\"n\":{seq}}},\
         \"id\":\"00000000-0000-4000-8000-{seq:012}\",\"occurred_at\":\"2026-11-01T10:00:00Z\",\
         \"received_at\":\"2026-11-01T10:00:01Z\",\"resource_type\":\"guest\",\"seq\":{seq},\
         \"severity\":\"info\",\"tenant_id\":\"bloom\"}}"
    )
    .into_bytes()
}

fn records() -> Vec<Vec<u8>> {
    (1..=LOG_SIZE).map(record).collect()
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::new(ORIGIN, &[7; 32]).unwrap()
}

/// A moto server and the settings that reach it.
fn moto() -> (MotoServer, S3Settings) {
    let server = MotoServer::start().expect("moto_server (cargo xtask test installs it)");
    let env = server.env();
    let settings =
        S3Settings::from_vars(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
            .unwrap();
    (server, settings)
}

fn location(settings: &S3Settings, url: &str) -> ArchiveLocation {
    ArchiveLocation::parse_with(url, || Ok(settings.clone())).unwrap()
}

fn bucket(settings: &S3Settings, name: &str, object_lock: bool) -> S3Bucket {
    let bucket = S3Bucket::new(settings, name).unwrap();
    bucket.create(object_lock).unwrap();
    bucket
}

/// Writes seqs first..=last of the log to `location`, the records of seqs with
/// `seq % 2 == parity` archived.
fn write(
    location: &ArchiveLocation,
    first: u64,
    last: u64,
    parity: u64,
) -> Result<Published, ArchiveError> {
    let signer = signer();
    let records = records();
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
    let note = signer.sign(LOG_SIZE, list_root(&leaves)).note;
    let boundary = range_proof(&mut LeafSlice(&leaves), first - 1, last, LOG_SIZE).unwrap();
    let mut writer = location.create_segment(SegmentSpec {
        origin: ORIGIN.into(),
        first_seq: first,
        last_seq: last,
        only_tenant: None,
        zstd_level: 3,
        label: None,
    })?;
    for seq in first..=last {
        let i = (seq - 1) as usize;
        writer.push(SegmentEntry {
            seq,
            leaf_hash: leaves[i],
            record: (seq % 2 == parity).then_some(records[i].as_slice()),
        })?;
    }
    writer.finish(&note, signer.verifier(), &boundary)
}

#[test]
fn segments_on_s3_are_listed_verified_and_read_back() {
    let (_server, settings) = moto();
    let bucket = bucket(&settings, "archive", false);
    let archive = location(&settings, "s3://archive/log-a/");
    assert_eq!(archive.to_string(), "s3://archive/log-a");
    let published = write(&archive, 1, 40, 0).unwrap();
    assert!(!published.already_there);
    assert_eq!(
        published.manifest_at,
        "s3://archive/log-a/1-40.manifest.json"
    );
    write(&archive, 61, 100, 0).unwrap();
    // Both objects of each segment are there, with the SHA-256 the manifest names.
    let info = bucket.head("log-a/1-40.ndjson.zst").unwrap().unwrap();
    assert_eq!(
        info.sha256.as_deref(),
        Some(&*published.manifest.segment_sha256)
    );
    assert_eq!(info.size, published.manifest.segment_bytes);

    let segments = archive.list_segments().unwrap();
    let ranges: Vec<(u64, u64)> = segments.iter().map(|s| (s.first_seq, s.last_seq)).collect();
    assert_eq!(ranges, vec![(1, 40), (61, 100)]);
    let report = archive.verify(Some(signer().verifier())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.gaps, vec![(41, 60)]);
    assert_eq!(
        report.segments[1].path.to_string_lossy(),
        "s3://archive/log-a/61-100.manifest.json"
    );
    // Read back byte for byte, from a verified copy.
    let opened = archive
        .open_segment(&segments[0], Some(signer().verifier()))
        .unwrap();
    let read: Vec<Vec<u8>> = opened
        .events()
        .unwrap()
        .map(|e| e.unwrap().stored.record)
        .collect();
    let expected: Vec<Vec<u8>> = (1..=40).filter(|s| s % 2 == 0).map(record).collect();
    assert_eq!(read, expected);
    let (found, seq) = archive
        .locate_event_id("00000000-0000-4000-8000-000000000070", None)
        .unwrap()
        .unwrap();
    assert_eq!((found.first_seq, seq), (61, 70));
    assert_eq!(found.shown, "s3://archive/log-a/61-100.manifest.json");
    assert!(
        archive
            .locate_event_id("00000000-0000-4000-8000-000000000071", None)
            .unwrap()
            .is_none()
    );
    // A segment that no longer verifies is refused, named by its URL.
    bucket.delete("log-a/1-40.ndjson.zst", None).unwrap();
    let err = archive
        .open_segment(&segments[0], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "s3://archive/log-a/1-40.manifest.json: does not verify: segment unreadable"
        ),
        "{err}"
    );
}

#[test]
fn listing_follows_continuation_tokens_and_stays_inside_the_prefix() {
    let (_server, settings) = moto();
    bucket(&settings, "paged", false);
    let archive = location(&settings, "s3://paged/log-a").with_list_page(2);
    for first in (1..=100).step_by(20) {
        write(&archive, first, first + 19, 1).unwrap();
    }
    // Another log under another prefix, and one below this one: neither is listed.
    write(&location(&settings, "s3://paged/log-b"), 1, 10, 1).unwrap();
    write(&location(&settings, "s3://paged/log-a/old"), 1, 10, 1).unwrap();
    let segments = archive.list_segments().unwrap();
    assert_eq!(segments.len(), 5, "{segments:?}");
    assert_eq!(segments[4].first_seq, 81);
    let report = archive.verify(None).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.segments.len(), 5);
    assert!(report.gaps.is_empty());
    // The whole bucket, one key a page: 5 * 2 + 2 + 2 objects, all found.
    let all = location(&settings, "s3://paged").with_list_page(1);
    assert!(all.list_segments().unwrap().is_empty());
    let bucket = S3Bucket::new(&settings, "paged").unwrap();
    assert_eq!(bucket.list("log-a/", 1).unwrap().len(), 10);
}

#[test]
fn publishing_again_is_idempotent_and_a_different_segment_is_refused() {
    let (_server, settings) = moto();
    let bucket = bucket(&settings, "rerun", false);
    let dir = tempfile::tempdir().unwrap();
    for archive in [
        location(&settings, "s3://rerun"),
        ArchiveLocation::dir(dir.path().join("archive")),
    ] {
        let first = write(&archive, 11, 60, 0).unwrap();
        let again = write(&archive, 11, 60, 0).unwrap();
        assert!(again.already_there, "{archive}");
        assert_eq!(again.manifest, first.manifest, "the manifest found is kept");
        let err = write(&archive, 11, 60, 1).unwrap_err().to_string();
        assert!(
            err.contains("11-60.ndjson.zst already exists and differs"),
            "{archive}: {err}"
        );
        assert!(archive.verify(None).unwrap().ok());
    }
    // A run that crashed between the segment and its manifest left an orphan; the rerun
    // finishes it.
    bucket.delete("11-60.manifest.json", None).unwrap();
    let archive = location(&settings, "s3://rerun");
    let report = archive.verify(None).unwrap();
    assert_eq!(report.segments[0].problem, Some(Problem::OrphanSegment));
    let rerun = write(&archive, 11, 60, 0).unwrap();
    assert!(!rerun.already_there);
    assert!(archive.verify(None).unwrap().ok());
    // A manifest of another segment under the same name is refused too.
    let other = location(&settings, "s3://rerun/other");
    write(&other, 11, 60, 1).unwrap();
    let theirs = bucket
        .get("other/11-60.manifest.json", None, 1 << 20)
        .unwrap()
        .unwrap();
    bucket
        .put_bytes(
            "11-60.manifest.json",
            theirs.clone(),
            &PutOptions::for_bytes(&theirs),
        )
        .unwrap();
    bucket.delete("11-60.ndjson.zst", None).unwrap();
    let err = write(&archive, 11, 60, 0).unwrap_err().to_string();
    assert!(
        err.contains("11-60.manifest.json already exists and differs"),
        "{err}"
    );
    // No staging directories are left in the directory location.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn object_lock_keeps_the_published_versions() {
    let (_server, settings) = moto();
    let bucket = bucket(&settings, "locked", true);
    let archive = location(&settings, "s3://locked")
        .with_object_lock_days(1)
        .unwrap();
    write(&archive, 1, 50, 0).unwrap();
    let key = "1-50.manifest.json";
    let original = bucket.get(key, None, 1 << 20).unwrap().unwrap();
    let info = bucket.head(key).unwrap().unwrap();
    let version = info.version_id.expect("versioned");
    let (mode, until) = info.lock.expect("retained");
    assert_eq!(mode, "COMPLIANCE");
    let tomorrow = sealtrail_core::time_format::format_micros(
        sealtrail_core::time_format::now_micros() + 86_400_000_000,
    );
    assert_eq!(until[..13], tomorrow[..13], "{until}");
    // COMPLIANCE retention: neither version can be deleted.
    let err = bucket.delete(key, Some(&version)).unwrap_err().to_string();
    assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");
    let segment = bucket.head("1-50.ndjson.zst").unwrap().unwrap();
    assert_eq!(segment.lock.as_ref().map(|l| &*l.0), Some("COMPLIANCE"));
    let err = bucket
        .delete("1-50.ndjson.zst", Some(&segment.version_id.unwrap()))
        .unwrap_err();
    eprintln!("deleting a locked version: {err}");
    // (While a version put without retention in the same bucket can be.)
    let unlocked = b"unlocked".to_vec();
    bucket
        .put_bytes(
            "scratch",
            unlocked.clone(),
            &PutOptions::for_bytes(&unlocked),
        )
        .unwrap();
    let scratch = bucket.head("scratch").unwrap().unwrap();
    assert_eq!(scratch.lock, None);
    bucket
        .delete("scratch", Some(&scratch.version_id.unwrap()))
        .unwrap();
    assert_eq!(bucket.head("scratch").unwrap(), None);
    // Overwriting makes a new version (S3 locks versions, not keys): verify reports the
    // change, and the locked original is still there, unchanged.
    let forged = b"{}".to_vec();
    bucket
        .put_bytes(key, forged.clone(), &PutOptions::for_bytes(&forged))
        .unwrap();
    let report = archive.verify(None).unwrap();
    assert!(!report.ok());
    assert!(
        matches!(
            report.segments[0].problem,
            Some(Problem::ManifestUnreadable(_))
        ),
        "{report:?}"
    );
    assert_eq!(
        bucket.get(key, Some(&version), 1 << 20).unwrap().unwrap(),
        original
    );
    // A directory cannot lock.
    let err = ArchiveLocation::dir("archive")
        .with_object_lock_days(1)
        .unwrap_err();
    assert!(err.to_string().contains("needs an s3:// location"), "{err}");
    // A bucket without Object Lock refuses a locked upload, and says why.
    let plain = location(&settings, "s3://plain")
        .with_object_lock_days(1)
        .unwrap();
    S3Bucket::new(&settings, "plain")
        .unwrap()
        .create(false)
        .unwrap();
    let err = write(&plain, 1, 50, 0).unwrap_err().to_string();
    assert!(err.contains("PUT s3://plain/1-50.ndjson.zst: 400"), "{err}");
}

#[test]
fn a_missing_bucket_and_an_unreachable_store_are_named() {
    let (server, settings) = moto();
    let archive = location(&settings, "s3://no-such-bucket/x");
    let err = archive.list_segments().unwrap_err().to_string();
    assert!(err.contains("listing s3://no-such-bucket/x/"), "{err}");
    assert!(err.contains("NoSuchBucket"), "{err}");
    assert!(
        err.contains("no bucket \"no-such-bucket\" at http://127.0.0.1"),
        "{err}"
    );
    let err = write(&archive, 1, 10, 0).unwrap_err().to_string();
    assert!(err.contains("NoSuchBucket"), "{err}");
    let port = server.port;
    drop(server);
    let err = archive.verify(None).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "cannot reach http://127.0.0.1:{port}/ (AWS_ENDPOINT_URL)"
        )),
        "{err}"
    );
    assert!(!err.contains("X-Amz-Signature"), "{err}");
    // Bad locations are refused before anything is sent.
    for (text, says) in [
        ("s3://", "s3://bucket or s3://bucket/prefix"),
        ("s3://Bad_Bucket", "a bucket name is 3 to 63"),
        ("gs://bucket", "a directory or an s3://bucket[/prefix] URL"),
    ] {
        let err = ArchiveLocation::parse_with(text, || Ok(settings.clone())).unwrap_err();
        assert!(err.to_string().contains(says), "{text}: {err}");
    }
}

#[test]
fn a_witness_bucket_keeps_each_checkpoint_once_and_the_latest() {
    use sealtrail_archive::{PushOutcome, WitnessLocation};
    let (_server, settings) = moto();
    bucket(&settings, "witness", false);
    let witness =
        WitnessLocation::parse_with("s3://witness/prod/log", None, || Ok(settings.clone()))
            .unwrap();
    assert_eq!(witness.latest().unwrap(), None);
    let signer = signer();
    let (three, five) = (signer.sign(3, [3; 32]).note, signer.sign(5, [5; 32]).note);
    let accepted = PushOutcome::Accepted {
        cosignature: String::new(),
    };
    assert_eq!(witness.push(3, &three, 0, &[]).unwrap(), accepted);
    assert_eq!(witness.push(5, &five, 3, &[]).unwrap(), accepted);
    assert_eq!(witness.latest().unwrap().as_deref(), Some(five.as_str()));
    // Pushing the same checkpoint again is harmless; another one of a kept size is refused
    // and the kept one stays.
    assert_eq!(witness.push(5, &five, 3, &[]).unwrap(), accepted);
    let other = signer.sign(5, [9; 32]).note;
    assert!(matches!(
        witness.push(5, &other, 3, &[]).unwrap(),
        PushOutcome::Refused { status: 409, .. }
    ));
    let kept = S3Bucket::new(&settings, "witness")
        .unwrap()
        .get("prod/log/5.checkpoint", None, 1 << 16)
        .unwrap();
    assert_eq!(kept.as_deref(), Some(five.as_bytes()));
}
