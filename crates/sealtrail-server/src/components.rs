//! What a running server is made of besides its routes, and the one order they stop in.
//!
//! [`Components::open`] opens the log (sequencer, readers, query indexer, the spool on
//! PostgreSQL) and starts every consumer that follows it — the sinks, the blind index,
//! the shared-log follower on PostgreSQL, the spool's drainer — each stopping on the one
//! [`Shutdown`] token the server cancels when it stops accepting. [`Components::close`]
//! then waits for them in order: consumers first, so that the last handles on the
//! sequencer go; then the sequencer, which commits what it has queued; then the indexer.

use std::sync::Arc;
use std::time::Duration;

use sealtrail_crypto::Opener;
use sealtrail_store::follow::{LogFollower, Shutdown};
use sealtrail_store::sqlite::{Indexer, IndexerConfig, IndexerHandle, SqliteReader, open_log};
use sealtrail_store::{
    ApiKeyStore, CommitStats, LogReader, Sequencer, SequencerConfig, SequencerHandle,
    SequencerHooks,
};

use crate::app::DurableLog;
use crate::app::access::AccessLog;
use crate::app::holds::LegalHolds;
use crate::app::ingest::Ingest;
use crate::app::reads::Reads;
use crate::app::retention::{Retention, RetentionParts};
use crate::app::shred::Shredder;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::{AppState, Inner};
use crate::{ServerError, blind, blocking_store, follower, limits, stream};

/// The running parts a server must stop, in order, when it stops serving.
pub(crate) struct Components {
    shutdown: Shutdown,
    sinks: Arc<sealtrail_sinks::Sinks>,
    /// Tasks that end on the shutdown token (followers of the log, the drainer).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Threads that end on the shutdown token (the PostgreSQL commit listener, the
    /// witnesses' pushers).
    threads: Vec<std::thread::JoinHandle<()>>,
    sequencer_thread: std::thread::JoinHandle<()>,
    indexer: Option<IndexerHandle>,
}

/// What the routes share: becomes the [`AppState`].
pub(crate) struct Parts {
    pub sequencer: SequencerHandle,
    pub reader: Arc<dyn LogReader>,
    pub keys: ApiKeyStore,
    pub verifier: sealtrail_core::CheckpointVerifier,
    indexer: Option<sealtrail_store::sqlite::IndexProgress>,
    streams: stream::Streams,
    log: DurableLog,
    sinks: Arc<sealtrail_sinks::Sinks>,
    opener: Opener,
    blind: Option<Arc<dyn sealtrail_crypto::BlindIndexStore>>,
    holds: Arc<sealtrail_store::holds::HoldStore>,
    retention: Arc<Retention>,
    archive: Option<Arc<sealtrail_archive::ArchiveLocation>>,
    witnesses: Arc<crate::witness::WitnessBoard>,
    sources: Arc<dyn sealtrail_store::sources::SourceStore>,
    integrity: Arc<crate::app::integrity::IntegrityAudits>,
}

impl Parts {
    /// The state every handler reaches.
    pub fn into_state(self, config: Config, metrics: Arc<Metrics>) -> AppState {
        let mut rate_limits = limits::KeyRateLimiter::new(
            config.limits.key_requests_per_sec,
            config.limits.key_burst,
        );
        if let Some(url) = &config.database_url {
            rate_limits = rate_limits.shared_through(url);
        }
        let sealer = self
            .opener
            .shared_cipher()
            .map(|c| c as Arc<dyn sealtrail_core::FieldSealer + Send + Sync>);
        let ingest = Ingest {
            log: self.log.clone(),
            limits: config.limits.event.clone(),
            sealer: sealer.clone(),
        };
        let access_log = AccessLog {
            log: self.log.clone(),
            settings: config.access_log.clone(),
            limits: config.limits.event.clone(),
            sealer,
        };
        let reads = Reads {
            reader: self.reader.clone(),
            sequencer: self.sequencer.clone(),
            opener: self.opener.clone(),
            blind: self.blind.clone(),
            access: access_log.clone(),
            metrics: metrics.clone(),
            archive: self.archive.map(|location| {
                Arc::new(crate::app::archived::ArchiveReader::new(
                    location,
                    self.verifier.clone(),
                    self.retention.ledger(),
                ))
            }),
        };
        let shredder = Shredder {
            log: self.log.clone(),
            opener: self.opener.clone(),
            blind: self.blind.clone(),
            limits: config.limits.event.clone(),
        };
        let holds = LegalHolds::new(self.holds, self.log.clone(), config.limits.event.clone());
        let signing_keys = Arc::new(crate::app::signing::SigningKeys {
            sequencer: self.sequencer.clone(),
            verifier: self.verifier.clone(),
            data_dir: config.data_dir.clone(),
            tenant: config.access_log.global_tenant.clone(),
            limits: config.limits.event.clone(),
            changes: tokio::sync::Mutex::new(()),
        });
        let console = crate::console::Sessions::new(
            std::time::Duration::from_secs(config.console.session_ttl_secs),
            config.console.max_sessions,
            config.console.secure_cookie || config.tls.is_some(),
        );
        AppState::new(Inner {
            signing_keys,
            streams: self.streams,
            sequencer: self.sequencer,
            reader: self.reader,
            keys: Arc::new(self.keys),
            verifier: self.verifier,
            config,
            metrics,
            indexer: self.indexer,
            log: self.log,
            ingest,
            shredder,
            holds,
            reads,
            access_log,
            sinks: self.sinks,
            opener: self.opener,
            rate_limits,
            retention: self.retention,
            witnesses: self.witnesses,
            sources: crate::app::sources::Sources::new(self.sources),
            console,
            integrity: self.integrity,
        })
    }
}

