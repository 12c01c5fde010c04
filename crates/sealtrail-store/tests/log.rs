//! The log's behaviour through the store API: append, idempotency, group commit, queries,
//! stats, proofs and restart.

mod common;

use std::collections::BTreeSet;

use common::{Kind, TestLog, at, event, prepare};
use sealtrail_core::merkle::{self, verify_consistency, verify_inclusion};
use sealtrail_core::query::{PageRequest, StatsRequest};
use sealtrail_store::AppendError;
use serde_json::{Value, json};

fn seqs_are_gap_free_and_every_commit_is_signed(kind: Kind) {
    let log = TestLog::on(kind);
    let first = log.append(vec![event(0), event(1)]);
    let second = log.append(vec![event(2)]);
    let seqs: Vec<u64> = first
        .receipts
        .iter()
        .chain(&second.receipts)
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(second.checkpoint.tree_size, 3);
    let checkpoint = log.verifier.verify(&second.checkpoint.note).unwrap();
    assert_eq!(checkpoint.size, 3);
    assert_eq!(log.handle().tree_size(), 3);
    let latest = log.reader.latest_checkpoint().unwrap().unwrap();
    assert_eq!(latest.tree_size, 3);
}

fn retry_with_same_id_stores_nothing_new(kind: Kind) {
    let log = TestLog::on(kind);
    let mut e = event(1);
    e["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d");
    let original = log.append(vec![e.clone()]);
    let retry = log.append(vec![e.clone()]);
    assert_eq!(retry.receipts[0].seq, original.receipts[0].seq);
    assert_eq!(retry.receipts[0].leaf_hash, original.receipts[0].leaf_hash);
    assert!(retry.receipts[0].duplicate);
    assert_eq!(log.handle().tree_size(), 1);
    // Twice in one request: stored once.
    let mut f = event(2);
    f["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5e");
    let twice = log.append(vec![f.clone(), f]);
    assert_eq!(twice.receipts[0].seq, twice.receipts[1].seq);
    assert_eq!(log.handle().tree_size(), 2);
}

fn same_id_with_other_content_is_a_conflict_and_stores_nothing_of_the_request(kind: Kind) {
    let log = TestLog::on(kind);
    let mut e = event(1);
    e["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d");
    log.append(vec![e.clone()]);
    e["severity"] = json!("critical");
    let err = log
        .handle()
        .append_blocking(vec![prepare(event(7)), prepare(e)])
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { index: 1, .. }),
        "{err}"
    );
    assert_eq!(
        log.handle().tree_size(),
        1,
        "the valid first event was not stored either"
    );
}

