//! What the `sealtrail` binary's end-to-end tests share: running the binary, a `sealtrail
//! serve` child on a port the OS chose, and reading a server's whole log.

// Each test file uses some of these.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use sealtrail_core::time_format::parse_rfc3339_micros;
use sealtrail_core::{EventLimits, PreparedEvent, TenantScope, prepare_event_value};
use sealtrail_store::sqlite::open_log;
use sealtrail_store::{Sequencer, SequencerConfig};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_sealtrail");

/// Runs the binary with no server, key or data directory from the environment.
pub fn sealtrail(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SEALTRAIL_URL")
        .env_remove("SEALTRAIL_KEY")
        .env_remove("SEALTRAIL_DATA_DIR")
        .output()
        .unwrap()
}

/// `sealtrail keys create ARGS` (the scopes and where, e.g. `--data-dir DIR`): the key.
pub fn create_key(args: &[&str]) -> String {
    let out = sealtrail(&[&["keys", "create"], args].concat());
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A runtime for a test's HTTP clients: two workers, so a client task and a blocking
/// call can run side by side.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A `sealtrail serve` child; killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
}

impl ServeProcess {
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, "127.0.0.1:0")
    }

    pub fn start_on(dir: &Path, listen: &str) -> Self {
        Self::spawn(dir, &["--listen", listen], dir.to_str().unwrap())
    }

    /// A server on the PostgreSQL database at `database_url`, with `dir` for its keys.
    pub fn start_postgres(dir: &Path, database_url: &str) -> Self {
        let args = ["--listen", "127.0.0.1:0", "--database-url", database_url];
        Self::spawn(dir, &args, "PostgreSQL store")
    }

    /// A server on PostgreSQL reading `config` (which names the database) with extra
    /// environment variables `env`.
    pub fn start_postgres_with_env(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Self {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ];
        Self::spawn_with(dir, &args, env, "PostgreSQL store")
    }

    /// A server reading the configuration file `config`.
    pub fn start_with_config(dir: &Path, config: &Path) -> Self {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ];
        Self::spawn(dir, &args, dir.to_str().unwrap())
    }

    /// A server reading `config` (if any) with extra environment variables `env`.
    pub fn start_with_env(dir: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        if let Some(config) = config {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        Self::spawn_with(dir, &args, env, dir.to_str().unwrap())
    }

    /// `sealtrail serve --data-dir DIR ARGS`; its first line must mention `expect`.
    fn spawn(dir: &Path, args: &[&str], expect: &str) -> Self {
        Self::spawn_with(dir, args, &[], expect)
    }

    fn spawn_with(dir: &Path, args: &[&str], env: &[(&str, &str)], expect: &str) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir", dir.to_str().unwrap()])
            .args(args)
            // These tests count events exactly; reads would add `audit_log.*` ones (the
            // access log is tested in the server's tests/access.rs).
            .env("SEALTRAIL_ACCESS_LOG__ENABLED", "false")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "sealtrail listening on http://127.0.0.1:PORT (embedded store in DIR)"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        assert!(line.contains(expect), "{line}");
        Self { child, url }
    }

    pub fn kill_hard(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful stop exits 0: {status}");
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every event of the server at `url`, oldest first, page by page.
pub async fn all_events(url: &str, key: &str) -> Vec<Value> {
    let client = sealtrail_testkit::http_client();
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{url}/v1/events"))
            .bearer_auth(key)
            .query(&[("limit", "1000"), ("order", "asc")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return events,
        }
    }
}

pub fn prepare_guest_event(n: u64) -> PreparedEvent {
    let tenants = ["bloom", "golden-hour", "lakeside"];
    let action = if n.is_multiple_of(5) {
        "guest.invited"
    } else {
        "guest.dietary_restriction.updated"
    };
    prepare_event_value(
        json!({
            "tenant_id": tenants[(n % 3) as usize],
            "action": action,
            "resource_type": "guest",
            "resource_id": (n % 17).to_string(),
            "occurred_at": "2026-11-01T10:00:00Z",
            "details": {"n": n},
        }),
        &TenantScope::Any,
        parse_rfc3339_micros("2026-11-20T12:00:00Z").unwrap(),
        &EventLimits::default(),
    )
    .unwrap()
}

/// An embedded log in `dir` of 300 events in three commits (so three signed checkpoints); returns its vkey.
pub fn build_archive_log(dir: &Path, origin: &str) -> String {
    let (backend, signer) = open_log(dir, Some(origin)).unwrap();
    let vkey = signer.verifier().vkey();
    let (handle, thread) = Sequencer::spawn(
        backend,
        signer,
        SequencerConfig::default(),
        Default::default(),
    )
    .unwrap();
    for commit in 0..3 {
        let events = (0..100)
            .map(|i| prepare_guest_event(commit * 100 + i))
            .collect();
        handle.append_blocking(events).unwrap();
    }
    drop(handle);
    thread.join().unwrap();
    vkey
}
