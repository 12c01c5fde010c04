//! The server's configuration: one typed struct, read from an optional TOML file, then
//! overridden by `SEALTRAIL_*` environment variables, then by command-line flags, and
//! validated once at start with errors that name the key.
//!
//! Environment variables name keys by path: `SEALTRAIL_LISTEN` sets `listen`,
//! `SEALTRAIL_LIMITS__MAX_BODY_BYTES` sets `limits.max_body_bytes` (a double underscore
//! steps into a table). Values are read as TOML (`42`, `true`, `"text"`), falling back to
//! plain text, so `SEALTRAIL_DATA_DIR=/var/lib/sealtrail` needs no quotes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sealtrail_core::EventLimits;
use serde::{Deserialize, Serialize};

/// Prefix of environment overrides.
const ENV_PREFIX: &str = "SEALTRAIL_";
/// Environment variables with the prefix that are not configuration keys (CLI client
/// settings and logging; the servers the test suite uses are `SEALTRAIL_TEST_*`).
const ENV_NOT_CONFIG: [&str; 3] = ["SEALTRAIL_URL", "SEALTRAIL_KEY", "SEALTRAIL_LOG"];
/// Variables with this prefix name the test suite's servers, not configuration.
const ENV_TEST_PREFIX: &str = "SEALTRAIL_TEST_";

/// Everything `sealtrail serve` can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding the embedded store, the signing key and the API keys.
    pub data_dir: PathBuf,
    /// Keep the log in this PostgreSQL database instead of the embedded store
    /// (`postgres://user:password@host/db` or `host=... dbname=...`), with the API keys
    /// and the sinks' state. The data directory still holds the signing key.
    pub database_url: Option<String>,
    /// Name of a new log (its checkpoints' origin line); defaults to one derived from the
    /// signing key. An existing log keeps the origin it was created with.
    pub log_origin: Option<String>,
    /// Request bounds.
    pub limits: Limits,
    /// The sequencer and checkpoints.
    pub log: LogSettings,
    /// Live streams (SSE and WebSocket).
    pub stream: StreamSettings,
    /// Where events are delivered besides the log (`[[sinks]]`).
    pub sinks: Vec<sealtrail_sinks::SinkConfig>,
    /// Which events go to which sinks (`[[routes]]`).
    pub routes: Vec<sealtrail_sinks::RouteConfig>,
    /// On PostgreSQL, each sink runs on one server at a time under a lease of this many
    /// seconds, renewed every third of it: the longest a killed server keeps its sinks
    /// from being taken over by another.
    pub sink_lease_secs: u64,
    /// Serve HTTPS with this certificate and key; plain HTTP when absent.
    pub tls: Option<TlsSettings>,
    /// Recording every read in the log itself.
    pub access_log: AccessLogSettings,
    /// Encrypting sensitive fields before they are stored (off when absent).
    pub encryption: Option<EncryptionConfig>,
    /// How long each kind of record is kept and when it is archived (`[retention]`;
    /// `sealtrail retention plan` shows what is due).
    pub retention: sealtrail_core::retention_policy::RetentionConfig,
    /// Where retention archives, and how often the server runs it (`[retention_run]`).
    pub retention_run: RetentionRunSettings,
    /// Places outside the server that keep the log's signed checkpoints (`[[witnesses]]`).
    pub witnesses: Vec<WitnessConfig>,
    /// The server's own full verifications of the log (`[integrity]`).
    pub integrity: IntegritySettings,
    /// The web console at `/console/` (`[console]`).
    pub console: ConsoleSettings,
}

/// Full verifications of the log by the server itself (`app::integrity`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntegritySettings {
    /// Seconds between full verifications, the first when the server starts; 0: only on
    /// request (`POST /v1/integrity/verify`).
    pub verify_every_secs: u64,
}

impl Default for IntegritySettings {
    fn default() -> Self {
        Self {
            verify_every_secs: 6 * 3600,
        }
    }
}

/// The web console (`console` module).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve `/console/` (the API answers either way).
    pub enabled: bool,
    /// A sign-in lasts this many seconds (the key's own expiry or revocation ends it sooner).
    pub session_ttl_secs: u64,
    /// Sessions held at once; signing in beyond it ends the oldest.
    pub max_sessions: usize,
    /// Mark the cookie `Secure` (and name it `__Host-sealtrail_session`) although this
    /// server speaks plain HTTP: for a server behind a proxy that terminates TLS. With
    /// `[tls]` it is always.
    pub secure_cookie: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_secs: 8 * 3600,
            max_sessions: 10_000,
            secure_cookie: false,
        }
    }
}

