//! Event parsing and validation: any bytes as a producer's event. Must never panic; an
//! accepted event's canonical record must be JSON that parses back as a stored record with
//! the same id, tenant and action, and canonicalising it again must not change it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealtrail_core::{EventLimits, StoredRecord, TenantScope, prepare_event};

fuzz_target!(|data: &[u8]| {
    let limits = EventLimits::default();
    for scope in [TenantScope::Any, TenantScope::Bound("acme".into())] {
        let Ok(event) = prepare_event(data, &scope, 1_764_000_000_000_000, &limits) else {
            continue;
        };
        let record = event.record(42);
        let parsed = StoredRecord::parse(&record).expect("an accepted event's record parses");
        assert_eq!(parsed.seq, 42);
        assert_eq!(parsed.id, event.id);
        assert_eq!(parsed.tenant_id, event.tenant_id);
        assert_eq!(parsed.action, event.action);
        let value: serde_json::Value =
            serde_json::from_slice(&record).expect("a record is JSON");
        let again = sealtrail_core::canonical::to_vec(&value);
        assert_eq!(again, record, "a record is canonical already");
    }
});
