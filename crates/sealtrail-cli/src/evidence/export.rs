//! `sealtrail export --evidence`: one tenant's matching events, each with its inclusion
//! proof against one signed checkpoint, through the server's API with an API key — so the
//! key's tenant confinement applies and every read of the export is in the access log.
//!
//! The checkpoint is fetched first and every proof asked for at its size: the export's own
//! reads append access records, so the log grows while it runs. Events listed after that
//! checkpoint are left out (they are in no tree it signed); the newest checkpoint at the end
//! and a consistency proof to it show the checkpoint is a prefix of the log as it then was.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use sealtrail_core::CheckpointVerifier;
use sealtrail_core::time_format::{format_micros, now_micros};
use serde_json::{Map, Value};

use super::{Evidence, EvidenceEvent, Exporter, FORMAT, LogKey, Note};
use crate::ServerArgs;
use crate::filter::{Events, FilterArgs};

/// The server's largest page.
const MAX_PAGE: usize = 1000;

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Write an evidence bundle (events, inclusion proofs, signed checkpoints, the log's
    /// key, a README and a checker script) for an outside auditor. The only export so far.
    #[arg(long, required = true)]
    evidence: bool,
    #[command(flatten)]
    filter: FilterArgs<Events>,
    /// The bundle to write (a tar). Named --output because --to is the filter's time bound.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: PathBuf,
    /// At most this many events: an export asks for each event's proof, one read (and one
    /// access record) each. More matches are refused, naming this flag.
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
}

pub async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let params = args.filter.params();
    let Some(tenant) = params
        .iter()
        .find(|(name, _)| name == "tenant_id")
        .map(|(_, t)| t.clone())
    else {
        anyhow::bail!("--tenant is required: an evidence bundle holds one tenant's events");
    };
    let client = args.server.client()?;
    let public_key = client.public_key().await.context("GET /v1/public-key")?;
    let key = CheckpointVerifier::from_vkey(&public_key.vkey)
        .context("the server's public key (GET /v1/public-key)")?;
    let checkpoint = client.checkpoint().await.context("GET /v1/checkpoint")?;
    let size = key
        .verify(&checkpoint.note)
        .context("the server's checkpoint does not verify with its own public key")?
        .size;

    let ids = matching_ids(&client, &params, size, args.limit).await?;
    let mut events = Vec::with_capacity(ids.len());
    for id in &ids {
        let proven = client
            .event_proof(id, Some(size), true)
            .await
            .with_context(|| format!("GET /v1/events/{id}"))?;
        anyhow::ensure!(
            proven.proof.tree_size == size,
            "the server proved event {id} against a tree of {} leaves, not {size}",
            proven.proof.tree_size
        );
        let record = proven.record.with_context(|| {
            format!("the server sent no record for event {id} (it predates record=true)")
        })?;
        let leaf_hash = proven
            .event
            .get("leaf_hash")
            .and_then(Value::as_str)
            .with_context(|| format!("event {id} has no leaf_hash"))?
            .to_owned();
        events.push(EvidenceEvent {
            seq: proven.proof.leaf_index + 1,
            leaf_index: proven.proof.leaf_index,
            leaf_hash,
            record,
            inclusion_proof: proven.proof.hashes,
            event: proven.event,
        });
    }

    let newest = client.checkpoint().await.context("GET /v1/checkpoint")?;
    let consistency_proof = if newest.tree_size > size {
        client
            .consistency(size, newest.tree_size)
            .await
            .context("GET /v1/proofs/consistency")?
            .hashes
    } else {
        Vec::new()
    };
    let exported_at = now_micros();
    let evidence = Evidence {
        format: FORMAT.into(),
        exported_at: format_micros(exported_at),
        exporter: Exporter {
            key_id: client.key_id().map(str::to_owned),
            server: client.base_url().to_owned(),
            tool: format!("sealtrail {}", env!("CARGO_PKG_VERSION")),
        },
        filter: params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
        log: LogKey {
            origin: public_key.origin,
            vkey: public_key.vkey,
            rotations: public_key.rotations,
        },
        checkpoint: Note {
            tree_size: checkpoint.tree_size,
            note: checkpoint.note,
        },
        newest_checkpoint: Note {
            tree_size: newest.tree_size,
            note: newest.note,
        },
        consistency_proof,
        events,
    };
    // Nothing is written that would not verify (with the key the server named).
    let report = super::check::check(&evidence, &key);
    if let Some(problem) = report.problems.first() {
        anyhow::bail!("the server's answers do not verify, no bundle written: {problem}");
    }
    let bytes = super::write_bundle(&evidence, (exported_at / 1_000_000).max(0) as u64)?;
    let partial = args.output.with_extension("partial");
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &args.output)
        .with_context(|| format!("renaming into {}", args.output.display()))?;
    println!(
        "wrote {}: {} events of tenant {tenant} ({} sealed values, {} shredded), proven against \
         the checkpoint of tree size {size}, consistent with tree size {}",
        args.output.display(),
        evidence.events.len(),
        report.sealed,
        report.shredded,
        evidence.newest_checkpoint.tree_size
    );
    Ok(ExitCode::SUCCESS)
}

/// The ids of the events matching `params` in the tree of `size` leaves, in seq order.
async fn matching_ids(
    client: &sealtrail_client::Client,
    params: &[(String, String)],
    size: u64,
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_params = params.to_vec();
        page_params.push(("order".into(), "asc".into()));
        page_params.push(("limit".into(), MAX_PAGE.to_string()));
        if let Some(c) = &cursor {
            page_params.push(("cursor".into(), c.clone()));
        }
        let page = client.query(&page_params).await.context("GET /v1/events")?;
        // Pages are in (occurred_at, seq) order: an event appended after the checkpoint
        // (such as this export's access records) may turn up on any page, so all are read.
        ids.extend(
            page.events
                .into_iter()
                .filter(|e| e.seq <= size)
                .map(|e| (e.seq, e.id)),
        );
        anyhow::ensure!(
            ids.len() <= limit,
            "more than {limit} events match; narrow the filter or raise --limit"
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.sort_unstable();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}
