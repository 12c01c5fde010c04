//! The release `sealtrail` binary as a child process, as users run it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

pub fn binary() -> PathBuf {
    crate::root().join("target/release/sealtrail")
}

pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, &[])
    }

    /// Starts with more `serve` arguments (e.g. `--database-url`).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Starts with more `serve` arguments and environment variables.
    pub fn start_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::spawn(Command::new(binary()), data_dir, extra, env)
    }

    /// Starts on one CPU only (`taskset -c CPU`), as on a machine of its own.
    pub fn start_pinned(data_dir: &Path, cpu: usize) -> anyhow::Result<Self> {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", &cpu.to_string()]).arg(binary());
        Self::spawn(taskset, data_dir, &[], &[])
    }

    fn spawn(
        mut command: Command,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = command
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .env("SEALTRAIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting target/release/sealtrail")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no address in {line:?}"))?
            .to_owned();
        Ok(Self { child, url })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the query index has caught up with the log; returns the lag when the
    /// wait began and how long it took.
    pub async fn wait_until_indexed(&self) -> anyhow::Result<(u64, std::time::Duration)> {
        let http = sealtrail_testkit::http_client();
        let started = std::time::Instant::now();
        let mut first = None;
        loop {
            let ready: serde_json::Value = http
                .get(format!("{}/readyz", self.url))
                .send()
                .await?
                .json()
                .await?;
            let lag = ready["index_lag_events"].as_u64().unwrap_or(0);
            let first = *first.get_or_insert(lag);
            if lag == 0 {
                return Ok((first, started.elapsed()));
            }
            anyhow::ensure!(
                started.elapsed() < std::time::Duration::from_secs(1800),
                "the index did not catch up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub fn create_key(data_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(binary())
        .args(["keys", "create", "--scopes", "ingest,read", "--data-dir"])
        .arg(data_dir)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Server CPU seconds so far (user + system), from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