/// A witness (`[[witnesses]]`): every newer signed checkpoint is pushed to it, and what it
/// kept is compared with the log, which exposes a log rolled back or forked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its name, in metrics, `/readyz` and logs.
    pub name: String,
    /// A directory, `s3://bucket[/prefix]` (S3 settings from the `AWS_*` environment) or
    /// the URL of a C2SP tlog-witness (`POST <to>/add-checkpoint`).
    pub to: String,
    /// Bearer token for an HTTP witness.
    #[serde(default)]
    pub token: Option<sealtrail_sinks::config::SecretRef>,
    /// Seconds between looks at the newest checkpoint (it is pushed when it has grown).
    #[serde(default = "default_witness_every_secs")]
    pub every_secs: u64,
}

fn default_witness_every_secs() -> u64 {
    5
}

/// Retention runs (`[retention_run]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionRunSettings {
    /// Where archive segments are written: a directory, or `s3://bucket[/prefix]` (S3
    /// settings from the `AWS_*` variables). Without it nothing is archived: events past
    /// their archive age keep their bodies in the hot store (runs still delete what is
    /// past its retention).
    pub archive_to: Option<String>,
    /// Upload segments to S3 under Object Lock (COMPLIANCE) for this many days.
    pub object_lock_days: Option<u32>,
    /// zstd level of the segments (1–19).
    pub zstd_level: i32,
    /// Hours between the server's own runs; 0 runs retention only when asked
    /// (`sealtrail retention run`).
    pub every_hours: u32,
}

impl Default for RetentionRunSettings {
    fn default() -> Self {
        Self {
            archive_to: None,
            object_lock_days: None,
            zstd_level: sealtrail_archive::DEFAULT_ZSTD_LEVEL,
            every_hours: 24,
        }
    }
}

/// Field encryption (see `sealtrail_crypto`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The master key: 32 random bytes in base64, from `{ env = ... }` or `{ file = ... }`
    /// (never in the config text, never in the data directory).
    pub master_key: sealtrail_sinks::config::SecretRef,
    /// Master keys `master_key` replaced (same forms), while `sealtrail keys
    /// rotate-master` has not wrapped every data key by the new one yet: what they
    /// wrapped still opens. Empty once the rotation is done.
    #[serde(default)]
    pub previous_master_keys: Vec<sealtrail_sinks::config::SecretRef>,
    /// Fields to encrypt: `ip_address`, `user_agent`, `reason`, `changes`, `request_id`,
    /// or JSON pointers into `details` (`/details/guest/dietary_notes`).
    pub fields: Vec<String>,
    /// A JSON pointer naming each event's data subject (`/user_id`, `/details/guest/id`):
    /// events with one are encrypted under that subject's own key, so one subject can be
    /// shredded alone.
    #[serde(default)]
    pub subject: Option<String>,
    /// Encrypted fields that can be searched by equality through a keyed blind index.
    #[serde(default)]
    pub blind_index: Vec<String>,
}

/// Access logging (see the server's `access` module).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogSettings {
    /// Append an `audit_log.*` event for every read made with a key.
    pub enabled: bool,
    /// Where reads not confined to one tenant's events are recorded.
    pub global_tenant: String,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            global_tenant: "_sealtrail".into(),
        }
    }
}

/// The server's TLS certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from("./sealtrail-data"),
            database_url: None,
            log_origin: None,
            limits: Limits::default(),
            log: LogSettings::default(),
            stream: StreamSettings::default(),
            sinks: Vec::new(),
            routes: Vec::new(),
            sink_lease_secs: 10,
            tls: None,
            access_log: AccessLogSettings::default(),
            encryption: None,
            retention: Default::default(),
            retention_run: RetentionRunSettings::default(),
            witnesses: Vec::new(),
            integrity: IntegritySettings::default(),
            console: ConsoleSettings::default(),
        }
    }
}

