//! One sink's delivery loop: a durable cursor on the log (DESIGN.md).
//!
//! It reads the events after its cursor, keeps those its routes match, sends them in
//! batches, and moves the cursor only once the receiver has dealt with every event before
//! it (accepted, or refused for good and dead-lettered). Failures are retried with
//! exponential backoff and full jitter, honouring `Retry-After`; after
//! `breaker_failures` failed attempts in a row the circuit opens and only one trial
//! request is sent per `breaker_cooldown_ms`. A request the receiver refuses is narrowed
//! down by halving until the refused event is alone, so one bad event is dead-lettered and
//! never blocks the others; the cursor is saved as the settled prefix grows. Each
//! sink runs on its own task with its own client, so a slow or dead receiver slows only
//! its own sink, never ingest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sealtrail_core::EventFilter;
use sealtrail_core::time_format::{format_micros, now_micros};
use sealtrail_store::follow::{LogConsumer, ReadPlan, Shutdown, Step, StepError, read_after};
use sealtrail_store::{DurableSize, LogReader, ReplayPage};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::SinkConfig;
use crate::delivery::Delivery;
use crate::destinations::{BuiltDestination, Digest};
use crate::event::SinkEvent;
use crate::route::Route;
use crate::store::{Fence, HeldEvent, SinkStore, StoreFailure};

/// Most events read from the log at once.
const MAX_PAGE_EVENTS: usize = 10_000;
/// Dead letters replayed per round.
const REPLAY_BATCH: usize = 100;
/// How often an idle sink looks at the log even without a signal.
pub(crate) const IDLE_POLL: Duration = Duration::from_secs(1);
/// A digest that was sent but could not be recorded is sent again after this long.
const DIGEST_RETRY_AFTER_STORE_FAILURE: Duration = Duration::from_secs(60);

/// What `GET /v1/sinks` shows of a sink.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SinkStatus {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Routes that feed it.
    pub routes: Vec<String>,
    /// Every event up to this seq has been dealt with.
    pub cursor: u64,
    /// Log events after the cursor.
    pub lag_events: u64,
    /// Age of the oldest event not yet dealt with (0 when caught up).
    pub lag_seconds: f64,
    /// Events the receiver accepted since start.
    pub delivered_events: u64,
    /// When the receiver last accepted a request, RFC 3339.
    pub last_success_at: Option<String>,
    /// The last failure, RFC 3339 time and message.
    pub last_error: Option<LastError>,
    /// Failed attempts in a row (0 when the last one succeeded).
    pub consecutive_failures: u32,
    /// When the next attempt is due, while waiting to retry.
    pub next_attempt_at: Option<String>,
    /// `closed` (sending), `open` (waiting after repeated failures) or `half_open`
    /// (sending one trial request).
    pub circuit: String,
    /// Events in the dead-letter list.
    pub dead_letters: u64,
    /// On PostgreSQL: `held` when this server runs the sink, `standby` while another one
    /// does (absent on the embedded store, where this server alone runs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// On PostgreSQL: the server that holds the sink's lease (host-pid-random).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_holder: Option<String>,
    /// When the oldest unsent event was received, UTC microseconds (for lag_seconds).
    #[serde(skip)]
    #[schema(ignore)]
    pub oldest_pending_micros: Option<i64>,
}

/// A failure as shown in the status.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LastError {
    /// RFC 3339.
    pub at: String,
    /// What happened.
    pub message: String,
}

/// Why a delivery loop ended early.
pub struct Stopped;

/// What a sink does with an event.
enum Admission {
    /// No route sends it here.
    Skip,
    /// Send it.
    Send,
    /// Hold it for this route's digest.
    Hold(String),
}

