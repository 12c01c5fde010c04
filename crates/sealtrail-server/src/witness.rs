//! Pushes the log's signed checkpoints to its witnesses (`[[witnesses]]`) and compares what
//! each kept with the log.
//!
//! One thread per witness (its HTTP and S3 clients are blocking). Each round it reads the
//! newest checkpoint from the store; if it has grown past what the witness holds, it sends
//! it with the consistency proof from the witness's size. Before its first push it learns
//! what the witness holds: a directory or bucket is read back and its checkpoint verified
//! against the log's key and the log's tree; a tlog-witness says its size when the push
//! starts from another one (409). A witness holding a larger tree than the log, a tree the
//! log does not extend, or refusing the log's proof means the log was rolled back or forked:
//! the server raises an alarm (`/readyz` warning, `sealtrail_witness_alarm`, an error in its
//! log) and stops pushing to that witness, so what it kept stays as evidence.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealtrail_archive::{PushOutcome, WitnessLocation};
use sealtrail_core::CheckpointVerifier;
use sealtrail_core::merkle::verify_consistency;
use sealtrail_store::LogReader;
use sealtrail_store::follow::Shutdown;
use serde::Serialize;

use crate::config::WitnessConfig;

/// What the server knows of one witness, for `/readyz` and the metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WitnessStatus {
    /// Its configured name.
    pub name: String,
    /// The tree size it is known to hold (0 before anything is known).
    pub size: u64,
    /// Set when what it holds contradicts the log; pushing has stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm: Option<String>,
    /// The last failure to reach it, cleared by the next success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Pushes that failed since start.
    pub failures: u64,
    /// A tlog-witness's cosignature of the newest checkpoint it accepted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cosignature: String,
}

/// Every witness's status.
#[derive(Default)]
pub struct WitnessBoard {
    statuses: Mutex<Vec<WitnessStatus>>,
}

impl WitnessBoard {
    /// A copy of every witness's status.
    pub fn statuses(&self) -> Vec<WitnessStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What an operator must look at: each alarm.
    pub fn warnings(&self) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter_map(|s| s.alarm.map(|alarm| format!("witness {}: {alarm}", s.name)))
            .collect()
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut WitnessStatus)) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut statuses[index]);
    }
}

/// Starts one pushing thread per witness; they end on `shutdown`.
pub fn spawn(
    witnesses: &[WitnessConfig],
    reader: Arc<dyn LogReader>,
    verifier: CheckpointVerifier,
    shutdown: Shutdown,
) -> Result<(Arc<WitnessBoard>, Vec<std::thread::JoinHandle<()>>), String> {
    let board = Arc::new(WitnessBoard::default());
    let mut threads = Vec::new();
    for (index, config) in witnesses.iter().enumerate() {
        let token = config
            .token
            .as_ref()
            .map(|t| t.resolve().map(|s| s.expose().to_owned()))
            .transpose()
            .map_err(|e| format!("witnesses[{index}].token: {e}"))?;
        board
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(WitnessStatus {
                name: config.name.clone(),
                ..WitnessStatus::default()
            });
        let (name, to) = (config.name.clone(), config.to.clone());
        let (reader, verifier, board) = (reader.clone(), verifier.clone(), board.clone());
        let every = Duration::from_secs(config.every_secs);
        let shutdown = shutdown.clone();
        // The location is made, used and dropped on its thread: its blocking HTTP client
        // owns a runtime that must not be dropped on an async worker.
        let (opened, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("sealtrail-witness-{index}"))
            .spawn(move || {
                let location = match WitnessLocation::parse(&to, token) {
                    Ok(location) => {
                        let _ = opened.send(Ok(()));
                        location
                    }
                    Err(e) => {
                        let _ = opened.send(Err(format!("witnesses[{index}].to: {e}")));
                        return;
                    }
                };
                let mut pusher = Pusher {
                    index,
                    name,
                    location,
                    reader,
                    verifier,
                    board,
                    held: None,
                };
                while !shutdown.is_cancelled() {
                    if !pusher.round() {
                        return;
                    }
                    sleep_unless(&shutdown, every);
                }
            })
            .map_err(|e| format!("starting the witness thread: {e}"))?;
        started
            .recv()
            .map_err(|_| format!("witnesses[{index}]: its thread ended at start"))??;
        threads.push(thread);
    }
    Ok((board, threads))
}

/// Sleeps `total`, waking early when `shutdown` is cancelled.
fn sleep_unless(shutdown: &Shutdown, total: Duration) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total && !shutdown.is_cancelled() {
        std::thread::sleep(step);
        slept += step;
    }
}

struct Pusher {
    index: usize,
    name: String,
    location: WitnessLocation,
    reader: Arc<dyn LogReader>,
    verifier: CheckpointVerifier,
    board: Arc<WitnessBoard>,
    /// The size the witness holds, once known.
    held: Option<u64>,
}

