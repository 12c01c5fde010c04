//! Python tools the tests use (aiosmtpd, schemathesis, cryptography for the evidence
//! checker `tools/verify_evidence.py`), each in a virtualenv of its own
//! under `target/test-tools`, installed from PyPI on first use.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;

/// Creates (once) a virtualenv in `dir` with `package` installed; the venv's Python.
/// `module` is what `import` checks for.
pub fn venv_with(dir: &Path, package: &str, module: &str) -> anyhow::Result<PathBuf> {
    let python = dir.join("bin/python");
    let has_it = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_it(&python) {
        return Ok(python);
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .context("python3 -m venv")?;
    anyhow::ensure!(status.success(), "python3 -m venv {} failed", dir.display());
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", package])
        .status()
        .with_context(|| format!("pip install {package}"))?;
    anyhow::ensure!(status.success(), "pip install {package} failed");
    anyhow::ensure!(
        has_it(&python),
        "{module} is not importable after installing {package}"
    );
    Ok(python)
}

/// Where the tests find a Python with `cryptography` for `tools/verify_evidence.py`
/// (`cargo xtask test` sets it).
pub const EVIDENCE_PYTHON_ENV: &str = "SEALTRAIL_TEST_EVIDENCE_PYTHON";

/// Creates (once) a virtualenv in `dir` with `cryptography` (the evidence checker's one
/// package beyond the standard library); its Python.
pub fn install_cryptography(dir: &Path) -> anyhow::Result<PathBuf> {
    venv_with(dir, "cryptography", "cryptography")
}