/// Bounds on requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most events in one ingest request.
    pub max_batch_events: usize,
    /// Longest a request may take, in seconds, before it is answered 408; also how long a
    /// connection may take to send a request head (TLS handshake included).
    pub request_timeout_secs: u64,
    /// Largest request head (request line and headers), in bytes; 431 above. At least 8192.
    pub max_header_bytes: usize,
    /// Most connections open at once; further ones are closed as they arrive.
    pub max_connections: usize,
    /// Requests per second each API key may make on average (0: unlimited); 429 with
    /// `Retry-After` above.
    pub key_requests_per_sec: u32,
    /// Requests a key may make in a burst above its rate.
    pub key_burst: u32,
    /// Bounds on each event's fields.
    pub event: EventLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_batch_events: 1000,
            request_timeout_secs: 30,
            max_header_bytes: 16 * 1024,
            max_connections: 25_000,
            key_requests_per_sec: 10_000,
            key_burst: 20_000,
            event: EventLimits::default(),
        }
    }
}

/// The sequencer's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Most events committed in one group commit.
    pub max_group_events: usize,
    /// Append requests that may queue for the sequencer before producers wait.
    pub max_queued_requests: usize,
    /// One signed checkpoint per this many seconds is kept as history (every commit is
    /// signed; the newest checkpoint is always kept).
    pub checkpoint_history_secs: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            max_group_events: 20_000,
            max_queued_requests: 4096,
            checkpoint_history_secs: 60,
        }
    }
}

/// Live streams' bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// Most concurrent stream subscriptions (SSE streams plus WebSocket subscriptions);
    /// beyond it new ones get 503.
    pub max_subscribers: usize,
    /// Events a subscriber may have waiting in memory; one that falls further behind leaves
    /// live delivery and catches up from the store.
    pub live_queue_events: usize,
    /// Events read from the store per step while catching up.
    pub replay_batch_events: usize,
    /// Interval of SSE heartbeat comments and WebSocket pings, in seconds.
    pub heartbeat_secs: u64,
    /// A client that takes longer than this to accept data is disconnected (it resumes
    /// from its last seq), in seconds.
    pub write_timeout_secs: u64,
    /// Subscriptions one WebSocket connection may hold.
    pub max_ws_subscriptions: usize,
    /// Largest WebSocket message a client may send, in bytes.
    pub max_ws_message_bytes: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_subscribers: 20_000,
            live_queue_events: 1024,
            replay_batch_events: 500,
            heartbeat_secs: 15,
            write_timeout_secs: 30,
            max_ws_subscriptions: 64,
            max_ws_message_bytes: 64 * 1024,
        }
    }
}

/// A configuration problem, naming the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML (after environment overrides) does not fit the configuration.
    #[error("invalid configuration{origin}: {message}")]
    Invalid {
        /// " in FILE" or " from the environment".
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl Config {
    /// Loads `file` (if given), applies `SEALTRAIL_*` variables from `env`, and validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let origin = match file {
            Some(path) => format!(" in {}", path.display()),
            None => String::new(),
        };
        let mut table: toml::Table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Invalid {
                        origin: origin.clone(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if ENV_NOT_CONFIG.contains(&name.as_str()) || name.starts_with(ENV_TEST_PREFIX) {
                continue;
            }
            let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
            set_path(&mut table, &keys, parse_env_value(&value)).map_err(|message| {
                ConfigError::Invalid {
                    origin: format!(" from {name}"),
                    message,
                }
            })?;
        }
        // Through text again, so a type error points at the key's line.
        let merged = toml::to_string(&table).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        let config: Config =
            toml::from_str(&merged).map_err(|e: toml::de::Error| ConfigError::Invalid {
                origin,
                message: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: ranges and relations. Section by section, in a fixed
    /// order; the first problem found is the one reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_limits()?;
        check_stream(&self.stream)?;
        if self.log.max_queued_requests == 0 {
            return Err(invalid("log.max_queued_requests", "must be at least 1"));
        }
        let problems = sealtrail_sinks::config::check(&self.sinks, &self.routes);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                origin: String::new(),
                message: problems.join("\n"),
            });
        }
        if let Err(reason) = sealtrail_core::event::validate_tenant_id(
            &self.access_log.global_tenant,
            &self.limits.event,
        ) {
            return Err(invalid("access_log.global_tenant", &reason));
        }
        if let Some(encryption) = &self.encryption {
            check_encryption(encryption)?;
        }
        if !(60..=30 * 86_400).contains(&self.console.session_ttl_secs) {
            return Err(invalid(
                "console.session_ttl_secs",
                "must be from 60 (a minute) to 2592000 (30 days)",
            ));
        }
        if self.console.max_sessions == 0 {
            return Err(invalid("console.max_sessions", "must be at least 1"));
        }
        if let Some(origin) = &self.log_origin {
            check_log_origin(origin)?;
        }
        if !(1..=19).contains(&self.retention_run.zstd_level) {
            return Err(invalid("retention_run.zstd_level", "must be from 1 to 19"));
        }
        if self.retention_run.every_hours > 24 * 366 {
            return Err(invalid(
                "retention_run.every_hours",
                "must be at most a year (8784 hours); 0 turns the schedule off",
            ));
        }
        let problems = self.retention.check();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                origin: String::new(),
                message: problems.join("\n"),
            });
        }
        if !(1..=3600).contains(&self.sink_lease_secs) {
            return Err(invalid("sink_lease_secs", "must be from 1 to 3600"));
        }
        check_witnesses(&self.witnesses)
    }

    /// The `[limits]` section: every limit at least its smallest useful value, and a batch
    /// no larger than the log's commit group, as a request is committed in one group.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if limits.max_batch_events == 0 {
            return Err(invalid("limits.max_batch_events", "must be at least 1"));
        }
        if limits.max_batch_events > self.log.max_group_events {
            return Err(invalid(
                "limits.max_batch_events",
                "must not exceed log.max_group_events (a request is committed in one group)",
            ));
        }
        if limits.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        if limits.request_timeout_secs == 0 {
            return Err(invalid("limits.request_timeout_secs", "must be at least 1"));
        }
        if limits.max_header_bytes < 8192 {
            return Err(invalid("limits.max_header_bytes", "must be at least 8192"));
        }
        if limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if limits.key_requests_per_sec > 0 && limits.key_burst == 0 {
            return Err(invalid(
                "limits.key_burst",
                "must be at least 1 when key_requests_per_sec is set",
            ));
        }
        Ok(())
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.request_timeout_secs)
    }
}

