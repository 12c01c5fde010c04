//! Evidence bundles end to end: `sealtrail export --evidence` against a real server (field
//! encryption on, a shredded subject, two tenants, the access log growing the log while the
//! export runs), checked by `sealtrail verify --evidence` and by `tools/verify_evidence.py`
//! (no Sealtrail code); then tampered bundles, each of which both checkers must refuse.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::{Value, json};

mod common;

use common::{ServeProcess, sealtrail};

/// The checker, from the repository root.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/verify_evidence.py")
}

/// The Python with `cryptography` that `cargo xtask test` installs; missing is a failure,
/// never a skip.
fn python() -> PathBuf {
    let env = sealtrail_testkit::python::EVIDENCE_PYTHON_ENV;
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{env} is not set: run `cargo xtask test`, or set it to a Python with the \
             `cryptography` package (sealtrail_testkit::python::install_cryptography)"
        )
    })
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn create_key(dir: &Path, scopes: &str, tenant: Option<&str>) -> String {
    let mut args = vec![
        "keys",
        "create",
        "--data-dir",
        dir.to_str().unwrap(),
        "--scopes",
        scopes,
    ];
    if let Some(tenant) = tenant {
        args.extend(["--tenant", tenant]);
    }
    ok(&sealtrail(&args)).trim().to_owned()
}

/// Both checkers on `bundle`, pinned to `vkey` when given: (sealtrail's output, Python's).
fn check_both(bundle: &Path, vkey: Option<&str>) -> (Output, Output) {
    let mut args = vec!["verify", "--evidence", bundle.to_str().unwrap()];
    let mut script_args = vec![bundle.to_str().unwrap().to_owned()];
    if let Some(vkey) = vkey {
        args.extend(["--public-key", vkey]);
        script_args.extend(["--public-key".to_owned(), vkey.to_owned()]);
    }
    let ours = sealtrail(&args);
    let theirs = Command::new(python())
        .arg(script())
        .args(&script_args)
        .output()
        .unwrap();
    (ours, theirs)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Both checkers refuse `bundle`, each with a line containing `expect`.
fn both_refuse(bundle: &Path, vkey: Option<&str>, expect: &str, case: &str) {
    let (ours, theirs) = check_both(bundle, vkey);
    for (who, out) in [("sealtrail verify", &ours), ("verify_evidence.py", &theirs)] {
        assert_eq!(
            out.status.code(),
            Some(1),
            "{case}: {who} must fail: {}",
            text(out)
        );
        let lines = text(out);
        assert!(
            lines
                .lines()
                .any(|l| l.starts_with("FAILED: ") && l.contains(expect)),
            "{case}: {who} names {expect:?}: {lines}"
        );
    }
}

/// The bundle's members, by name.
fn unpack(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(bundle).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

fn evidence_json(bundle: &Path) -> Value {
    let (_, bytes) = unpack(bundle)
        .into_iter()
        .find(|(n, _)| n == "evidence.json")
        .expect("the bundle holds evidence.json");
    serde_json::from_slice(&bytes).unwrap()
}

/// A copy of `bundle` at `to` whose evidence.json is `evidence`.
fn repack(bundle: &Path, evidence: &Value, to: &Path) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in unpack(bundle) {
        let bytes = if name == "evidence.json" {
            serde_json::to_vec_pretty(evidence).unwrap()
        } else {
            bytes
        };
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, &name, bytes.as_slice())
            .unwrap();
    }
    std::fs::write(to, builder.into_inner().unwrap()).unwrap();
}

