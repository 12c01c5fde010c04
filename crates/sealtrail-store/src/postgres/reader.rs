//! The read side of the PostgreSQL store: filtered pages, replay, stats, checkpoints and
//! proofs, each shaped so PostgreSQL answers it from one index range per partition, read
//! in order (the indexes end in `(occurred_at, seq)`, the sort key).

use std::sync::Mutex;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, Row};
use sealtrail_core::Severity;
use sealtrail_core::merkle::{self, Hash, SubtreeHashes};
use sealtrail_core::query::{
    ActionMatch, EventFilter, Order, PageCursor, PageRequest, StatsGroup, StatsRequest,
};
use uuid::Uuid;

use super::hash_column;
use crate::StoreError;
use crate::traits::{CheckpointRow, EventPage, LogReader, ReplayPage, StatsRow, StoredEvent};

/// Idle connections kept open for reuse.
const MAX_IDLE_CONNECTIONS: usize = 8;
/// Seqs a stream replay scans per call (see [`LogReader::events_after`]).
const REPLAY_SCAN_WINDOW: i64 = 50_000;

/// Read access to the log in PostgreSQL from any number of threads.
pub struct PgReader {
    url: String,
    idle: Mutex<Vec<Client>>,
}

impl PgReader {
    /// Connects to `url` and checks the schema.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let mut client = super::connect(url)?;
        super::schema::check(&mut client)?;
        Ok(Self {
            url: url.to_owned(),
            idle: Mutex::new(vec![client]),
        })
    }

    /// Runs `f` on a pooled connection. A pooled connection that turns out to be closed
    /// (PostgreSQL restarted, a failover, an idle timeout) is replaced and `f` retried once
    /// on a fresh one: every read is idempotent.
    fn with_client<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .idle
            .lock()
            .expect("reader pool lock is never poisoned")
            .pop();
        if let Some(mut client) = pooled.filter(|c| !c.is_closed()) {
            let result = f(&mut client);
            if !client.is_closed() {
                return self.keep(client, result);
            }
        }
        let mut client = super::connect(&self.url)?;
        let result = f(&mut client);
        self.keep(client, result)
    }

    /// Runs `sql` on the rows `scope` may see: with a scope, inside a read-only transaction
    /// as the role sealtrail_tenant_reader with `sealtrail.tenant` set, so PostgreSQL's
    /// row-level security hides every other tenant's rows even from SQL that forgets to
    /// filter. Queries and stats go through here.
    pub fn scoped_query(
        &self,
        scope: Option<&str>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.with_client(|client| match scope {
            None => Ok(client.query(sql, params)?),
            Some(tenant) => {
                let mut tx = client.build_transaction().read_only(true).start()?;
                tx.batch_execute("SET LOCAL ROLE sealtrail_tenant_reader")?;
                tx.execute(
                    "SELECT set_config('sealtrail.tenant', $1, true)",
                    &[&tenant],
                )?;
                let rows = tx.query(sql, params)?;
                tx.commit()?;
                Ok(rows)
            }
        })
    }

    /// Puts a connection back after a successful use (one that failed may be broken or
    /// inside an aborted transaction: it is dropped).
    fn keep<T>(&self, client: Client, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() && !client.is_closed() {
            let mut idle = self
                .idle
                .lock()
                .expect("reader pool lock is never poisoned");
            if idle.len() < MAX_IDLE_CONNECTIONS {
                idle.push(client);
            }
        }
        result
    }
}

