//! The local spool: where ingest keeps acknowledging while the log's database is
//! unreachable. Each request's validated events are appended as one line to
//! `spool.ndjson` in the data directory and fsync'd before the producer is answered, so a
//! spooled event is as durable as a logged one — only not yet in the log. When the
//! database is back the server drains the spool into the log in order, one request at a
//! time, skipping events already there, and records how far it got in `spool.cursor`
//! (written atomically), so a crash while draining stores nothing twice.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sealtrail_core::{PreparedEvent, Severity};
use serde_json::{Value, json};

use crate::StoreError;

const SPOOL_FILE: &str = "spool.ndjson";
const CURSOR_FILE: &str = "spool.cursor";
/// Spooled events the log refused while draining: kept, never dropped (they were
/// acknowledged with 202), one fsync'd line each.
pub const REJECTED_FILE: &str = "spool-rejected.ndjson";

/// A spooled event the log refused when the spool drained, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedEvent {
    /// Its id (the producer's receipt names it).
    pub id: uuid::Uuid,
    /// Owning tenant.
    pub tenant_id: String,
    /// Its action.
    pub action: String,
    /// Its resource type.
    pub resource_type: String,
    /// When it happened, UTC µs.
    pub occurred_at: i64,
    /// When it was acknowledged (spooled), UTC µs.
    pub received_at: i64,
    /// Why the log refused it.
    pub reason: String,
    /// When the drain refused it, UTC µs.
    pub refused_at: i64,
}

/// One spooled request, and where the next one starts.
#[derive(Debug)]
pub struct SpooledRequest {
    /// Its events, exactly as validated when they were acknowledged.
    pub events: Vec<PreparedEvent>,
    /// Byte offset just past it: the cursor once it is in the log.
    pub end: u64,
}

struct State {
    file: File,
    /// Bytes drained (everything before is in the log).
    cursor: u64,
    /// Events after the cursor.
    depth: u64,
}