impl Components {
    /// Opens the log and starts everything that follows it.
    pub async fn open(
        config: &Config,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Result<(Self, Parts), ServerError> {
        let opener = open_opener(config)?;
        let hub = stream::Hub::start(
            0,
            config.stream.live_queue_events,
            metrics.clone(),
            opener.clone(),
        );
        let store = open_store(config, sequencer_hooks(config, &metrics, &hub)).await?;
        hub.set_published(store.sequencer.tree_size());
        let mut tasks = Vec::new();
        let mut threads = Vec::new();
        if let Some(url) = &config.database_url {
            let (task, listener) = follower::spawn(
                url.clone(),
                store.reader.clone(),
                store.sequencer.clone(),
                store.verifier.clone(),
                hub.clone(),
                shutdown.clone(),
            )
            .map_err(ServerError::Serve)?;
            tasks.push(task);
            threads.push(listener);
        }
        let streams = stream::Streams::new(
            hub,
            store.reader.clone(),
            config.stream.clone(),
            metrics.clone(),
            opener.clone(),
            shutdown.clone(),
        );
        let log = DurableLog::new(
            store.sequencer.clone(),
            crate::app::log::open_spool(config).await?,
            metrics.clone(),
        );
        tasks.extend(log.spawn_drainer(store.reader.clone(), shutdown.clone()));
        let sinks = start_sinks(config, &store, &opener, &shutdown)?;
        let blind = open_blind_index(config, &opener).await?;
        let (holds_dir, holds_db) = (config.data_dir.clone(), config.database_url.clone());
        let holds = Arc::new(
            blocking_store(move || match holds_db {
                None => sealtrail_store::holds::HoldStore::open(&holds_dir),
                // Shared: a hold placed through any server binds every server's retention.
                Some(url) => {
                    sealtrail_store::holds::HoldStore::open_postgres(&url, Some(&holds_dir))
                        .map(|(store, _)| store)
                }
            })
            .await?,
        );
        if let Some(index) = blind.clone() {
            tasks.push(spawn_blind_indexer(index, &store, &opener, &shutdown));
        }
        let sources = open_sources(config).await?;
        tasks.push(spawn_source_tracker(sources.clone(), &store, &shutdown));
        if let (Some(cipher), Some(_)) = (opener.shared_cipher(), &config.database_url) {
            tasks.push(spawn_shred_watcher(cipher, shutdown.clone()));
        }
        let archive = open_archive(config).await?;
        let retention =
            Arc::new(open_retention(config, &store, holds.clone(), archive.clone()).await?);
        tasks.extend(retention.clone().spawn_schedule(
            log.clone(),
            config.limits.event.clone(),
            config.access_log.global_tenant.clone(),
            shutdown.clone(),
        ));
        let (witnesses, witness_threads) = crate::witness::spawn(
            &config.witnesses,
            store.reader.clone(),
            store.verifier.clone(),
            shutdown.clone(),
        )
        .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
        threads.extend(witness_threads);
        let integrity = crate::app::integrity::IntegrityAudits::new(
            match &config.database_url {
                Some(url) => crate::app::integrity::Target::Postgres(url.clone()),
                None => crate::app::integrity::Target::Embedded(config.data_dir.clone()),
            },
            store.verifier.clone(),
        );
        tasks.extend(integrity.clone().spawn_schedule(
            std::time::Duration::from_secs(config.integrity.verify_every_secs),
            shutdown.clone(),
        ));
        let components = Self {
            shutdown,
            sinks: sinks.clone(),
            tasks,
            threads,
            sequencer_thread: store.sequencer_thread,
            indexer: store.indexer,
        };
        let parts = Parts {
            sequencer: store.sequencer,
            reader: store.reader,
            keys: store.keys,
            verifier: store.verifier,
            indexer: components.indexer.as_ref().map(IndexerHandle::progress),
            streams,
            log,
            sinks,
            opener,
            blind,
            holds,
            retention,
            archive,
            witnesses,
            sources,
            integrity,
        };
        Ok((components, parts))
    }

    /// Stops everything once serving has ended (every request answered, every handle on
    /// the sequencer held by the routes dropped).
    pub async fn close(self) -> Result<(), ServerError> {
        // Signalled already when serving stopped; here too should serving have failed.
        self.shutdown.cancel();
        // Sinks and the blind index resume from their cursors at the next start.
        self.sinks.stop().await;
        for task in self.tasks {
            let _ = task.await;
        }
        for thread in self.threads {
            join_thread(thread, "a log follower").await?;
        }
        // The consumers' sequencer handles are gone with them: it drains its queue and stops.
        join_thread(self.sequencer_thread, "the sequencer").await?;
        if let Some(indexer) = self.indexer {
            tokio::task::spawn_blocking(move || indexer.stop())
                .await
                .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
        }
        tracing::info!("log closed");
        Ok(())
    }
}

/// Shows events to readers: sealed fields opened when `[encryption]` is configured.
fn open_opener(config: &Config) -> Result<Opener, ServerError> {
    let cipher = config
        .encryption
        .as_ref()
        .map(|settings| {
            crate::open_cipher(&config.data_dir, config.database_url.as_deref(), settings)
        })
        .transpose()?;
    Ok(Opener::new(cipher))
}

/// How often a server on PostgreSQL looks whether another one destroyed data keys.
const SHRED_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// How long it goes on using cached keys while it cannot look.
const SHRED_BLIND_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// On PostgreSQL, where every server shares the data keys: drops the keys this server
/// cached whenever another server shredded some, so a shredding on one server reads as
/// `[shredded]` on all within [`SHRED_POLL`] (and is no longer sealed with). The blind
/// index is shared too (the shredding server drops its entries), and searches check the
/// keys (`Reads::search`), so an entry another server's indexer added from a key it still
/// had cached never matches.
fn spawn_shred_watcher(
    cipher: Arc<sealtrail_crypto::FieldCipher>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = None;
        let mut failing = false;
        let mut last_look = std::time::Instant::now();
        loop {
            let (c, last) = (cipher.clone(), seen);
            let looked = tokio::task::spawn_blocking(move || {
                let mut last = last;
                c.forget_keys_if_shredded(&mut last)
                    .map(|dropped| (last, dropped))
            })
            .await;
            match looked {
                Ok(Ok((last, dropped))) => {
                    if dropped && seen.is_some() {
                        tracing::info!(
                            "data keys were shredded on another server; cached keys dropped"
                        );
                    }
                    seen = last;
                    failing = false;
                    last_look = std::time::Instant::now();
                }
                Ok(Err(e)) if !failing => {
                    tracing::warn!(error = %e, "cannot look for shredded data keys; retrying");
                    failing = true;
                }
                _ => {}
            }
            // Unable to look for a while: forget the keys rather than keep opening what
            // another server may have shredded (they load again once the database answers;
            // until then sealed fields are shown sealed).
            if last_look.elapsed() >= SHRED_BLIND_AFTER {
                cipher.forget_cached_keys();
                seen = None;
                last_look = std::time::Instant::now();
            }
            tokio::select! {
                () = tokio::time::sleep(SHRED_POLL) => {}
                () = shutdown.cancelled() => break,
            }
        }
    })
}

