//! Property-based API testing with schemathesis (PyPI) against the OpenAPI document the
//! server serves: a real `sealtrail serve` with demo data, every operation generated from
//! its schema (coverage, fuzzing and stateful phases), failing on any 5xx and any answer
//! the document does not describe (status, content type, body schema, headers).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::root;

/// Examples per operation and phase.
const MAX_EXAMPLES: &str = "50";
/// The checks that must pass: no server error, and every response as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance";

pub fn run() -> anyhow::Result<()> {
    let python = sealtrail_testkit::python::venv_with(
        &root().join("target/test-tools/schemathesis"),
        "schemathesis",
        "schemathesis",
    )?;
    let st = python.with_file_name("st");
    let sealtrail = root().join("target/debug/sealtrail");
    let data = tempfile::tempdir()?;
    let data_dir = data.path().to_str().context("temp path is UTF-8")?;
    let key = Command::new(&sealtrail)
        .args([
            "keys",
            "create",
            "--scopes",
            "admin",
            "--data-dir",
            data_dir,
        ])
        .output()?;
    anyhow::ensure!(key.status.success(), "keys create failed");
    let key = String::from_utf8(key.stdout)?.trim().to_owned();
    let mut server = Command::new(&sealtrail)
        .args(["serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().context("piped")?).read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .with_context(|| format!("no address in {line:?}"))?
        .to_owned();
    let result = (|| {
        let demo = Command::new(&sealtrail)
            .args(["demo", "--events", "300", "--url", &url, "--key", &key])
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(demo.success(), "sealtrail demo failed");
        eprintln!("xtask: schemathesis against {url}/v1/openapi.json");
        let status = Command::new(&st)
            .args(["run", &format!("{url}/v1/openapi.json")])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
            .args(["--seed", "20261201"])
            // schemathesis keeps a cache in its working directory: not in the checkout.
            .current_dir(data.path())
            .status()?;
        anyhow::ensure!(status.success(), "schemathesis found failures (above)");
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}
