//! Sealtrail's HTTP server: opens the store, starts the sequencer and the indexer, and
//! serves the `/v1` API, health and metrics until told to stop.
//!
//! Shutdown is ordered so nothing acknowledged is lost and nothing is acknowledged late:
//! stop accepting connections, end live streams (clients resume from their last seq),
//! let in-flight requests finish (their appends complete), then close the sequencer
//! (which commits what it has queued) and the indexer.

pub mod access;
pub mod api;
pub mod app;
pub mod auth;
pub mod blind;
mod components;
pub mod config;
pub mod console;
pub mod error;
mod follower;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
mod serve;
pub mod state;
pub mod stream;
pub mod witness;

use std::net::SocketAddr;
use std::sync::Arc;

use sealtrail_store::StoreError;
use sealtrail_store::follow::Shutdown;
use tokio::sync::oneshot;

use components::Components;
pub use config::Config;
use metrics::Metrics;

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
    /// The archive (`retention_run.archive_to`) cannot be used.
    #[error("retention_run.archive_to: {0}")]
    Archive(String),
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
    let shutdown = Shutdown::new();
    let metrics = Arc::new(Metrics::new());
    let (components, parts) = Components::open(&config, metrics.clone(), shutdown.clone()).await?;
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(source) => {
            drop(parts);
            components.close().await?;
            return Err(ServerError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    let local_addr = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(%local_addr, tree_size = parts.sequencer.tree_size(), origin = parts.verifier.origin(), "serving");
    let limits = serve::ConnectionLimits {
        header_read_timeout: config.request_timeout(),
        max_header_bytes: config.limits.max_header_bytes,
        max_connections: config.limits.max_connections,
    };
    let app = routes::router(parts.into_state(config, metrics));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stopping = shutdown.clone();
        serve::serve(
            listener,
            app,
            tls,
            limits,
            async move {
                let _ = stopped.await;
            },
            // Streams and every follower of the log stop at once; requests in flight
            // finish before the log closes.
            move || stopping.cancel(),
        )
        .await;
        components.close().await
    });
    Ok(RunningServer {
        local_addr,
        stop,
        task,
    })
}

/// A master key: 32 random bytes in base64, read from where `secret` says; errors name
/// `field`.
fn master_key_bytes(
    field: &str,
    secret: &sealtrail_sinks::config::SecretRef,
) -> Result<[u8; 32], ServerError> {
    use base64::Engine as _;
    let text = secret
        .resolve()
        .map_err(|e| ServerError::Store(StoreError::Invalid(format!("{field}: {e}"))))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.expose().trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            ServerError::Store(StoreError::Invalid(format!(
                "{field}: must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"
            )))
        })
}

/// The field cipher from the configured master key (base64 of 32 bytes) and fields.
/// Its data keys are in `database_url` when set (shared by every server on it), else in
/// `data_dir`.
pub fn open_cipher(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    settings: &config::EncryptionConfig,
) -> Result<Arc<sealtrail_crypto::FieldCipher>, ServerError> {
    let master_key = master_key_bytes("encryption.master_key", &settings.master_key)?;
    let previous_master_keys = settings
        .previous_master_keys
        .iter()
        .enumerate()
        .map(|(i, secret)| {
            master_key_bytes(&format!("encryption.previous_master_keys[{i}]"), secret)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let settings = sealtrail_crypto::EncryptionSettings {
        master_key,
        previous_master_keys,
        fields: settings.fields.clone(),
        subject: settings.subject.clone(),
        blind_index: settings.blind_index.clone(),
    };
    // Checked before the key file is created: a configuration refused leaves no file.
    settings.check()?;
    let keys: Box<dyn sealtrail_crypto::DataKeyStore> = match database_url {
        None => Box::new(sealtrail_store::data_keys::SqliteDataKeyStore::open(
            data_dir,
        )?),
        Some(url) => {
            Box::new(sealtrail_store::data_keys::PgDataKeyStore::open(url, Some(data_dir))?.0)
        }
    };
    let cipher = sealtrail_crypto::FieldCipher::new(settings, keys)?;
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

pub(crate) async fn blocking_store<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?
        .map_err(ServerError::Store)
}
