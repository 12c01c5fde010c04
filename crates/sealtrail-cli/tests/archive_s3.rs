//! `sealtrail archive write --out s3://…`, `verify --archive s3://…` and `archive get`/
//! `query s3://…` end to end, against a real S3-compatible server (moto, one per test): an
//! untouched archive verifies and is read back byte for byte; every kind of tampering with
//! the objects in the bucket is detected; Object Lock keeps the published versions; and
//! the S3 settings' errors name the variable.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{BIN, build_archive_log};
use sealtrail_archive::s3::{PutOptions, S3Bucket, S3Settings};
use sealtrail_core::query::EventFilter;
use sealtrail_store::LogReader as _;
use sealtrail_store::sqlite::SqliteReader;
use sealtrail_testkit::s3::MotoServer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const FIRST: u64 = 37;
const LAST: u64 = 250;
const SEGMENT: &str = "37-250.ndjson.zst";
const MANIFEST: &str = "37-250.manifest.json";

/// A log, a moto server with a bucket, and the environment that reaches it.
struct S3Archive {
    tmp: tempfile::TempDir,
    vkey: String,
    server: MotoServer,
    bucket: S3Bucket,
}

impl S3Archive {
    fn new(object_lock: bool) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let vkey = build_archive_log(&tmp.path().join("data"), "sealtrail.test/log");
        let server = MotoServer::start().expect("moto_server (cargo xtask test installs it)");
        let env = server.env();
        let settings = S3Settings::from_vars(|name| {
            env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
        })
        .unwrap();
        let bucket = S3Bucket::new(&settings, "audit-archive").unwrap();
        bucket.create(object_lock).unwrap();
        Self {
            tmp,
            vkey,
            server,
            bucket,
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// The binary with this server's S3 environment (and none of the machine's).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(BIN);
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_") || name.starts_with("SEALTRAIL_") {
                command.env_remove(name);
            }
        }
        command.envs(self.server.env()).envs(env.iter().copied());
        command.args(args).output().unwrap()
    }

    /// `archive write` of FIRST..=LAST to `s3://audit-archive/<prefix>`.
    fn write(&self, prefix: &str, extra: &[&str]) -> Output {
        let data = self.data();
        let out = format!("s3://audit-archive/{prefix}");
        let mut args = vec![
            "archive",
            "write",
            "--data-dir",
            data.to_str().unwrap(),
            "--from",
            "37",
            "--to",
            "250",
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    fn verify(&self, prefix: &str, pinned: bool) -> (bool, String) {
        let url = format!("s3://audit-archive/{prefix}");
        let mut args = vec!["verify", "--archive", &url];
        if pinned {
            args.extend(["--public-key", &self.vkey]);
        }
        let out = self.run(&args, &[]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Asserts `verify --archive` of `prefix` fails, naming the object and `reason`.
    fn assert_fails(&self, prefix: &str, object: &str, reason: &str) {
        for pinned in [true, false] {
            let (ok, said) = self.verify(prefix, pinned);
            assert!(!ok, "tampering went unnoticed (pinned: {pinned}):\n{said}");
            let line = said
                .lines()
                .find(|l| l.starts_with("FAILED"))
                .unwrap_or_else(|| panic!("no FAILED line in:\n{said}"));
            assert!(
                line.contains(&format!("s3://audit-archive/{prefix}/{object}")),
                "{line}"
            );
            assert!(line.contains(reason), "expected {reason:?} in:\n{line}");
        }
    }

    fn object(&self, key: &str) -> Vec<u8> {
        self.bucket.get(key, None, 1 << 30).unwrap().unwrap()
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        let options = PutOptions::for_bytes(&bytes);
        self.bucket.put_bytes(key, bytes, &options).unwrap();
    }

    fn lines(&self, prefix: &str) -> Vec<Vec<u8>> {
        let text = zstd::decode_all(&self.object(&format!("{prefix}/{SEGMENT}"))[..]).unwrap();
        text.split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Replaces the segment object's lines and, like a careful attacker, fixes up the
    /// manifest object's SHA-256 and sizes so only the content can give it away.
    fn set_lines(&self, prefix: &str, lines: &[Vec<u8>]) {
        let text = lines.concat();
        let compressed = zstd::encode_all(&text[..], 3).unwrap();
        let mut manifest: Value =
            serde_json::from_slice(&self.object(&format!("{prefix}/{MANIFEST}"))).unwrap();
        manifest["segment_sha256"] = json!(hex::encode(Sha256::digest(&compressed)));
        manifest["segment_bytes"] = json!(compressed.len());
        manifest["ndjson_bytes"] = json!(text.len());
        self.put(&format!("{prefix}/{SEGMENT}"), compressed);
        self.put(
            &format!("{prefix}/{MANIFEST}"),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        );
    }

    fn live(&self, filter: &EventFilter) -> Vec<Vec<u8>> {
        let reader = SqliteReader::open(&self.data()).unwrap();
        let page = reader.events_after(FIRST - 1, LAST, filter, 1000).unwrap();
        page.events.iter().map(|e| e.to_api_json()).collect()
    }
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn line_index(seq: u64) -> usize {
    (seq - FIRST) as usize
}

#[test]
fn an_archive_on_s3_is_written_verified_and_read_back_byte_for_byte() {
    let s3 = S3Archive::new(false);
    let said = stdout(&s3.write("log-a", &[]));
    assert!(
        said.contains(
            "wrote s3://audit-archive/log-a/37-250.ndjson.zst: seqs 37..=250, 214 records"
        ),
        "{said}"
    );
    let (ok, said) = s3.verify("log-a", true);
    assert!(ok, "{said}");
    assert!(
        said.contains("ok: s3://audit-archive/log-a/37-250.manifest.json: 214 seqs, 214 records"),
        "{said}"
    );
    // A rerun (after a crash) publishes nothing new and succeeds.
    let said = stdout(&s3.write("log-a", &[]));
    assert!(said.contains("already archived, identical"), "{said}");

    let url = "s3://audit-archive/log-a";
    let live = s3.live(&EventFilter::default());
    for seq in [FIRST, 100, LAST] {
        let had = String::from_utf8(live[line_index(seq)].clone()).unwrap();
        let by_seq = stdout(&s3.run(
            &[
                "archive",
                "get",
                url,
                &seq.to_string(),
                "--public-key",
                &s3.vkey,
            ],
            &[],
        ));
        assert_eq!(by_seq, format!("{had}\n"), "seq {seq}");
        let id = serde_json::from_str::<Value>(&had).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let by_id = stdout(&s3.run(&["archive", "get", url, &id, "--public-key", &s3.vkey], &[]));
        assert_eq!(by_id, by_seq, "id {id}");
    }
    let mut filter = EventFilter::default();
    filter.apply_param("tenant_id", "bloom").unwrap();
    let expected: Vec<u8> = s3
        .live(&filter)
        .into_iter()
        .flat_map(|mut e| {
            e.push(b'\n');
            e
        })
        .collect();
    let queried = stdout(&s3.run(
        &[
            "archive",
            "query",
            url,
            "--tenant",
            "bloom",
            "--limit",
            "1000",
            "--json",
            "--public-key",
            &s3.vkey,
        ],
        &[],
    ));
    assert_eq!(queried.as_bytes(), expected);
    assert!(!expected.is_empty());
}

#[test]
fn tampering_with_objects_in_the_bucket_is_detected() {
    let s3 = S3Archive::new(false);
    let tamper = |prefix: &str, change: &dyn Fn(&str)| {
        stdout(&s3.write(prefix, &[]));
        assert!(s3.verify(prefix, true).0);
        change(prefix);
    };
    tamper("edited", &|p| {
        let mut lines = s3.lines(p);
        let line = &mut lines[line_index(100)];
        let at = line.windows(4).position(|w| w == b"\"n\":").unwrap() + 4;
        line[at] = if line[at] == b'9' { b'8' } else { line[at] + 1 };
        s3.set_lines(p, &lines);
    });
    s3.assert_fails(
        "edited",
        MANIFEST,
        "seq 100: the record does not hash to its leaf hash",
    );
    tamper("dropped", &|p| {
        let mut lines = s3.lines(p);
        lines.remove(line_index(120));
        s3.set_lines(p, &lines);
    });
    s3.assert_fails("dropped", MANIFEST, "seq 120: missing");
    tamper("reordered", &|p| {
        let mut lines = s3.lines(p);
        lines.swap(line_index(60), line_index(61));
        s3.set_lines(p, &lines);
    });
    s3.assert_fails("reordered", MANIFEST, "seq 60: reordered");
    tamper("truncated", &|p| {
        let key = format!("{p}/{SEGMENT}");
        let bytes = s3.object(&key);
        s3.put(&key, bytes[..bytes.len() * 2 / 3].to_vec());
    });
    s3.assert_fails("truncated", MANIFEST, "segment corrupt or truncated");
    tamper("no-manifest", &|p| {
        s3.bucket.delete(&format!("{p}/{MANIFEST}"), None).unwrap();
    });
    s3.assert_fails("no-manifest", SEGMENT, "segment file without a manifest");
    tamper("no-segment", &|p| {
        s3.bucket.delete(&format!("{p}/{SEGMENT}"), None).unwrap();
    });
    s3.assert_fails("no-segment", MANIFEST, "segment unreadable");
    // Another segment's manifest (the same range, only one tenant's records) put in place
    // of this one's.
    stdout(&s3.write("bloom-only", &["--only-tenant", "bloom"]));
    tamper("replaced", &|p| {
        let theirs = s3.object(&format!("bloom-only/{MANIFEST}"));
        s3.put(&format!("{p}/{MANIFEST}"), theirs);
    });
    s3.assert_fails("replaced", MANIFEST, "the segment holds 214 records");
    // archive get refuses to read from a segment that does not verify, naming it.
    let out = s3.run(
        &[
            "archive",
            "get",
            "s3://audit-archive/edited",
            "40",
            "--public-key",
            &s3.vkey,
        ],
        &[],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("s3://audit-archive/edited/37-250.manifest.json: does not verify"),
        "{said}"
    );
}

#[test]
fn object_lock_through_the_cli_keeps_the_published_versions() {
    let s3 = S3Archive::new(true);
    stdout(&s3.write("locked", &["--object-lock-days", "2"]));
    assert!(s3.verify("locked", true).0);
    for object in [SEGMENT, MANIFEST] {
        let key = format!("locked/{object}");
        let version = s3.bucket.head(&key).unwrap().unwrap().version_id.unwrap();
        let err = s3
            .bucket
            .delete(&key, Some(&version))
            .unwrap_err()
            .to_string();
        assert!(err.contains("403") || err.contains("AccessDenied"), "{err}");
    }
    // A directory cannot be locked.
    let dir = s3.tmp.path().join("dir");
    let data = s3.data();
    let out = s3.run(
        &[
            "archive",
            "write",
            "--data-dir",
            data.to_str().unwrap(),
            "--from",
            "1",
            "--to",
            "2",
            "--out",
            dir.to_str().unwrap(),
            "--object-lock-days",
            "1",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Object Lock needs an s3:// location"));
}

#[test]
fn s3_settings_and_store_errors_name_what_to_fix() {
    let s3 = S3Archive::new(false);
    let fails = |args: &[&str], env: &[(&str, &str)], says: &str| {
        let out = s3.run(args, env);
        assert!(!out.status.success(), "{args:?} {env:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(says), "expected {says:?} in:\n{said}");
    };
    let verify = ["verify", "--archive", "s3://audit-archive/log-a"];
    fails(
        &verify,
        &[("AWS_ENDPOINT_URL", "not a url")],
        "AWS_ENDPOINT_URL is not a URL",
    );
    fails(
        &verify,
        &[("AWS_ACCESS_KEY_ID", "")],
        "AWS_ACCESS_KEY_ID is not set",
    );
    fails(
        &verify,
        &[("SEALTRAIL_S3_PATH_STYLE", "sometimes")],
        "SEALTRAIL_S3_PATH_STYLE",
    );
    fails(
        &["verify", "--archive", "s3://no-such-bucket"],
        &[],
        "NoSuchBucket: The specified bucket does not exist (no bucket \"no-such-bucket\"",
    );
    fails(
        &["archive", "query", "s3://no-such-bucket/x"],
        &[],
        "listing s3://no-such-bucket/x/",
    );
    let out = s3.run(&["verify", "--archive", "s3://audit-archive/empty"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no archive segments"));
    let port = s3.server.port;
    let closed = format!("http://127.0.0.1:{}", free_port(port));
    fails(
        &verify,
        &[("AWS_ENDPOINT_URL", &closed)],
        &format!("cannot reach {closed}/ (AWS_ENDPOINT_URL)"),
    );
}

/// A port nothing listens on (not `taken`).
fn free_port(taken: u16) -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port != taken {
            return port;
        }
    }
}
