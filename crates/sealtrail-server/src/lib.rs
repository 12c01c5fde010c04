//! Sealtrail's HTTP server: opens the store, starts the sequencer and the indexer, and
//! serves the `/v1` API, health and metrics until told to stop.
//!
//! Shutdown is ordered so nothing acknowledged is lost and nothing is acknowledged late:
//! stop accepting connections, end live streams (clients resume from their last seq),
//! let in-flight requests finish (their appends complete), then close the sequencer
//! (which commits what it has queued) and the indexer.

pub mod access;
pub mod api;
pub mod auth;
pub mod blind;
pub mod config;
mod drain;
pub mod error;
mod follower;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
mod serve;
pub mod state;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sealtrail_store::sqlite::{Indexer, IndexerConfig, SqliteReader, open_log};
use sealtrail_store::{
    ApiKeyStore, CommitStats, LogReader, Sequencer, SequencerConfig, SequencerHooks, StoreError,
};
use tokio::sync::oneshot;

pub use config::Config;
use metrics::Metrics;
use state::{AppState, Inner};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened or is not trustworthy.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Field encryption could not start (its settings, its data keys).
    #[error(transparent)]
    Encryption(#[from] sealtrail_crypto::CryptoError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("{0}")]
    Tls(String),
    /// The sinks could not start (configuration, secrets, their state file).
    #[error("{0}")]
    Sinks(String),
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// A server that is accepting requests.
pub struct RunningServer {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops gracefully and waits until the log is closed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.run_until(async {}).await
    }

    /// Stops when `signal` completes, then waits for the log to close.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let RunningServer { stop, task, .. } = self;
        let mut task = task;
        tokio::select! {
            result = &mut task => return result.map_err(|e| ServerError::Serve(std::io::Error::other(e)))?,
            () = signal => {}
        }
        let _ = stop.send(());
        task.await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?
    }
}