pub(crate) struct Runner {
    pub config: SinkConfig,
    pub destination: Box<dyn BuiltDestination>,
    pub routes: Vec<Route>,
    pub client: reqwest::Client,
    pub store: Arc<SinkStore>,
    pub reader: Arc<dyn LogReader>,
    pub durable: DurableSize,
    pub status: Arc<Mutex<SinkStatus>>,
    pub wake: Arc<Notify>,
    /// The sinks' shutdown: every wait and request stops on it.
    pub stop: Shutdown,
    /// Picks the retry delays (full jitter).
    pub jitter: rand::rngs::SmallRng,
    /// Per rate-limited route: when its current window began (at its first alert) and
    /// the alerts sent in it.
    pub windows: HashMap<String, (Instant, u32)>,
    /// Per route with held events: when its digest is due (absent after a restart: due).
    pub digest_due: HashMap<String, Instant>,
    /// Every event up to here is dealt with (and saved so).
    pub cursor: u64,
    /// Events held for digests that the saved cursor has not passed yet.
    pub held: Vec<HeldEvent>,
    /// Shows events with their sealed fields opened (receivers get what readers get).
    pub opener: sealtrail_crypto::Opener,
    /// On PostgreSQL, the lease this server runs the sink under (every write checks it).
    pub fence: Option<Fence>,
}

/// A refused event on its way to the dead letters: (seq, id, the receiver's reason).
type Refusal = (u64, String, String);

/// A sink is a consumer of the log like any other; the [`LogFollower`] drives it.
impl LogConsumer for Runner {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn start(&mut self, _through: u64) -> Result<u64, StepError> {
        self.start_cursor()
            .await
            .map_err(|Stopped| StepError::Stopped)?;
        tracing::info!(sink = %self.config.name, cursor = self.cursor, "sink started");
        Ok(self.cursor)
    }

    fn plan(&self) -> ReadPlan {
        // The sink reads itself: a failed read is shown in its status.
        ReadPlan::Range
    }

    async fn tend(&mut self) -> Result<(), StepError> {
        self.replay_dead_letters()
            .await
            .map_err(|Stopped| StepError::Stopped)?;
        self.send_due_digests()
            .await
            .map_err(|Stopped| StepError::Stopped)
    }

    fn waiting(&mut self, cursor: u64, through: u64) {
        self.update(|s| {
            s.lag_events = through.saturating_sub(cursor);
            s.oldest_pending_micros = None;
        });
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Some(self.wake.clone())
    }

    async fn step(&mut self, step: Step) -> Result<u64, StepError> {
        let (cursor, through) = (self.cursor, step.through);
        debug_assert_eq!(cursor, step.cursor, "the sink's cursor is the follower's");
        self.update(|s| s.lag_events = through.saturating_sub(cursor));
        let limit = self.config.batch_events().clamp(1000, MAX_PAGE_EVENTS);
        let page = read_after(
            self.reader.clone(),
            cursor,
            through,
            EventFilter::default(),
            limit,
            &self.stop,
        )
        .await
        .inspect_err(|e| {
            if !matches!(e, StepError::Stopped) {
                self.fail(format!("cannot read the log: {e}"));
            }
        })?;
        self.handle(page)
            .await
            .map_err(|Stopped| StepError::Stopped)?;
        Ok(self.cursor)
    }
}

impl Runner {
    /// Sends what the page holds for this sink (holding what a rate limit keeps for a
    /// digest), then saves the cursor past the page.
    async fn handle(&mut self, page: ReplayPage) -> Result<(), Stopped> {
        let opener = self.opener.clone();
        let parse = |stored: &sealtrail_store::StoredEvent| SinkEvent::from_stored(stored, &opener);
        if let Some(first) = page.events.first().and_then(parse) {
            let oldest = first.received_at_micros();
            self.update(|s| s.oldest_pending_micros = Some(oldest));
        }
        let mut matched = Vec::new();
        for event in page.events.iter().filter_map(parse) {
            match self.admit(&event) {
                Admission::Skip => {}
                Admission::Send => matched.push(event),
                Admission::Hold(route) => self.held.push(HeldEvent {
                    route,
                    seq: event.seq,
                    event_id: event.id().to_owned(),
                    // Kept in sinks.sqlite until the digest goes: no decrypted value
                    // may be written there.
                    headline: event.redact(&crate::destinations::headline(&event)),
                }),
            }
        }
        for chunk in matched.chunks(self.config.batch_events()) {
            self.deliver(chunk).await?;
        }
        let scanned = page.scanned_through.max(self.cursor);
        self.commit(scanned, Vec::new()).await
    }

