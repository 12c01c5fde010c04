//! Helpers the tests and benchmarks share: a throwaway PostgreSQL cluster, started from the
//! server binaries on the machine, for tests that must stop and start their own database.

pub mod pg;
pub mod python;
pub mod s3;
pub mod smtp;
pub mod tls;

pub use pg::PgCluster;

/// An HTTP client for tests and benchmarks. reqwest is built with rustls and no crypto
/// provider of its own (ring is installed instead, as the server does), so a process must
/// install one before it builds its first client: this does.
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .expect("a default HTTP client builds")
}

/// [`http_client`]'s builder, for clients with their own settings.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Err means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