async fn post(url: &str, key: &str, events: Vec<Value>) -> Value {
    let response = sealtrail_testkit::http_client()
        .post(format!("{url}/v1/events"))
        .bearer_auth(key)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn get(url: &str, key: &str, path: &str) -> (u16, Value) {
    let response = sealtrail_testkit::http_client()
        .get(format!("{url}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn guest_event(tenant: &str, action: &str, guest: &str) -> Value {
    json!({
        "tenant_id": tenant,
        "action": action,
        "resource_type": "guest",
        "resource_id": guest,
        "user_id": "coordinator-17",
        "ip_address": "85.240.12.9",
        "reason": format!("{guest} called"),
        "details": {"guest": {"id": guest, "email": format!("{guest}@example.org"), "table": 4}},
    })
}

/// A server with field encryption (ip_address, reason and the guest's email, keyed per
/// guest) and the access log on; an admin key, and a reader bound to tenant `bloom`.
struct Setup {
    _work: tempfile::TempDir,
    work: PathBuf,
    server: ServeProcess,
    admin: String,
    reader: String,
}

fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let master_file = work.path().join("master.key");
    std::fs::write(
        &master_file,
        base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
    )
    .unwrap();
    let config = work.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        format!(
            "[encryption]\nmaster_key = {{ file = \"{}\" }}\n\
             fields = [\"ip_address\", \"reason\", \"/details/guest/email\"]\n\
             subject = \"/details/guest/id\"\n",
            master_file.display()
        ),
    )
    .unwrap();
    let admin = create_key(&data, "admin", None);
    let reader = create_key(&data, "read", Some("bloom"));
    let server = ServeProcess::start_with_env(
        &data,
        Some(&config),
        &[("SEALTRAIL_ACCESS_LOG__ENABLED", "true")],
    );
    Setup {
        work: work.path().to_owned(),
        _work: work,
        server,
        admin,
        reader,
    }
}

fn export(url: &str, key: &str, filter: &[&str], to: &Path) -> Output {
    let mut args = vec!["export", "--evidence", "--url", url, "--key", key];
    args.extend_from_slice(filter);
    args.extend(["--output", to.to_str().unwrap()]);
    sealtrail(&args)
}

#[test]
fn an_exported_bundle_verifies_with_both_checkers_and_every_tampering_fails_both() {
    let s = setup();
    let url = s.server.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = rt.block_on(async {
        let first = post(
            &url,
            &s.admin,
            vec![
                guest_event("bloom", "guest.updated", "g1"),
                guest_event("fern", "guest.updated", "g1"),
                guest_event("bloom", "invoice.paid", "g1"),
            ],
        )
        .await;
        post(
            &url,
            &s.admin,
            vec![
                guest_event("bloom", "guest.updated", "g2"),
                guest_event("fern", "guest.updated", "g2"),
                guest_event("bloom", "guest.updated", "g3"),
            ],
        )
        .await;
        // Guest g2 of bloom asks to be forgotten: their sealed values read "[shredded]".
        let response = sealtrail_testkit::http_client()
            .post(format!("{url}/v1/tenants/bloom/subjects/g2/shred"))
            .bearer_auth(&s.admin)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
        first
    });
    let (_, public_key) = rt.block_on(get(&url, &s.admin, "/v1/public-key"));
    let vkey = public_key["vkey"].as_str().unwrap().to_owned();

    let bundle = s.work.join("bloom-guests.tar");
    let out = export(
        &url,
        &s.reader,
        &["--tenant", "bloom", "--action", "guest.updated"],
        &bundle,
    );
    let printed = ok(&out);
    assert!(printed.contains("3 events of tenant bloom"), "{printed}");

    // What the bundle holds: README, evidence, the script; only bloom's matching events.
    let names: Vec<String> = unpack(&bundle).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["README.md", "evidence.json", "verify_evidence.py"]);
    let evidence = evidence_json(&bundle);
    let events = evidence["events"].as_array().unwrap();
    let shown: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            let v = &e["event"];
            (
                v["tenant_id"].as_str().unwrap(),
                v["action"].as_str().unwrap(),
                v["resource_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("bloom", "guest.updated", "g1"),
            ("bloom", "guest.updated", "g2"),
            ("bloom", "guest.updated", "g3"),
        ]
    );
    let g1 = &events[0];
    assert_eq!(g1["event"]["details"]["guest"]["email"], "g1@example.org");
    assert_eq!(g1["event"]["ip_address"], "85.240.12.9");
    let record = g1["record"].as_str().unwrap();
    assert!(
        !record.contains("g1@example.org") && record.contains("sealtrail:enc:v1:"),
        "the record holds ciphertext: {record}"
    );
    assert_eq!(
        events[1]["event"]["details"]["guest"]["email"],
        "[shredded]"
    );
    assert_eq!(events[1]["event"]["reason"], "[shredded]");
    assert_eq!(evidence["filter"]["tenant_id"], "bloom");
    assert_eq!(evidence["log"]["vkey"], vkey.as_str());
    assert!(
        evidence["exporter"]["key_id"]
            .as_str()
            .is_some_and(|id| s.reader.contains(id)),
        "{}",
        evidence["exporter"]
    );
    let size = evidence["checkpoint"]["tree_size"].as_u64().unwrap();
    let newest = evidence["newest_checkpoint"]["tree_size"].as_u64().unwrap();
    assert!(
        newest > size,
        "the export's own reads are in the access log after the checkpoint ({size} → {newest})"
    );
    assert!(!evidence["consistency_proof"].as_array().unwrap().is_empty());

    // Both checkers accept it, pinned and (with a note) unpinned.
    let (ours, theirs) = check_both(&bundle, Some(&vkey));
    for out in [&ours, &theirs] {
        let lines = ok(out);
        assert!(
            lines.contains("ok: 3 of 3 events verified (9 sealed values, 3 shredded)"),
            "{lines}"
        );
    }
    let (ours, theirs) = check_both(&bundle, None);
    for out in [&ours, &theirs] {
        assert!(ok(out).contains("note: checked against the key written in the bundle"));
    }

    let tampered = s.work.join("tampered.tar");
    let id_of = |i: usize| events[i]["event"]["id"].as_str().unwrap().to_owned();

    // An edited record (a resource id changed, in the view too, so only the hash tells).
    let mut edited = evidence.clone();
    let record = edited["events"][0]["record"]
        .as_str()
        .unwrap()
        .replace("\"resource_id\":\"g1\"", "\"resource_id\":\"g9\"");
    assert_ne!(record, edited["events"][0]["record"].as_str().unwrap());
    edited["events"][0]["record"] = record.into();
    edited["events"][0]["event"]["resource_id"] = "g9".into();
    repack(&bundle, &edited, &tampered);
    both_refuse(
        &tampered,
        Some(&vkey),
        &format!(
            "event {} (seq {}): the record hashes to leaf",
            id_of(0),
            events[0]["seq"]
        ),
        "edited record",
    );

    // An edited opened view: the record's plaintext action disagrees.
    let mut edited = evidence.clone();
    edited["events"][2]["event"]["action"] = "guest.deleted".into();
    repack(&bundle, &edited, &tampered);
    both_refuse(
        &tampered,
        Some(&vkey),
        &format!("event {}", id_of(2)),
        "edited view",
    );

    // An edited proof hash.
    let mut edited = evidence.clone();
    let hash = edited["events"][1]["inclusion_proof"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = format!(
        "{}{}",
        if hash.starts_with('0') { '1' } else { '0' },
        &hash[1..]
    );
    edited["events"][1]["inclusion_proof"][0] = flipped.into();
    repack(&bundle, &edited, &tampered);
    both_refuse(
        &tampered,
        Some(&vkey),
        &format!(
            "event {} (seq {}): the inclusion proof does not lead",
            id_of(1),
            events[1]["seq"]
        ),
        "edited proof",
    );

    // A swapped checkpoint: a genuine, signed one of the same log, but of another tree.
    let mut edited = evidence.clone();
    edited["checkpoint"] = json!({
        "tree_size": first["tree_size"],
        "note": first["checkpoint"],
    });
    repack(&bundle, &edited, &tampered);
    both_refuse(
        &tampered,
        Some(&vkey),
        "the inclusion proof does not lead",
        "swapped checkpoint",
    );

    // A checkpoint whose stated size was edited.
    let mut edited = evidence.clone();
    edited["checkpoint"]["note"] = edited["checkpoint"]["note"]
        .as_str()
        .unwrap()
        .replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1)
        .into();
    repack(&bundle, &edited, &tampered);
    both_refuse(
        &tampered,
        Some(&vkey),
        "checkpoint: checkpoint signature does not verify",
        "edited checkpoint",
    );

    // An edited consistency proof.
    let mut edited = evidence.clone();
    edited["consistency_proof"][0] = "00".repeat(32).into();
    repack(&bundle, &edited, &tampered);
    both_refuse(
        &tampered,
        Some(&vkey),
        "consistency_proof",
        "edited consistency proof",
    );

    // The wrong public key: another log's, pinned; or written into the bundle unpinned.
    let other =
        sealtrail_core::CheckpointSigner::new(public_key["origin"].as_str().unwrap(), &[9u8; 32])
            .unwrap()
            .verifier()
            .vkey();
    both_refuse(
        &bundle,
        Some(&other),
        "checkpoint: checkpoint signature does not verify",
        "wrong pinned key",
    );
    let mut edited = evidence.clone();
    edited["log"]["vkey"] = other.clone().into();
    repack(&bundle, &edited, &tampered);
    both_refuse(
        &tampered,
        None,
        "checkpoint: checkpoint signature does not verify",
        "key swapped in the bundle",
    );
    both_refuse(&tampered, Some(&vkey), "log.vkey", "key swapped, pinned");

    // A dropped event is NOT detectable by the proofs (the README says so): both pass.
    let mut edited = evidence.clone();
    edited["events"].as_array_mut().unwrap().remove(1);
    repack(&bundle, &edited, &tampered);
    let (ours, theirs) = check_both(&tampered, Some(&vkey));
    for out in [&ours, &theirs] {
        assert!(ok(out).contains("ok: 2 of 2 events"));
    }
    let readme = &unpack(&bundle)[0].1;
    assert!(String::from_utf8_lossy(readme).contains("That no event is missing"));

    // The script in the bundle is the repository's.
    let packed = &unpack(&bundle)[2].1;
    assert_eq!(packed, &std::fs::read(script()).unwrap());
}

