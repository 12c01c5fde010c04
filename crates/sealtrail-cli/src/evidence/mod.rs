//! Evidence bundles: one tenant's matching events with everything an outside auditor needs
//! to check them offline, without Sealtrail — `sealtrail export --evidence` writes one
//! (export.rs), `sealtrail verify --evidence` checks one (check.rs), and
//! `tools/verify_evidence.py` is the same check in plain Python.
//!
//! The bundle is a tar (Python's standard library reads it) of `README.md` (how to check
//! it, by hand and with the script), `evidence.json` ([`Evidence`]) and the script itself.
//! Everything in `evidence.json` is JSON with hex hashes: RFC 9162 proofs and C2SP signed
//! notes, so any implementation of those can check it.

pub mod check;
pub mod export;

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `format` of the bundles this version writes and reads.
pub const FORMAT: &str = "sealtrail-evidence/1";
/// The bundle's members, in the order they are written: the README first, for whoever
/// lists the tar; then the evidence; then the checker.
pub const README_NAME: &str = "README.md";
/// The evidence ([`Evidence`]).
pub const EVIDENCE_NAME: &str = "evidence.json";
/// The checker, a copy of `tools/verify_evidence.py`.
pub const SCRIPT_NAME: &str = "verify_evidence.py";
/// The checker shipped in the repository, also packed into every bundle.
pub const SCRIPT: &str = include_str!("../../../../tools/verify_evidence.py");
/// The bundle's README.
pub const README: &str = include_str!("README.md");

/// `evidence.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// [`FORMAT`].
    pub format: String,
    /// When the export was made, RFC 3339 UTC.
    pub exported_at: String,
    /// Who made it, and from which server.
    pub exporter: Exporter,
    /// The query parameters the events were selected with (`tenant_id` always among them).
    pub filter: Map<String, Value>,
    /// The log's signing key.
    pub log: LogKey,
    /// The signed checkpoint every inclusion proof is against.
    pub checkpoint: Note,
    /// The newest signed checkpoint when the export finished.
    pub newest_checkpoint: Note,
    /// RFC 9162 consistency proof from `checkpoint` to `newest_checkpoint`, hex (empty
    /// when both are the same tree).
    pub consistency_proof: Vec<String>,
    /// The matching events in `checkpoint`'s tree, oldest first.
    pub events: Vec<EvidenceEvent>,
}

/// Who exported.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exporter {
    /// The API key's id (the server's access log names it for every read of the export).
    pub key_id: Option<String>,
    /// The server's URL.
    pub server: String,
    /// The exporting tool and its version.
    pub tool: String,
}

/// The log's public key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogKey {
    /// The log's origin (the key's name).
    pub origin: String,
    /// Signed-note verifier key `origin+keyid+base64(0x01 || key)`.
    pub vkey: String,
    /// The log's key rotations (`GET /v1/public-key`), when it had any: with them a key
    /// pinned from before a rotation still verifies the bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<String>,
}

/// A signed checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// Leaves in the tree (from the note; repeated for readers).
    pub tree_size: u64,
    /// The C2SP signed note.
    pub note: String,
}

/// One event and its proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceEvent {
    /// Position in the log.
    pub seq: u64,
    /// seq − 1.
    pub leaf_index: u64,
    /// `SHA-256(0x00 || record)`, hex.
    pub leaf_hash: String,
    /// The verbatim stored record (UTF-8 canonical JSON): what the leaf hash covers.
    pub record: String,
    /// Sibling hashes, hex, deepest first, against `checkpoint`.
    pub inclusion_proof: Vec<String>,
    /// The event as the server showed it: sealed values opened, or `"[shredded]"`.
    pub event: Map<String, Value>,
}

/// Reads `evidence.json` from a bundle (a tar) or from a bare `evidence.json`.
pub fn read_bundle(path: &Path) -> anyhow::Result<Evidence> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let json = if is_tar(&bytes) {
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut found = None;
        for entry in archive.entries().context("reading the bundle's tar")? {
            let mut entry = entry.context("reading the bundle's tar")?;
            if entry.path().is_ok_and(|p| p == Path::new(EVIDENCE_NAME)) {
                let mut json = Vec::new();
                entry.read_to_end(&mut json)?;
                found = Some(json);
            }
        }
        found.with_context(|| format!("{} holds no {EVIDENCE_NAME}", path.display()))?
    } else {
        bytes
    };
    let evidence: Evidence = serde_json::from_slice(&json)
        .with_context(|| format!("{EVIDENCE_NAME} in {}", path.display()))?;
    anyhow::ensure!(
        evidence.format == FORMAT,
        "{EVIDENCE_NAME}: format {:?} is not {FORMAT:?}",
        evidence.format
    );
    Ok(evidence)
}

/// A ustar header's magic at offset 257.
fn is_tar(bytes: &[u8]) -> bool {
    bytes.get(257..262) == Some(b"ustar")
}

/// The bundle's bytes: a tar of the README, `evidence.json` and the script.
pub fn write_bundle(evidence: &Evidence, mtime: u64) -> anyhow::Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(evidence)?;
    let mut archive = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in [
        (README_NAME, README.as_bytes(), 0o644),
        (EVIDENCE_NAME, json.as_slice(), 0o644),
        (SCRIPT_NAME, SCRIPT.as_bytes(), 0o755),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes)?;
    }
    Ok(archive.into_inner()?)
}
