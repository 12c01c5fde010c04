//! Instruction-count probe (callgrind): validation + canonical record for N events, then
//! the sequencer's durable append of them in batches of 100.
use sealtrail_core::{EventLimits, TenantScope};
use sealtrail_store::sqlite::open_log;
use sealtrail_store::{Sequencer, SequencerConfig};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mode = std::env::args().nth(2).unwrap_or_else(|| "both".into());
    let limits = EventLimits::default();
    let mut prepared = Vec::with_capacity(n);
    for i in 0..n {
        let value = serde_json::json!({
            "tenant_id": format!("tenant-{}", i % 20),
            "action": "guest.dietary_restriction.updated",
            "resource_type": "guest",
            "resource_id": format!("g-{i}"),
            "user_id": format!("coord:{}", i % 50),
            "ip_address": "85.240.12.9",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "severity": "warning",
            "reason": "Guest called: severe peanut allergy",
            "changes": [{"field": "dietary_restriction", "before": "none", "after": "peanut allergy"}],
            "details": {"venue": "Quinta da Regaleira", "table": i % 30, "guests": [1, 2, 3]},
        });
        prepared.push(
            sealtrail_core::prepare_event_value(
                value,
                &TenantScope::Any,
                1_700_000_000_000_000,
                &limits,
            )
            .expect("valid"),
        );
    }
    if mode == "prepare" {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backend, signer) = open_log(dir.path(), Some("probe")).unwrap();
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )
    .unwrap();
    let batches: Vec<Vec<_>> = prepared.chunks(100).map(<[_]>::to_vec).collect();
    for batch in batches {
        handle.append_blocking(batch).unwrap();
    }
    drop(handle);
    thread.join().unwrap();
}
