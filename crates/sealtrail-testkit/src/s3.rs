//! A real S3-compatible server for the archive's tests: moto's server mode (`moto_server`,
//! from PyPI's `moto[server]`) on a free port of 127.0.0.1, one per test, stopped when
//! dropped. `cargo xtask test` installs it into a virtualenv under `target/` and names its
//! `moto_server` in [`MOTO_SERVER_ENV`]; without that the one on `PATH` is used, and a
//! test fails (never skips) when there is none.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The variable naming the `moto_server` executable.
pub const MOTO_SERVER_ENV: &str = "SEALTRAIL_TEST_MOTO_SERVER";

/// How long moto may take to start listening (Python imports boto and Flask first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Creates (once) a virtualenv in `dir` with `moto[server]`; its `moto_server`.
pub fn install_moto(dir: &Path) -> anyhow::Result<PathBuf> {
    crate::python::venv_with(dir, "moto[server]", "moto.server")?;
    Ok(dir.join("bin/moto_server"))
}

/// A running moto server. Any access key and secret are accepted (moto checks no
/// signatures of presigned requests); every bucket starts empty.
pub struct MotoServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl MotoServer {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let program = std::env::var_os(MOTO_SERVER_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (set {MOTO_SERVER_ENV}, or run cargo xtask test, which \
                     installs moto[server])",
                    program.display()
                )
            })?;
        let mut server = Self { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("{} exited at start: {status}", program.display());
            }
            anyhow::ensure!(
                started.elapsed() < START_TIMEOUT,
                "{} did not listen on port {port} within {START_TIMEOUT:?}",
                program.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`, the value for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a process needs to reach it: endpoint, region and test credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "sealtrail-test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "sealtrail-test-secret".to_owned()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
