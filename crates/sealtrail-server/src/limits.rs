//! Per-key request rate limits: a token bucket per API key, refilled at
//! `limits.key_requests_per_sec` up to `limits.key_burst`. A key out of tokens is answered
//! 429 with the seconds until its next token in `Retry-After`. Memory is one small entry
//! per key that has made a request (keys are few and created by admins).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The buckets of every key.
pub struct KeyRateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
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
        }
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
        let bucket = buckets.entry(key_id.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
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
