//! A throwaway PostgreSQL cluster: initdb in a temporary directory, started on a free port
//! from the server binaries on the machine (installing Debian's `postgresql` package first
//! if there are none), stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// A running PostgreSQL cluster in a temporary directory; stopped and removed on drop.
pub struct PgCluster {
    /// Keeps the directory (data, socket, log) until the cluster is stopped.
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The server options it was started with (for a restart).
    options: String,
    pub port: u16,
}

impl PgCluster {
    /// Starts a cluster allowing `max_connections` connections.
    pub fn start(max_connections: u32) -> anyhow::Result<Self> {
        let bin = server_binaries()?;
        let dir = tempfile::Builder::new().prefix("sealtrail-pg-").tempdir()?;
        let data = dir.path().join("data");
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            run(Command::new("chmod").arg("0777").arg(dir.path()))?;
        }
        let port = free_port()?;
        let initdb = pg_command(&bin, "initdb", as_root)
            .args([
                "--no-sync",
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .context("running initdb")?;
        anyhow::ensure!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections={max_connections} -c shared_buffers=256MB",
            dir.path().display()
        );
        let start = pg_command(&bin, "pg_ctl", as_root)
            .args(["-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("server.log"))
            .args(["-w", "start"])
            .output()
            .context("running pg_ctl start")?;
        anyhow::ensure!(
            start.status.success(),
            "PostgreSQL did not start: {}{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        Ok(Self {
            dir,
            bin,
            options,
            port,
        })
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"], false)
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port and data.
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "start"], true)
    }

    /// Stops and starts the server (its caches empty), keeping the data.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-w", "-m", "fast", "restart"], true)
    }

    /// The URL of database `name` (not created here).
    pub fn database_url(&self, name: &str) -> String {
        format!("{} dbname={name}", self.url())
    }

    /// Runs `pg_ctl -D DATA [server options and log] ARGS`.
    fn pg_ctl(&self, args: &[&str], starts_server: bool) -> anyhow::Result<()> {
        let as_root = unsafe { libc::geteuid() } == 0;
        let mut command = pg_command(&self.bin, "pg_ctl", as_root);
        command.args(["-D"]).arg(self.data());
        if starts_server {
            command
                .args(["-o", &self.options, "-l"])
                .arg(self.dir.path().join("server.log"));
        }
        let output = command
            .args(args)
            .output()
            .with_context(|| format!("running pg_ctl {}", args.join(" ")))?;
        anyhow::ensure!(
            output.status.success(),
            "pg_ctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// The server's version (from its binaries' directory).
    pub fn version(&self) -> anyhow::Result<String> {
        let output = Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned())
    }

    /// A libpq-style connection string.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// The variable the PostgreSQL store tests read their server from.
pub const TEST_ENV: &str = "SEALTRAIL_TEST_POSTGRES";

impl Drop for PgCluster {
    fn drop(&mut self) {
        let as_root = unsafe { libc::geteuid() } == 0;
        let _ = pg_command(&self.bin, "pg_ctl", as_root)
            .args(["-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn pg_command(bin: &Path, tool: &str, as_root: bool) -> Command {
    let path = bin.join(tool);
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin`, installing PostgreSQL if there is none.
fn server_binaries() -> anyhow::Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop()
    };
    if let Some(bin) = find() {
        return Ok(bin);
    }
    eprintln!("installing PostgreSQL (apt-get install postgresql)");
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    find().context("PostgreSQL installed, but no /usr/lib/postgresql/*/bin/initdb")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A database of its own for one test on the server of [`TEST_ENV`], with no schema;
/// dropped (with its connections) when this is.
pub struct TestDatabase {
    admin: String,
    /// Its name.
    pub name: String,
    /// A connection string for it.
    pub url: String,
}

impl TestDatabase {
    /// Creates it; panics, naming how to get a server, when [`TEST_ENV`] is not set.
    pub fn create() -> Self {
        let admin = std::env::var(TEST_ENV).unwrap_or_else(|_| {
            panic!(
                "these tests need PostgreSQL: run `cargo xtask test`, or start one with \
                 `cargo xtask postgres` and set {TEST_ENV} to the URL it prints"
            )
        });
        let name = format!("sealtrail_test_{}", uuid::Uuid::new_v4().simple());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = format!("{admin} dbname={name}");
        Self { admin, name, url }
    }

    /// A new connection to it.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    /// Drops it now (a disaster drill's lost database).
    pub fn drop_now(&self) {
        let mut client = postgres::Client::connect(&self.admin, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .unwrap();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