/// A configuration error for one key, in the form every check reports: `key: reason`.
fn invalid(key: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: String::new(),
        message: format!("{key}: {reason}"),
    }
}

/// The `[stream]` section: every queue, batch, interval and limit is at least 1, as none
/// of them means anything useful at 0.
fn check_stream(st: &StreamSettings) -> Result<(), ConfigError> {
    for (key, value) in [
        ("stream.live_queue_events", st.live_queue_events as u64),
        ("stream.replay_batch_events", st.replay_batch_events as u64),
        ("stream.heartbeat_secs", st.heartbeat_secs),
        ("stream.write_timeout_secs", st.write_timeout_secs),
        (
            "stream.max_ws_subscriptions",
            st.max_ws_subscriptions as u64,
        ),
        (
            "stream.max_ws_message_bytes",
            st.max_ws_message_bytes as u64,
        ),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    Ok(())
}

/// The `[encryption]` section: fields the crypto crate can seal, at least one of them,
/// blind indexes only on sealed fields, and a subject that is a JSON pointer.
fn check_encryption(encryption: &EncryptionConfig) -> Result<(), ConfigError> {
    sealtrail_crypto::check_fields(&encryption.fields)
        .map_err(|reason| invalid("encryption.fields", &reason.to_string()))?;
    if let Some(field) = encryption
        .blind_index
        .iter()
        .find(|f| !encryption.fields.contains(f))
    {
        return Err(invalid(
            "encryption.blind_index",
            &format!("{field:?} is not in encryption.fields"),
        ));
    }
    if encryption.fields.is_empty() {
        return Err(invalid("encryption.fields", "name at least one field"));
    }
    if encryption
        .subject
        .as_ref()
        .is_some_and(|s| !s.starts_with('/'))
    {
        return Err(invalid(
            "encryption.subject",
            "must be a JSON pointer (it starts with '/')",
        ));
    }
    Ok(())
}

/// `log_origin` is also the key name of the checkpoints' signed notes, which must be
/// non-empty and hold no whitespace or '+': refused here at start, not at the first
/// checkpoint.
fn check_log_origin(origin: &str) -> Result<(), ConfigError> {
    if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(invalid(
            "log_origin",
            "must be non-empty, without spaces or '+'",
        ));
    }
    Ok(())
}

