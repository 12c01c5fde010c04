//! Reads of the log made with an API key: a page of events, one event with its inclusion
//! proof, counts, equality search on blind-indexed fields, consistency proofs. Each is
//! recorded in the access log before it is answered, and none sees beyond the durable
//! tree. Authorisation (scopes, confining a bound key to its tenant) is the caller's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_core::merkle::Hash;
use sealtrail_core::query::{PageRequest, StatsRequest};
use sealtrail_core::{EventFilter, FieldError, StoredEvent};
use sealtrail_crypto::{BlindIndexStore, Opener};
use sealtrail_store::{CheckpointRow, EventPage, LogReader, SequencerHandle, StatsRow};
use serde_json::{Value, json};
use uuid::Uuid;

use super::access::{AccessLog, Read, Who};
use super::error::{AppError, blocking};
use crate::metrics::Metrics;

/// How long a read of an event committed but not yet fsync'd waits for it to be durable.
const DURABILITY_WAIT: Duration = Duration::from_secs(5);

/// Most events one search returns.
pub const MAX_SEARCH_LIMIT: usize = 1000;

/// One event with the proof that it is in the log.
pub struct ProvenEvent {
    /// The event.
    pub event: StoredEvent,
    /// Its leaf index (seq − 1).
    pub leaf_index: u64,
    /// The inclusion proof against the tree of `tree_size` leaves.
    pub hashes: Vec<Hash>,
    /// The size of the tree the proof is against: the durable checkpoint's, unless the
    /// caller asked for another.
    pub tree_size: u64,
    /// The latest durable checkpoint.
    pub checkpoint: Arc<CheckpointRow>,
}

/// An equality search on a blind-indexed encrypted field.
pub struct Search {
    /// The tenant searched (already confined to the key's).
    pub tenant: String,
    /// The blind-indexed field.
    pub field: String,
    /// The value, compared as a JSON string.
    pub equals: String,
    /// At most this many.
    pub limit: usize,
}

/// The read use cases.
pub struct Reads {
    /// Reads go here.
    pub reader: Arc<dyn LogReader>,
    /// The durable tree size and checkpoint.
    pub sequencer: SequencerHandle,
    /// Has the cipher that makes search tokens.
    pub opener: Opener,
    /// The blind index, when configured.
    pub blind: Option<Arc<dyn BlindIndexStore>>,
    /// Every read is recorded here first.
    pub access: AccessLog,
    /// Read latencies.
    pub metrics: Arc<Metrics>,
    /// The archive retention writes to, when configured (`include_archived=true`).
    pub archive: Option<Arc<super::archived::ArchiveReader>>,
}

impl Reads {
    /// The archive, for a read that asks to include it.
    fn archive(&self) -> Result<Arc<super::archived::ArchiveReader>, AppError> {
        self.archive.clone().ok_or_else(|| {
            AppError::Invalid(FieldError::new(
                "include_archived",
                "this server has no archive (retention_run.archive_to is not set)",
            ))
        })
    }

    /// A page of events; `params` are the request's parameters as given (recorded).
    pub async fn events(
        &self,
        who: &Who<'_>,
        mut request: PageRequest,
        params: Value,
    ) -> Result<EventPage, AppError> {
        request.visible_through = Some(self.sequencer.tree_size());
        let (confined_to, resource) = subject_of(&request.filter);
        let archive = match request.include_archived {
            true => Some(self.archive()?),
            false => None,
        };
        let page = match archive {
            None => self.timed("events", move |r| r.query(&request)).await?,
            Some(archive) => {
                let hot = {
                    let request = request.clone();
                    self.timed("events", move |r| r.query(&request)).await?
                };
                let started = Instant::now();
                let (archived, request) =
                    blocking(move || Ok((archive.page(&request)?, request))).await?;
                self.metrics
                    .read("events_archived", started.elapsed().as_secs_f64());
                super::archived::merge(hot, archived, &request)
            }
        };
        let mut returned = BTreeMap::new();
        for event in &page.events {
            *returned.entry(event.tenant_id.clone()).or_insert(0) += 1;
        }
        let read = Read {
            action: "audit_log.read",
            filter: params,
            confined_to: confined_to.as_deref(),
            returned,
            result_count: Some(page.events.len() as u64),
            resource,
            event_id: None,
        };
        self.access.record(who, read).await?;
        Ok(page)
    }