    /// Loads the saved cursor; a sink without one starts at the oldest event or, if it is
    /// told to (`start = "latest"`, the default for alerting sinks), at the log's end.
    async fn start_cursor(&mut self) -> Result<(), Stopped> {
        let name = self.config.name.clone();
        // A new term under a lease: what another holder did meanwhile is in the store.
        self.held.clear();
        self.windows.clear();
        self.digest_due.clear();
        loop {
            let stored = self
                .on_store({
                    let name = name.clone();
                    move |s| s.stored_cursor(&name)
                })
                .await;
            match stored {
                Ok(Some(cursor)) => {
                    self.cursor = cursor;
                    break;
                }
                Ok(None) if self.config.starts_at_latest() => {
                    let latest = self.durable.get();
                    self.commit(latest, Vec::new()).await?;
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail(format!("cannot read the cursor: {e}"));
                    self.pause(Duration::from_secs(1)).await?;
                }
            }
        }
        let cursor = self.cursor;
        self.update(|s| s.cursor = cursor);
        Ok(())
    }

    /// Saves the cursor at `to` with `dead` (refused events before it) and the held events
    /// it passes, in one transaction; retries until the store takes it (or the sink
    /// stops). A cursor never moves back.
    async fn commit(&mut self, to: u64, dead: Vec<Refusal>) -> Result<(), Stopped> {
        let passed = self.held.partition_point(|h| h.seq <= to);
        if to <= self.cursor && dead.is_empty() && passed == 0 {
            return Ok(());
        }
        let held: Vec<HeldEvent> = self.held[..passed].to_vec();
        loop {
            let saved = self
                .on_store({
                    let (name, dead, held, fence) = (
                        self.config.name.clone(),
                        dead.clone(),
                        held.clone(),
                        self.fence.clone(),
                    );
                    move |s| s.advance(&name, to, &dead, &held, fence.as_ref())
                })
                .await;
            let Err(e) = saved else { break };
            if matches!(e, StoreFailure::LeaseLost) {
                return Err(self.lost_lease());
            }
            tracing::error!(sink = %self.config.name, error = %e, "cannot save the sink's cursor; retrying");
            self.fail(e.to_string());
            self.pause(Duration::from_secs(1)).await?;
        }
        self.held.drain(..passed);
        self.cursor = to.max(self.cursor);
        let (cursor, dead_count, through) = (self.cursor, dead.len() as u64, self.durable.get());
        self.update(|s| {
            s.cursor = cursor;
            s.lag_events = through.saturating_sub(cursor);
            s.dead_letters += dead_count;
        });
        Ok(())
    }

    /// Whether an event goes to this sink now, is held for a digest (every route that
    /// matches it is rate-limited and out of alerts for its window), or is not for it.
    fn admit(&mut self, event: &SinkEvent) -> Admission {
        let matching: Vec<&Route> = self.routes.iter().filter(|r| r.matches(event)).collect();
        if matching.is_empty() {
            return Admission::Skip;
        }
        if !self.config.kind.is_alerting() || matching.iter().any(|r| r.rate_limit.is_none()) {
            return Admission::Send;
        }
        let now = Instant::now();
        for route in &matching {
            let limit = route.rate_limit.expect("only rate-limited routes are left");
            let length = Duration::from_secs(limit.per_secs);
            let entry = self.windows.entry(route.label.clone()).or_insert((now, 0));
            if now >= entry.0 + length {
                *entry = (now, 0);
            }
            if entry.1 < limit.max_events {
                entry.1 += 1;
                return Admission::Send;
            }
        }
        let route = matching[0];
        let limit = route.rate_limit.expect("only rate-limited routes are left");
        let started = self.windows.get(&route.label).map_or(now, |w| w.0);
        let due = started + Duration::from_secs(limit.per_secs);
        self.digest_due.entry(route.label.clone()).or_insert(due);
        Admission::Hold(route.label.clone())
    }