impl Drop for PgReader {
    fn drop(&mut self) {
        // Closing a blocking client runs a small runtime of its own, which panics if the
        // reader happens to be dropped on an async worker: close them on a thread.
        let idle = std::mem::take(
            &mut *self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("sealtrail-pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// SQL conditions and their parameters, numbered `$1`, `$2`, … as they are added.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    /// Adds a clause whose placeholders are written `{}`, one per value.
    fn push(&mut self, clause: &str, values: Vec<Param>) {
        let mut sql = String::new();
        let mut pieces = clause.split("{}");
        sql.push_str(pieces.next().unwrap_or(""));
        for (piece, value) in pieces.zip(values) {
            self.params.push(value);
            sql.push_str(&format!("${}", self.params.len()));
            sql.push_str(piece);
        }
        self.clauses.push(sql);
    }

    /// A placeholder for one more parameter (not part of a clause).
    fn param(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "true".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// Every filter condition except severity.
    fn filter(&mut self, filter: &EventFilter) {
        if let Some(tenant) = &filter.tenant_id {
            self.push("tenant_id = {}", vec![Box::new(tenant.clone())]);
        }
        match &filter.action {
            Some(ActionMatch::Exact(action)) => {
                self.push("action = {}", vec![Box::new(action.clone())])
            }
            // Not an index range: a prefix can match most of a tenant, and walking the
            // time index skipping non-matches until the page is full beats sorting that.
            Some(ActionMatch::Prefix(prefix)) if !prefix.is_empty() => {
                self.push("starts_with(action, {})", vec![Box::new(prefix.clone())])
            }
            _ => {}
        }
        match &filter.exclude_action {
            Some(ActionMatch::Exact(action)) => {
                self.push("action <> {}", vec![Box::new(action.clone())])
            }
            Some(ActionMatch::Prefix(prefix)) if !prefix.is_empty() => self.push(
                "NOT starts_with(action, {})",
                vec![Box::new(prefix.clone())],
            ),
            // `*` alone leaves every action out.
            Some(ActionMatch::Prefix(_)) => self.push("false", vec![]),
            None => {}
        }
        if let Some(user) = &filter.user_id {
            self.push("user_id = {}", vec![Box::new(user.clone())]);
        }
        if let Some(kind) = &filter.resource_type {
            self.push("resource_type = {}", vec![Box::new(kind.clone())]);
        }
        if let Some(id) = &filter.resource_id {
            self.push("resource_id = {}", vec![Box::new(id.clone())]);
        }
        if let Some(from) = filter.from {
            self.push("occurred_at >= {}", vec![Box::new(from)]);
        }
        if let Some(to) = filter.to {
            self.push("occurred_at < {}", vec![Box::new(to)]);
        }
        if let Some(needle) = &filter.text {
            // lower() under the C collation folds ASCII letters only: the rule of
            // `contains_ascii_nocase`. One parameter, referred to three times.
            let p = self.param(Box::new(needle.clone()));
            self.clauses.push(format!(
                "(strpos(lower(action COLLATE \"C\"), {p}) > 0 \
                  OR strpos(lower(resource_type COLLATE \"C\"), {p}) > 0 \
                  OR strpos(lower(resource_id COLLATE \"C\"), {p}) > 0)"
            ));
        }
    }

    fn severities(&mut self, severities: &[Severity]) {
        match severities {
            [] => {}
            [one] => self.push("severity = {}", vec![Box::new(one.code() as i16)]),
            many => {
                let codes: Vec<i16> = many.iter().map(|s| s.code() as i16).collect();
                self.push("severity = ANY({})", vec![Box::new(codes)]);
            }
        }
    }

    fn visible_through(&mut self, last: Option<u64>) {
        if let Some(last) = last {
            self.push("seq <= {}", vec![Box::new(last as i64)]);
        }
    }

    /// Strictly after the cursor in the given order.
    fn after(&mut self, cursor: &PageCursor, order: Order) {
        let op = match order {
            Order::Desc => "<",
            Order::Asc => ">",
        };
        self.push(
            &format!("(occurred_at, seq) {op} ({{}}, {{}})"),
            vec![Box::new(cursor.occurred_at), Box::new(cursor.seq as i64)],
        );
    }
}

fn order_by(order: Order) -> &'static str {
    match order {
        Order::Desc => "ORDER BY occurred_at DESC, seq DESC",
        Order::Asc => "ORDER BY occurred_at ASC, seq ASC",
    }
}

const EVENT_SELECT: &str = "SELECT seq, tenant_id, occurred_at, leaf_hash, record FROM events";

fn stored_event(row: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: row.get::<_, i64>(0) as u64,
        tenant_id: row.get(1),
        occurred_at: row.get(2),
        leaf_hash: hash_column(row.get(3))?,
        record: row.get(4),
    })
}

/// The SQL and parameters of one page.
fn page_sql(request: &PageRequest) -> (String, Conditions) {
    let mut c = Conditions::default();
    // Events whose bodies retention removed are not in the hot store any more.
    c.push("record IS NOT NULL", vec![]);
    c.filter(&request.filter);
    if let Some(cursor) = &request.after {
        c.after(cursor, request.order);
    }
    c.visible_through(request.visible_through);
    // One row more than the page tells whether another page follows.
    let order = order_by(request.order);
    let severities = &request.filter.severities;
    let sql = if request.filter.tenant_id.is_some() && severities.len() > 1 {
        // One range of the (tenant, severity, time) index per severity, each cut to a
        // page, then merged: PostgreSQL would otherwise sort every matching row.
        let shared = c.sql();
        let limit = c.param(Box::new(request.limit as i64 + 1));
        let parts: Vec<String> = severities
            .iter()
            .map(|s| {
                format!(
                    "({EVENT_SELECT} WHERE {shared} AND severity = {} {order} LIMIT {limit})",
                    s.code()
                )
            })
            .collect();
        format!(
            "SELECT * FROM ({}) AS merged {order} LIMIT {limit}",
            parts.join(" UNION ALL ")
        )
    } else {
        c.severities(severities);
        let conditions = c.sql();
        let limit = c.param(Box::new(request.limit as i64 + 1));
        format!("{EVENT_SELECT} WHERE {conditions} {order} LIMIT {limit}")
    };
    (sql, c)
}

fn stats_sql(request: &StatsRequest) -> (String, Conditions) {
    let column = match request.group_by {
        StatsGroup::Severity => "severity::text",
        StatsGroup::Action => "action",
        StatsGroup::ResourceType => "resource_type",
        StatsGroup::UserId => "COALESCE(user_id, '')",
    };
    let bucket = match request.interval {
        Some(interval) => {
            let w = interval.micros();
            format!("occurred_at - (((occurred_at % {w}) + {w}) % {w})")
        }
        None => "NULL::bigint".to_owned(),
    };
    let mut c = Conditions::default();
    c.filter(&request.filter);
    c.severities(&request.filter.severities);
    c.visible_through(request.visible_through);
    let sql = format!(
        "SELECT {bucket} AS bucket, {column} AS key, count(*) FROM events WHERE {}
         GROUP BY 1, 2 ORDER BY 1, 2",
        c.sql()
    );
    (sql, c)
}

struct ClientSubtrees<'a, C: GenericClient>(&'a mut C);