fn concurrent_appends_share_group_commits_without_gaps(kind: Kind) {
    let log = TestLog::on(kind);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let receipts = runtime.block_on(async {
        let mut tasks = Vec::new();
        for client in 0..32u64 {
            let handle = log.handle().clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..20 {
                    let outcome = handle
                        .append(vec![prepare(event(client * 100 + i))])
                        .await
                        .unwrap();
                    seqs.push(outcome.receipts[0].seq);
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let seqs: BTreeSet<u64> = receipts.into_iter().collect();
    assert_eq!(
        seqs,
        (1..=640).collect::<BTreeSet<_>>(),
        "every seq once, none missing"
    );
    let commits = log.commits.lock().unwrap();
    assert!(
        commits.iter().any(|c| c.requests > 1),
        "32 concurrent producers never shared a commit: {} commits",
        commits.len()
    );
    assert!(commits.len() < 640);
}

fn page(params: &[(&str, &str)]) -> PageRequest {
    PageRequest::from_params(params.iter().copied()).unwrap()
}

fn seqs_of(log: &TestLog, params: &[(&str, &str)]) -> Vec<u64> {
    log.reader
        .query(&page(params))
        .unwrap()
        .events
        .iter()
        .map(|e| e.seq)
        .collect()
}

/// All events (as JSON) the filter should select, newest first, computed naively.
fn expected(events: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<u64> {
    let mut matching: Vec<(String, u64)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| keep(e))
        .map(|(i, e)| (e["occurred_at"].as_str().unwrap().to_owned(), i as u64 + 1))
        .collect();
    matching.sort();
    matching.reverse();
    matching.into_iter().map(|(_, seq)| seq).collect()
}

/// Runs `check` with nothing indexed, part indexed and everything indexed: answers must
/// not depend on how far the indexer has got.
fn at_every_index_stage(log: &mut TestLog, mut check: impl FnMut(&TestLog, &str)) {
    check(log, "unindexed");
    log.index_step();
    check(log, "partly indexed");
    log.index_all();
    check(log, "indexed");
}

fn every_filter_selects_exactly_the_matching_events_newest_first(kind: Kind) {
    let mut log = TestLog::on(kind);
    let events: Vec<Value> = (0..300).map(event).collect();
    log.append(events.clone());
    let s = |e: &Value, k: &str| e[k].as_str().unwrap().to_owned();
    type Case<'a> = (
        Vec<(&'static str, &'static str)>,
        Box<dyn Fn(&Value) -> bool + 'a>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![("tenant_id", "bloom")],
            Box::new(|e| s(e, "tenant_id") == "bloom"),
        ),
        (
            vec![("tenant_id", "bloom"), ("severity", "warning,critical")],
            Box::new(|e| s(e, "tenant_id") == "bloom" && s(e, "severity") != "info"),
        ),
        (
            vec![("severity", "critical")],
            Box::new(|e| s(e, "severity") == "critical"),
        ),
        (
            vec![("tenant_id", "lakeside"), ("action", "guest.*")],
            Box::new(|e| s(e, "tenant_id") == "lakeside" && s(e, "action").starts_with("guest.")),
        ),
        (
            vec![("action", "seating.changed")],
            Box::new(|e| s(e, "action") == "seating.changed"),
        ),
        (
            vec![("tenant_id", "golden-hour"), ("user_id", "coord-3")],
            Box::new(|e| s(e, "tenant_id") == "golden-hour" && s(e, "user_id") == "coord-3"),
        ),
        (
            vec![("resource_type", "guest"), ("resource_id", "5")],
            Box::new(|e| s(e, "resource_type") == "guest" && s(e, "resource_id") == "5"),
        ),
        (
            vec![("exclude_action", "guest.*")],
            Box::new(|e| !s(e, "action").starts_with("guest.")),
        ),
        (
            vec![("tenant_id", "bloom"), ("exclude_action", "vendor.added")],
            Box::new(|e| s(e, "tenant_id") == "bloom" && s(e, "action") != "vendor.added"),
        ),
        (
            vec![("text", "Dietary")],
            Box::new(|e| s(e, "action").contains("dietary")),
        ),
        (
            vec![("tenant_id", "lakeside"), ("text", "VEND")],
            Box::new(|e| s(e, "tenant_id") == "lakeside" && s(e, "resource_type") == "vendor"),
        ),
        (
            vec![("text", "6")],
            Box::new(|e| s(e, "resource_id").contains('6')),
        ),
        (
            vec![
                ("from", "2026-11-01T02:00:00Z"),
                ("to", "2026-11-01T03:00:00Z"),
            ],
            Box::new(|e| {
                let t = at(&s(e, "occurred_at"));
                t >= at("2026-11-01T02:00:00Z") && t < at("2026-11-01T03:00:00Z")
            }),
        ),
    ];
    at_every_index_stage(&mut log, |log, stage| {
        for (params, keep) in &cases {
            let mut with_limit = params.clone();
            with_limit.push(("limit", "1000"));
            assert_eq!(
                seqs_of(log, &with_limit),
                expected(&events, keep),
                "{stage}: {params:?}"
            );
        }
    });
}

fn pages_cover_every_event_exactly_once_in_both_orders(kind: Kind) {
    let mut log = TestLog::on(kind);
    // Many events share an occurred_at, so the seq tie-break matters.
    let events: Vec<Value> = (0..250)
        .map(|n| {
            let mut e = event(n);
            e["occurred_at"] = json!(format!("2026-11-01T00:00:{:02}Z", n % 7));
            e
        })
        .collect();
    log.append(events);
    at_every_index_stage(&mut log, |log, stage| {
        for order in ["desc", "asc"] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut params = vec![
                    ("order", order),
                    ("limit", "17"),
                    ("severity", "info,critical"),
                ];
                if let Some(c) = &cursor {
                    params.push(("cursor", c.as_str()));
                }
                let request = page(&params);
                let result = log.reader.query(&request).unwrap();
                seen.extend(result.events.iter().map(|e| (e.occurred_at, e.seq)));
                match result.next {
                    Some(next) => cursor = Some(next.encode(request.order)),
                    None => break,
                }
            }
            let mut sorted = seen.clone();
            sorted.sort();
            if order == "desc" {
                sorted.reverse();
            }
            assert_eq!(seen, sorted, "{order}: pages are in order");
            let unique: BTreeSet<_> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "{order}: no event twice");
            let infos_and_criticals = (0..250u64).filter(|n| n % 5 != 3).count();
            assert_eq!(
                seen.len(),
                infos_and_criticals,
                "{stage} {order}: no event missed"
            );
        }
    });
}

