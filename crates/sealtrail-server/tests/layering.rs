//! The layering ARCHITECTURE.md promises, checked on the source tree: SQL is written only
//! by the store crates, and HTTP handlers write to the log only through the application
//! layer (`app/`), which owns the sequencer's appends and the spool.

use std::path::{Path, PathBuf};

/// Words that start SQL statements, as they appear in string literals.
const SQL_MARKERS: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "INSERT OR ",
    "CREATE TABLE",
    "CREATE INDEX",
    "DELETE FROM",
    "DROP TABLE",
    "ALTER TABLE",
    "LISTEN ",
    "rusqlite::",
];

/// Source files outside `sealtrail-store` that may hold SQL, and why.
const SQL_ALLOWED: &[&str] = &[
    // The sinks' cursors, dead letters and leases, in sinks.sqlite or PostgreSQL: kept
    // beside the runner whose every write they fence with its lease.
    "crates/sealtrail-sinks/src/store.rs",
    // The throwaway PostgreSQL cluster for tests.
    "crates/sealtrail-testkit/",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directories are readable") {
        let path = entry.expect("directory entries are readable").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every non-test source file of every crate, as a path relative to the workspace.
fn library_sources() -> Vec<(String, String)> {
    let root = workspace();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).expect("crates/ is readable") {
        let src = krate
            .expect("crate entries are readable")
            .path()
            .join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("sources are UTF-8");
            // Unit tests at the end of a file may build SQL to tamper with a store.
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
            let relative = path
                .strip_prefix(&root)
                .expect("under the workspace")
                .to_string_lossy()
                .replace('\\', "/");
            (relative, code)
        })
        .collect()
}

#[test]
fn only_the_store_crates_write_sql() {
    let mut offenders = Vec::new();
    for (path, code) in library_sources() {
        if path.starts_with("crates/sealtrail-store/")
            || SQL_ALLOWED.iter().any(|allowed| path.starts_with(allowed))
        {
            continue;
        }
        for marker in SQL_MARKERS {
            if code.contains(marker) {
                offenders.push(format!("{path}: {marker:?}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL outside the store crates:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn handlers_write_to_the_log_only_through_the_application_layer() {
    let mut offenders = Vec::new();
    for (path, code) in library_sources() {
        if !path.starts_with("crates/sealtrail-server/src/") || path.contains("/src/app/") {
            continue;
        }
        for marker in [
            "sequencer.append",
            ".append_blocking(",
            "spool::Spool",
            "spool.append",
        ] {
            if code.contains(marker) {
                offenders.push(format!("{path}: {marker:?}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "writes to the log outside app/:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_checks_see_the_sources() {
    let sources = library_sources();
    assert!(
        sources.iter().any(
            |(path, code)| path == "crates/sealtrail-store/src/sqlite/indexer.rs"
                && code.contains("INSERT INTO")
        ),
        "the layering checks must read the store's SQL, or they check nothing"
    );
    assert!(sources.iter().any(
        |(path, code)| path == "crates/sealtrail-server/src/app/log.rs"
            && code.contains("sequencer.append")
    ));
}

#[test]
fn core_and_crypto_never_touch_a_file() {
    let mut offenders = Vec::new();
    for (path, code) in library_sources() {
        if !(path.starts_with("crates/sealtrail-core/")
            || path.starts_with("crates/sealtrail-crypto/"))
        {
            continue;
        }
        for marker in [
            "std::fs",
            "File::",
            "OpenOptions",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
        ] {
            if code.contains(marker) {
                offenders.push(format!("{path}: {marker:?}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "I/O in core or crypto:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_log_and_its_model_never_talk_http() {
    for krate in ["sealtrail-core", "sealtrail-crypto", "sealtrail-store"] {
        let manifest =
            std::fs::read_to_string(workspace().join("crates").join(krate).join("Cargo.toml"))
                .expect("manifests are readable");
        let dependencies = manifest
            .split("[dev-dependencies]")
            .next()
            .expect("split yields at least one part");
        for http in ["axum", "hyper", "reqwest", "tower"] {
            assert!(
                !dependencies
                    .lines()
                    .any(|l| l.trim_start().starts_with(http)),
                "{krate} depends on {http}: the sequencer and the store never talk HTTP"
            );
        }
    }
}