impl<C: GenericClient> SubtreeHashes for ClientSubtrees<'_, C> {
    type Error = StoreError;
    fn subtree_hash(&mut self, level: u32, index: u64) -> Result<Hash, StoreError> {
        super::subtree_hash(self.0, level, index)
    }
}

impl PgReader {
    /// Runs `prove` in one read-only repeatable-read transaction, refusing a tree of more
    /// leaves than the log holds.
    fn prove_against(
        &self,
        tree_size: u64,
        prove: impl Fn(
            &mut ClientSubtrees<'_, postgres::Transaction<'_>>,
        ) -> Result<Vec<Hash>, merkle::ProofError<StoreError>>,
    ) -> Result<Vec<Hash>, StoreError> {
        self.with_client(|client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let size: i64 = tx
                .query_one("SELECT COALESCE(MAX(seq), 0) FROM event_ids", &[])?
                .get(0);
            if tree_size > size as u64 {
                return Err(StoreError::Invalid(format!(
                    "the log has {size} events; there is no tree of size {tree_size} yet"
                )));
            }
            let proof = prove(&mut ClientSubtrees(&mut tx)).map_err(proof_error)?;
            tx.commit()?;
            Ok(proof)
        })
    }
}

fn proof_error(e: merkle::ProofError<StoreError>) -> StoreError {
    match e {
        merkle::ProofError::OutOfRange(reason) => StoreError::Invalid(reason),
        merkle::ProofError::Source(e) => e,
    }
}

