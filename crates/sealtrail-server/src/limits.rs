//! Per-key request rate limits: a token bucket per API key, refilled at
//! `limits.key_requests_per_sec` up to `limits.key_burst`. A key out of tokens is answered
//! 429 with the seconds until its next token in `Retry-After`. Memory is one small entry
//! per key that has made a request (keys are few and created by admins).
//!
//! Several servers on one PostgreSQL database also share a count per key and calendar
//! second ([`SharedWindows`]): each adds what it let through every [`SHARE_EVERY`] and
//! reads back the total, and refuses a key for the rest of the second once the total
//! reached `max(rate, burst)`. A client spreading its requests over the servers gets no
//! more than one server would give it, give or take what arrives within one interval.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often a server adds its counts to the shared ones and reads the totals back.
pub const SHARE_EVERY: Duration = Duration::from_millis(50);

/// The buckets of every key.
pub struct KeyRateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
    shared: Option<Arc<SharedWindows>>,
}

/// Per-second request counts per key, shared through the database.
pub struct SharedWindows {
    counts: sealtrail_store::postgres::RequestCounts,
    /// Requests a key may make in one second across every server.
    cap: i64,
    state: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    /// The current second (Unix).
    second: i64,
    /// Requests let through in `second` and not yet added to the shared counts, by key
    /// (a key's entry is made once per second, not once per request).
    pending: HashMap<String, i64>,
    /// The same, of seconds that ended before the last exchange: (key, second, requests).
    ended: Vec<(String, i64, i64)>,
    /// Keys whose shared count reached the cap in `second`.
    over: HashSet<String>,
    /// Whether the last exchange with the database failed (logged once).
    failing: bool,
}

fn unix_second() -> i64 {
    sealtrail_core::time_format::now_micros().div_euclid(1_000_000)
}

impl SharedWindows {
    /// Takes one request of `key_id` in this second, unless the servers together have let
    /// through the cap already.
    fn take(&self, key_id: &str) -> bool {
        let second = unix_second();
        let mut state = self.state.lock().expect("window lock is never poisoned");
        if state.second != second {
            let ended = state.second;
            let counts: Vec<_> = state.pending.drain().map(|(k, n)| (k, ended, n)).collect();
            state.ended.extend(counts);
            state.second = second;
            state.over.clear();
        }
        if state.over.contains(key_id) {
            return false;
        }
        match state.pending.get_mut(key_id) {
            Some(count) => *count += 1,
            None => {
                state.pending.insert(key_id.to_owned(), 1);
            }
        }
        true
    }

    /// Adds the pending counts to the database's and learns which keys are over the cap;
    /// on failure the counts are dropped (the local buckets still apply).
    fn share(&self, clean: bool) {
        let mut counts = {
            let mut state = self.state.lock().expect("window lock is never poisoned");
            let second = state.second;
            let mut counts = std::mem::take(&mut state.ended);
            counts.extend(state.pending.drain().map(|(k, n)| (k, second, n)));
            counts
        };
        if counts.is_empty() && !clean {
            return;
        }
        // Every server locks the rows in one order: two upserts never deadlock.
        counts.sort_unstable();
        let totals = self.counts.add(&counts, clean, unix_second());
        let mut state = self.state.lock().expect("window lock is never poisoned");
        match totals {
            Ok(totals) => {
                state.failing = false;
                let second = state.second;
                for (key, at, requests) in totals {
                    if at == second && requests >= self.cap {
                        state.over.insert(key);
                    }
                }
            }
            Err(e) => {
                if !state.failing {
                    tracing::warn!(error = %e, "cannot share the request counts; each server limits keys alone meanwhile");
                }
                state.failing = true;
            }
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl KeyRateLimiter {
    /// `rate_per_sec` 0 means unlimited.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self {
            rate_per_sec: f64::from(rate_per_sec),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Also shares per-second counts with the other servers on the PostgreSQL database at
    /// `database_url` (a thread exchanges them every [`SHARE_EVERY`] while this lives).
    pub fn shared_through(mut self, database_url: &str) -> Self {
        if self.rate_per_sec == 0.0 {
            return self;
        }
        let shared = Arc::new(SharedWindows {
            counts: sealtrail_store::postgres::RequestCounts::new(database_url),
            cap: self.rate_per_sec.max(self.burst) as i64,
            state: Mutex::new(WindowState::default()),
        });
        let weak: Weak<SharedWindows> = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("sealtrail-rate-share".into())
            .spawn(move || {
                let mut round = 0u64;
                loop {
                    std::thread::sleep(SHARE_EVERY);
                    let Some(shared) = weak.upgrade() else { return };
                    round += 1;
                    shared.share(round.is_multiple_of(200));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start sharing request counts; each server limits keys alone");
        }
        self.shared = Some(shared);
        self
    }

    /// Takes one token for `key_id`, or says in how many whole seconds one is available.
    pub fn check(&self, key_id: &str) -> Result<(), u64> {
        if self.rate_per_sec == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .expect("rate limit lock is never poisoned");
        if !buckets.contains_key(key_id) {
            buckets.insert(
                key_id.to_owned(),
                Bucket {
                    tokens: self.burst,
                    at: now,
                },
            );
        }
        let bucket = buckets.get_mut(key_id).expect("inserted above");
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            if let Some(shared) = &self.shared
                && !shared.take(key_id)
            {
                // The servers together used this second's requests: until the next one.
                // The token goes too, so this server does not start the next second with
                // a full burst of its own on top of the others' (measured: it would let a
                // key through at about twice its rate over three servers).
                bucket.tokens -= 1.0;
                return Err(1);
            }
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate_per_sec;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_keys_are_separate() {
        let limiter = KeyRateLimiter::new(1, 3);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        assert_eq!(limiter.check("a"), Err(1));
        assert!(limiter.check("b").is_ok(), "another key has its own bucket");
        let unlimited = KeyRateLimiter::new(0, 0);
        for _ in 0..10_000 {
            assert!(unlimited.check("a").is_ok());
        }
    }
}
