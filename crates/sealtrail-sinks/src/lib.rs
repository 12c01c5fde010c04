//! Routing and sinks: every configured sink is a durable cursor on the log that delivers
//! the events its routes match to Datadog, Elasticsearch/OpenSearch, Slack, PagerDuty or a
//! signed webhook, at least once, in order, surviving receiver outages and restarts.
//!
//! - [`config`]: the `[[sinks]]` and `[[routes]]` config and its checks;
//! - [`route`]: which events a sink receives;
//! - [`destinations`]: the [`Destination`](destinations::Destination) trait and one folder
//!   per kind of receiver (its config, checks, requests and answers), listed once in
//!   its registry;
//! - [`delivery`]: what a receiver's answer means (retry, split, refuse);
//! - [`runner`]: the per-sink loop (cursor, batches, backoff, circuit breaker, dead letters);
//! - [`store`]: cursors and dead letters in `sinks.sqlite`, or in PostgreSQL;
//! - [`lease`]: on PostgreSQL, one server at a time runs each sink.

pub mod config;
pub mod delivery;
pub mod destinations;
pub mod event;
pub mod lease;
pub mod route;
pub mod runner;
pub mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sealtrail_store::follow::{FollowTiming, LogFollower, Shutdown};
use sealtrail_store::{DurableSize, LogReader};
use tokio::sync::Notify;

pub use config::{RouteConfig, SinkConfig, SinkKind};
pub use lease::LeaseSettings;
pub use runner::SinkStatus;
pub use store::DeadLetter;

use destinations::BuiltDestination;
use route::Route;
use runner::Runner;
use store::SinkStore;

/// Where the sinks keep their cursors, dead letters and held events.
pub enum SinkState<'a> {
    /// `sinks.sqlite` in the data directory: this server alone runs its sinks.
    DataDir(&'a Path),
    /// The PostgreSQL database every server shares: each sink runs on one server at a
    /// time, under a lease (a `sinks.sqlite` in `data_dir` is copied in once, when the
    /// database has no sink state yet).
    Postgres {
        /// The database.
        url: &'a str,
        /// The data directory a `sinks.sqlite` may be copied in from.
        data_dir: &'a Path,
        /// This server's name and the lease's length.
        lease: LeaseSettings,
    },
}

/// Why sinks could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is wrong: every problem, one per line.
    #[error("invalid sink configuration:\n{}", .0.join("\n"))]
    Config(Vec<String>),
    /// The cursor store failed.
    #[error(transparent)]
    Store(#[from] store::StoreFailure),
    /// No sink has this name.
    #[error("no sink is named {0:?}")]
    UnknownSink(String),
}

/// Checks the configuration as `serve` would at start, reading every secret, without
/// starting anything: the problems, each naming its entry and key.
pub fn check_config(sinks: &[SinkConfig], routes: &[RouteConfig]) -> Vec<String> {
    let mut problems = config::check(sinks, routes);
    if let Err(more) = build_destinations(sinks) {
        problems.extend(more);
    }
    problems
}

struct RunningSink {
    status: Arc<Mutex<SinkStatus>>,
    wake: Arc<Notify>,
}

