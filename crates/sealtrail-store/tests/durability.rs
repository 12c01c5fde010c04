//! Nothing is acknowledged, reported or indexed before it is durable; a failed fsync stops
//! the log. The real SQLite backend runs underneath; only its fsync is gated, to hold a
//! commit between "written" and "durable" or to make the fsync fail.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{event, prepare};
use sealtrail_core::merkle::Hash;
use sealtrail_core::query::PageRequest;
use sealtrail_store::sqlite::{Indexer, IndexerConfig, SqliteBackend, SqliteReader, open_log};
use sealtrail_store::{
    AppendError, CheckpointRow, ExistingEvent, LogBackend, LogReader, LogState, NewLeaf, Sequencer,
    SequencerConfig, StoreError, Syncer,
};
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gate {
    Open,
    Closed,
    Failing,
}

/// The SQLite backend with an fsync that waits while the gate is closed.
struct GatedBackend {
    inner: SqliteBackend,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

struct GatedSyncer {
    inner: Box<dyn Syncer>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

impl Syncer for GatedSyncer {
    fn sync(&mut self) -> Result<(), StoreError> {
        let (lock, changed) = &*self.gate;
        let mut gate = lock.lock().unwrap();
        while *gate == Gate::Closed {
            gate = changed.wait(gate).unwrap();
        }
        if *gate == Gate::Failing {
            return Err(StoreError::Integrity("injected fsync failure".into()));
        }
        drop(gate);
        self.inner.sync()
    }
}

impl LogBackend for GatedBackend {
    fn state(&mut self) -> Result<LogState, StoreError> {
        self.inner.state()
    }
    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        self.inner.subtree_hash(level, index)
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.inner.begin()
    }
    fn find_existing(&mut self, ids: &[Uuid]) -> Result<HashMap<Uuid, ExistingEvent>, StoreError> {
        self.inner.find_existing(ids)
    }
    fn insert_leaves(&mut self, leaves: &[NewLeaf<'_>]) -> Result<(), StoreError> {
        self.inner.insert_leaves(leaves)
    }
    fn insert_nodes(&mut self, nodes: &[(u32, u64, Hash)]) -> Result<(), StoreError> {
        self.inner.insert_nodes(nodes)
    }
    fn insert_checkpoint(
        &mut self,
        checkpoint: &CheckpointRow,
        history: bool,
    ) -> Result<(), StoreError> {
        self.inner.insert_checkpoint(checkpoint, history)
    }
    fn supersede_checkpoint(&mut self, tree_size: u64) -> Result<(), StoreError> {
        self.inner.supersede_checkpoint(tree_size)
    }
    fn insert_key_rotation(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.inner.insert_key_rotation(size, note)
    }
    fn key_rotations(&mut self) -> Result<Vec<String>, StoreError> {
        self.inner.key_rotations()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.inner.commit()
    }
    fn syncer(&self) -> Result<Box<dyn Syncer>, StoreError> {
        Ok(Box::new(GatedSyncer {
            inner: self.inner.syncer()?,
            gate: self.gate.clone(),
        }))
    }
    fn rollback(&mut self) -> Result<(), StoreError> {
        self.inner.rollback()
    }
}

type GateHandle = Arc<(Mutex<Gate>, Condvar)>;

/// A log whose fsync is behind a gate (open to begin with).
fn gated_log(
    dir: &std::path::Path,
) -> (
    GateHandle,
    sealtrail_store::SequencerHandle,
    std::thread::JoinHandle<()>,
) {
    let (backend, signer) = open_log(dir, Some("durability.test/log")).unwrap();
    let gate = Arc::new((Mutex::new(Gate::Open), Condvar::new()));
    let gated = GatedBackend {
        inner: backend,
        gate: gate.clone(),
    };
    let (handle, thread) = Sequencer::spawn(
        gated,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )
    .unwrap();
    (gate, handle, thread)
}

fn set(gate: &GateHandle, to: Gate) {
    *gate.0.lock().unwrap() = to;
    gate.1.notify_all();
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn nothing_is_acknowledged_reported_or_indexed_before_its_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, handle, thread) = gated_log(dir.path());
    handle.append_blocking(vec![prepare(event(0))]).unwrap();
    assert_eq!(handle.tree_size(), 1);

    set(&gate, Gate::Closed);
    let appender = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            handle.append_blocking(vec![prepare(event(1)), prepare(event(2))])
        })
    };
    let reader = SqliteReader::open(dir.path()).unwrap();
    // The group is committed (visible to a raw read of the log) but not yet fsync'd...
    wait_until("the group is committed", || {
        reader.latest_checkpoint().unwrap().unwrap().tree_size == 3
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!appender.is_finished(), "answered before its fsync");
    assert_eq!(
        handle.tree_size(),
        1,
        "the durable size must not move before the fsync"
    );
    assert_eq!(
        handle.durable_checkpoint().tree_size,
        1,
        "no checkpoint is reported before the fsync"
    );
    // ...so reads bounded by the durable size do not see it, and the indexer does not take it.
    let mut request = PageRequest::from_params([("limit", "10")]).unwrap();
    request.visible_through = Some(handle.tree_size());
    assert_eq!(reader.query(&request).unwrap().events.len(), 1);
    let mut indexer = Indexer::open(dir.path(), IndexerConfig::default())
        .unwrap()
        .bounded_by(handle.durable_size());
    assert_eq!(indexer.catch_up().unwrap(), 1);

    set(&gate, Gate::Open);
    let outcome = appender.join().unwrap().unwrap();
    assert_eq!(outcome.checkpoint.tree_size, 3);
    assert_eq!(handle.tree_size(), 3);
    assert_eq!(indexer.catch_up().unwrap(), 2);
    request.visible_through = Some(handle.tree_size());
    assert_eq!(reader.query(&request).unwrap().events.len(), 3);
    drop(handle);
    thread.join().unwrap();
}

#[test]
fn a_failed_fsync_acknowledges_nothing_and_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, handle, thread) = gated_log(dir.path());
    handle.append_blocking(vec![prepare(event(0))]).unwrap();
    set(&gate, Gate::Failing);
    let err = handle.append_blocking(vec![prepare(event(1))]).unwrap_err();
    assert!(matches!(err, AppendError::Storage(_)), "{err}");
    assert_eq!(handle.tree_size(), 1);
    assert!(
        !handle.is_healthy(),
        "the log reports it cannot take writes"
    );
    set(&gate, Gate::Open);
    let err = handle.append_blocking(vec![prepare(event(2))]).unwrap_err();
    assert!(
        matches!(err, AppendError::Unavailable(_)),
        "fail-stop: {err}"
    );
    drop(handle);
    thread.join().unwrap();
}
