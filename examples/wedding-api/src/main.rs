//! `wedding-api`: the example service. Run a Sealtrail, make it a key, then
//!
//! ```sh
//! cargo run -p wedding-api -- --sealtrail-key "$KEY" --spool-dir ./wedding-spool
//! ```
//!
//! It prints `wedding-api listening on http://ADDR` once it serves; SIGTERM or Ctrl-C stop
//! it gracefully, delivering (or spooling) every queued audit event first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sealtrail_client::Client;
use sealtrail_client::producer::{Producer, ProducerConfig};
use sealtrail_tower::TrustedProxies;

#[derive(Parser)]
#[command(about = "A wedding-planning API audited by Sealtrail")]
struct Args {
    /// Where to listen.
    #[arg(long, env = "WEDDING_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The Sealtrail server.
    #[arg(long, env = "SEALTRAIL_URL", default_value = "http://127.0.0.1:7700")]
    sealtrail_url: String,
    /// An API key with `ingest` (bound to the wedding business's tenant, or see --tenant).
    #[arg(long, env = "SEALTRAIL_KEY")]
    sealtrail_key: String,
    /// The tenant to record in, for a key bound to none.
    #[arg(long, env = "SEALTRAIL_TENANT")]
    tenant: Option<String>,
    /// Where audit events wait while Sealtrail is unreachable (none: in memory).
    #[arg(long, env = "WEDDING_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Session tokens of the coordinators: `token=user,…`.
    #[arg(
        long,
        env = "WEDDING_SESSIONS",
        default_value = "ines-token=coord:ines.marques,bruno-token=coord:bruno.costa"
    )]
    sessions: String,
    /// Serve without auditing (the baseline of `cargo xtask bench`'s overhead figures).
    #[arg(long)]
    no_audit: bool,
    /// Proxies whose X-Forwarded-For is believed (addresses or CIDR ranges, comma-separated).
    #[arg(long, env = "WEDDING_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sessions = wedding_api::parse_sessions(&args.sessions)?;
    let proxies = TrustedProxies::parse(&args.trusted_proxies)?;
    let client = Client::new(&args.sealtrail_url, &args.sealtrail_key)?;
    let mut config = ProducerConfig::new("wedding-api");
    config.tenant_id = args.tenant;
    config.spool_dir = args.spool_dir;
    let producer = Producer::start(client, config)?;
    let app = wedding_api::router(
        wedding_api::WeddingApp::new(sessions),
        (!args.no_audit).then(|| producer.clone()),
        proxies,
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("wedding-api listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped())
    .await?;
    let report = producer.shutdown(Duration::from_secs(10)).await;
    if report.spooled > 0 {
        eprintln!(
            "{} audit events wait in the spool for Sealtrail",
            report.spooled
        );
    }
    if report.undelivered > 0 {
        eprintln!("{} audit events could not be delivered", report.undelivered);
    }
    Ok(())
}

async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
