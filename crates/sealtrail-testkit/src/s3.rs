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

/// Whether an S3 service (moto's ListBuckets answer) answers on the port.
fn answers_as_moto(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("ListAllMyBucketsResult")
}

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
    /// Starts one and waits until it answers as moto does. The port is picked free and
    /// then handed to moto, so another process may take it in between: then moto exits
    /// (or another program answers) and it is tried again on another port.
    pub fn start() -> anyhow::Result<Self> {
        let program = std::env::var_os(MOTO_SERVER_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        let mut last_error = None;
        for _ in 0..5 {
            match Self::start_on_a_free_port(&program) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("tried at least once"))
    }

    fn start_on_a_free_port(program: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(program)
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
        while !answers_as_moto(port) {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("{} exited at start: {status}", program.display());
            }
            anyhow::ensure!(
                started.elapsed() < START_TIMEOUT,
                "{} did not answer on port {port} within {START_TIMEOUT:?}",
                program.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // What answered is moto, and it is ours: the child still runs.
        if let Some(status) = server.child.try_wait()? {
            anyhow::bail!("{} exited at start: {status}", program.display());
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