/// Why a round stopped.
enum Stop {
    /// The witness contradicts the log: stop pushing for good.
    Alarm(String),
    /// Could not reach it or the store: try again next round.
    Failed(String),
}

impl Pusher {
    /// One look at the newest checkpoint; false once an alarm stopped this witness.
    fn round(&mut self) -> bool {
        match self.push_newest() {
            Ok(()) => {
                self.board.update(self.index, |s| s.last_error = None);
                true
            }
            Err(Stop::Failed(error)) => {
                tracing::warn!(witness = %self.name, %error, "witness push failed; retrying");
                self.board.update(self.index, |s| {
                    s.failures += 1;
                    s.last_error = Some(error);
                });
                true
            }
            Err(Stop::Alarm(alarm)) => {
                tracing::error!(
                    witness = %self.name,
                    %alarm,
                    "the witness contradicts the log: it may have been rolled back or forked; \
                     no more checkpoints go to this witness (run `sealtrail verify --checkpoint`)"
                );
                self.board.update(self.index, |s| s.alarm = Some(alarm));
                false
            }
        }
    }

    fn push_newest(&mut self) -> Result<(), Stop> {
        let failed = |e: &dyn std::fmt::Display| Stop::Failed(e.to_string());
        let Some(newest) = self.reader.latest_checkpoint().map_err(|e| failed(&e))? else {
            return Ok(());
        };
        let held = match self.held {
            Some(held) => held,
            None => self.learn_held(newest.tree_size, &newest.root)?,
        };
        self.held = Some(held);
        if newest.tree_size <= held {
            return Ok(());
        }
        // A tlog-witness that holds another size says so; then push again from its size.
        let mut old = held;
        for _ in 0..2 {
            let proof = if old == 0 {
                Vec::new()
            } else {
                self.reader
                    .consistency_proof(old, newest.tree_size)
                    .map_err(|e| failed(&e))?
            };
            match self
                .location
                .push(newest.tree_size, &newest.note, old, &proof)
                .map_err(|e| failed(&e))?
            {
                PushOutcome::Accepted { cosignature } => {
                    self.held = Some(newest.tree_size);
                    self.board.update(self.index, |s| {
                        s.size = newest.tree_size;
                        s.cosignature = cosignature;
                    });
                    return Ok(());
                }
                PushOutcome::Conflict { witness_size } if witness_size > newest.tree_size => {
                    return Err(Stop::Alarm(rolled_back(witness_size, newest.tree_size)));
                }
                PushOutcome::Conflict { witness_size } => {
                    self.held = Some(witness_size);
                    self.board.update(self.index, |s| s.size = witness_size);
                    old = witness_size;
                }
                PushOutcome::Refused { status, detail } => {
                    return Err(Stop::Alarm(format!(
                        "it refused the checkpoint of tree size {} (HTTP {status}): {detail}",
                        newest.tree_size
                    )));
                }
            }
        }
        Err(Stop::Failed(
            "the witness changed its size twice while being pushed to".to_owned(),
        ))
    }

    /// The size the witness holds, checking a kept checkpoint it can show against the log.
    fn learn_held(&self, log_size: u64, log_root: &[u8; 32]) -> Result<u64, Stop> {
        let note = match &self.location {
            // A tlog-witness tells its size when a push starts from another one.
            WitnessLocation::Http { .. } => return Ok(0),
            location => location.latest().map_err(|e| Stop::Failed(e.to_string()))?,
        };
        let Some(note) = note else {
            return Ok(0);
        };
        let kept = self.verifier.verify(&note).map_err(|e| {
            Stop::Alarm(format!(
                "its latest checkpoint does not verify with the log's key: {e}"
            ))
        })?;
        if kept.size > log_size {
            return Err(Stop::Alarm(rolled_back(kept.size, log_size)));
        }
        let extends = kept.size == 0 || {
            let proof = self
                .reader
                .consistency_proof(kept.size, log_size)
                .map_err(|e| Stop::Failed(e.to_string()))?;
            verify_consistency(kept.size, log_size, &kept.root, log_root, &proof)
        };
        if !extends {
            return Err(Stop::Alarm(format!(
                "the log's tree of size {log_size} does not extend the checkpoint of tree size \
                 {} the witness kept: the log was rewritten",
                kept.size
            )));
        }
        self.board.update(self.index, |s| s.size = kept.size);
        Ok(kept.size)
    }
}

fn rolled_back(witness_size: u64, log_size: u64) -> String {
    format!(
        "it holds a signed checkpoint of tree size {witness_size}, but the log has {log_size} \
         events: events from seq {} on are no longer in the log",
        log_size + 1
    )
}
