//! `sealtrail serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use sealtrail_server::Config;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (environment variables SEALTRAIL_* override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./sealtrail-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7700].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Keep the log in this PostgreSQL database instead of the embedded store (create its
    /// schema first with `sealtrail migrate`).
    #[arg(long)]
    database_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    raise_open_file_limit();
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(url) = args.database_url {
        config.database_url = Some(url);
    }
    if let (Some(cert_file), Some(key_file)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(sealtrail_server::config::TlsSettings {
            cert_file,
            key_file,
        });
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let store = match &config.database_url {
        Some(url) => format!(
            "PostgreSQL store at {}",
            sealtrail_store::postgres::redact(url)
        ),
        None => format!("embedded store in {}", config.data_dir.display()),
    };
    let server = sealtrail_server::start(config)
        .await
        .with_context(|| format!("cannot start on the {store}"))?;
    println!(
        "sealtrail listening on {scheme}://{} ({store})",
        server.local_addr(),
    );
    server.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing requests in flight");
}

/// Every stream subscriber holds a socket: take all the descriptors the system allows us
/// (the soft limit is often 1024, far below `stream.max_subscribers`).
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    tracing::warn!("could not raise the open-file limit");
                }
            }
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load the file as `serve` would (with SEALTRAIL_* overrides), read every sink's
    /// secrets, and print each problem; exit status 1 if there is any.
    Check {
        /// The TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn check_config(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { config } = command;
    let config = match Config::load(config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            println!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let problems = sealtrail_sinks::check_config(&config.sinks, &config.routes);
    if !problems.is_empty() {
        for problem in &problems {
            println!("{problem}");
        }
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "ok: {} sinks, {} routes; the log {}",
        config.sinks.len(),
        config.routes.len(),
        match &config.database_url {
            Some(url) => format!(
                "in PostgreSQL at {}",
                sealtrail_store::postgres::redact(url)
            ),
            None => format!("in {}", config.data_dir.display()),
        }
    );
    Ok(ExitCode::SUCCESS)
}
