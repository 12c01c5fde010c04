//! Embeds the web console's files (`console/*.html`, `console/assets/*`) into the binary, so
//! the console needs nothing on the user's machine but the server: no build toolchain, no
//! files beside the binary. Writes `$OUT_DIR/console_files.rs`: one table of
//! `(path under /console/, bytes)`, sorted by path.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The kinds of file served; anything else in the directories (tests, notes) is not.
const SERVED: [&str; 4] = ["html", "js", "css", "svg"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    // The served files only: `console/e2e` (tests, node_modules) must not rebuild the server.
    println!("cargo:rerun-if-changed=console/assets");
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for (dir, prefix) in [(root.clone(), ""), (root.join("assets"), "assets/")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable console directory").path();
            let served = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SERVED.contains(&e));
            if path.is_file() && served {
                if prefix.is_empty() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                files.push((format!("{prefix}{name}"), path));
            }
        }
    }
    files.sort();
    let mut table = String::from("pub(crate) static FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        writeln!(
            table,
            "    ({name:?}, include_bytes!({:?})),",
            path.display()
        )
        .unwrap();
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("console_files.rs");
    std::fs::write(out, table).unwrap();
}