fn a_tenant_filter_never_returns_another_tenants_event(kind: Kind) {
    let mut log = TestLog::on(kind);
    log.append((0..300).map(event).collect());
    at_every_index_stage(&mut log, |log, stage| {
        for tenant in ["bloom", "golden-hour", "lakeside"] {
            let page = log
                .reader
                .query(&page(&[("tenant_id", tenant), ("limit", "1000")]))
                .unwrap();
            assert_eq!(page.events.len(), 100, "{stage}");
            assert!(page.events.iter().all(|e| e.tenant_id == tenant), "{stage}");
        }
    });
}

fn stats_count_by_each_dimension_and_bucket(kind: Kind) {
    let mut log = TestLog::on(kind);
    log.append((0..240).map(event).collect());
    at_every_index_stage(&mut log, |log, _stage| {
        let stats = |params: &[(&str, &str)]| {
            log.reader
                .stats(&StatsRequest::from_params(params.iter().copied()).unwrap())
                .unwrap()
        };
        let by_severity = stats(&[("group_by", "severity")]);
        let count = |rows: &[sealtrail_store::StatsRow], key: &str| {
            rows.iter()
                .filter(|r| r.key == key)
                .map(|r| r.count)
                .sum::<u64>()
        };
        assert_eq!(count(&by_severity, "info"), 144);
        assert_eq!(count(&by_severity, "warning"), 48);
        assert_eq!(count(&by_severity, "critical"), 48);
        let by_action = stats(&[("group_by", "action"), ("tenant_id", "bloom")]);
        assert_eq!(by_action.iter().map(|r| r.count).sum::<u64>(), 80);
        let hourly = stats(&[("group_by", "resource_type"), ("interval", "hour")]);
        // Events n = 0..240 fall in hours 0..3 of Nov 1st, 60 per hour.
        let hours: BTreeSet<i64> = hourly.iter().filter_map(|r| r.bucket).collect();
        assert_eq!(hours.len(), 4);
        assert!(hours.contains(&at("2026-11-01T01:00:00Z")));
        let first_hour: u64 = hourly
            .iter()
            .filter(|r| r.bucket == Some(at("2026-11-01T00:00:00Z")))
            .map(|r| r.count)
            .sum();
        assert_eq!(first_hour, 60);
    });
}

fn inclusion_and_consistency_proofs_verify_across_stored_node_levels(kind: Kind) {
    let log = TestLog::on(kind);
    let mut roots = vec![(0u64, merkle::empty_root())];
    let mut leaves = Vec::new();
    // 700 events in uneven batches: the tree crosses the level-8 boundaries at 256 and 512.
    for batch in [1usize, 2, 5, 120, 128, 1, 200, 243] {
        let start = leaves.len() as u64;
        let outcome = log.append((start..start + batch as u64).map(event).collect());
        leaves.extend(outcome.receipts.iter().map(|r| r.leaf_hash));
        roots.push((outcome.checkpoint.tree_size, outcome.checkpoint.root));
    }
    let (size, root) = *roots.last().unwrap();
    assert_eq!(size, 700);
    for index in (0..700u64).step_by(7).chain([255, 256, 511, 512, 699]) {
        let proof = log.reader.inclusion_proof(index, size).unwrap();
        assert!(
            verify_inclusion(index, size, &leaves[index as usize], &proof, &root),
            "leaf {index}"
        );
    }
    for &(old, old_root) in &roots[1..] {
        let proof = log.reader.consistency_proof(old, size).unwrap();
        assert!(
            verify_consistency(old, size, &old_root, &root, &proof),
            "{old} -> {size}"
        );
    }
    assert!(
        log.reader.consistency_proof(5, 701).is_err(),
        "no proof to a tree that does not exist"
    );
}