    /// One event by id with its inclusion proof, if `may_see` its tenant (a key must not
    /// learn that another tenant's event exists: that is a 404 like any unknown id).
    ///
    /// The proof is against the latest durable checkpoint, or against the tree of
    /// `at_size` leaves when given (a checkpoint the caller already holds: an evidence
    /// export proves all its events against one checkpoint while its own reads grow the log).
    pub async fn event(
        &self,
        who: &Who<'_>,
        id: Uuid,
        at_size: Option<u64>,
        include_archived: bool,
        may_see: impl FnOnce(&str) -> bool,
    ) -> Result<ProvenEvent, AppError> {
        let started = Instant::now();
        let reader = self.reader.clone();
        let mut found = blocking(move || Ok(reader.get(&id)?)).await?;
        if found.is_none() && include_archived {
            let archive = self.archive()?;
            found = blocking(move || archive.get(&id)).await?;
        }
        let Some(event) = found.filter(|e| may_see(&e.tenant_id)) else {
            return Err(AppError::NotFound(format!("no event {id}")));
        };
        // Committed but not yet fsync'd (a millisecond or two): nothing is shown before it
        // is durable, and proofs are only against durable checkpoints.
        if event.seq > self.sequencer.tree_size() {
            tokio::time::timeout(DURABILITY_WAIT, self.sequencer.wait_durable(event.seq))
                .await
                .map_err(|_| AppError::NotFound(format!("no event {id}")))?;
        }
        let checkpoint = self.sequencer.durable_checkpoint();
        let leaf_index = event.seq.checked_sub(1).ok_or_else(|| {
            AppError::Internal(
                "a stored event has seq 0, which the sequencer never writes; run `sealtrail verify`"
                    .into(),
            )
        })?;
        let tree_size = match at_size {
            None => checkpoint.tree_size,
            Some(size) if size > checkpoint.tree_size => {
                return Err(AppError::Invalid(FieldError::new(
                    "tree_size",
                    format!(
                        "the log has {} events; there is no tree of size {size} yet",
                        checkpoint.tree_size
                    ),
                )));
            }
            Some(size) if size < event.seq => {
                return Err(AppError::Invalid(FieldError::new(
                    "tree_size",
                    format!(
                        "event {id} has seq {}; a tree of {size} leaves does not contain it",
                        event.seq
                    ),
                )));
            }
            Some(size) => size,
        };
        let reader = self.reader.clone();
        let hashes = blocking(move || Ok(reader.inclusion_proof(leaf_index, tree_size)?)).await?;
        self.metrics.read("event", started.elapsed().as_secs_f64());
        let read = Read {
            action: "audit_log.read_event",
            filter: json!({"id": id.to_string()}),
            confined_to: Some(&event.tenant_id),
            returned: BTreeMap::new(),
            result_count: Some(1),
            resource: sealtrail_core::StoredRecord::parse(&event.record)
                .ok()
                .map(|r| (r.resource_type, r.resource_id)),
            event_id: Some(id.to_string()),
        };
        self.access.record(who, read).await?;
        Ok(ProvenEvent {
            event,
            leaf_index,
            hashes,
            tree_size,
            checkpoint,
        })
    }

    /// Counts by a dimension (and time bucket).
    pub async fn stats(
        &self,
        who: &Who<'_>,
        mut request: StatsRequest,
        params: Value,
    ) -> Result<Vec<StatsRow>, AppError> {
        request.visible_through = Some(self.sequencer.tree_size());
        let (confined_to, resource) = subject_of(&request.filter);
        let rows = self.timed("stats", move |r| r.stats(&request)).await?;
        let read = Read {
            action: "audit_log.stats",
            filter: params,
            confined_to: confined_to.as_deref(),
            returned: BTreeMap::new(),
            result_count: Some(rows.iter().map(|r| r.count).sum()),
            resource,
            event_id: None,
        };
        self.access.record(who, read).await?;
        Ok(rows)
    }

