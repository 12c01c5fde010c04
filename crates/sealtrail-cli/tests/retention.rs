//! `sealtrail retention plan` against a real log holding events of many ages, with the
//! moment of the plan under the test's control: exactly the events past each age are due.

use std::path::Path;
use std::process::Command;

use sealtrail_core::{EventLimits, TenantScope};
use sealtrail_store::sqlite::open_log;
use sealtrail_store::{Sequencer, SequencerConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sealtrail");
/// The plan's moment.
const AT: &str = "2030-01-01T00:00:00Z";

/// `(tenant, severity, action, days before AT)` for every event written.
const EVENTS: &[(&str, &str, &str, i64)] = &[
    ("bloom", "info", "guest.viewed", 10),
    ("bloom", "info", "guest.viewed", 89),
    ("bloom", "info", "guest.viewed", 91),
    ("bloom", "info", "guest.viewed", 366),
    ("bloom", "warning", "guest.dietary_restriction.updated", 181),
    ("bloom", "critical", "payment.refunded", 40),
    ("lakeside", "critical", "vendor.contract.signed", 400),
    (
        "lakeside",
        "critical",
        "vendor.contract.signed",
        7 * 365 + 2,
    ),
    ("lakeside", "info", "payment.captured", 40),
];

fn write_log(dir: &Path) {
    let (backend, signer) = open_log(dir, Some("test/retention")).unwrap();
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )
    .unwrap();
    let at = sealtrail_core::time_format::parse_rfc3339_micros(AT).unwrap();
    let events = EVENTS
        .iter()
        .map(|(tenant, severity, action, days)| {
            let occurred = at - days * 86_400_000_000;
            let value = json!({
                "tenant_id": tenant,
                "severity": severity,
                "action": action,
                "resource_type": "guest",
                "occurred_at": sealtrail_core::time_format::format_micros(occurred),
            });
            sealtrail_core::prepare_event_value(
                value,
                &TenantScope::Any,
                at,
                &EventLimits::default(),
            )
            .unwrap()
        })
        .collect();
    handle.append_blocking(events).unwrap();
    drop(handle);
    thread.join().unwrap();
}

fn plan(dir: &Path, config: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args([
        "retention",
        "plan",
        "--data-dir",
        dir.to_str().unwrap(),
        "--at",
        AT,
    ]);
    if let Some(config) = config {
        command.args(["--config", config.to_str().unwrap()]);
    }
    command
        .arg("--json")
        .env_remove("SEALTRAIL_CONFIG")
        .output()
        .unwrap()
}

fn row<'a>(rows: &'a [Value], tenant: &str, policy: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["tenant_id"] == tenant && r["policy"] == policy)
        .unwrap_or_else(|| panic!("no row for {tenant} / {policy} in {rows:#?}"))
}

#[test]
fn the_default_policies_make_exactly_the_events_past_each_age_due() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let out = plan(dir.path(), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let info = row(&rows, "bloom", "severity:info");
    assert_eq!(
        (
            info["keep"].as_u64(),
            info["archive"].as_u64(),
            info["delete"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let warning = row(&rows, "bloom", "severity:warning");
    assert_eq!(warning["archive"], 1);
    let critical = row(&rows, "bloom", "severity:critical");
    assert_eq!(critical["keep"], 1);
    let contracts = row(&rows, "lakeside", "severity:critical");
    assert_eq!(
        (contracts["archive"].as_u64(), contracts["delete"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(row(&rows, "lakeside", "severity:info")["keep"], 1);
    let total: u64 = rows
        .iter()
        .map(|r| {
            ["keep", "archive", "archive (held)", "delete", "held"]
                .iter()
                .map(|k| r[*k].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(total, EVENTS.len() as u64, "every event is planned once");
}

#[test]
fn an_override_applies_to_what_it_matches_first() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let config = dir.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        r#"
[[retention.overrides]]
name = "lakeside-payments"
tenant = "lakeside"
action = "payment.*"
keep_days = 3650
archive_after_days = 30

[[retention.overrides]]
name = "payments"
action = "payment.*"
keep_days = 3650
archive_after_days = 365
"#,
    )
    .unwrap();
    let out = plan(dir.path(), Some(&config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        row(&rows, "lakeside", "lakeside-payments")["archive"],
        1,
        "40 days > 30"
    );
    assert_eq!(row(&rows, "bloom", "payments")["keep"], 1, "40 days < 365");
}

#[test]
fn a_bad_policy_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let config = dir.path().join("sealtrail.toml");
    std::fs::write(
        &config,
        "[retention]\ninfo = { keep_days = 30, archive_after_days = 90 }\n",
    )
    .unwrap();
    let out = plan(dir.path(), Some(&config));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("retention.info.archive_after_days: 90 is after keep_days (30)"),
        "{stderr}"
    );
}

#[test]
fn a_legal_hold_keeps_what_would_be_deleted_and_the_bodies_of_what_is_archived() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let holds = sealtrail_store::holds::HoldStore::open(dir.path()).unwrap();
    holds
        .place(&sealtrail_core::holds::Hold {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: "lakeside".into(),
            resource_type: None,
            resource_id: None,
            reason: "litigation hold: vendor dispute".into(),
            placed_by: "test".into(),
            placed_at: 0,
            release: None,
        })
        .unwrap();
    drop(holds);
    let out = plan(dir.path(), None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let contracts = row(&rows, "lakeside", "severity:critical");
    assert_eq!(
        (
            contracts["archive (held)"].as_u64(),
            contracts["held"].as_u64(),
            contracts["delete"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    // The other tenant is not held.
    assert_eq!(row(&rows, "bloom", "severity:info")["delete"], 1);
}