/// The spool of one data directory.
pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
    /// What `spool-rejected.ndjson` holds (the whole event stays in the file only).
    rejected: Mutex<Vec<RejectedEvent>>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `data_dir`, counting what is left to drain.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(SPOOL_FILE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        lock_exclusively(&file, &path)?;
        let cursor = match std::fs::read_to_string(data_dir.join(CURSOR_FILE)) {
            Ok(text) => text.trim().parse().map_err(|_| {
                StoreError::Integrity(format!("{CURSOR_FILE} holds {text:?}, not an offset"))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::io(format!("reading {CURSOR_FILE}"), e)),
        };
        let spool = Self {
            dir: data_dir.to_owned(),
            state: Mutex::new(State {
                file,
                cursor,
                depth: 0,
            }),
            rejected: Mutex::new(read_rejected(&data_dir.join(REJECTED_FILE))?),
        };
        let requests = spool.read_from(cursor, usize::MAX)?;
        let pending: u64 = requests.iter().map(|r| r.events.len() as u64).sum();
        let valid_end = requests.last().map_or(cursor, |r| r.end);
        let mut state = spool.lock();
        state.depth = pending;
        // A line cut short by a crash was never acknowledged: drop it, so the next append
        // starts a line of its own.
        let length = state
            .file
            .metadata()
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
            .len();
        if length > valid_end {
            state
                .file
                .set_len(valid_end)
                .and_then(|()| state.file.sync_all())
                .map_err(|e| StoreError::io(format!("repairing {}", path.display()), e))?;
        }
        drop(state);
        Ok(spool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("spool lock is never poisoned")
    }

    /// Events waiting to be drained into the log.
    pub fn depth(&self) -> u64 {
        self.lock().depth
    }

    /// Appends one request's events and makes them durable (fsync) before returning.
    pub fn append(&self, events: &[PreparedEvent]) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(&json!({
            "events": events.iter().map(encode).collect::<Vec<_>>()
        }))
        .expect("JSON values serialise");
        line.push(b'\n');
        let mut state = self.lock();
        state
            .file
            .write_all(&line)
            .and_then(|()| state.file.sync_data())
            .map_err(|e| StoreError::io(format!("writing {SPOOL_FILE}"), e))?;
        state.depth += events.len() as u64;
        Ok(())
    }

    /// Keeps `event`, which the log refused for `reason`, in the rejected list (fsync'd)
    /// — before the drain moves past it. Listing the same event again for the same reason
    /// (a drain cut off and repeated) keeps one entry.
    pub fn reject(&self, event: &PreparedEvent, reason: &str, at: i64) -> Result<(), StoreError> {
        let mut rejected = self.rejected.lock().expect("not poisoned");
        if rejected
            .iter()
            .any(|r| r.id == event.id && r.reason == reason)
        {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&json!({
            "refused_at": at,
            "reason": reason,
            "event": encode(event),
        }))
        .expect("JSON values serialise");
        line.push(b'\n');
        let path = self.dir.join(REJECTED_FILE);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(&line)?;
                file.sync_data()
            })
            .map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
        rejected.push(rejected_entry(event, reason, at));
        Ok(())
    }

    /// The events the log refused while the spool drained, oldest first.
    pub fn rejected(&self) -> Vec<RejectedEvent> {
        self.rejected.lock().expect("not poisoned").clone()
    }

    /// The tenant of the spooled event `id`, if it waits in the spool.
    pub fn pending_event(&self, id: &uuid::Uuid) -> Result<Option<String>, StoreError> {
        Ok(self
            .pending(usize::MAX)?
            .into_iter()
            .flat_map(|r| r.events)
            .find(|e| e.id == *id)
            .map(|e| e.tenant_id))
    }

    /// Up to `max` requests waiting to be drained, oldest first.
    pub fn pending(&self, max: usize) -> Result<Vec<SpooledRequest>, StoreError> {
        let cursor = self.lock().cursor;
        self.read_from(cursor, max)
    }

    fn read_from(&self, offset: u64, max: usize) -> Result<Vec<SpooledRequest>, StoreError> {
        let path = self.dir.join(SPOOL_FILE);
        let mut file =
            File::open(&path).map_err(|e| StoreError::io(format!("reading {SPOOL_FILE}"), e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| StoreError::io(format!("reading {SPOOL_FILE}"), e))?;
        let mut reader = BufReader::new(file);
        let mut requests = Vec::new();
        let mut end = offset;
        let mut line = String::new();
        while requests.len() < max {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .map_err(|e| StoreError::io(format!("reading {SPOOL_FILE}"), e))?;
            // A line without its newline is a write cut short by a crash: never
            // acknowledged, so not pending.
            if read == 0 || !line.ends_with('\n') {
                break;
            }
            end += read as u64;
            let value: Value = serde_json::from_str(&line).map_err(|e| {
                StoreError::Integrity(format!("{SPOOL_FILE} at byte {}: {e}", end - read as u64))
            })?;
            let events = value["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(decode)
                .collect::<Result<_, _>>()?;
            requests.push(SpooledRequest { events, end });
        }
        Ok(requests)
    }

    /// Records that everything before `end` is in the log (`events` of them); once the
    /// spool is empty both files start over.
    pub fn drained(&self, end: u64, events: u64) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.depth = state.depth.saturating_sub(events);
        state.cursor = end;
        let length = state
            .file
            .metadata()
            .map_err(|e| StoreError::io(format!("reading {SPOOL_FILE}"), e))?
            .len();
        if state.depth == 0 && end >= length {
            // Truncate first: a crash in between leaves a cursor past the end, which
            // reads as empty.
            state
                .file
                .set_len(0)
                .and_then(|()| state.file.sync_all())
                .map_err(|e| StoreError::io(format!("emptying {SPOOL_FILE}"), e))?;
            state.cursor = 0;
        }
        let cursor = state.cursor;
        drop(state);
        write_atomically(&self.dir.join(CURSOR_FILE), cursor.to_string().as_bytes())
    }
}

fn rejected_entry(event: &PreparedEvent, reason: &str, at: i64) -> RejectedEvent {
    RejectedEvent {
        id: event.id,
        tenant_id: event.tenant_id.clone(),
        action: event.action.clone(),
        resource_type: event.resource_type.clone(),
        occurred_at: event.occurred_at,
        received_at: event.received_at,
        reason: reason.to_owned(),
        refused_at: at,
    }
}

/// The rejected list at `path` (none when there is no file). A last line cut short by a
/// crash was never listed (the drain had not moved past it): it is left out, and the drain
/// refuses that event again.
fn read_rejected(path: &Path) -> Result<Vec<RejectedEvent>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
    };
    let mut list = Vec::new();
    let mut valid = 0;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        if !line.ends_with('\n') {
            // Cut so the next entry starts a line of its own.
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|file| {
                    file.set_len(valid as u64)?;
                    file.sync_all()
                })
                .map_err(|e| StoreError::io(format!("repairing {}", path.display()), e))?;
            break;
        }
        valid += line.len();
        let bad = |what: &str| {
            StoreError::Integrity(format!("{} line {}: {what}", path.display(), number + 1))
        };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let event = decode(&value["event"])?;
        let reason = value["reason"].as_str().ok_or_else(|| bad("no reason"))?;
        let at = value["refused_at"]
            .as_i64()
            .ok_or_else(|| bad("no refused_at"))?;
        list.push(rejected_entry(&event, reason, at));
    }
    Ok(list)
}

