//! Inputs the fuzzers (`fuzz/`) found crashing, kept as regression tests: each file in
//! `fuzz/regressions/<target>/` is run through the same checks as the fuzz target.

use std::path::PathBuf;

use sealtrail_core::{EventLimits, StoredRecord, TenantScope, prepare_event};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect()
}

/// Found: numbers such as `2.1e+92` parsed back to a neighbouring double (serde_json's
/// default float parsing is not correctly rounded), so canonicalising a record again changed
/// it, and a client re-canonicalising an event could not reproduce its leaf hash.
#[test]
fn every_event_regression_passes_the_event_target_checks() {
    let cases = inputs("event");
    assert!(!cases.is_empty());
    for (path, data) in cases {
        let limits = EventLimits::default();
        for scope in [TenantScope::Any, TenantScope::Bound("acme".into())] {
            let Ok(event) = prepare_event(&data, &scope, 1_764_000_000_000_000, &limits) else {
                continue;
            };
            let record = event.record(42);
            let parsed = StoredRecord::parse(&record).unwrap();
            assert_eq!(
                (parsed.seq, parsed.id),
                (42, event.id),
                "{}",
                path.display()
            );
            let value: serde_json::Value = serde_json::from_slice(&record).unwrap();
            assert_eq!(
                sealtrail_core::canonical::to_vec(&value),
                record,
                "{}: the record is not canonical",
                path.display()
            );
        }
    }
}