fn a_restarted_log_continues_where_it_stopped(kind: Kind) {
    let log = TestLog::on(kind);
    log.append((0..300).map(event).collect());
    let before = log.reader.latest_checkpoint().unwrap().unwrap();
    let log = log.restart();
    let outcome = log.append(vec![event(300)]);
    assert_eq!(outcome.receipts[0].seq, 301);
    let proof = log.reader.consistency_proof(before.tree_size, 301).unwrap();
    assert!(verify_consistency(
        300,
        301,
        &before.root,
        &outcome.checkpoint.root,
        &proof
    ));
}

fn only_the_newest_checkpoint_and_history_intervals_are_kept(kind: Kind) {
    let config = sealtrail_store::SequencerConfig {
        checkpoint_history_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let log = TestLog::on_with(kind, config);
    for n in 0..10 {
        log.append(vec![event(n)]);
    }
    let sizes = log.checkpoint_sizes();
    // The empty tree's checkpoint (history), the first commit (an hour has not passed, so
    // not history, superseded and dropped) ... and the newest.
    assert_eq!(sizes, vec![0, 10]);
}

/// Stats from the rollup (whole hours), the index (partial hours) and the log (unindexed
/// rows) add up to exactly what counting the events one by one gives, for ranges that
/// start and end anywhere, at every stage of indexing.
fn stats_equal_a_naive_count_for_any_range_and_filter(kind: Kind) {
    use std::collections::BTreeMap;
    let mut log = TestLog::on(kind);
    let events: Vec<Value> = (0..3000).map(event).collect();
    for chunk in events.chunks(500) {
        log.append(chunk.to_vec());
    }
    let minute = 60_000_000i64;
    let base = at("2026-11-01T00:00:00Z");
    let ranges: Vec<(Option<i64>, Option<i64>)> = vec![
        (None, None),
        (Some(base + 7 * minute), Some(base + 3000 * minute)),
        (Some(base + 61 * minute), Some(base + 119 * minute)),
        (Some(base + 60 * minute), Some(base + 120 * minute)),
        (Some(base + 5 * minute), Some(base + 6 * minute)),
        (Some(base + 1441 * minute), None),
        (None, Some(base + 1381 * minute)),
    ];
    let filters: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("tenant_id", "bloom")],
        vec![("tenant_id", "lakeside"), ("severity", "warning,critical")],
        vec![("action", "guest.*")],
        vec![("resource_type", "vendor")],
        vec![("user_id", "coord-3")],
        vec![("text", "RSVP")],
        vec![("tenant_id", "lakeside"), ("exclude_action", "guest.*")],
        vec![("tenant_id", "bloom"), ("text", "1")],
    ];
    at_every_index_stage(&mut log, |log, stage| {
        for (from, to) in &ranges {
            for filter in &filters {
                for group_by in ["severity", "action", "resource_type", "user_id"] {
                    for interval in [
                        None,
                        Some(("hour", 3_600_000_000i64)),
                        Some(("day", 86_400_000_000i64)),
                    ] {
                        let from_text = from.map(sealtrail_core::time_format::format_micros);
                        let to_text = to.map(sealtrail_core::time_format::format_micros);
                        let mut params: Vec<(&str, &str)> = filter.clone();
                        params.push(("group_by", group_by));
                        if let Some(f) = &from_text {
                            params.push(("from", f));
                        }
                        if let Some(t) = &to_text {
                            params.push(("to", t));
                        }
                        if let Some((name, _)) = interval {
                            params.push(("interval", name));
                        }
                        let request = StatsRequest::from_params(params.iter().copied()).unwrap();
                        let got: BTreeMap<(Option<i64>, String), u64> = log
                            .reader
                            .stats(&request)
                            .unwrap()
                            .into_iter()
                            .map(|r| ((r.bucket, r.key), r.count))
                            .collect();
                        let mut want: BTreeMap<(Option<i64>, String), u64> = BTreeMap::new();
                        for e in &events {
                            let t = at(e["occurred_at"].as_str().unwrap());
                            let s = |k: &str| e[k].as_str().unwrap().to_owned();
                            let keep = from.is_none_or(|f| t >= f)
                                && to.is_none_or(|x| t < x)
                                && request
                                    .filter
                                    .tenant_id
                                    .as_ref()
                                    .is_none_or(|x| *x == s("tenant_id"))
                                && (request.filter.severities.is_empty()
                                    || request
                                        .filter
                                        .severities
                                        .iter()
                                        .any(|v| v.as_str() == s("severity")))
                                && request
                                    .filter
                                    .action
                                    .as_ref()
                                    .is_none_or(|a| a.matches(&s("action")))
                                && request
                                    .filter
                                    .exclude_action
                                    .as_ref()
                                    .is_none_or(|a| !a.matches(&s("action")))
                                && request
                                    .filter
                                    .resource_type
                                    .as_ref()
                                    .is_none_or(|x| *x == s("resource_type"))
                                && request
                                    .filter
                                    .user_id
                                    .as_ref()
                                    .is_none_or(|x| *x == s("user_id"))
                                && request.filter.text.as_ref().is_none_or(|x| {
                                    ["action", "resource_type", "resource_id"]
                                        .iter()
                                        .any(|k| s(k).to_lowercase().contains(x.as_str()))
                                });
                            if keep {
                                let bucket = interval.map(|(_, w)| t - t.rem_euclid(w));
                                *want.entry((bucket, s(group_by))).or_default() += 1;
                            }
                        }
                        assert_eq!(got, want, "{stage}: {params:?}");
                    }
                }
            }
        }
    });
}

