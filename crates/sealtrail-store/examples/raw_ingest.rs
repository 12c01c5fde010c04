use sealtrail_core::{EventLimits, TenantScope, prepare_event_value};
use sealtrail_store::{Sequencer, SequencerConfig};
use serde_json::json;
use std::time::Instant;
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, signer) = sealtrail_store::sqlite::open_log(dir.path(), None).unwrap();
    let stats = std::sync::Arc::new(std::sync::Mutex::new((
        0usize,
        0usize,
        std::time::Duration::ZERO,
    )));
    let st = stats.clone();
    let (handle, _t) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Some(Box::new(move |c: &sealtrail_store::CommitStats| {
            let mut s = st.lock().unwrap();
            s.0 += 1;
            s.1 += c.events;
            s.2 += c.duration;
        })),
    )
    .unwrap();
    let n_clients: usize = std::env::var("XP_CLIENTS")
        .map(|v| v.parse().unwrap())
        .unwrap_or(8);
    let batch: usize = std::env::var("XP_BATCH")
        .map(|v| v.parse().unwrap())
        .unwrap_or(100);
    let batches = 200_000 / n_clients / batch;
    let limits = EventLimits::default();
    let prep_start = Instant::now();
    let all: Vec<Vec<Vec<_>>> = (0..n_clients).map(|c| (0..batches).map(|b| (0..batch).map(|i| {
        let n = (c*batches+b)*batch+i;
        prepare_event_value(json!({"tenant_id": format!("tenant-{}", n%100), "action":"guest.dietary_restriction.updated","resource_type":"guest","resource_id": (n%5000).to_string(),"user_id": format!("coord-{}", n%50),"severity": (["info","warning","critical"][n%3]),"ip_address":"203.0.113.7","details":{"guest":"Ana","dietary":"vegan","table":12}}), &TenantScope::Any, 1_795_000_000_000_000 + n as i64 * 1000, &limits).unwrap()
    }).collect()).collect()).collect();
    println!(
        "prepare: {:.0} events/s",
        (n_clients * batches * batch) as f64 / prep_start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let threads: Vec<_> = all
        .into_iter()
        .map(|client| {
            let h = handle.clone();
            std::thread::spawn(move || {
                for b in client {
                    h.append_blocking(b).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let el = start.elapsed();
    println!(
        "ceiling: {:.0} events/s ({} events in {:?})",
        (n_clients * batches * batch) as f64 / el.as_secs_f64(),
        n_clients * batches * batch,
        el
    );
    {
        let s = stats.lock().unwrap();
        println!(
            "commits {} avg events {} avg duration {:?}",
            s.0,
            s.1 / s.0.max(1),
            s.2 / s.0.max(1) as u32
        );
    }
    let size = std::fs::metadata(dir.path().join("log.sqlite"))
        .unwrap()
        .len();
    println!(
        "db bytes/event: {}",
        size / (n_clients * batches * batch) as u64
    );
}