/// The running sinks.
pub struct Sinks {
    sinks: Vec<(String, RunningSink)>,
    store: Arc<SinkStore>,
    durable: DurableSize,
    stop: Shutdown,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Sinks {
    /// Checks the configuration, reads the secrets and starts one delivery task per sink,
    /// each a [`LogFollower`] resuming from its saved cursor, until `shutdown` (or
    /// [`stop`](Self::stop)).
    pub fn start(
        sinks: &[SinkConfig],
        routes: &[RouteConfig],
        state: SinkState<'_>,
        reader: Arc<dyn LogReader>,
        durable: DurableSize,
        opener: sealtrail_crypto::Opener,
        shutdown: &Shutdown,
    ) -> Result<Self, SinkError> {
        let problems = config::check(sinks, routes);
        if !problems.is_empty() {
            return Err(SinkError::Config(problems));
        }
        let destinations = build_destinations(sinks).map_err(SinkError::Config)?;
        install_tls_provider();
        let (store, lease) = match state {
            SinkState::DataDir(dir) => (SinkStore::open(dir)?, None),
            SinkState::Postgres {
                url,
                data_dir,
                lease,
            } => (
                SinkStore::open_postgres(url, Some(data_dir))?.0,
                Some(lease),
            ),
        };
        let store = Arc::new(store);
        let mut sink_routes = routes_by_sink(routes);
        let stop = shutdown.child_token();
        let mut running = Vec::new();
        let mut runners = Vec::new();
        // Everything that can fail happens before any sink starts.
        for (sink, destination) in sinks.iter().zip(destinations) {
            let routes = sink_routes.remove(sink.name.as_str()).unwrap_or_default();
            if routes.is_empty() {
                tracing::warn!(sink = %sink.name, "no route names this sink; it receives nothing");
            }
            let client = http_client(sink)?;
            let status = Arc::new(Mutex::new(initial_status(sink, &routes, &store)?));
            let wake = Arc::new(Notify::new());
            let runner = Runner {
                config: sink.clone(),
                destination,
                routes,
                client,
                store: store.clone(),
                reader: reader.clone(),
                durable: durable.clone(),
                status: status.clone(),
                wake: wake.clone(),
                stop: stop.clone(),
                windows: HashMap::new(),
                digest_due: HashMap::new(),
                jitter: rand::SeedableRng::seed_from_u64(
                    sealtrail_core::time_format::now_micros() as u64 ^ runners.len() as u64,
                ),
                cursor: 0,
                held: Vec::new(),
                opener: opener.clone(),
                fence: None,
            };
            runners.push(runner);
            running.push((sink.name.clone(), RunningSink { status, wake }));
        }
        let tasks = spawn_followers(runners, &durable, &stop, lease.as_ref());
        Ok(Self {
            sinks: running,
            store,
            durable,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// Every sink's state.
    pub fn status(&self) -> Vec<SinkStatus> {
        let through = self.durable.get();
        let now = sealtrail_core::time_format::now_micros();
        self.sinks
            .iter()
            .map(|(_, sink)| {
                let mut status = sink
                    .status
                    .lock()
                    .expect("status lock is never poisoned")
                    .clone();
                status.lag_events = through.saturating_sub(status.cursor);
                status.lag_seconds = match (status.lag_events, status.oldest_pending_micros) {
                    (0, _) | (_, None) => 0.0,
                    (_, Some(oldest)) => (now - oldest).max(0) as f64 / 1e6,
                };
                status
            })
            .collect()
    }

    fn find(&self, name: &str) -> Result<&RunningSink, SinkError> {
        self.sinks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| SinkError::UnknownSink(name.to_owned()))
    }

    /// A sink's dead letters, oldest first, at most `limit`.
    pub fn dead_letters(&self, name: &str, limit: usize) -> Result<Vec<DeadLetter>, SinkError> {
        self.find(name)?;
        Ok(self.store.dead_letters(name, limit)?)
    }

    /// Asks a sink to send dead letters again (those with the given seqs, or all); the
    /// number marked. Accepted ones leave the list; refused ones stay with the new answer.
    pub fn replay(&self, name: &str, seqs: Option<&[u64]>) -> Result<usize, SinkError> {
        let sink = self.find(name)?;
        let marked = self.store.request_replay(name, seqs)?;
        sink.wake.notify_one();
        Ok(marked)
    }

    /// Stops every sink (an interrupted request is sent again at the next start) and waits.
    pub async fn stop(&self) {
        self.stop.cancel();
        let tasks =
            std::mem::take(&mut *self.tasks.lock().expect("task list lock is never poisoned"));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Reads every sink's secrets and builds its destination, so that `start` and
/// [`check_config`] report the same problems: all the destinations in config order, or one
/// problem per sink that could not be built, naming its entry.
fn build_destinations(sinks: &[SinkConfig]) -> Result<Vec<Box<dyn BuiltDestination>>, Vec<String>> {
    let mut destinations = Vec::with_capacity(sinks.len());
    let mut problems = Vec::new();
    for (i, sink) in sinks.iter().enumerate() {
        match sink.kind.build(sink.request_timeout()) {
            Ok(d) => destinations.push(d),
            Err(e) => problems.push(format!("sinks[{i}] ({}).{e}", sink.name)),
        }
    }
    if problems.is_empty() {
        Ok(destinations)
    } else {
        Err(problems)
    }
}

/// Compiles the routes and files each under every sink it names, in config order, so a
/// sink's runner gets only the routes meant for it.
fn routes_by_sink(routes: &[RouteConfig]) -> HashMap<&str, Vec<Route>> {
    let mut sink_routes: HashMap<&str, Vec<Route>> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        for name in &route.sinks {
            sink_routes
                .entry(name.as_str())
                .or_default()
                .push(Route::compile(i, route));
        }
    }
    sink_routes
}

/// The HTTP client one sink delivers with: its request timeout on every request and
/// connection, and no redirects followed.
fn http_client(sink: &SinkConfig) -> Result<reqwest::Client, SinkError> {
    reqwest::Client::builder()
        // A redirect would turn a POST into a GET without a body (an "accepted"
        // request that delivered nothing) or carry the API key to another host:
        // 3xx is answered as an error instead.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(sink.request_timeout())
        .connect_timeout(sink.request_timeout())
        .user_agent(concat!("sealtrail/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SinkError::Config(vec![format!("sinks ({}): HTTP client: {e}", sink.name)]))
}

/// What a sink's status shows before its runner has done anything: its routes, a closed
/// circuit and the dead letters left from earlier runs.
fn initial_status(
    sink: &SinkConfig,
    routes: &[Route],
    store: &SinkStore,
) -> Result<SinkStatus, SinkError> {
    Ok(SinkStatus {
        name: sink.name.clone(),
        kind: sink.kind_name().to_owned(),
        routes: routes.iter().map(|r| r.label.clone()).collect(),
        circuit: "closed".into(),
        dead_letters: store.dead_letter_count(&sink.name)?,
        lease: store.is_shared().then(|| "standby".into()),
        ..SinkStatus::default()
    })
}

/// Starts one [`LogFollower`] task per runner, all stopping on `stop`; only called once
/// every runner is built, so no sink starts if another one cannot.
fn spawn_followers(
    runners: Vec<Runner>,
    durable: &DurableSize,
    stop: &Shutdown,
    lease: Option<&LeaseSettings>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let timing = FollowTiming {
        poll: runner::IDLE_POLL,
        retry_after: std::time::Duration::from_secs(1),
    };
    runners
        .into_iter()
        .map(|runner| {
            if let Some(lease) = lease {
                return tokio::spawn(lease::run_leased(
                    runner,
                    durable.clone(),
                    stop.clone(),
                    timing,
                    lease.clone(),
                ));
            }
            let follower =
                LogFollower::without_reader(durable.clone(), stop.clone()).with_timing(timing);
            tokio::spawn(async move { follower.run(runner).await })
        })
        .collect()
}

/// reqwest is built without a TLS crypto provider of its own: ring is installed once.
fn install_tls_provider() {
    // Err means one is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