    /// The events of a tenant whose blind-indexed `field` equals a value, newest first.
    /// The access record names the field and the token, never the value searched for: it
    /// is as sensitive as the field.
    pub async fn search(
        &self,
        who: &Who<'_>,
        search: Search,
    ) -> Result<Vec<StoredEvent>, AppError> {
        let Search {
            tenant,
            field,
            equals,
            limit,
        } = search;
        let (Some(cipher), Some(index)) = (self.opener.cipher(), self.blind.clone()) else {
            return Err(AppError::Conflict(
                "no blind index is configured (encryption.blind_index)".into(),
            ));
        };
        if !cipher.has_blind_index(&field) {
            return Err(AppError::Invalid(FieldError::new(
                "field",
                format!("{field:?} has no blind index (encryption.blind_index)"),
            )));
        }
        let token = cipher.blind_token(&tenant, &field, Value::from(equals).to_string().as_bytes());
        let recorded =
            json!({"tenant_id": tenant, "field": field, "equals_token": token, "limit": limit});
        let (reader, through) = (self.reader.clone(), self.sequencer.tree_size());
        let search_tenant = tenant.clone();
        let live = self
            .opener
            .shared_cipher()
            .expect("a cipher, checked above");
        let events = blocking(move || {
            let seqs = index
                .find(&search_tenant, &field, &token, limit)
                .map_err(|e| AppError::Internal(e.to_string()))?;
            let filter = EventFilter {
                tenant_id: Some(search_tenant),
                ..Default::default()
            };
            let mut events = Vec::with_capacity(seqs.len());
            for seq in seqs.into_iter().filter(|&s| s >= 1 && s <= through) {
                events.extend(reader.events_after(seq - 1, seq, &filter, 1)?.events);
            }
            // An entry is only a lead: the event matches if its value, opened with a key
            // alive now, still has the token. An entry left from a value whose key was
            // shredded (on another server, or while the entry was being written) never
            // matches.
            events.retain(|event| {
                live.blind_tokens(event)
                    .iter()
                    .any(|t| t.field == field && t.token == token)
            });
            Ok(events)
        })
        .await?;
        let read = Read {
            action: "audit_log.search",
            filter: recorded,
            confined_to: Some(&tenant),
            returned: BTreeMap::new(),
            result_count: Some(events.len() as u64),
            resource: None,
            event_id: None,
        };
        self.access.record(who, read).await?;
        Ok(events)
    }

    /// The consistency proof between tree sizes `from` and `to` (≤ the durable size);
    /// `confined_to` is the key's tenant, if bound.
    pub async fn consistency_proof(
        &self,
        who: &Who<'_>,
        (from, to): (u64, u64),
        confined_to: Option<&str>,
        params: Value,
    ) -> Result<Vec<Hash>, AppError> {
        let durable = self.sequencer.tree_size();
        if to > durable {
            return Err(AppError::Invalid(FieldError::new(
                "to",
                format!("the log has {durable} events; there is no tree of size {to} yet"),
            )));
        }
        let hashes = self
            .timed("proof", move |r| r.consistency_proof(from, to))
            .await
            .map_err(|e| match e {
                AppError::Invalid(FieldError { reason, .. }) => {
                    AppError::Invalid(FieldError::new("from", reason))
                }
                other => other,
            })?;
        let read = Read {
            action: "audit_log.proof",
            filter: params,
            confined_to,
            returned: BTreeMap::new(),
            result_count: None,
            resource: None,
            event_id: None,
        };
        self.access.record(who, read).await?;
        Ok(hashes)
    }
}

impl Reads {
    /// Runs `read` on the reader off the async workers, timed as `what` in the metrics.
    async fn timed<T: Send + 'static>(
        &self,
        what: &'static str,
        read: impl FnOnce(&dyn LogReader) -> Result<T, sealtrail_store::StoreError> + Send + 'static,
    ) -> Result<T, AppError> {
        let started = Instant::now();
        let reader = self.reader.clone();
        let result = blocking(move || Ok(read(&*reader)?)).await?;
        self.metrics.read(what, started.elapsed().as_secs_f64());
        Ok(result)
    }
}

/// The tenant a filtered read is confined to and the resource it names, for its record.
fn subject_of(filter: &EventFilter) -> (Option<String>, Option<(String, Option<String>)>) {
    (filter.tenant_id.clone(), filtered_resource(filter))
}

/// The resource a filter names, if it names one (`resource_type`, and `resource_id`).
pub fn filtered_resource(filter: &EventFilter) -> Option<(String, Option<String>)> {
    match (&filter.resource_type, &filter.resource_id) {
        (Some(kind), id) => Some((kind.clone(), id.clone())),
        (None, Some(id)) => Some(("unknown".into(), Some(id.clone()))),
        (None, None) => None,
    }
}
