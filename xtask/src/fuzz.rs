//! The fuzz targets in `fuzz/` (cargo fuzz, libFuzzer), run for a bounded time from their
//! seed corpus as part of `cargo xtask test`. cargo-fuzz is installed from crates.io into
//! `target/test-tools/cargo-fuzz` on first use. The sanitizer flags cargo fuzz passes are
//! nightly-only; `RUSTC_BOOTSTRAP=1` lets this machine's stable toolchain accept them.
//! A crash fails the run and leaves its input in `fuzz/artifacts/<target>/`: copy it to
//! `fuzz/regressions/<target>/`, where `crates/sealtrail-core/tests/fuzz_regressions.rs`
//! replays it for good.

use std::process::Command;

use crate::root;

/// The targets, each with the longest input it is given.
const TARGETS: [(&str, usize); 2] = [("event", 4096), ("filter", 1024)];

/// Runs every target for `seconds`.
pub fn run(seconds: u64) -> anyhow::Result<()> {
    let tools = root().join("target/test-tools/cargo-fuzz");
    let cargo_fuzz = tools.join("bin/cargo-fuzz");
    if !cargo_fuzz.exists() {
        crate::run_step(
            "cargo",
            &[
                "install",
                "cargo-fuzz",
                "--locked",
                "--root",
                tools.to_str().expect("the workspace path is UTF-8"),
            ],
        )?;
    }
    let scratch = tempfile::tempdir()?;
    for (target, max_len) in TARGETS {
        let corpus = scratch.path().join(target);
        std::fs::create_dir_all(&corpus)?;
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let status = Command::new(&cargo_fuzz)
            .args(["run", "--target-dir", "../target/fuzz", target])
            .arg(&corpus)
            .arg(format!("corpus/{target}"))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={max_len}"))
            .env("RUSTC_BOOTSTRAP", "1")
            .current_dir(root().join("fuzz"))
            .status()?;
        anyhow::ensure!(
            status.success(),
            "fuzz target {target} found a crash: its input is in fuzz/artifacts/{target}/"
        );
    }
    Ok(())
}
