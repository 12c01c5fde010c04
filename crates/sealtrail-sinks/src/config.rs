//! What the config file says about sinks and routes (`[[sinks]]`, `[[routes]]`), and the
//! checks that turn it into something that can run, with errors naming the entry and key.
//!
//! Secrets (API keys, passwords, signing secrets, Slack webhook URLs) are never written in
//! the config text: a secret is `{ env = "NAME" }` or `{ file = "/path" }`, read at start.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::destinations::SinkKind;

/// Longest batch any sink sends in one request.
pub const MAX_BATCH_EVENTS_LIMIT: usize = 10_000;

/// Where a secret comes from. Deliberately has no inline form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretRef {
    /// An environment variable holding the secret.
    Env(String),
    /// A file holding the secret (surrounding whitespace is trimmed).
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret; the error names where it was looked for, never its value.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?,
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(format!("{} is empty", self.describe()));
        }
        Ok(Secret(value))
    }

    fn describe(&self) -> String {
        match self {
            SecretRef::Env(name) => format!("environment variable {name}"),
            SecretRef::File(path) => format!("secret file {}", path.display()),
        }
    }
}

/// A secret's value. Its `Debug` never shows it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One `[[sinks]]` entry. (Unknown keys are refused by [`SinkKind`], which receives every
/// key not named here: serde cannot deny unknown fields on a struct with a flattened one.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkConfig {
    /// Unique name; routes refer to it, and its cursor is kept under it.
    pub name: String,
    /// What it delivers to, and how.
    #[serde(flatten)]
    pub kind: SinkKind,
    /// Most events in one request (capped by the receiver's own limit for some kinds).
    #[serde(default)]
    pub max_batch_events: Option<usize>,
    /// Every request is abandoned (and retried) after this long.
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// First retry delay; doubles per failure up to `retry_max_delay_ms` (full jitter).
    #[serde(default = "default_retry_initial_delay_ms")]
    pub retry_initial_delay_ms: u64,
    /// Longest wait between two attempts.
    #[serde(default = "default_retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,
    /// Consecutive failed attempts after which the circuit opens.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit waits before one trial request.
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// Where a new sink (one without a saved cursor) starts: `oldest` (the whole log) or
    /// `latest` (events from now on). Default: `latest` for alerting sinks (Slack,
    /// PagerDuty, email: nobody wants a page per historic event), `oldest` for the others.
    #[serde(default)]
    pub start: Option<StartAt>,
}

/// Where a new sink starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// At the first event of the log.
    Oldest,
    /// After the last event in the log when the sink first runs.
    Latest,
}

/// Upper bound of every delay and timeout setting: a day.
pub const MAX_DELAY_MS: u64 = 86_400_000;
/// Upper bound of a rate limit's window: a day.
pub const MAX_RATE_WINDOW_SECS: u64 = 86_400;

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_retry_initial_delay_ms() -> u64 {
    200
}
fn default_retry_max_delay_ms() -> u64 {
    60_000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_ms() -> u64 {
    30_000
}

impl SinkConfig {
    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The batch size in effect: the configured one, or the kind's default, never above
    /// what the receiver accepts.
    pub fn batch_events(&self) -> usize {
        let limits = self.kind.batch_limits();
        self.max_batch_events
            .unwrap_or(limits.default_events)
            .min(limits.max_events)
    }

    /// Whether a sink without a saved cursor starts at the end of the log.
    pub fn starts_at_latest(&self) -> bool {
        match self.start {
            Some(start) => start == StartAt::Latest,
            None => self.kind.is_alerting(),
        }
    }

    /// The kind's name as written in the config (`datadog`, `webhook`, ...).
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// One `[[routes]]` entry: which events go to which sinks. Every present condition must
/// hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name shown in errors and status.
    #[serde(default)]
    pub name: Option<String>,
    /// Sinks the matching events go to.
    pub sinks: Vec<String>,
    /// Only this tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Only these severities (`info`, `warning`, `critical`); empty means all.
    #[serde(default)]
    pub severities: Vec<String>,
    /// `guest.dietary_restriction.updated`, or a prefix such as `guest.*`.
    #[serde(default)]
    pub action: Option<String>,
    /// Only this resource type.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// JSON pointer into `details` → the value it must equal (`"/guest/vendor" = "caterer"`).
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
    /// For the route's alerting sinks (Slack, PagerDuty): at most this many messages per
    /// window; the rest are sent as one digest when the window ends, never dropped.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// A fixed-window rate limit on alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Messages per window.
    pub max_events: u32,
    /// Window length.
    pub per_secs: u64,
}

impl RouteConfig {
    /// "route 2 (dietary changes)" for messages.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("routes[{index}] ({name})"),
            None => format!("routes[{index}]"),
        }
    }
}

/// Problems found in one sink's entry, each written as `sinks[i] (name).key: message`.
pub struct KeyProblems<'a> {
    at: &'a str,
    problems: &'a mut Vec<String>,
}