/// Every configured sink, each a follower of the log until `shutdown`.
fn start_sinks(
    config: &Config,
    store: &Store,
    opener: &Opener,
    shutdown: &Shutdown,
) -> Result<Arc<sealtrail_sinks::Sinks>, ServerError> {
    let state = match &config.database_url {
        None => sealtrail_sinks::SinkState::DataDir(&config.data_dir),
        Some(url) => sealtrail_sinks::SinkState::Postgres {
            url,
            data_dir: &config.data_dir,
            lease: sealtrail_sinks::LeaseSettings::with_ttl(std::time::Duration::from_secs(
                config.sink_lease_secs,
            )),
        },
    };
    let sinks = sealtrail_sinks::Sinks::start(
        &config.sinks,
        &config.routes,
        state,
        store.reader.clone(),
        store.sequencer.durable_size(),
        opener.clone(),
        shutdown,
    )
    .map_err(|e| ServerError::Sinks(e.to_string()))?;
    Ok(Arc::new(sinks))
}

/// The blind index kept up to date by a follower of the log until `shutdown`.
fn spawn_blind_indexer(
    index: Arc<dyn sealtrail_crypto::BlindIndexStore>,
    store: &Store,
    opener: &Opener,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<()> {
    let consumer = blind::BlindIndexer {
        index,
        opener: opener.clone(),
    };
    spawn_follower(consumer, store, shutdown)
}

/// The per-source tracker, a follower of the log until `shutdown`.
fn spawn_source_tracker(
    sources: Arc<dyn sealtrail_store::sources::SourceStore>,
    store: &Store,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<()> {
    let consumer = crate::app::sources::SourceTracker {
        store: sources,
        stored_cursor: 0,
    };
    spawn_follower(consumer, store, shutdown)
}

/// `consumer` driven by a follower of the durable log until `shutdown`.
fn spawn_follower(
    consumer: impl sealtrail_store::follow::LogConsumer + Sync + 'static,
    store: &Store,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<()> {
    let follower = LogFollower::new(
        store.reader.clone(),
        store.sequencer.durable_size(),
        shutdown.clone(),
    );
    tokio::spawn(async move { follower.run(consumer).await })
}

/// Where per-source progress is kept: PostgreSQL, shared by the servers, or the data
/// directory.
async fn open_sources(
    config: &Config,
) -> Result<Arc<dyn sealtrail_store::sources::SourceStore>, ServerError> {
    if let Some(url) = &config.database_url {
        return Ok(Arc::new(sealtrail_store::sources::PgSources::open(url)));
    }
    let dir = config.data_dir.clone();
    Ok(Arc::new(
        blocking_store(move || sealtrail_store::sources::SqliteSources::open(&dir)).await?,
    ))
}

async fn join_thread(
    thread: std::thread::JoinHandle<()>,
    what: &'static str,
) -> Result<(), ServerError> {
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?
        .map_err(|_| ServerError::Serve(std::io::Error::other(format!("{what} panicked"))))
}

/// Commit metrics; on the embedded store the hub is fed by the sequencer as each group
/// becomes durable (on PostgreSQL the shared-log follower publishes every server's
/// events, this one's too).
fn sequencer_hooks(
    config: &Config,
    metrics: &Arc<Metrics>,
    hub: &Arc<stream::Hub>,
) -> SequencerHooks {
    let observed = metrics.clone();
    let publisher = hub.clone();
    SequencerHooks {
        on_commit: Some(Box::new(move |stats: &CommitStats| {
            observed.commit_events.observe(stats.events as f64);
            observed
                .commit_seconds
                .observe(stats.duration.as_secs_f64());
        })),
        on_durable: config
            .database_url
            .is_none()
            .then(|| Box::new(move |events| publisher.publish(events)) as _),
    }
}

/// Equality search on encrypted fields, when encryption names blind-indexed fields.
async fn open_blind_index(
    config: &Config,
    opener: &Opener,
) -> Result<Option<Arc<dyn sealtrail_crypto::BlindIndexStore>>, ServerError> {
    let wanted = config
        .encryption
        .as_ref()
        .is_some_and(|e| !e.blind_index.is_empty());
    if !wanted || opener.cipher().is_none() {
        return Ok(None);
    }
    // On PostgreSQL one index for every server: a shredding's entries go for all at once.
    if let Some(url) = &config.database_url {
        return Ok(Some(Arc::new(
            sealtrail_store::blind_index::PgBlindIndex::open(url),
        )));
    }
    let dir = config.data_dir.clone();
    Ok(Some(Arc::new(
        blocking_store(move || sealtrail_store::blind_index::SqliteBlindIndex::open(&dir)).await?,
    )))
}

/// The log's writer (running), its readers and the API keys, on the configured store.
struct Store {
    sequencer: SequencerHandle,
    sequencer_thread: std::thread::JoinHandle<()>,
    verifier: sealtrail_core::CheckpointVerifier,
    reader: Arc<dyn LogReader>,
    keys: ApiKeyStore,
    indexer: Option<IndexerHandle>,
}

fn sequencer_config(config: &Config) -> SequencerConfig {
    SequencerConfig {
        max_group_events: config.log.max_group_events,
        max_queued_requests: config.log.max_queued_requests,
        checkpoint_history_interval: Duration::from_secs(config.log.checkpoint_history_secs),
        signing_key_dir: Some(config.data_dir.clone()),
    }
}

async fn open_store(config: &Config, hooks: SequencerHooks) -> Result<Store, ServerError> {
    match config.database_url.clone() {
        Some(url) => open_postgres_store(config, url, hooks).await,
        None => open_embedded_store(config, hooks).await,
    }
}

async fn open_postgres_store(
    config: &Config,
    url: String,
    hooks: SequencerHooks,
) -> Result<Store, ServerError> {
    let (data_dir, origin) = (config.data_dir.clone(), config.log_origin.clone());
    let sequencer_config = sequencer_config(config);
    let (backend, signer) = blocking_store({
        let url = url.clone();
        move || sealtrail_store::postgres::open_log(&url, &data_dir, origin.as_deref())
    })
    .await?;
    let verifier = signer.verifier().clone();
    // Opening the log reads it through the blocking PostgreSQL client.
    let (sequencer, sequencer_thread) =
        blocking_store(move || Sequencer::spawn(backend, signer, sequencer_config, hooks)).await?;
    let data_dir = config.data_dir.clone();
    let (reader, keys) = blocking_store(move || {
        let (keys, imported) = ApiKeyStore::open_postgres(&url, Some(&data_dir))?;
        if imported > 0 {
            tracing::info!(
                imported,
                "copied the data directory's API keys into PostgreSQL, where every server \
                 on the database reads them from now on"
            );
        }
        Ok((sealtrail_store::postgres::PgReader::open(&url)?, keys))
    })
    .await?;
    Ok(Store {
        sequencer,
        sequencer_thread,
        verifier,
        reader: Arc::new(reader),
        keys,
        indexer: None,
    })
}

async fn open_embedded_store(config: &Config, hooks: SequencerHooks) -> Result<Store, ServerError> {
    let (data_dir, origin) = (config.data_dir.clone(), config.log_origin.clone());
    let (backend, signer) = blocking_store(move || open_log(&data_dir, origin.as_deref())).await?;
    let verifier = signer.verifier().clone();
    let (sequencer, sequencer_thread) =
        Sequencer::spawn(backend, signer, sequencer_config(config), hooks)?;
    let data_dir = config.data_dir.clone();
    let durable = sequencer.durable_size();
    let (reader, keys, indexer) = blocking_store(move || {
        let indexer = Indexer::open(&data_dir, IndexerConfig::default())?
            .bounded_by(durable)
            .spawn()?;
        Ok((
            SqliteReader::open(&data_dir)?,
            ApiKeyStore::open(&data_dir)?,
            indexer,
        ))
    })
    .await?;
    Ok(Store {
        sequencer,
        sequencer_thread,
        verifier,
        reader: Arc::new(reader),
        keys,
        indexer: Some(indexer),
    })
}

/// Retention over the opened store, with its ledger on a connection of its own.
/// The archive retention writes to and `include_archived` reads, opened on a blocking
/// thread (an S3 location builds a blocking HTTP client).
async fn open_archive(
    config: &Config,
) -> Result<Option<Arc<sealtrail_archive::ArchiveLocation>>, ServerError> {
    let Some(text) = config.retention_run.archive_to.clone() else {
        return Ok(None);
    };
    let lock_days = config.retention_run.object_lock_days;
    let location = tokio::task::spawn_blocking(move || {
        let location = sealtrail_archive::ArchiveLocation::parse(&text)?;
        match lock_days {
            Some(days) => location.with_object_lock_days(days),
            None => Ok(location),
        }
    })
    .await
    .map_err(|e| ServerError::Archive(e.to_string()))?
    .map_err(|e| ServerError::Archive(e.to_string()))?;
    Ok(Some(Arc::new(location)))
}

async fn open_retention(
    config: &Config,
    store: &Store,
    holds: Arc<sealtrail_store::holds::HoldStore>,
    archive: Option<Arc<sealtrail_archive::ArchiveLocation>>,
) -> Result<Retention, ServerError> {
    let ledger: Arc<dyn sealtrail_store::retention::RetentionLedger> = match &config.database_url {
        Some(url) => {
            let url = url.clone();
            Arc::new(blocking_store(move || sealtrail_store::postgres::PgLedger::open(&url)).await?)
        }
        None => {
            let dir = config.data_dir.clone();
            Arc::new(
                blocking_store(move || sealtrail_store::sqlite::SqliteLedger::open(&dir)).await?,
            )
        }
    };
    Ok(Retention::new(RetentionParts {
        reader: store.reader.clone(),
        ledger,
        holds,
        sequencer: store.sequencer.clone(),
        verifier: store.verifier.clone(),
        policies: config.retention.clone(),
        settings: config.retention_run.clone(),
        sqlite_dir: config
            .database_url
            .is_none()
            .then(|| config.data_dir.clone()),
        archive,
    }))
}
