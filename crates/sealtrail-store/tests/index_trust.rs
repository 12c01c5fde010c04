//! The query index is derived data the log does not vouch for: a stale, foreign or edited
//! index is rebuilt or cannot leak one tenant's events to another.

mod common;

use common::{TestLog, event};
use sealtrail_core::query::PageRequest;
use sealtrail_store::sqlite::{INDEX_DB_FILE, Indexer, IndexerConfig};

#[test]
fn an_index_ahead_of_its_log_is_rebuilt() {
    let mut log = TestLog::new();
    log.append((0..50).map(event).collect());
    log.index_all();
    let dir = log.stop();
    // As after a power cut that kept the index's newest rows but not the log's.
    let db = common::sqlite(&sealtrail_store::sqlite::log_db_path(dir.path()));
    db.execute("DELETE FROM events WHERE seq > 40", []).unwrap();
    drop(db);
    let mut indexer = Indexer::open(dir.path(), IndexerConfig::default()).unwrap();
    assert_eq!(
        indexer.indexed_through().unwrap(),
        0,
        "rebuilt from scratch"
    );
    assert_eq!(indexer.catch_up().unwrap(), 40);
}

#[test]
fn an_index_of_another_log_is_rebuilt() {
    let mut first = TestLog::new();
    first.append((0..30).map(event).collect());
    first.index_all();
    let first_dir = first.stop();
    let second = TestLog::new();
    second.append((100..160).map(event).collect());
    let second_dir = second.stop();
    std::fs::copy(
        first_dir.path().join(INDEX_DB_FILE),
        second_dir.path().join(INDEX_DB_FILE),
    )
    .unwrap();
    let mut indexer = Indexer::open(second_dir.path(), IndexerConfig::default()).unwrap();
    assert_eq!(
        indexer.indexed_through().unwrap(),
        0,
        "the foreign index was dropped"
    );
    assert_eq!(indexer.catch_up().unwrap(), 60);
}

#[test]
fn an_edited_index_cannot_show_a_tenant_another_tenants_events() {
    let mut log = TestLog::new();
    log.append((0..30).map(event).collect());
    log.index_all();
    // Relabel every indexed event as tenant "bloom".
    let index = common::sqlite(&log.path().join(INDEX_DB_FILE));
    index
        .execute("UPDATE ev SET tenant_id = 'bloom'", [])
        .unwrap();
    let request = PageRequest::from_params([("tenant_id", "bloom"), ("limit", "1000")]).unwrap();
    let page = log.reader.query(&request).unwrap();
    assert_eq!(page.events.len(), 10, "only bloom's own 10 events");
    assert!(page.events.iter().all(|e| e.tenant_id == "bloom"));
}

/// Bodies retention removed before the indexer reached them: pages stay full, the cursor
/// still leads through every remaining event, and the indexer leaves them out.
#[test]
fn emptied_rows_the_index_has_not_reached_cut_no_page_short() {
    use sealtrail_store::retention::RetentionLedger;
    let mut log = TestLog::new();
    log.append((0..60).map(event).collect());
    let ledger = sealtrail_store::sqlite::SqliteLedger::open(log.path()).unwrap();
    // Every other unindexed event's body leaves the hot store.
    let emptied: Vec<u64> = (0..60u64)
        .map(|n| n + 1)
        .filter(|seq| seq % 2 == 0)
        .collect();
    ledger.mark_archived("1-60.test", &emptied).unwrap();
    assert_eq!(
        ledger.remove_bodies(&emptied, 1).unwrap(),
        emptied.len() as u64
    );
    let all_pages = |log: &TestLog| {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut params = vec![("limit".to_owned(), "7".to_owned())];
            if let Some(cursor) = &after {
                params.push(("cursor".to_owned(), cursor.clone()));
            }
            let request =
                PageRequest::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .unwrap();
            let page = log.reader.query(&request).unwrap();
            seen.extend(page.events.iter().map(|e| e.seq));
            match page.next {
                Some(next) => {
                    assert_eq!(page.events.len(), 7, "only the last page is short");
                    after = Some(next.encode(request.order));
                }
                None => return seen,
            }
        }
    };
    let mut expected: Vec<u64> = (1..=60).filter(|seq| !emptied.contains(seq)).collect();
    let mut seen = all_pages(&log);
    seen.sort_unstable();
    expected.sort_unstable();
    assert_eq!(seen, expected);
    log.index_all();
    let mut seen = all_pages(&log);
    seen.sort_unstable();
    assert_eq!(seen, expected, "after indexing");
    let index = common::sqlite(&log.path().join(INDEX_DB_FILE));
    let indexed: i64 = index
        .query_row("SELECT COUNT(*) FROM ev", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        indexed as usize,
        expected.len(),
        "emptied rows are not indexed"
    );
}