    /// Sends the digest of every route whose window has ended (and, after a restart, of
    /// every route with held events). A refused digest turns its events into dead letters.
    async fn send_due_digests(&mut self) -> Result<(), Stopped> {
        let name = self.config.name.clone();
        let held = match self
            .on_store({
                let name = name.clone();
                move |s| s.held(&name)
            })
            .await
        {
            Ok(h) => h,
            Err(e) => {
                self.fail(e.to_string());
                return Ok(());
            }
        };
        let mut by_route: Vec<(String, Vec<HeldEvent>)> = Vec::new();
        for h in held {
            match by_route.iter_mut().find(|(r, _)| *r == h.route) {
                Some((_, list)) => list.push(h),
                None => by_route.push((h.route.clone(), vec![h])),
            }
        }
        for (route, events) in by_route {
            if self
                .digest_due
                .get(&route)
                .is_some_and(|due| Instant::now() < *due)
            {
                continue;
            }
            loop {
                self.wait_for_circuit().await?;
                let outcome = tokio::select! {
                    outcome = self.destination.send_digest(&self.client, Digest { sink: &name, route: &route, held: &events }) => outcome,
                    () = self.stop.cancelled() => return Err(Stopped),
                };
                let dead: Vec<(u64, String, String)> = match outcome {
                    Delivery::Accepted | Delivery::Partial { .. } => Vec::new(),
                    Delivery::Retry {
                        reason,
                        retry_after,
                    } => {
                        self.failed(reason, retry_after).await?;
                        continue;
                    }
                    Delivery::Split { reason } | Delivery::Refused { reason } => events
                        .iter()
                        .map(|h| {
                            (
                                h.seq,
                                h.event_id.clone(),
                                format!("digest refused: {reason}"),
                            )
                        })
                        .collect(),
                };
                if dead.is_empty() {
                    self.delivered(events.len(), true);
                }
                let seqs: Vec<u64> = events.iter().map(|h| h.seq).collect();
                let done = self
                    .on_store({
                        let (name, dead, fence) = (name.clone(), dead.clone(), self.fence.clone());
                        move |s| s.digest_done(&name, &seqs, &dead, fence.as_ref())
                    })
                    .await;
                if let Err(StoreFailure::LeaseLost) = done {
                    return Err(self.lost_lease());
                }
                if let Err(e) = done {
                    // Sent, but not recorded: it goes out again (at least once), though
                    // not before another window has passed.
                    self.fail(e.to_string());
                    self.digest_due.insert(
                        route.clone(),
                        Instant::now() + DIGEST_RETRY_AFTER_STORE_FAILURE,
                    );
                } else {
                    let n = dead.len() as u64;
                    self.update(|s| s.dead_letters += n);
                    self.digest_due.remove(&route);
                }
                break;
            }
        }
        Ok(())
    }

    /// Sends a chunk of events until each is accepted or refused for good, saving the
    /// cursor as the settled prefix grows (so a crash resends at most what was in flight).
    async fn deliver(&mut self, events: &[SinkEvent]) -> Result<(), Stopped> {
        let last = events.last().map_or(self.cursor, |e| e.seq);
        let mut dead = Vec::new();
        let mut pending: Vec<&SinkEvent> = events.iter().collect();
        let mut window = pending.len();
        while !pending.is_empty() {
            window = self
                .attempt(&mut pending, window, events.len(), &mut dead)
                .await?;
            // Everything before the first unsettled event is settled.
            let settled = pending.first().map_or(last, |e| e.seq - 1);
            if settled > self.cursor {
                let (now, later): (Vec<Refusal>, Vec<Refusal>) =
                    dead.into_iter().partition(|d| d.0 <= settled);
                dead = later;
                self.commit(settled, now).await?;
            }
        }
        self.commit(last, dead).await
    }

