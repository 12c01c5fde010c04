//! `sealtrail archive write`, `sealtrail verify --archive` and `archive get`/`query` end to
//! end, on a real embedded log: an untouched archive verifies, and every kind of tampering
//! with a segment or its manifest (edit, drop, reorder, truncate, range, checkpoint,
//! boundary) is reported with its reason, its file and its seq; archived events are found
//! again byte for byte, and never read from a segment that does not verify.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

use common::build_archive_log as build_log;
use sealtrail_core::query::EventFilter;
use sealtrail_store::LogReader as _;
use sealtrail_store::sqlite::SqliteReader;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_sealtrail");
/// The archived range: unaligned at both ends, inside a tree of 300 leaves.
const FIRST: u64 = 37;
const LAST: u64 = 250;
const SEGMENT: &str = "37-250.ndjson.zst";
const MANIFEST: &str = "37-250.manifest.json";

fn sealtrail(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

struct Archive {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    vkey: String,
}

impl Archive {
    /// A log and the segment of seqs 37..=250 written from it by `sealtrail archive write`.
    fn new(origin: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let dir = tmp.path().join("archive");
        let vkey = build_log(&data, origin);
        let out = sealtrail(&[
            "archive",
            "write",
            "--data-dir",
            data.to_str().unwrap(),
            "--from",
            &FIRST.to_string(),
            "--to",
            &LAST.to_string(),
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("seqs 37..=250, 214 records"), "{said}");
        Self {
            _tmp: tmp,
            dir,
            vkey,
        }
    }

    /// `verify --archive`, pinned to the log's key or not: (success, stdout).
    fn verify(&self, pinned: bool) -> (bool, String) {
        let mut args = vec!["verify", "--archive", self.dir.to_str().unwrap()];
        if pinned {
            args.extend(["--public-key", &self.vkey]);
        }
        let out = sealtrail(&args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Asserts verification fails, naming the file, and saying `reason`.
    fn assert_fails(&self, reason: &str) {
        for pinned in [true, false] {
            let (ok, said) = self.verify(pinned);
            assert!(!ok, "tampering went unnoticed (pinned: {pinned}):\n{said}");
            let line = said
                .lines()
                .find(|l| l.starts_with("FAILED"))
                .unwrap_or_else(|| panic!("no FAILED line in:\n{said}"));
            assert!(line.contains(MANIFEST), "{line}");
            assert!(line.contains(reason), "expected {reason:?} in:\n{line}");
        }
    }

    /// `sealtrail archive <args…> DIR`-style call with the directory first, pinned.
    fn archive(&self, command: &str, rest: &[&str]) -> Output {
        let mut args = vec!["archive", command, self.dir.to_str().unwrap()];
        args.extend_from_slice(rest);
        args.extend(["--public-key", &self.vkey]);
        sealtrail(&args)
    }

    /// The live log's events through seq `LAST` that `filter` lets in, as the API returns
    /// them (`to_api_json`), one line each.
    fn live(&self, filter: &EventFilter) -> Vec<Vec<u8>> {
        let reader = SqliteReader::open(&self._tmp.path().join("data")).unwrap();
        let page = reader.events_after(FIRST - 1, LAST, filter, 1000).unwrap();
        page.events.iter().map(|e| e.to_api_json()).collect()
    }

    fn manifest(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join(MANIFEST)).unwrap()).unwrap()
    }

    fn set_manifest(&self, manifest: &Value) {
        std::fs::write(
            self.dir.join(MANIFEST),
            serde_json::to_vec_pretty(manifest).unwrap(),
        )
        .unwrap();
    }

    /// The segment's NDJSON lines, each with its newline.
    fn lines(&self) -> Vec<Vec<u8>> {
        let file = std::fs::File::open(self.dir.join(SEGMENT)).unwrap();
        let text = zstd::decode_all(file).unwrap();
        text.split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Replaces the segment's lines and, like a careful attacker, fixes up the manifest's
    /// SHA-256 and sizes so only the content can give the change away.
    fn set_lines(&self, lines: &[Vec<u8>]) {
        let text = lines.concat();
        let compressed = zstd::encode_all(&text[..], 3).unwrap();
        std::fs::write(self.dir.join(SEGMENT), &compressed).unwrap();
        let mut manifest = self.manifest();
        manifest["segment_sha256"] = json!(hex::encode(Sha256::digest(&compressed)));
        manifest["segment_bytes"] = json!(compressed.len());
        manifest["ndjson_bytes"] = json!(text.len());
        self.set_manifest(&manifest);
    }
}

fn line_index(seq: u64) -> usize {
    (seq - FIRST) as usize
}

#[test]
fn an_untouched_archive_verifies_and_says_which_key_it_was_checked_with() {
    let archive = Archive::new("sealtrail.test/log");
    let (ok, said) = archive.verify(true);
    assert!(ok, "{said}");
    assert!(
        said.contains("ok: ") && said.contains("214 seqs, 214 records"),
        "{said}"
    );
    assert!(
        said.contains("1 segments (0 failed)") && said.contains("events/s"),
        "{said}"
    );
    assert!(!said.contains("key in the manifest only"), "{said}");
    let (ok, said) = archive.verify(false);
    assert!(ok, "{said}");
    assert!(
        said.contains("signature checked against the key in the manifest only"),
        "{said}"
    );
    // The line format: every seq, its leaf hash, the record spliced in verbatim.
    let lines = archive.lines();
    assert_eq!(lines.len(), 214);
    let first: Value = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(first["seq"], 37);
    assert_eq!(first["record"]["details"]["n"], 36);
}

#[test]
fn only_one_tenants_records_are_archived_and_the_segment_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = tmp.path().join("archive");
    let vkey = build_log(&data, "sealtrail.test/log");
    let out = sealtrail(&[
        "archive",
        "write",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        "1",
        "--to",
        "300",
        "--out",
        dir.to_str().unwrap(),
        "--only-tenant",
        "bloom",
    ]);
    let step_lines = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{step_lines}");
    // Off a terminal, each step is a plain line: what it did and how long it took.
    assert!(
        step_lines.contains("archiving seqs 1..=300: 300 events in"),
        "{step_lines}"
    );
    let out = sealtrail(&[
        "verify",
        "--archive",
        dir.to_str().unwrap(),
        "--public-key",
        &vkey,
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("300 seqs, 100 records"), "{said}");
    // The whole tree needs no boundary.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("1-300.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["boundary"], json!([]));
    assert_eq!(manifest["only_tenant"], "bloom");
}

#[test]
fn archive_write_refuses_a_range_past_the_signed_log_and_another_segment_of_an_archived_range() {
    let archive = Archive::new("sealtrail.test/log");
    let data = archive._tmp.path().join("data");
    let out = sealtrail(&[
        "archive",
        "write",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        "290",
        "--to",
        "301",
        "--out",
        archive.dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("seq 301 is not in the log yet"));
    let out = sealtrail(&[
        "archive",
        "write",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        "37",
        "--to",
        "250",
        "--out",
        archive.dir.to_str().unwrap(),
    ]);
    // The same segment again (a rerun after a crash) succeeds and changes nothing.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already archived, identical"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Another segment of the same range is refused.
    let out = sealtrail(&[
        "archive",
        "write",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        "37",
        "--to",
        "250",
        "--only-tenant",
        "bloom",
        "--out",
        archive.dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("37-250.ndjson.zst already exists and differs"),
        "{said}"
    );
    assert!(archive.verify(true).0);
}

#[test]
fn a_record_edited_by_one_byte_is_reported_at_its_seq() {
    let archive = Archive::new("sealtrail.test/log");
    let mut lines = archive.lines();
    let line = &mut lines[line_index(100)];
    let at = line.windows(4).position(|w| w == b"\"n\":").unwrap() + 4;
    line[at] = if line[at] == b'9' { b'8' } else { line[at] + 1 };
    archive.set_lines(&lines);
    archive.assert_fails("seq 100: the record does not hash to its leaf hash");
}

#[test]
fn a_dropped_line_is_reported_as_missing() {
    let archive = Archive::new("sealtrail.test/log");
    let mut lines = archive.lines();
    lines.remove(line_index(120));
    archive.set_lines(&lines);
    archive.assert_fails("seq 120: missing");
}

#[test]
fn two_swapped_lines_are_reported_as_reordered() {
    let archive = Archive::new("sealtrail.test/log");
    let mut lines = archive.lines();
    lines.swap(line_index(60), line_index(61));
    archive.set_lines(&lines);
    archive.assert_fails("seq 60: reordered");
}

#[test]
fn a_truncated_segment_is_reported() {
    // Cut off in the compressed file: zstd's frame is incomplete.
    let archive = Archive::new("sealtrail.test/log");
    let path = archive.dir.join(SEGMENT);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    archive.assert_fails("segment corrupt or truncated");
    // Cut off at a line and recompressed: the last seqs are missing.
    let archive = Archive::new("sealtrail.test/log");
    let lines = archive.lines();
    archive.set_lines(&lines[..line_index(201)]);
    archive.assert_fails("seqs 201..=250: missing");
}

#[test]
fn an_edited_range_in_the_manifest_is_reported() {
    let archive = Archive::new("sealtrail.test/log");
    let mut manifest = archive.manifest();
    manifest["last_seq"] = json!(249);
    archive.set_manifest(&manifest);
    archive.assert_fails("manifest inconsistent: the manifest claims seqs 37..=249");
    // Renaming the files to match only moves the contradiction into the segment.
    let archive = Archive::new("sealtrail.test/log");
    let mut manifest = archive.manifest();
    manifest["first_seq"] = json!(38);
    manifest["archived_events"] = json!(213);
    manifest["segment_file"] = json!("38-250.ndjson.zst");
    std::fs::rename(
        archive.dir.join(SEGMENT),
        archive.dir.join("38-250.ndjson.zst"),
    )
    .unwrap();
    std::fs::remove_file(archive.dir.join(MANIFEST)).unwrap();
    std::fs::write(
        archive.dir.join("38-250.manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let (ok, said) = archive.verify(true);
    assert!(!ok);
    assert!(
        said.contains("38-250.manifest.json: seq 37: outside the manifest's range"),
        "{said}"
    );
}

#[test]
fn another_logs_checkpoint_in_the_manifest_is_reported() {
    let archive = Archive::new("sealtrail.test/log");
    // A log of the same name and shape, with its own key.
    let other = Archive::new("sealtrail.test/log");
    let mut manifest = archive.manifest();
    manifest["checkpoint"]["note"] = other.manifest()["checkpoint"]["note"].clone();
    archive.set_manifest(&manifest);
    archive.assert_fails("checkpoint does not verify: checkpoint signature does not verify");
    // With the other log's key too, only a pinned key or the root gives it away.
    manifest["checkpoint"] = other.manifest()["checkpoint"].clone();
    archive.set_manifest(&manifest);
    let (ok, said) = archive.verify(true);
    assert!(!ok);
    assert!(said.contains("checkpoint does not verify"), "{said}");
    let (ok, said) = archive.verify(false);
    assert!(!ok);
    assert!(
        said.contains("do not rebuild the root of the signed checkpoint"),
        "{said}"
    );
}

#[test]
fn an_edited_boundary_hash_is_reported() {
    let archive = Archive::new("sealtrail.test/log");
    let mut manifest = archive.manifest();
    let hash = manifest["boundary"][1].as_str().unwrap().to_owned();
    let flipped = if hash.starts_with('0') { "1" } else { "0" };
    manifest["boundary"][1] = json!(format!("{flipped}{}", &hash[1..]));
    archive.set_manifest(&manifest);
    archive.assert_fails("do not rebuild the root of the signed checkpoint of size 300");
}

#[test]
fn a_segment_file_changed_behind_its_manifest_is_reported() {
    // Same lines, recompressed, manifest left alone: everything verifies but the file's hash.
    let archive = Archive::new("sealtrail.test/log");
    let text = archive.lines().concat();
    std::fs::write(
        archive.dir.join(SEGMENT),
        zstd::encode_all(&text[..], 9).unwrap(),
    )
    .unwrap();
    archive.assert_fails("file differs from its manifest: SHA-256");
    // A manifest deleted leaves an orphan segment.
    std::fs::remove_file(archive.dir.join(MANIFEST)).unwrap();
    let (ok, said) = archive.verify(true);
    assert!(!ok);
    assert!(said.contains("segment file without a manifest"), "{said}");
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn archive_get_by_seq_and_by_id_prints_the_bytes_the_live_log_had() {
    let archive = Archive::new("sealtrail.test/log");
    let live = archive.live(&EventFilter::default());
    for seq in [FIRST, 100, LAST] {
        let had = String::from_utf8(live[(seq - FIRST) as usize].clone()).unwrap();
        let by_seq = stdout(&archive.archive("get", &[&seq.to_string()]));
        assert_eq!(by_seq, format!("{had}\n"), "seq {seq}");
        let id = serde_json::from_str::<Value>(&had).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let by_id = stdout(&archive.archive("get", &[&id]));
        assert_eq!(by_id, by_seq, "id {id}");
        let by_upper_id = stdout(&archive.archive("get", &[&id.to_uppercase()]));
        assert_eq!(by_upper_id, by_seq, "id {id} in capitals");
    }
    let out = archive.archive("get", &["300"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("seq 300 is in no segment"));
    let out = archive.archive("get", &["0b7e7c4e-0000-4000-8000-000000000000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no archived event has id"));
}

#[test]
fn archive_get_of_a_seq_archived_as_a_leaf_only_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = tmp.path().join("archive");
    build_log(&data, "sealtrail.test/log");
    let out = sealtrail(&[
        "archive",
        "write",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        "1",
        "--to",
        "30",
        "--out",
        dir.to_str().unwrap(),
        "--only-tenant",
        "bloom",
    ]);
    stdout(&out);
    // Seq 1 is n = 0, bloom's; seq 2 is golden-hour's.
    let out = sealtrail(&["archive", "get", dir.to_str().unwrap(), "1"]);
    assert!(stdout(&out).contains("\"tenant_id\":\"bloom\""));
    let out = sealtrail(&["archive", "get", dir.to_str().unwrap(), "2"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("seq 2 is in") && said.contains("leaf hash only"),
        "{said}"
    );
    assert!(said.contains("key in their manifest only"), "{said}");
}

#[test]
fn archive_query_prints_exactly_the_matching_archived_events_in_seq_order() {
    let archive = Archive::new("sealtrail.test/log");
    let mut filter = EventFilter::default();
    filter.apply_param("tenant_id", "bloom").unwrap();
    filter.apply_param("action", "guest.invited").unwrap();
    let expected = archive.live(&filter);
    // n ≡ 0 (mod 3) and (mod 5), for seqs n + 1 in 37..=250: n = 45, 60, …, 240.
    assert_eq!(expected.len(), 14);
    let args = ["--tenant", "bloom", "--action", "guest.invited", "--json"];
    let said = stdout(&archive.archive("query", &args));
    let lines: Vec<&[u8]> = said.as_bytes().split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), expected.len(), "{said}");
    for (line, had) in lines.iter().zip(&expected) {
        assert_eq!(&line[..line.len() - 1], &had[..]);
    }
    // --limit stops early; the table has a header and a row per event.
    let said = stdout(&archive.archive(
        "query",
        &[
            "--tenant",
            "bloom",
            "--action",
            "guest.invited",
            "--limit",
            "3",
        ],
    ));
    let rows: Vec<&str> = said.lines().collect();
    assert_eq!(rows.len(), 4, "{said}");
    assert!(
        rows[0].starts_with("SEQ") && rows[0].contains("ACTION"),
        "{said}"
    );
    assert!(
        rows[1].starts_with("46 ") && rows[3].starts_with("76 "),
        "{said}"
    );
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.contains("bloom") && r.contains("guest.invited"))
    );
    // A prefix action and no tenant: every guest.* event of the range.
    let said = stdout(&archive.archive(
        "query",
        &["--action", "guest.*", "--limit", "1000", "--json"],
    ));
    assert_eq!(said.lines().count(), 214);
    // A filter the API refuses is refused the same way.
    let out = archive.archive("query", &["--severity", "loud"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("severity"));
}

#[test]
fn a_tampered_segment_makes_archive_get_and_query_refuse_with_the_reason() {
    let archive = Archive::new("sealtrail.test/log");
    let id =
        serde_json::from_slice::<Value>(&archive.live(&EventFilter::default())[0]).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let mut lines = archive.lines();
    let line = &mut lines[line_index(100)];
    let at = line.windows(4).position(|w| w == b"\"n\":").unwrap() + 4;
    line[at] = if line[at] == b'9' { b'8' } else { line[at] + 1 };
    archive.set_lines(&lines);
    let reason = "seq 100: the record does not hash to its leaf hash";
    // Any event of that segment, by seq or by id, and any query reading it.
    for out in [
        archive.archive("get", &["100"]),
        archive.archive("get", &["37"]),
        archive.archive("get", &[&id]),
        archive.archive("query", &["--tenant", "bloom"]),
        archive.archive("query", &["--tenant", "bloom", "--json"]),
    ] {
        assert!(!out.status.success());
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains(MANIFEST) && said.contains("does not verify"),
            "{said}"
        );
        assert!(said.contains(reason), "expected {reason:?} in:\n{said}");
    }
}
