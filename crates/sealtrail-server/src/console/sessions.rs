//! Console sign-ins: a random token in an HttpOnly, SameSite=Strict cookie stands for the
//! API key it was made with, for a bounded time.
//!
//! The server keeps the key (in memory only) rather than the grant it gave, and
//! authenticates it again on every request, so revoking or expiring the key ends its
//! sessions at once, and a key's scopes and tenant are never copied into a second place
//! that could drift. Tokens are kept by their SHA-256, never as given. Sessions live in
//! this process: a restart, or another server behind the same address, asks to sign in
//! again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The cookie's name over plain HTTP.
pub const COOKIE: &str = "sealtrail_session";
/// Its name when the cookie is `Secure`: the `__Host-` prefix makes the browser refuse a
/// cookie of that name set by a sibling subdomain or for a narrower path.
pub const SECURE_COOKIE: &str = "__Host-sealtrail_session";
/// Sessions one key may hold at once; signing in beyond it ends that key's oldest, so one
/// key cannot push everyone else's sessions out of the table.
pub const MAX_SESSIONS_PER_KEY: usize = 32;

/// One sign-in.
struct Session {
    api_key: String,
    key_id: String,
    created: Instant,
    expires: Instant,
    /// The expiry as UTC microseconds, for the answer.
    expires_at: i64,
}

/// A session just made: the token for the cookie and when it ends.
pub struct NewSession {
    /// The cookie's value.
    pub token: String,
    /// UTC microseconds.
    pub expires_at: i64,
}

/// The sessions of this server.
pub struct Sessions {
    ttl: Duration,
    max: usize,
    secure: bool,
    by_token_hash: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Sessions lasting `ttl`, at most `max` at once, in a `Secure` cookie when `secure`.
    pub fn new(ttl: Duration, max: usize, secure: bool) -> Self {
        Self {
            ttl,
            max,
            secure,
            by_token_hash: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the cookie is `Secure` (HTTPS only).
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure { SECURE_COOKIE } else { COOKIE }
    }

    /// The session token in a request's `Cookie` headers, if any.
    pub fn token_in<'h>(&self, headers: &'h axum::http::HeaderMap) -> Option<&'h str> {
        token_in(headers, self.cookie_name())
    }

    /// A new session for `api_key` (already authenticated by the caller, its id `key_id`).
    /// At a key's bound its oldest session ends; at the table's, expired sessions go first,
    /// then the oldest.
    pub fn start(&self, api_key: &str, key_id: &str) -> NewSession {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).expect("the operating system's random source works");
        let token = URL_SAFE_NO_PAD.encode(random);
        let now = Instant::now();
        let expires_at = sealtrail_core::time_format::now_micros()
            .saturating_add(i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX));
        let mut sessions = self.lock();
        let own: Vec<([u8; 32], Instant)> = sessions
            .iter()
            .filter(|(_, s)| s.key_id == key_id)
            .map(|(hash, s)| (*hash, s.created))
            .collect();
        if own.len() >= MAX_SESSIONS_PER_KEY
            && let Some((oldest, _)) = own.iter().min_by_key(|(_, created)| *created)
        {
            sessions.remove(oldest);
        }
        if sessions.len() >= self.max {
            sessions.retain(|_, s| s.expires > now);
        }
        while sessions.len() >= self.max {
            let oldest = *sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(hash, _)| hash)
                .expect("a full table is not empty");
            sessions.remove(&oldest);
        }
        sessions.insert(
            token_hash(&token),
            Session {
                api_key: api_key.to_owned(),
                key_id: key_id.to_owned(),
                created: now,
                expires: now + self.ttl,
                expires_at,
            },
        );
        NewSession { token, expires_at }
    }

    /// The API key behind a live session, with the session's expiry (UTC microseconds).
    pub fn key(&self, token: &str) -> Option<(String, i64)> {
        let hash = token_hash(token);
        let mut sessions = self.lock();
        match sessions.get(&hash) {
            Some(s) if s.expires > Instant::now() => Some((s.api_key.clone(), s.expires_at)),
            Some(_) => {
                sessions.remove(&hash);
                None
            }
            None => None,
        }
    }

    /// Ends a session (signing out); whether there was one.
    pub fn end(&self, token: &str) -> bool {
        self.lock().remove(&token_hash(token)).is_some()
    }

    /// Sessions held (live or expired and not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_token_hash
            .lock()
            .expect("the session table lock is never poisoned")
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The value of the cookie `name` in a request's `Cookie` headers, if any.
fn token_in<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (pair_name, value) = pair.trim().split_once('=')?;
            (pair_name == name && !value.is_empty()).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gives_its_key_until_it_ends_or_expires() {
        let sessions = Sessions::new(Duration::from_millis(50), 10, false);
        let s = sessions.start("stk_one", "one");
        assert_eq!(sessions.key(&s.token).unwrap().0, "stk_one");
        assert!(sessions.key("not-a-token").is_none());
        assert!(sessions.end(&s.token));
        assert!(sessions.key(&s.token).is_none());
        let s = sessions.start("stk_two", "two");
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.key(&s.token).is_none(), "expired");
        assert!(sessions.is_empty(), "an expired session is swept when seen");
    }

    #[test]
    fn the_bound_ends_the_oldest_session() {
        let sessions = Sessions::new(Duration::from_secs(60), 2, false);
        let first = sessions.start("stk_a", "a");
        let second = sessions.start("stk_b", "b");
        let third = sessions.start("stk_c", "c");
        assert_eq!(sessions.len(), 2);
        assert!(sessions.key(&first.token).is_none());
        assert!(sessions.key(&second.token).is_some());
        assert!(sessions.key(&third.token).is_some());
    }

    #[test]
    fn one_key_cannot_push_out_other_keys_sessions() {
        let sessions = Sessions::new(Duration::from_secs(60), 100, false);
        let other = sessions.start("stk_other", "other");
        let first = sessions.start("stk_flood", "flood");
        for _ in 0..200 {
            sessions.start("stk_flood", "flood");
        }
        assert_eq!(sessions.len(), MAX_SESSIONS_PER_KEY + 1);
        assert!(sessions.key(&other.token).is_some());
        assert!(
            sessions.key(&first.token).is_none(),
            "the key's oldest went"
        );
    }

    #[test]
    fn the_token_is_read_from_any_cookie_header() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append("cookie", "theme=dark".parse().unwrap());
        headers.append("cookie", "a=1; sealtrail_session=abc; b=2".parse().unwrap());
        assert_eq!(token_in(&headers, COOKIE), Some("abc"));
        assert_eq!(token_in(&headers, SECURE_COOKIE), None);
        let mut other = axum::http::HeaderMap::new();
        other.append(
            "cookie",
            "sealtrail_sessionx=abc; sealtrail_session="
                .parse()
                .unwrap(),
        );
        assert_eq!(token_in(&other, COOKIE), None);
    }
}
