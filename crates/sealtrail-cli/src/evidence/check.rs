//! Checking an evidence bundle offline: every record hashes to its leaf, every inclusion
//! proof reaches the signed checkpoint's root, both checkpoints are signed by the log's
//! key, the consistency proof links them, and each event as shown agrees with its record
//! wherever the record is not sealed. `tools/verify_evidence.py` makes the same checks; a
//! change here is a change there.

use std::collections::BTreeSet;

use sealtrail_core::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use sealtrail_core::{Checkpoint, CheckpointVerifier};
use sealtrail_crypto::{SEALED_PREFIX, SHREDDED};
use serde_json::Value;

use super::{Evidence, EvidenceEvent};

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Events whose every check passed.
    pub events_ok: usize,
    /// Sealed values (ciphertext in the record) among them, and how many read `[shredded]`.
    pub sealed: usize,
    pub shredded: usize,
    /// The checkpoints' sizes, when they verified.
    pub tree_size: Option<u64>,
    pub newest_size: Option<u64>,
    /// One line per failure, naming the event (or the checkpoint) and the reason.
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks `evidence` with `key` (pinned, or the bundle's own).
pub fn check(evidence: &Evidence, key: &CheckpointVerifier) -> Report {
    let mut report = Report::default();
    let named = CheckpointVerifier::from_vkey(&evidence.log.vkey).map(|k| k.public_key());
    if !named.is_ok_and(|public| key.has_key(&public)) {
        report.problems.push(format!(
            "log.vkey: the bundle names key {:?}, not the pinned {:?}",
            evidence.log.vkey,
            key.vkey()
        ));
    }
    let checkpoint = signed(key, &evidence.checkpoint, "checkpoint", &mut report);
    let newest = signed(
        key,
        &evidence.newest_checkpoint,
        "newest_checkpoint",
        &mut report,
    );
    report.tree_size = checkpoint.as_ref().map(|c| c.size);
    report.newest_size = newest.as_ref().map(|c| c.size);
    if let (Some(old), Some(new)) = (&checkpoint, &newest) {
        check_consistency(old, new, &evidence.consistency_proof, &mut report);
    }
    let tenant = evidence.filter.get("tenant_id").and_then(Value::as_str);
    if tenant.is_none() {
        report
            .problems
            .push("filter: no tenant_id (a bundle holds one tenant's events)".into());
    }
    let mut seen = BTreeSet::new();
    for event in &evidence.events {
        let name = event_name(event);
        let mut problems = Vec::new();
        if !seen.insert(event.seq) {
            problems.push(format!("seq {} appears twice", event.seq));
        }
        let counts = check_event(event, checkpoint.as_ref(), tenant, &mut problems);
        if problems.is_empty() {
            report.events_ok += 1;
            report.sealed += counts.0;
            report.shredded += counts.1;
        }
        report
            .problems
            .extend(problems.into_iter().map(|p| format!("{name}: {p}")));
    }
    report
}

/// The checkpoint the note carries, if its signature verifies and its size is as stated.
fn signed(
    key: &CheckpointVerifier,
    note: &super::Note,
    what: &str,
    report: &mut Report,
) -> Option<Checkpoint> {
    match key.verify(&note.note) {
        Ok(checkpoint) if checkpoint.size == note.tree_size => Some(checkpoint),
        Ok(checkpoint) => {
            report.problems.push(format!(
                "{what}: tree_size says {} but the signed note says {}",
                note.tree_size, checkpoint.size
            ));
            None
        }
        Err(e) => {
            report.problems.push(format!("{what}: {e}"));
            None
        }
    }
}

fn check_consistency(old: &Checkpoint, new: &Checkpoint, proof: &[String], report: &mut Report) {
    let hashes = match hashes(proof) {
        Ok(hashes) => hashes,
        Err(e) => {
            report.problems.push(format!("consistency_proof: {e}"));
            return;
        }
    };
    if !verify_consistency(old.size, new.size, &old.root, &new.root, &hashes) {
        report.problems.push(format!(
            "consistency_proof: the tree of {} leaves is not a prefix of the newest checkpoint's \
             tree of {} leaves",
            old.size, new.size
        ));
    }
}

/// `event <id> (seq N)`, as far as the bundle says.
fn event_name(event: &EvidenceEvent) -> String {
    let id = event
        .event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("(no id)");
    format!("event {id} (seq {})", event.seq)
}

/// One event's checks; (sealed values, shredded values) when they pass.
fn check_event(
    event: &EvidenceEvent,
    checkpoint: Option<&Checkpoint>,
    tenant: Option<&str>,
    problems: &mut Vec<String>,
) -> (usize, usize) {
    let leaf = leaf_hash(event.record.as_bytes());
    if hex::encode(leaf) != event.leaf_hash {
        problems.push(format!(
            "the record hashes to leaf {}, not the stated {}",
            hex::encode(leaf),
            event.leaf_hash
        ));
    }
    if event.leaf_index.checked_add(1) != Some(event.seq) {
        problems.push(format!(
            "leaf_index {} is not seq − 1 (seq {})",
            event.leaf_index, event.seq
        ));
    }
    if let Some(checkpoint) = checkpoint {
        match hashes(&event.inclusion_proof) {
            Err(e) => problems.push(format!("inclusion_proof: {e}")),
            Ok(proof) => {
                if !verify_inclusion(
                    event.leaf_index,
                    checkpoint.size,
                    &leaf,
                    &proof,
                    &checkpoint.root,
                ) {
                    problems.push(format!(
                        "the inclusion proof does not lead from the record's leaf to the root of \
                         the checkpoint's tree of {} leaves",
                        checkpoint.size
                    ));
                }
            }
        }
    }
    let record: serde_json::Map<String, Value> = match serde_json::from_str(&event.record) {
        Ok(record) => record,
        Err(e) => {
            problems.push(format!("the record is not a JSON object: {e}"));
            return (0, 0);
        }
    };
    if record.get("seq").and_then(Value::as_u64) != Some(event.seq) {
        problems.push(format!("the record's seq is not {}", event.seq));
    }
    if let Some(tenant) = tenant
        && record.get("tenant_id").and_then(Value::as_str) != Some(tenant)
    {
        problems.push(format!(
            "the record's tenant_id is {}, not the filter's {tenant:?}",
            record.get("tenant_id").unwrap_or(&Value::Null)
        ));
    }
    if event.event.get("leaf_hash").and_then(Value::as_str) != Some(&hex::encode(leaf)) {
        problems.push("the event's leaf_hash is not the record's".into());
    }
    let mut counts = (0, 0);
    for name in event.event.keys() {
        if name != "leaf_hash" && !record.contains_key(name) {
            problems.push(format!("the event shows {name:?}, which the record lacks"));
        }
    }
    for (name, stored) in &record {
        match event.event.get(name) {
            None => problems.push(format!("the event lacks the record's {name:?}")),
            Some(shown) => agree(name, stored, shown, &mut counts, problems),
        }
    }
    counts
}

/// Whether a shown value agrees with the stored one: equal, except where the record holds
/// a sealed value (ciphertext), which the server opened or showed as `[shredded]`.
fn agree(
    path: &str,
    stored: &Value,
    shown: &Value,
    counts: &mut (usize, usize),
    problems: &mut Vec<String>,
) {
    match (stored, shown) {
        (Value::String(s), _) if s.starts_with(SEALED_PREFIX) => {
            counts.0 += 1;
            if shown.as_str() == Some(SHREDDED) {
                counts.1 += 1;
            }
        }
        (Value::Object(stored), Value::Object(shown)) => {
            let names: BTreeSet<&String> = stored.keys().chain(shown.keys()).collect();
            for name in names {
                let inner = format!("{path}/{name}");
                match (stored.get(name), shown.get(name)) {
                    (Some(s), Some(v)) => agree(&inner, s, v, counts, problems),
                    _ => problems.push(format!("{inner:?}: shown and stored members differ")),
                }
            }
        }
        (Value::Array(stored), Value::Array(shown)) if stored.len() == shown.len() => {
            for (i, (s, v)) in stored.iter().zip(shown).enumerate() {
                agree(&format!("{path}/{i}"), s, v, counts, problems);
            }
        }
        _ if stored == shown => {}
        _ => problems.push(format!(
            "{path:?} is {shown} in the event but {stored} in the record"
        )),
    }
}

/// Hex hashes.
fn hashes(hex_hashes: &[String]) -> Result<Vec<Hash>, String> {
    hex_hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            hex::decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| format!("hash {i} ({h:?}) is not 32 bytes of hex"))
        })
        .collect()
}