/// Live streams hear of every new event exactly once, in seq order, and of nothing a
/// retry did not store.
fn every_durable_event_is_published_once_in_order(kind: Kind) {
    let log = TestLog::on(kind);
    let mut retried = event(1);
    retried["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d");
    log.append(vec![event(0), retried.clone()]);
    log.append(vec![retried, event(2)]);
    log.append((3..40).map(event).collect());
    let published = log.published.lock().unwrap().clone();
    assert_eq!(published, (1..=40).collect::<Vec<u64>>());
}

/// A stream catching up reads exactly the matching events after its cursor, in seq order,
/// page by page.
fn replay_returns_every_matching_event_after_the_cursor_in_seq_order(kind: Kind) {
    let log = TestLog::on(kind);
    let events: Vec<Value> = (0..300).map(event).collect();
    log.append(events.clone());
    let filter = PageRequest::from_params([("tenant_id", "bloom"), ("severity", "info,critical")])
        .unwrap()
        .filter;
    let expected: Vec<u64> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["tenant_id"] == "bloom" && e["severity"] != "warning")
        .map(|(i, _)| i as u64 + 1)
        .filter(|&seq| seq > 17)
        .collect();
    let mut got = Vec::new();
    let mut cursor = 17;
    while cursor < 300 {
        let page = log.reader.events_after(cursor, 300, &filter, 7).unwrap();
        assert!(page.scanned_through > cursor, "progress");
        got.extend(page.events.iter().map(|e| e.seq));
        cursor = page.scanned_through;
    }
    assert_eq!(got, expected);
}

on_both_stores!(
    seqs_are_gap_free_and_every_commit_is_signed,
    retry_with_same_id_stores_nothing_new,
    same_id_with_other_content_is_a_conflict_and_stores_nothing_of_the_request,
    concurrent_appends_share_group_commits_without_gaps,
    every_filter_selects_exactly_the_matching_events_newest_first,
    pages_cover_every_event_exactly_once_in_both_orders,
    a_tenant_filter_never_returns_another_tenants_event,
    stats_count_by_each_dimension_and_bucket,
    inclusion_and_consistency_proofs_verify_across_stored_node_levels,
    a_restarted_log_continues_where_it_stopped,
    only_the_newest_checkpoint_and_history_intervals_are_kept,
    stats_equal_a_naive_count_for_any_range_and_filter,
    every_durable_event_is_published_once_in_order,
    replay_returns_every_matching_event_after_the_cursor_in_seq_order,
);
