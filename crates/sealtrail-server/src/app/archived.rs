//! Reads that include the archive (`include_archived=true`): events whose bodies retention
//! moved out of the hot store, read back from the archive segments — each segment only
//! after it verified against the log's key — and merged with the hot store's page in the
//! query's order. Slower than a hot read by design: every segment is read and verified on
//! each request; it is for the rare look into the past, not for dashboards.

use sealtrail_archive::ArchiveLocation;
use sealtrail_core::query::{Order, PageCursor, PageRequest};
use sealtrail_core::{CheckpointVerifier, StoredEvent};
use sealtrail_store::EventPage;
use sealtrail_store::retention::RetentionLedger;
use uuid::Uuid;

use super::AppError;

/// The archive retention writes to (a directory or an S3 bucket), read with the log's
/// key pinned.
pub struct ArchiveReader {
    location: std::sync::Arc<ArchiveLocation>,
    verifier: CheckpointVerifier,
    /// Which archived events were since deleted past retention: their segment keeps them
    /// until every event in it is deleted, but they are gone for readers.
    ledger: std::sync::Arc<dyn RetentionLedger>,
}

fn refused(e: sealtrail_archive::ArchiveError) -> AppError {
    AppError::Internal(format!(
        "the archive cannot be read: {e}; run `sealtrail verify --archive`"
    ))
}

impl ArchiveReader {
    /// The archive at `location`, its segments checked against `verifier`, what was
    /// deleted read from `ledger`.
    pub fn new(
        location: std::sync::Arc<ArchiveLocation>,
        verifier: CheckpointVerifier,
        ledger: std::sync::Arc<dyn RetentionLedger>,
    ) -> Self {
        Self {
            location,
            verifier,
            ledger,
        }
    }

    /// The archived events `request` matches after its cursor, in its order, at most
    /// `limit + 1` of them (one more tells whether a page follows), each seq once.
    pub fn page(&self, request: &PageRequest) -> Result<Vec<StoredEvent>, AppError> {
        let mut found: Vec<StoredEvent> = Vec::new();
        for located in self.list()? {
            let segment = self
                .location
                .open_segment(&located, Some(&self.verifier))
                .map_err(refused)?;
            for event in segment.events().map_err(refused)? {
                let event = event.map_err(refused)?;
                let cursor = PageCursor {
                    occurred_at: event.stored.occurred_at,
                    seq: event.stored.seq,
                };
                if request.filter.matches(&event.columns())
                    && request
                        .after
                        .is_none_or(|after| follows(&after, &cursor, request.order))
                {
                    found.push(event.stored);
                }
            }
        }
        sort(&mut found, request.order);
        found.dedup_by_key(|e| e.seq);
        // In order, a page's worth at a time, until enough are left after the deleted.
        let wanted = request.limit + 1;
        let mut kept = Vec::with_capacity(wanted.min(found.len()));
        for chunk in found.chunks(wanted) {
            let seqs: Vec<u64> = chunk.iter().map(|e| e.seq).collect();
            let deleted = self.ledger.deleted_among(&seqs).map_err(AppError::from)?;
            kept.extend(chunk.iter().filter(|e| !deleted.contains(&e.seq)).cloned());
            if kept.len() >= wanted {
                break;
            }
        }
        kept.truncate(wanted);
        Ok(kept)
    }

    /// The archived event with this id, if any.
    pub fn get(&self, id: &Uuid) -> Result<Option<StoredEvent>, AppError> {
        if self.list()?.is_empty() {
            return Ok(None);
        }
        let located = self
            .location
            .locate_event_id(&id.to_string(), Some(&self.verifier))
            .map_err(refused)?;
        let Some((located, seq)) = located else {
            return Ok(None);
        };
        let segment = self
            .location
            .open_segment(&located, Some(&self.verifier))
            .map_err(refused)?;
        if self
            .ledger
            .deleted_among(&[seq])
            .map_err(AppError::from)?
            .contains(&seq)
        {
            return Ok(None);
        }
        Ok(segment.event_at(seq).map_err(refused)?.map(|e| e.stored))
    }

    /// The segments, none for a directory not created yet (nothing archived).
    fn list(&self) -> Result<Vec<sealtrail_archive::LocatedSegment>, AppError> {
        match self.location.list_segments() {
            Ok(list) => Ok(list),
            Err(sealtrail_archive::ArchiveError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(refused(e)),
        }
    }
}

impl Drop for ArchiveReader {
    fn drop(&mut self) {
        // The last handle on an S3 location drops its blocking HTTP client: off the async
        // workers, on a thread of its own.
        let location = self.location.clone();
        let _ = std::thread::Builder::new()
            .name("sealtrail-archive-close".into())
            .spawn(move || drop(location));
    }
}

/// Whether `event` comes after `cursor` in `order`.
fn follows(cursor: &PageCursor, event: &PageCursor, order: Order) -> bool {
    let (c, e) = (
        (cursor.occurred_at, cursor.seq),
        (event.occurred_at, event.seq),
    );
    match order {
        Order::Desc => e < c,
        Order::Asc => e > c,
    }
}

fn sort(events: &mut [StoredEvent], order: Order) {
    events.sort_by_key(|e| (e.occurred_at, e.seq));
    if order == Order::Desc {
        events.reverse();
    }
}

/// The first `limit` of the hot page and the archived events together, in order, each seq
/// once (an event held in both is the hot one), and the cursor after them when more follow.
pub fn merge(hot: EventPage, archived: Vec<StoredEvent>, request: &PageRequest) -> EventPage {
    let hot_has_more = hot.next.is_some();
    let mut events = hot.events;
    let hot_seqs: std::collections::BTreeSet<u64> = events.iter().map(|e| e.seq).collect();
    events.extend(archived.into_iter().filter(|e| !hot_seqs.contains(&e.seq)));
    sort(&mut events, request.order);
    let more = hot_has_more || events.len() > request.limit;
    events.truncate(request.limit);
    let next = more.then(|| events.last()).flatten().map(|e| PageCursor {
        occurred_at: e.occurred_at,
        seq: e.seq,
    });
    EventPage { events, next }
}