/// Opens the store in `config.data_dir` and starts serving on `config.listen`.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let config_limits = config.limits.clone();
    let metrics = Arc::new(Metrics::new());
    let observed = metrics.clone();
    let cipher = config
        .encryption
        .as_ref()
        .map(|settings| open_cipher(&config.data_dir, settings))
        .transpose()?;
    let opener = sealtrail_crypto::Opener::new(cipher);
    let hub = stream::Hub::start(
        0,
        config.stream.live_queue_events,
        metrics.clone(),
        opener.clone(),
    );
    let publisher = hub.clone();
    let hooks = SequencerHooks {
        on_commit: Some(Box::new(move |stats: &CommitStats| {
            observed.commit_events.observe(stats.events as f64);
            observed
                .commit_seconds
                .observe(stats.duration.as_secs_f64());
        })),
        // On PostgreSQL the log follower publishes every server's events, this one's too.
        on_durable: config
            .database_url
            .is_none()
            .then(|| Box::new(move |events| publisher.publish(events)) as _),
    };
    let sequencer_config = SequencerConfig {
        max_group_events: config.log.max_group_events,
        max_queued_requests: config.log.max_queued_requests,
        checkpoint_history_interval: Duration::from_secs(config.log.checkpoint_history_secs),
    };
    let store = open_store(&config, sequencer_config, hooks).await?;
    let (sequencer, sequencer_thread, verifier) =
        (store.sequencer, store.sequencer_thread, store.verifier);
    hub.set_published(sequencer.tree_size());
    let (reader, keys, indexer) = (store.reader, store.keys, store.indexer);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(%local_addr, tree_size = sequencer.tree_size(), origin = verifier.origin(), "serving");

    let follower = match &config.database_url {
        Some(url) => Some(
            follower::Follower::spawn(
                url.clone(),
                reader.clone(),
                sequencer.clone(),
                verifier.clone(),
                hub.clone(),
            )
            .map_err(ServerError::Serve)?,
        ),
        None => None,
    };
    let streams = stream::Streams::new(
        hub,
        reader.clone(),
        config.stream.clone(),
        metrics.clone(),
        opener.clone(),
    );
    // On PostgreSQL, ingest keeps acknowledging from a local spool while the database is
    // unreachable, and a drainer moves the spool into the log when it is back.
    let spool = match &config.database_url {
        Some(_) => {
            let dir = config.data_dir.clone();
            let spool = blocking_store(move || sealtrail_store::spool::Spool::open(&dir)).await?;
            if spool.depth() > 0 {
                tracing::info!(
                    events = spool.depth(),
                    "the spool holds events; draining them"
                );
            }
            Some(Arc::new(spool))
        }
        None => None,
    };
    let sinks = Arc::new(
        sealtrail_sinks::Sinks::start(
            &config.sinks,
            &config.routes,
            &config.data_dir,
            reader.clone(),
            sequencer.durable_size(),
            opener.clone(),
        )
        .map_err(|e| ServerError::Sinks(e.to_string()))?,
    );
    // Equality search on encrypted fields: a cursor on the log keeping the blind index.
    let (blind_stop, blind_stopped) = tokio::sync::watch::channel(false);
    let blind = match opener.cipher() {
        Some(_)
            if config
                .encryption
                .as_ref()
                .is_some_and(|e| !e.blind_index.is_empty()) =>
        {
            let dir = config.data_dir.clone();
            Some(Arc::new(
                blocking_store(move || sealtrail_store::blind_index::SqliteBlindIndex::open(&dir))
                    .await?,
            ) as Arc<dyn sealtrail_crypto::BlindIndexStore>)
        }
        _ => None,
    };
    let blind_task = blind.clone().map(|index| {
        tokio::spawn(blind::follow(
            index,
            reader.clone(),
            sequencer.durable_size(),
            opener.clone(),
            blind_stopped,
        ))
    });
    let drainer = spool.clone().map(|spool| {
        tokio::spawn(drain::run(
            spool,
            sequencer.clone(),
            reader.clone(),
            metrics.clone(),
        ))
    });
    let state = AppState::new(Inner {
        streams,
        sequencer,
        reader,
        keys: Arc::new(keys),
        verifier,
        config,
        metrics,
        indexer: indexer.as_ref().map(|i| i.progress()),
        spool,
        sinks: sinks.clone(),
        opener,
        blind,
        rate_limits: limits::KeyRateLimiter::new(
            config_limits.key_requests_per_sec,
            config_limits.key_burst,
        ),
    });
    let streams = state.streams.clone();
    let header_read_timeout = state.config.request_timeout();
    let app = routes::router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve::serve(
            listener,
            app,
            tls,
            serve::ConnectionLimits {
                header_read_timeout,
                max_header_bytes: config_limits.max_header_bytes,
                max_connections: config_limits.max_connections,
            },
            async move {
                let _ = stopped.await;
            },
            move || streams.shut_down(),
        )
        .await;
        // Every clone of the state (and so of the sequencer handle) lived in the router,
        // which is gone now: the sequencer drains its queue and stops.
        // The drainer and the follower hold sequencer handles too. (A drain cut short is
        // finished at the next start: it skips what reached the log.)
        // Sinks and the blind index resume from their cursors at the next start.
        sinks.stop().await;
        let _ = blind_stop.send(true);
        if let Some(task) = blind_task {
            let _ = task.await;
        }
        if let Some(drainer) = drainer {
            drainer.abort();
            let _ = drainer.await;
        }
        if let Some(follower) = follower {
            tokio::task::spawn_blocking(move || follower.stop())
                .await
                .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
        }
        tokio::task::spawn_blocking(move || sequencer_thread.join())
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?
            .map_err(|_| {
                ServerError::Serve(std::io::Error::other("the sequencer thread panicked"))
            })?;
        if let Some(indexer) = indexer {
            tokio::task::spawn_blocking(move || indexer.stop())
                .await
                .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
        }
        tracing::info!("log closed");
        Ok(())
    });
    Ok(RunningServer {
        local_addr,
        stop,
        task,
    })
}

