//! A real SMTP server for the email sink's tests: aiosmtpd (from PyPI) on a free port,
//! requiring STARTTLS with a throwaway certificate and SMTP AUTH, storing every message it
//! accepts in a Maildir the test reads. `cargo xtask test` installs aiosmtpd into a
//! virtualenv under `target/` and names its Python in [`SMTPD_PYTHON_ENV`].

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// The variable naming a Python that has aiosmtpd.
pub const SMTPD_PYTHON_ENV: &str = "SEALTRAIL_TEST_SMTPD_PYTHON";

const SERVER_SCRIPT: &str = r#"
import asyncio, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, cert, key, user, password = sys.argv[1:7]
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)

def authenticate(server, session, envelope, mechanism, data):
    ok = (isinstance(data, LoginPassword)
          and data.login.decode() == user and data.password.decode() == password)
    return AuthResult(success=ok, handled=False)

controller = Controller(
    Mailbox(maildir), hostname="127.0.0.1", port=int(port),
    tls_context=context, require_starttls=True,
    authenticator=authenticate, auth_required=True)
controller.start()
print("ready", flush=True)
try:
    asyncio.get_event_loop().run_forever()
except KeyboardInterrupt:
    pass
"#;

/// Creates (once) a virtualenv in `dir` with aiosmtpd; its Python.
pub fn install_aiosmtpd(dir: &Path) -> anyhow::Result<PathBuf> {
    crate::python::venv_with(dir, "aiosmtpd", "aiosmtpd")
}

/// A running aiosmtpd.
pub struct SmtpServer {
    child: Child,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The AUTH user and password it accepts.
    pub user: String,
    pub password: String,
}

impl SmtpServer {
    /// Starts one with a fresh certificate (for 127.0.0.1 and localhost) and Maildir.
    pub fn start() -> anyhow::Result<Self> {
        let python = std::env::var_os(SMTPD_PYTHON_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("python3"));
        let dir = tempfile::tempdir()?;
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        crate::tls::make_certificates(dir.path())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let (user, password) = ("sealtrail".to_owned(), "mail-secret-4711".to_owned());
        let mut child = Command::new(&python)
            .args(["-c", SERVER_SCRIPT, &port.to_string()])
            .arg(dir.path().join("maildir"))
            .arg(&cert)
            .arg(&key)
            .args([&user, &password])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting aiosmtpd with {} (set {SMTPD_PYTHON_ENV}, or run cargo xtask test)",
                    python.display()
                )
            })?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        anyhow::ensure!(
            line.trim() == "ready",
            "aiosmtpd did not start (is it installed for {}? cargo xtask test installs it)",
            python.display()
        );
        Ok(Self {
            child,
            dir,
            port,
            user,
            password,
        })
    }

    /// The CA certificate clients must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every message received so far, raw, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir/new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let modified = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (
                    modified,
                    e.file_name().to_string_lossy().into_owned(),
                    e.path(),
                )
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, _, path)| std::fs::read_to_string(path).ok())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