/// One server per spool: two draining one file would each replay it.
fn lock_exclusively(file: &File, path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock only reads the descriptor, which `file` keeps open; the lock is
        // released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Invalid(format!(
                "{} is in use by another server: give each server its own --data-dir \
                 (with a copy of log-signing.key)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let context = || format!("writing {}", path.display());
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(context(), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| StoreError::io(context(), e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(context(), e))?;
    }
    Ok(())
}

fn encode(event: &PreparedEvent) -> Value {
    json!({
        "id": event.id,
        "tenant_id": event.tenant_id,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "severity": event.severity.code(),
        "action": event.action,
        "user_id": event.user_id,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "record_head": BASE64.encode(&event.record_head),
        "record_tail": BASE64.encode(&event.record_tail),
        "content_hash": event.content_hash.map(hex::encode),
    })
}

fn decode(value: &Value) -> Result<PreparedEvent, StoreError> {
    let bad = |field: &str| StoreError::Integrity(format!("{SPOOL_FILE}: bad or missing {field}"));
    let text = |field: &str| {
        value[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(field))
    };
    let optional = |field: &str| value[field].as_str().map(str::to_owned);
    let integer = |field: &str| value[field].as_i64().ok_or_else(|| bad(field));
    let bytes = |field: &str| {
        value[field]
            .as_str()
            .and_then(|s| BASE64.decode(s).ok())
            .ok_or_else(|| bad(field))
    };
    let content_hash = match value["content_hash"].as_str() {
        None => None,
        Some(h) => Some(
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| bad("content_hash"))?,
        ),
    };
    Ok(PreparedEvent {
        id: text("id")?.parse().map_err(|_| bad("id"))?,
        tenant_id: text("tenant_id")?,
        occurred_at: integer("occurred_at")?,
        received_at: integer("received_at")?,
        severity: Severity::from_code(integer("severity")?).ok_or_else(|| bad("severity"))?,
        action: text("action")?,
        user_id: optional("user_id"),
        resource_type: text("resource_type")?,
        resource_id: optional("resource_id"),
        record_head: bytes("record_head")?,
        record_tail: bytes("record_tail")?,
        content_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_core::{EventLimits, TenantScope, prepare_event_value};

    fn prepared(n: u64) -> PreparedEvent {
        prepare_event_value(
            json!({"tenant_id": "bloom", "action": "guest.rsvp.updated", "resource_type": "guest",
                   "resource_id": n.to_string(), "details": {"n": n}}),
            &TenantScope::Any,
            1_800_000_000_000_000,
            &EventLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn spooled_requests_come_back_exactly_in_order_until_drained_even_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let first = vec![prepared(1), prepared(2)];
        let second = vec![prepared(3)];
        spool.append(&first).unwrap();
        spool.append(&second).unwrap();
        assert_eq!(spool.depth(), 3);
        let pending = spool.pending(10).unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].events, first);
        assert_eq!(pending[1].events, second);
        spool.drained(pending[0].end, 2).unwrap();
        drop(spool);

        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.depth(), 1, "the cursor survives a restart");
        let pending = spool.pending(10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].events, second);
        spool.drained(pending[0].end, 1).unwrap();
        assert_eq!(spool.depth(), 0);
        assert_eq!(
            std::fs::metadata(dir.path().join(SPOOL_FILE))
                .unwrap()
                .len(),
            0,
            "an empty spool starts over"
        );
        assert!(
            Spool::open(dir.path()).is_err(),
            "one server per spool: a second one is refused"
        );
        drop(spool);
        assert!(
            Spool::open(dir.path())
                .unwrap()
                .pending(10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_not_pending() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&[prepared(1)]).unwrap();
        drop(spool);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(SPOOL_FILE))
            .unwrap();
        file.write_all(b"{\"events\":[{\"id\":").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.depth(), 1);
        assert_eq!(spool.pending(10).unwrap().len(), 1);
        // What comes next is readable: the torn line is gone.
        let next = vec![prepared(2)];
        spool.append(&next).unwrap();
        let pending = spool.pending(10).unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[1].events, next);
    }
}