impl LogReader for PgReader {
    fn query(&self, request: &PageRequest) -> Result<EventPage, StoreError> {
        let (sql, c) = page_sql(request);
        let rows = self.scoped_query(request.scope.as_deref(), &sql, &c.refs())?;
        let mut events: Vec<StoredEvent> =
            rows.iter().map(stored_event).collect::<Result<_, _>>()?;
        let next = if events.len() > request.limit {
            events.truncate(request.limit);
            events.last().map(|e| PageCursor {
                occurred_at: e.occurred_at,
                seq: e.seq,
            })
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    fn events_after(
        &self,
        after: u64,
        through: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<ReplayPage, StoreError> {
        if through <= after {
            return Ok(ReplayPage {
                events: Vec::new(),
                scanned_through: after,
            });
        }
        let window_end = through.min(after.saturating_add(REPLAY_SCAN_WINDOW as u64));
        let mut c = Conditions::default();
        // Events whose bodies retention removed are skipped: they are in the archive.
        c.push(
            "seq > {} AND seq <= {} AND record IS NOT NULL",
            vec![Box::new(after as i64), Box::new(window_end as i64)],
        );
        c.filter(filter);
        c.severities(&filter.severities);
        let conditions = c.sql();
        let limit_param = c.param(Box::new(limit as i64));
        let sql = format!("{EVENT_SELECT} WHERE {conditions} ORDER BY seq LIMIT {limit_param}");
        self.with_client(|client| {
            let rows = client.query(&sql, &c.refs())?;
            let events: Vec<StoredEvent> =
                rows.iter().map(stored_event).collect::<Result<_, _>>()?;
            let scanned_through = if events.len() == limit {
                events.last().map_or(window_end, |e| e.seq)
            } else {
                window_end
            };
            Ok(ReplayPage {
                events,
                scanned_through,
            })
        })
    }

    fn get(&self, id: &Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.with_client(|client| {
            client
                .query_opt(
                    "SELECT e.seq, e.tenant_id, e.occurred_at, e.leaf_hash, e.record
                     FROM event_ids AS i
                     JOIN events AS e ON e.occurred_at = i.occurred_at AND e.seq = i.seq
                     WHERE i.id = $1 AND e.record IS NOT NULL",
                    &[id],
                )?
                .as_ref()
                .map(stored_event)
                .transpose()
        })
    }

    fn stats(&self, request: &StatsRequest) -> Result<Vec<StatsRow>, StoreError> {
        let (sql, c) = stats_sql(request);
        let rows = self.scoped_query(request.scope.as_deref(), &sql, &c.refs())?;
        Ok(rows
            .iter()
            .map(|row| {
                let key: String = row.get(1);
                let key = match request.group_by {
                    StatsGroup::Severity => key
                        .parse::<i64>()
                        .ok()
                        .and_then(Severity::from_code)
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "unknown".to_owned()),
                    _ => key,
                };
                StatsRow {
                    bucket: row.get(0),
                    key,
                    count: row.get::<_, i64>(2) as u64,
                }
            })
            .collect())
    }

    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        self.with_client(super::writer::latest_checkpoint)
    }

    fn key_rotations(&self) -> Result<Vec<String>, StoreError> {
        self.with_client(super::key_rotations)
    }

    fn inclusion_proof(&self, leaf_index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.with_client(|client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let proof =
                merkle::inclusion_proof(&mut ClientSubtrees(&mut tx), leaf_index, tree_size)
                    .map_err(proof_error)?;
            tx.commit()?;
            Ok(proof)
        })
    }

    fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, StoreError> {
        self.prove_against(new_size, |subtrees| {
            merkle::consistency_proof(subtrees, old_size, new_size)
        })
    }

    fn range_proof(
        &self,
        first_seq: u64,
        last_seq: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let Some(start) = first_seq.checked_sub(1) else {
            return Err(StoreError::Invalid("seqs start at 1".into()));
        };
        // Leaf index = seq - 1, so seqs first..=last are leaves [first - 1, last).
        self.prove_against(tree_size, |subtrees| {
            merkle::range_proof(subtrees, start, last_seq, tree_size)
        })
    }

    fn storage_bytes(&self) -> Result<u64, StoreError> {
        self.with_client(|client| {
            let bytes: i64 = client
                .query_one(
                    "SELECT (COALESCE((SELECT sum(pg_total_relation_size(relid))
                                       FROM pg_partition_tree('events')), 0)
                             + pg_total_relation_size('event_ids')
                             + pg_total_relation_size('merkle_nodes')
                             + pg_total_relation_size('checkpoints'))::bigint",
                    &[],
                )?
                .get(0);
            Ok(bytes as u64)
        })
    }
}
