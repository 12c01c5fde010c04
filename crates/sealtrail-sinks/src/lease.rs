//! On PostgreSQL every server may have the same sinks configured, and each sink runs on
//! exactly one of them at a time: the holder of its lease (see [`crate::store`]). The
//! others stand by, asking for the lease every poll; when the holder stops cleanly it
//! gives the lease up at once, and when it dies the lease expires and another server
//! takes over from the saved cursor (events sent since then go out again: at least once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealtrail_store::DurableSize;
use sealtrail_store::follow::{FollowTiming, LogFollower, Shutdown};

use crate::runner::Runner;
use crate::store::{Fence, LeaseAnswer, SinkStore};

/// Who this server is to the others, and how long its leases last.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The holder's name, unique to this process (host, pid and a random part by default).
    pub holder: String,
    /// How long a lease lasts without renewal: the longest a dead holder keeps a sink
    /// from being taken over. Renewed every third of it.
    pub ttl: Duration,
}

impl LeaseSettings {
    /// A name for this process: `host-pid-random`.
    pub fn with_ttl(ttl: Duration) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sealtrail".into());
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            holder: format!("{host}-{}-{}", std::process::id(), &random[..8]),
            ttl,
        }
    }
}

/// Runs `runner` whenever this server holds the sink's lease, until `stop`.
pub(crate) async fn run_leased(
    mut runner: Runner,
    durable: DurableSize,
    stop: Shutdown,
    timing: FollowTiming,
    lease: LeaseSettings,
) {
    let name = runner.config.name.clone();
    let store = runner.store.clone();
    let mut standing_by_for: Option<String> = None;
    while !stop.is_cancelled() {
        // The lease runs from the database's grant, which comes after this.
        let asked_at = Instant::now();
        let answer = on_store(&store, {
            let (name, holder, ttl) = (name.clone(), lease.holder.clone(), lease.ttl);
            move |s| s.acquire_lease(&name, &holder, ttl)
        })
        .await;
        match answer {
            Ok(LeaseAnswer::Held(fence)) => {
                tracing::info!(sink = %name, holder = %fence.holder, epoch = fence.epoch, "holding the sink's lease");
                standing_by_for = None;
                runner.update(|s| {
                    s.lease = Some("held".into());
                    s.lease_holder = Some(fence.holder.clone());
                });
                let term = stop.child_token();
                runner.stop = term.clone();
                runner.fence = Some(fence.clone());
                let keeper = tokio::spawn(keep(
                    store.clone(),
                    name.clone(),
                    fence.clone(),
                    lease.ttl,
                    term.clone(),
                    asked_at,
                ));
                LogFollower::without_reader(durable.clone(), term.clone())
                    .with_timing(timing)
                    .run(&mut runner)
                    .await;
                term.cancel();
                runner.fence = None;
                if keeper.await.unwrap_or(false) {
                    // Stopped cleanly while holding it: hand over now, not at expiry.
                    let sink = name.clone();
                    let released = on_store(&store, move |s| s.release_lease(&sink, &fence)).await;
                    if let Err(e) = released {
                        tracing::warn!(sink = %name, error = %e, "cannot give the sink's lease up; it expires");
                    }
                }
                runner.update(|s| {
                    s.lease = Some("standby".into());
                    s.lease_holder = None;
                });
            }
            Ok(LeaseAnswer::HeldBy(other)) => {
                if standing_by_for.as_deref() != Some(other.as_str()) {
                    tracing::info!(sink = %name, holder = %other, "another server runs the sink; standing by");
                    standing_by_for = Some(other.clone());
                }
                let shown = on_store(&store, {
                    let name = name.clone();
                    move |s| Ok((s.cursor(&name)?, s.dead_letter_count(&name)?))
                })
                .await;
                runner.update(|s| {
                    s.lease = Some("standby".into());
                    s.lease_holder = Some(other);
                    if let Ok((cursor, dead)) = shown {
                        s.cursor = cursor;
                        s.dead_letters = dead;
                    }
                    s.circuit = "closed".into();
                    s.consecutive_failures = 0;
                    s.next_attempt_at = None;
                });
            }
            Err(e) => {
                runner.fail(format!("cannot ask for the sink's lease: {e}"));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(timing.poll) => {}
            () = stop.cancelled() => break,
        }
    }
}

/// Renews the lease every third of `ttl` until `term` ends; ends `term` itself when the
/// lease is lost, or before it could expire unrenewed: a renewal that does not answer
/// (the database is away or stalled) stops the sink half a period before the lease would
/// run out, so it never sends while another server may hold the lease. Returns whether
/// the lease was still held when the term ended.
async fn keep(
    store: Arc<SinkStore>,
    name: String,
    fence: Fence,
    ttl: Duration,
    term: Shutdown,
    granted_at: Instant,
) -> bool {
    let every = ttl / 3;
    let mut renewed_at = granted_at;
    loop {
        let deadline = renewed_at + ttl.saturating_sub(every / 2);
        let next = (Instant::now() + every).min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            () = term.cancelled() => return true,
        }
        let asked = Instant::now();
        let renewal = on_store(&store, {
            let (name, fence) = (name.clone(), fence.clone());
            move |s| s.renew_lease(&name, &fence, ttl)
        });
        let renewed = tokio::select! {
            renewed = renewal => renewed,
            () = tokio::time::sleep_until(deadline.into()) => {
                tracing::warn!(sink = %name, "cannot renew the sink's lease in time; stopping it here");
                term.cancel();
                return false;
            }
            () = term.cancelled() => return true,
        };
        match renewed {
            Ok(true) => renewed_at = asked,
            Ok(false) => {
                tracing::warn!(sink = %name, "the sink's lease expired; another server may run it");
                term.cancel();
                return false;
            }
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, "cannot renew the sink's lease; trying again");
            }
        }
    }
}

/// Runs a store call on a blocking thread (a PostgreSQL round trip must not hold up an
/// async worker).
pub(crate) async fn on_store<T: Send + 'static>(
    store: &Arc<SinkStore>,
    f: impl FnOnce(&SinkStore) -> Result<T, crate::store::StoreFailure> + Send + 'static,
) -> Result<T, crate::store::StoreFailure> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}