    /// Sends the first `window` pending events once and sorts out the answer: accepted
    /// ones leave `pending`, refused ones move to `dead`, retried ones stay (after a
    /// backoff). Returns the next window: halved to narrow down a refusal or a request too
    /// large, doubled again (up to `full`) after a success.
    async fn attempt(
        &mut self,
        pending: &mut Vec<&SinkEvent>,
        window: usize,
        full: usize,
        dead: &mut Vec<Refusal>,
    ) -> Result<usize, Stopped> {
        self.wait_for_circuit().await?;
        let sent: Vec<&SinkEvent> = pending[..window.min(pending.len())].to_vec();
        let outcome = tokio::select! {
            outcome = self.destination.send(&self.client, &sent) => outcome.redacted(&sent),
            () = self.stop.cancelled() => return Err(Stopped),
        };
        match outcome {
            Delivery::Accepted => {
                self.delivered(sent.len(), true);
                pending.drain(..sent.len());
                Ok((window * 2).min(full))
            }
            Delivery::Partial {
                retry,
                refused,
                reason,
            } => {
                self.delivered(sent.len() - retry.len() - refused.len(), retry.is_empty());
                for (i, why) in &refused {
                    let e = sent[*i];
                    tracing::warn!(sink = %self.config.name, seq = e.seq, reason = %why, "event refused; dead-lettered");
                    dead.push((e.seq, e.id().to_owned(), why.clone()));
                }
                let again: Vec<&SinkEvent> = retry.iter().map(|&i| sent[i]).collect();
                let again_empty = again.is_empty();
                pending.splice(..sent.len(), again);
                if !again_empty {
                    self.failed(reason, None).await?;
                }
                Ok(window)
            }
            Delivery::Retry {
                reason,
                retry_after,
            } => {
                self.failed(reason, retry_after).await?;
                Ok(window)
            }
            Delivery::Split { reason } | Delivery::Refused { reason } if sent.len() > 1 => {
                tracing::info!(sink = %self.config.name, reason = %reason, "request refused; narrowing it down");
                Ok(sent.len() / 2)
            }
            Delivery::Split { reason } | Delivery::Refused { reason } => {
                let e = sent[0];
                tracing::warn!(sink = %self.config.name, seq = e.seq, reason = %reason, "event refused; dead-lettered");
                dead.push((e.seq, e.id().to_owned(), reason));
                pending.remove(0);
                Ok(full)
            }
        }
    }

    /// Sends one event for a replay: `None` if accepted, the refusal otherwise.
    async fn deliver_one(&mut self, event: &SinkEvent) -> Result<Option<String>, Stopped> {
        let mut pending = vec![event];
        let mut dead = Vec::new();
        while !pending.is_empty() {
            self.attempt(&mut pending, 1, 1, &mut dead).await?;
        }
        Ok(dead.pop().map(|(_, _, why)| why))
    }

    /// Sends the dead letters someone asked to replay.
    async fn replay_dead_letters(&mut self) -> Result<(), Stopped> {
        let name = self.config.name.clone();
        let requested = match self
            .on_store({
                let name = name.clone();
                move |s| s.replays_requested(&name, REPLAY_BATCH)
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.fail(e.to_string());
                return Ok(());
            }
        };
        for letter in requested {
            let reader = self.reader.clone();
            let seq = letter.seq;
            let stored = tokio::task::spawn_blocking(move || {
                reader.events_after(seq - 1, seq, &EventFilter::default(), 1)
            })
            .await;
            let event = match stored {
                Ok(Ok(page)) => page
                    .events
                    .first()
                    .and_then(|stored| SinkEvent::from_stored(stored, &self.opener)),
                _ => None,
            };
            let Some(event) = event else {
                let refused = self
                    .on_store({
                        let (name, fence) = (name.clone(), self.fence.clone());
                        move |s| {
                            s.replay_refused(
                                &name,
                                seq,
                                "the event could not be read from the log",
                                fence.as_ref(),
                            )
                        }
                    })
                    .await;
                if let Err(StoreFailure::LeaseLost) = refused {
                    return Err(self.lost_lease());
                }
                continue;
            };
            let refusal = self.deliver_one(&event).await?;
            let result = self
                .on_store({
                    let (name, fence, why) = (name.clone(), self.fence.clone(), refusal.clone());
                    move |s| match why {
                        None => s.replay_delivered(&name, seq, fence.as_ref()),
                        Some(why) => s.replay_refused(&name, seq, &why, fence.as_ref()),
                    }
                })
                .await;
            if let Err(StoreFailure::LeaseLost) = result {
                return Err(self.lost_lease());
            }
            if let Err(e) = result {
                self.fail(e.to_string());
            } else if refusal.is_none() {
                self.update(|s| s.dead_letters = s.dead_letters.saturating_sub(1));
            }
        }
        Ok(())
    }