#[test]
fn an_export_is_confined_to_the_keys_tenant_and_names_bad_input() {
    let s = setup();
    let url = s.server.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(post(
        &url,
        &s.admin,
        (0..5)
            .map(|n| guest_event("fern", "guest.viewed", &format!("g{n}")))
            .collect(),
    ));
    let bundle = s.work.join("fern.tar");

    let out = export(&url, &s.reader, &["--tenant", "fern"], &bundle);
    assert!(!out.status.success());
    assert!(text(&out).contains("403"), "{}", text(&out));
    assert!(!bundle.exists(), "nothing written");

    let out = export(&url, &s.admin, &["--action", "guest.viewed"], &bundle);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--tenant is required"),
        "{}",
        text(&out)
    );

    let out = export(
        &url,
        &s.admin,
        &["--tenant", "fern", "--limit", "4"],
        &bundle,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("more than 4 events match; narrow the filter or raise --limit"),
        "{}",
        text(&out)
    );

    // An unbound admin key exports fern; no bloom event is in it. The refused export's
    // listing is in fern's access log, so in the bundle too: exports are reads like any.
    ok(&export(&url, &s.admin, &["--tenant", "fern"], &bundle));
    let evidence = evidence_json(&bundle);
    let events = evidence["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [["guest.viewed"; 5].as_slice(), &["audit_log.read"]].concat()
    );
    assert!(events.iter().all(|e| e["event"]["tenant_id"] == "fern"));
    let (ours, theirs) = check_both(&bundle, None);
    ok(&ours);
    ok(&theirs);

    // The API's new parameters name their field when wrong.
    let id = events[0]["event"]["id"].as_str().unwrap();
    let (status, body) = rt.block_on(get(
        &url,
        &s.admin,
        &format!("/v1/events/{id}?tree_size=999999"),
    ));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "tree_size", "{body}");
    let (status, body) = rt.block_on(get(&url, &s.admin, &format!("/v1/events/{id}?record=yes")));
    assert_eq!((status, &body["field"]), (400, &json!("record")), "{body}");
    let (status, body) = rt.block_on(get(&url, &s.admin, &format!("/v1/events/{id}")));
    assert_eq!(status, 200);
    assert!(body.get("record").is_none(), "no record unless asked for");
}
