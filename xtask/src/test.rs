//! `cargo xtask test`: what CI runs, in order of how fast each step fails.
//!
//! Servers the tests need from outside the workspace are installed and started here, so
//! that this one command stays the whole of CI: a throwaway PostgreSQL cluster (installed
//! with apt if its binaries are missing) whose URL the tests read from
//! `SEALTRAIL_TEST_POSTGRES`, and aiosmtpd (from PyPI, in a virtualenv under `target/`)
//! whose Python they read from `SEALTRAIL_TEST_SMTPD_PYTHON`, `cryptography` likewise for
//! the evidence checker (`SEALTRAIL_TEST_EVIDENCE_PYTHON`), and moto (`moto[server]` from
//! PyPI, likewise), the S3-compatible server of the archive's tests, whose `moto_server`
//! they read from `SEALTRAIL_TEST_MOTO_SERVER`. Every other server a test
//! talks to it starts itself. The TypeScript client's tests run under Node's test runner
//! against the debug `sealtrail` binary (`SEALTRAIL_TEST_BIN`), and the web console's
//! end-to-end tests drive Debian's Chromium (installed with apt if missing) with
//! playwright-core (`npm ci` in `console/e2e`), writing screenshots to
//! `target/console-screenshots`. Last, schemathesis checks the API against its OpenAPI
//! document (`api_fuzz.rs`), and each fuzz target runs for a bounded time (`fuzz.rs`).

use crate::run_step;
use sealtrail_testkit::PgCluster;
use sealtrail_testkit::pg::TEST_ENV;

/// How long each fuzz target runs in CI.
const FUZZ_SECONDS_PER_TARGET: u64 = 30;

pub fn run() -> anyhow::Result<()> {
    run_step("cargo", &["fmt", "--all", "--", "--check"])?;
    run_step(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let postgres = PgCluster::start(300)?;
    eprintln!("xtask: PostgreSQL for the tests at {}", postgres.url());
    // SAFETY: single-threaded here; the variable is read by the test processes we spawn.
    unsafe { std::env::set_var(TEST_ENV, postgres.url()) };
    let smtpd = sealtrail_testkit::smtp::install_aiosmtpd(
        &crate::root().join("target/test-tools/aiosmtpd"),
    )?;
    eprintln!("xtask: aiosmtpd for the tests with {}", smtpd.display());
    // SAFETY: as above.
    unsafe { std::env::set_var(sealtrail_testkit::smtp::SMTPD_PYTHON_ENV, &smtpd) };
    let evidence_python = sealtrail_testkit::python::install_cryptography(
        &crate::root().join("target/test-tools/cryptography"),
    )?;
    eprintln!(
        "xtask: cryptography for tools/verify_evidence.py with {}",
        evidence_python.display()
    );
    // SAFETY: as above.
    unsafe {
        std::env::set_var(
            sealtrail_testkit::python::EVIDENCE_PYTHON_ENV,
            &evidence_python,
        )
    };
    let moto = sealtrail_testkit::s3::install_moto(&crate::root().join("target/test-tools/moto"))?;
    eprintln!(
        "xtask: moto for the archive's S3 tests at {}",
        moto.display()
    );
    // SAFETY: as above.
    unsafe { std::env::set_var(sealtrail_testkit::s3::MOTO_SERVER_ENV, &moto) };
    run_step("cargo", &["test", "--workspace", "--all-targets"])?;
    run_step("cargo", &["test", "--workspace", "--doc"])?;
    typescript_client()?;
    console_e2e()?;
    crate::api_fuzz::run()?;
    crate::fuzz::run(FUZZ_SECONDS_PER_TARGET)?;
    drop(postgres);
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// The TypeScript client's tests (Node's own test runner, no npm install: the package has
/// no dependencies), against the server binary the Rust tests just built.
fn typescript_client() -> anyhow::Result<()> {
    let bin = crate::root().join("target/debug/sealtrail");
    anyhow::ensure!(bin.exists(), "{} was not built", bin.display());
    // SAFETY: single-threaded here; read by the node process we spawn.
    unsafe { std::env::set_var("SEALTRAIL_TEST_BIN", &bin) };
    run_step("node", &["--test", "clients/typescript/test/"])
}

/// Where the console's end-to-end tests live (their own npm package).
const CONSOLE_E2E: &str = "crates/sealtrail-server/console/e2e";
/// The browser they drive: Debian's, never one a test tool downloads.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The web console's end-to-end tests in a real headless Chromium, against the debug binary.
fn console_e2e() -> anyhow::Result<()> {
    let bin = crate::root().join("target/debug/sealtrail");
    anyhow::ensure!(bin.exists(), "{} was not built", bin.display());
    if !std::path::Path::new(CHROMIUM).exists() {
        eprintln!("xtask: installing Chromium (apt-get install chromium)");
        let install = || {
            std::process::Command::new("apt-get")
                .args(["install", "-y", "-q", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
        };
        if !install()?.success() {
            run_step("apt-get", &["update", "-q"])?;
            anyhow::ensure!(install()?.success(), "apt-get install chromium failed");
        }
    }
    run_step(
        "npm",
        &["ci", "--prefix", CONSOLE_E2E, "--no-audit", "--no-fund"],
    )?;
    let screenshots = crate::root().join("target/console-screenshots");
    // SAFETY: single-threaded here; read by the node process we spawn.
    unsafe {
        std::env::set_var("SEALTRAIL_TEST_BIN", &bin);
        std::env::set_var("SEALTRAIL_TEST_CHROMIUM", CHROMIUM);
        std::env::set_var("SEALTRAIL_TEST_CONSOLE_SCREENSHOTS", &screenshots);
    }
    run_step("node", &["--test", &format!("{CONSOLE_E2E}/")])?;
    eprintln!("xtask: console screenshots in {}", screenshots.display());
    Ok(())
}