    /// The receiver accepted `events`; `all` when nothing of the request is to be
    /// retried, which closes the circuit and ends the backoff.
    fn delivered(&self, events: usize, all: bool) {
        let now = format_micros(now_micros());
        self.update(|s| {
            s.delivered_events += events as u64;
            s.last_success_at = Some(now);
            if all {
                s.consecutive_failures = 0;
                s.next_attempt_at = None;
                s.circuit = "closed".into();
            }
        });
    }

    /// Records a failed attempt and waits before the next: backoff with full jitter, at
    /// least `Retry-After`, or the breaker's cooldown once it opens.
    async fn failed(
        &mut self,
        reason: String,
        retry_after: Option<Duration>,
    ) -> Result<(), Stopped> {
        tracing::warn!(sink = %self.config.name, reason = %reason, "delivery failed; will retry");
        self.fail(reason);
        let failures = self.status_of(|s| s.consecutive_failures);
        let cap = self.config.retry_max_delay_ms;
        let exp = self
            .config
            .retry_initial_delay_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(30));
        let mut wait = Duration::from_millis(self.jitter.random_range(0..=exp.min(cap)));
        if failures >= self.config.breaker_failures {
            self.update(|s| s.circuit = "open".into());
            wait = wait.max(Duration::from_millis(self.config.breaker_cooldown_ms));
        }
        if let Some(after) = retry_after {
            wait = wait.max(after);
        }
        let due = now_micros() + wait.as_micros() as i64;
        self.update(|s| s.next_attempt_at = Some(format_micros(due)));
        self.pause(wait).await
    }

    /// After an open circuit's cooldown, the next request is a trial.
    async fn wait_for_circuit(&mut self) -> Result<(), Stopped> {
        if self.stop.is_cancelled() {
            return Err(Stopped);
        }
        self.update(|s| {
            if s.circuit == "open" {
                s.circuit = "half_open".into();
            }
            s.next_attempt_at = None;
        });
        Ok(())
    }

    async fn pause(&mut self, wait: Duration) -> Result<(), Stopped> {
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.stop.cancelled() => Err(Stopped),
        }
    }

    /// Runs a store call on a blocking thread: a database round trip must not hold up an
    /// async worker (of which a 2-core machine has two).
    async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SinkStore) -> Result<T, StoreFailure> + Send + 'static,
    ) -> Result<T, StoreFailure> {
        crate::lease::on_store(&self.store, f).await
    }

    /// Another server took the sink over (this one stalled past its lease): stop at once;
    /// what was sent since the last saved cursor goes out again from there (at least once).
    fn lost_lease(&self) -> Stopped {
        tracing::warn!(sink = %self.config.name, "lost the sink's lease; another server runs it");
        self.stop.cancel();
        Stopped
    }

    pub(crate) fn fail(&self, message: String) {
        let at = format_micros(now_micros());
        self.update(|s| {
            s.consecutive_failures += 1;
            s.last_error = Some(LastError { at, message });
        });
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut SinkStatus)) {
        change(&mut self.status.lock().expect("status lock is never poisoned"));
    }

    fn status_of<T>(&self, read: impl FnOnce(&SinkStatus) -> T) -> T {
        read(&self.status.lock().expect("status lock is never poisoned"))
    }
}