impl KeyProblems<'_> {
    /// Adds a problem with `key`.
    pub fn push(&mut self, key: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{}.{key}: {message}", self.at));
    }

    /// Checks that `value`, the value of `key`, is an http:// or https:// URL.
    pub fn http_url(&mut self, key: &str, value: &str) {
        if let Err(e) = reqwest::Url::parse(value) {
            self.push(key, format!("{value:?} is not a URL: {e}"));
        } else if !(value.starts_with("http://") || value.starts_with("https://")) {
            self.push(key, "must be an http:// or https:// URL");
        }
    }
}

/// Checks sinks and routes together; every problem, each naming its entry and key.
pub fn check(sinks: &[SinkConfig], routes: &[RouteConfig]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, sink) in sinks.iter().enumerate() {
        let at = format!("sinks[{i}] ({})", sink.name);
        if sink.name.is_empty()
            || !sink
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problems.push(format!(
                "{at}.name: must be non-empty ASCII letters, digits, '-', '_' or '.'"
            ));
        }
        if !names.insert(sink.name.as_str()) {
            problems.push(format!("{at}.name: another sink has this name"));
        }
        if sink.max_batch_events == Some(0) {
            problems.push(format!("{at}.max_batch_events: must be at least 1"));
        }
        let max = sink.kind.batch_limits().max_events;
        if let Some(n) = sink.max_batch_events
            && n > max
        {
            problems.push(format!(
                "{at}.max_batch_events: {n} is more than a {} sink sends per request ({max})",
                sink.kind.name()
            ));
        }
        for (key, value) in [
            ("request_timeout_ms", sink.request_timeout_ms),
            ("retry_initial_delay_ms", sink.retry_initial_delay_ms),
            ("retry_max_delay_ms", sink.retry_max_delay_ms),
            ("breaker_cooldown_ms", sink.breaker_cooldown_ms),
            ("breaker_failures", u64::from(sink.breaker_failures)),
        ] {
            if value == 0 {
                problems.push(format!("{at}.{key}: must be at least 1"));
            }
            if key.ends_with("_ms") && value > MAX_DELAY_MS {
                problems.push(format!(
                    "{at}.{key}: must be at most {MAX_DELAY_MS} (a day)"
                ));
            }
        }
        if sink.retry_max_delay_ms < sink.retry_initial_delay_ms {
            problems.push(format!(
                "{at}.retry_max_delay_ms: must not be below retry_initial_delay_ms"
            ));
        }
        sink.kind.check(&mut KeyProblems {
            at: &at,
            problems: &mut problems,
        });
    }
    for (i, route) in routes.iter().enumerate() {
        let at = route.label(i);
        if route.sinks.is_empty() {
            problems.push(format!("{at}.sinks: name at least one sink"));
        }
        for name in &route.sinks {
            if !names.contains(name.as_str()) {
                problems.push(format!("{at}.sinks: no sink is named {name:?}"));
            }
        }
        for severity in &route.severities {
            if sealtrail_core::Severity::parse(severity).is_none() {
                problems.push(format!(
                    "{at}.severities: {severity:?} is not info, warning or critical"
                ));
            }
        }
        if let Some(action) = &route.action
            && let Err(reason) = sealtrail_core::ActionMatch::parse(action)
        {
            problems.push(format!("{at}.action: {reason}"));
        }
        if let Some(limit) = route.rate_limit
            && (limit.max_events == 0
                || limit.per_secs == 0
                || limit.per_secs > MAX_RATE_WINDOW_SECS)
        {
            problems.push(format!(
                "{at}.rate_limit: max_events must be at least 1, per_secs from 1 to {MAX_RATE_WINDOW_SECS}"
            ));
        }
        for pointer in route.details.keys() {
            if !pointer.starts_with('/') {
                problems.push(format!(
                    "{at}.details: {pointer:?} is not a JSON pointer (it starts with '/')"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(text: &str) -> SinkConfig {
        toml::from_str(text).expect("test sink parses")
    }

    #[test]
    fn alerting_sinks_start_at_the_end_of_the_log_unless_told_otherwise() {
        let slack = "name = \"s\"\nkind = \"slack\"\nwebhook_url = { env = \"X\" }\n";
        assert!(sink(slack).starts_at_latest());
        assert!(!sink(&format!("{slack}start = \"oldest\"\n")).starts_at_latest());
        let es = "name = \"e\"\nkind = \"elasticsearch\"\nurl = \"http://es:9200\"\n";
        assert!(!sink(es).starts_at_latest());
        assert!(sink(&format!("{es}start = \"latest\"\n")).starts_at_latest());
    }

    #[test]
    fn limits_and_names_are_checked_with_the_key() {
        let es = sink(
            "name = \"e\"\nkind = \"elasticsearch\"\nurl = \"http://es:9200\"\nindex = \"Audit-{yyyy}\"\nretry_max_delay_ms = 999999999\n",
        );
        let route = RouteConfig {
            sinks: vec!["e".into()],
            rate_limit: Some(RateLimit {
                max_events: 1,
                per_secs: 10_000_000,
            }),
            ..RouteConfig::default()
        };
        let problems = check(&[es], &[route]).join("\n");
        assert!(problems.contains("sinks[0] (e).index"), "{problems}");
        assert!(
            problems.contains("sinks[0] (e).retry_max_delay_ms: must be at most"),
            "{problems}"
        );
        assert!(problems.contains("routes[0].rate_limit"), "{problems}");
    }
}