/// The log's writer (running), its readers and the API keys, on the configured store.
struct Store {
    sequencer: sealtrail_store::SequencerHandle,
    sequencer_thread: std::thread::JoinHandle<()>,
    verifier: sealtrail_core::CheckpointVerifier,
    reader: Arc<dyn LogReader>,
    keys: ApiKeyStore,
    indexer: Option<sealtrail_store::sqlite::IndexerHandle>,
}

async fn open_store(
    config: &Config,
    sequencer_config: SequencerConfig,
    hooks: SequencerHooks,
) -> Result<Store, ServerError> {
    let data_dir = config.data_dir.clone();
    let origin = config.log_origin.clone();
    if let Some(url) = config.database_url.clone() {
        let (backend, signer) = blocking_store({
            let url = url.clone();
            move || sealtrail_store::postgres::open_log(&url, &data_dir, origin.as_deref())
        })
        .await?;
        let verifier = signer.verifier().clone();
        // Opening the log reads it through the blocking PostgreSQL client.
        let (sequencer, sequencer_thread) =
            blocking_store(move || Sequencer::spawn(backend, signer, sequencer_config, hooks))
                .await?;
        let data_dir = config.data_dir.clone();
        let (reader, keys) = blocking_store(move || {
            Ok((
                sealtrail_store::postgres::PgReader::open(&url)?,
                ApiKeyStore::open(&data_dir)?,
            ))
        })
        .await?;
        return Ok(Store {
            sequencer,
            sequencer_thread,
            verifier,
            reader: Arc::new(reader),
            keys,
            indexer: None,
        });
    }
    let (backend, signer) = blocking_store(move || open_log(&data_dir, origin.as_deref())).await?;
    let verifier = signer.verifier().clone();
    let (sequencer, sequencer_thread) = Sequencer::spawn(backend, signer, sequencer_config, hooks)?;
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

/// The field cipher from the configured master key (base64 of 32 bytes) and fields.
fn open_cipher(
    data_dir: &std::path::Path,
    settings: &config::EncryptionConfig,
) -> Result<Arc<sealtrail_crypto::FieldCipher>, ServerError> {
    use base64::Engine as _;
    let secret = settings.master_key.resolve().map_err(|e| {
        ServerError::Store(StoreError::Invalid(format!("encryption.master_key: {e}")))
    })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret.expose())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            ServerError::Store(StoreError::Invalid(
                "encryption.master_key: must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"
                    .into(),
            ))
        })?;
    let settings = sealtrail_crypto::EncryptionSettings {
        master_key: bytes,
        fields: settings.fields.clone(),
        subject: settings.subject.clone(),
        blind_index: settings.blind_index.clone(),
    };
    // Checked before the key file is created: a configuration refused leaves no file.
    settings.check()?;
    let keys = sealtrail_store::data_keys::SqliteDataKeyStore::open(data_dir)?;
    let cipher = sealtrail_crypto::FieldCipher::new(settings, Box::new(keys))?;
    Ok(Arc::new(cipher))
}

/// The TLS server configuration from the certificate and key files (HTTP/1.1, rustls
/// with ring).
fn tls_acceptor(settings: &config::TlsSettings) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert_file, key_file) = (&settings.cert_file, &settings.key_file);
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("tls.cert_file {}: {e}", cert_file.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "tls.cert_file {}: no certificate in it",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| ServerError::Tls(format!("tls.key_file {}: {e}", key_file.display())))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServerError::Tls(format!(
                "tls: the key in {} does not fit the certificate in {}: {e}",
                key_file.display(),
                cert_file.display()
            ))
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server)))
}

async fn blocking_store<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?
        .map_err(ServerError::Store)
}