fn parse_env_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a table"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// `[[witnesses]]`: named once each, somewhere, looked at no more often than each second
/// and at least once a day.
fn check_witnesses(witnesses: &[WitnessConfig]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, witness) in witnesses.iter().enumerate() {
        let field = |name: &str| format!("witnesses[{i}].{name}");
        if witness.name.trim().is_empty() || witness.name.len() > 64 {
            return Err(invalid(&field("name"), "must be 1 to 64 characters"));
        }
        if !names.insert(witness.name.as_str()) {
            return Err(invalid(&field("name"), "is the name of another witness"));
        }
        let to = witness.to.trim();
        let known = to.starts_with("s3://")
            || to.starts_with("http://")
            || to.starts_with("https://")
            || (!to.is_empty() && !to.contains("://"));
        if !known {
            return Err(invalid(
                &field("to"),
                "must be a directory, s3://bucket[/prefix] or an http(s):// URL",
            ));
        }
        if !(1..=86_400).contains(&witness.every_secs) {
            return Err(invalid(&field("every_secs"), "must be from 1 to 86400"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_readme() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7700");
        assert_eq!(config.data_dir, PathBuf::from("./sealtrail-data"));
        assert_eq!(config.limits.max_batch_events, 1000);
        assert_eq!(config.limits.event.max_details_bytes, 65536);
    }

    #[test]
    fn file_then_environment_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sealtrail.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\n[limits]\nmax_batch_events = 50\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("SEALTRAIL_LIMITS__MAX_BATCH_EVENTS", "20"),
                ("SEALTRAIL_DATA_DIR", "/var/lib/sealtrail"),
                ("SEALTRAIL_LIMITS__EVENT__MAX_REASON_CHARS", "100"),
                ("SEALTRAIL_URL", "http://not-config"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.limits.max_batch_events, 20);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/sealtrail"));
        assert_eq!(config.limits.event.max_reason_chars, 100);
    }

    #[test]
    fn errors_name_the_key() {
        let err = Config::load(None, env(&[("SEALTRAIL_LIMITS__MAX_BATCH_EVENTS", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_batch_events"), "{err}");
        let err = Config::load(None, env(&[("SEALTRAIL_LISTN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listn"), "{err}");
        let err = Config::load(None, env(&[("SEALTRAIL_LIMITS__MAX_BATCH_EVENTS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_batch_events"), "{err}");
    }

    #[test]
    fn retention_run_settings_are_checked_at_their_edges() {
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs));
        let config = load(&[]).unwrap();
        assert_eq!(config.retention_run.every_hours, 24);
        assert_eq!(config.retention_run.zstd_level, 3);
        assert_eq!(config.retention_run.archive_to, None);
        for (key, ok, refused) in [
            ("SEALTRAIL_RETENTION_RUN__ZSTD_LEVEL", "19", "20"),
            ("SEALTRAIL_RETENTION_RUN__ZSTD_LEVEL", "1", "0"),
            ("SEALTRAIL_RETENTION_RUN__EVERY_HOURS", "8784", "8785"),
        ] {
            assert!(load(&[(key, ok)]).is_ok(), "{key}={ok}");
            let err = load(&[(key, refused)]).unwrap_err().to_string();
            let name = key
                .trim_start_matches("SEALTRAIL_")
                .replace("__", ".")
                .to_ascii_lowercase();
            assert!(err.contains(&name), "{key}={refused}: {err}");
        }
        let config = load(&[("SEALTRAIL_RETENTION_RUN__EVERY_HOURS", "0")]).unwrap();
        assert_eq!(
            config.retention_run.every_hours, 0,
            "0 turns the schedule off"
        );
    }

    #[test]
    fn witnesses_are_checked_and_named_by_index() {
        let witness = |name: &str, to: &str, every_secs: u64| WitnessConfig {
            name: name.to_owned(),
            to: to.to_owned(),
            token: None,
            every_secs,
        };
        let with = |witnesses: Vec<WitnessConfig>| {
            Config {
                witnesses,
                ..Config::default()
            }
            .validate()
            .map_err(|e| e.to_string())
        };
        assert!(
            with(vec![
                witness("disk", "/mnt/witness", 5),
                witness("bucket", "s3://checkpoints/prod", 60),
                witness("tlog", "https://witness.example/", 1),
            ])
            .is_ok()
        );
        for (witnesses, expected) in [
            (
                vec![witness("", "/w", 5)],
                "witnesses[0].name: must be 1 to 64",
            ),
            (
                vec![witness("a", "/w", 5), witness("a", "/v", 5)],
                "witnesses[1].name: is the name of another witness",
            ),
            (
                vec![witness("a", "ftp://w", 5)],
                "witnesses[0].to: must be a directory",
            ),
            (vec![witness("a", "", 5)], "witnesses[0].to"),
            (
                vec![witness("a", "/w", 0)],
                "witnesses[0].every_secs: must be from 1",
            ),
            (vec![witness("a", "/w", 86_401)], "witnesses[0].every_secs"),
        ] {
            let err = with(witnesses).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
