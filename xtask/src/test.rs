//! `cargo xtask test`: what CI runs, in order of how fast each step fails.
//!
//! The tests need nothing outside the workspace yet: the embedded store is SQLite, built
//! in, and every server a test talks to is started by the test itself. When a test needs
//! an outside server (PostgreSQL, SMTP, a browser), this is where it is installed and
//! started, so that this one command stays the whole of CI.

use crate::run_step;

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
    run_step("cargo", &["test", "--workspace", "--all-targets"])?;
    run_step("cargo", &["test", "--workspace", "--doc"])?;
    eprintln!("xtask: all checks passed");
    Ok(())
}
