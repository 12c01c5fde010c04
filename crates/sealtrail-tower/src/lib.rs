//! A tower layer for axum and hyper services: one Sealtrail audit event per HTTP request,
//! without anyone remembering to call it, and the request's context on every domain event
//! a handler records.
//!
//! Each request's event has action `http.request`, resource type `http.route` and the
//! matched route template as its resource id (`/guests/{id}`, never the raw path, so
//! events group by route), the status, the latency (to the response head), the actor
//! (the application's user: from an extractor of yours, or set by a handler with
//! [`Audit::set_user`]), the client's address (the peer, or behind [`TrustedProxies`] the
//! forwarded address), user agent, request id (the `x-request-id` sent, or a new one, set
//! on the request for the handlers and on the response), a severity from the outcome
//! (5xx: warning, a panic: critical, configurable), and in `details` the method, path,
//! query (sensitive values redacted) and any headers you name (credentials redacted).
//!
//! The event goes to a [`Producer`]'s queue, never to the network on the request path:
//! with a spool configured the queue keeps draining while Sealtrail is away, so requests
//! are answered at their normal speed.
//!
//! ```no_run
//! # async fn demo(producer: sealtrail_client::producer::Producer) {
//! use axum::{Router, routing::put};
//! use sealtrail_client::event::Event;
//! use sealtrail_tower::{Audit, AuditLayer, TrustedProxies};
//!
//! async fn update_diet(audit: Audit) -> &'static str {
//!     // The request's user, address and request id are filled in.
//!     let _ = audit
//!         .record(
//!             Event::new("guest.dietary_restriction.updated", "guest")
//!                 .resource_id("4711")
//!                 .change("dietary_restriction", "none", "vegan")
//!                 .reason("Guest called"),
//!         )
//!         .await;
//!     "ok"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/guests/{id}/diet", put(update_diet))
//!     .layer(
//!         AuditLayer::new(producer)
//!             .actor(|request| request.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned))
//!             .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).unwrap()),
//!     );
//! # }
//! ```

#![deny(missing_docs)]

mod client_ip;
mod redact;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::FutureExt as _;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use sealtrail_client::event::{Event, Outcome, RequestContext, Severity};
use sealtrail_client::producer::{Producer, ProducerError};
use serde_json::{Map, Value};

pub use client_ip::TrustedProxies;
pub use redact::{DEFAULT_REDACTED_QUERY, REDACTED};

/// The header a request id is read from and written to.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The resource id of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Longest request id taken from a request (the event's limit); longer ones are replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;
/// The event's limits on the user agent and the route template.
const MAX_USER_AGENT_CHARS: usize = 1024;
const MAX_ROUTE_CHARS: usize = 256;
/// Longest query recorded in `details`; a longer one is recorded by its length only.
const MAX_QUERY_BYTES: usize = 8192;

/// Reads something from a request's head (method, URI, headers, extensions).
pub type FromRequest = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
/// The severity of a request's event from its status and whether the handler panicked.
pub type SeverityRule = Arc<dyn Fn(StatusCode, bool) -> Severity + Send + Sync>;

/// The default severity: a panic is critical, a 5xx a warning, the rest info.
pub fn default_severity(status: StatusCode, panicked: bool) -> Severity {
    if panicked {
        Severity::Critical
    } else if status.is_server_error() {
        Severity::Warning
    } else {
        Severity::Info
    }
}

struct Settings {
    producer: Producer,
    actor: Option<FromRequest>,
    tenant: Option<FromRequest>,
    proxies: TrustedProxies,
    skip_paths: Vec<String>,
    redacted_query: Vec<String>,
    recorded_headers: Vec<HeaderName>,
    severity: SeverityRule,
}

/// The layer. Add it with `Router::layer` (so the matched route is known) or around any
/// tower service.
#[derive(Clone)]
pub struct AuditLayer {
    settings: Arc<Settings>,
}

impl AuditLayer {
    /// Events go to `producer`. Defaults: no actor extractor, no trusted proxy, skip
    /// `/healthz`, `/readyz` and `/favicon.ico`, redact [`DEFAULT_REDACTED_QUERY`],
    /// record no headers, [`default_severity`].
    pub fn new(producer: Producer) -> Self {
        Self {
            settings: Arc::new(Settings {
                producer,
                actor: None,
                tenant: None,
                proxies: TrustedProxies::none(),
                skip_paths: ["/healthz", "/readyz", "/favicon.ico"]
                    .map(str::to_owned)
                    .to_vec(),
                redacted_query: DEFAULT_REDACTED_QUERY
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                recorded_headers: Vec::new(),
                severity: Arc::new(default_severity),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        let settings = Arc::get_mut(&mut self.settings)
            .expect("the layer is configured before it is cloned into a service");
        change(settings);
        self
    }

    /// Who the request's user is, read from its head (e.g. the session your
    /// authentication layer put in the extensions). A handler may also set it with
    /// [`Audit::set_user`], which wins.
    pub fn actor(self, actor: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.with(|s| s.actor = Some(Arc::new(actor)))
    }

    /// Which tenant the request is for (else the producer's default).
    pub fn tenant(self, tenant: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.with(|s| s.tenant = Some(Arc::new(tenant)))
    }

    /// The proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Self {
        self.with(|s| s.proxies = proxies)
    }

    /// Paths recorded by no event (replaces the defaults).
    pub fn skip_paths<I: IntoIterator<Item = S>, S: Into<String>>(self, paths: I) -> Self {
        self.with(|s| s.skip_paths = paths.into_iter().map(Into::into).collect())
    }

    /// Query parameters whose values are redacted (replaces the defaults).
    pub fn redact_query<I: IntoIterator<Item = S>, S: Into<String>>(self, names: I) -> Self {
        self.with(|s| s.redacted_query = names.into_iter().map(Into::into).collect())
    }

    /// Request headers recorded in `details.headers` (credentials always redacted).
    pub fn record_headers<I: IntoIterator<Item = HeaderName>>(self, names: I) -> Self {
        self.with(|s| s.recorded_headers = names.into_iter().collect())
    }

    /// How a request's severity follows from its status and a panic.
    pub fn severity(
        self,
        rule: impl Fn(StatusCode, bool) -> Severity + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.severity = Arc::new(rule))
    }
}

impl<S> tower_layer::Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service the layer wraps around yours.
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    settings: Arc<Settings>,
}

/// The audit handle of the request being handled, in its extensions (and an axum
/// extractor): record domain events with the request's context, or name the user.
#[derive(Clone)]
pub struct Audit {
    producer: Producer,
    context: Arc<Mutex<RequestContext>>,
}

impl Audit {
    /// The request's context now.
    pub fn context(&self) -> RequestContext {
        self.context.lock().expect("never poisoned").clone()
    }

    /// Names the request's user (once the handler has authenticated it); the request's
    /// event and later domain events carry it.
    pub fn set_user(&self, user_id: impl Into<String>) {
        self.context.lock().expect("never poisoned").user_id = Some(user_id.into());
    }

    /// Queues `event` with what it leaves unset taken from the request.
    pub async fn record(&self, event: Event) -> Result<(), ProducerError> {
        let event = event.in_context(&self.context.lock().expect("never poisoned"));
        self.producer.send(event).await
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Audit {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Audit>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "sealtrail_tower::AuditLayer is not installed on this route",
        ))
    }
}

/// `Option<Audit>`: `None` on a route without the layer (a handler that audits only
/// when auditing is configured).
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Audit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Audit>().cloned())
    }
}

/// What the request told before it was handled.
struct Pending {
    started: Instant,
    context: Arc<Mutex<RequestContext>>,
    request_id: HeaderValue,
    route: String,
    details: Map<String, Value>,
}

impl<S, B, RB> tower_service::Service<Request<B>> for AuditService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The service that was polled ready is the one called; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        if settings
            .skip_paths
            .iter()
            .any(|p| p == request.uri().path())
        {
            return Box::pin(inner.call(request));
        }
        let (mut parts, body) = request.into_parts();
        let pending = settings.begin(&mut parts);
        let request = Request::from_parts(parts, body);
        Box::pin(async move {
            let outcome = AssertUnwindSafe(inner.call(request)).catch_unwind().await;
            let (status, panicked) = match &outcome {
                Ok(Ok(response)) => (response.status(), false),
                Ok(Err(_)) => (StatusCode::INTERNAL_SERVER_ERROR, false),
                Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, true),
            };
            let request_id = pending.request_id.clone();
            settings.finish(pending, status, panicked).await;
            match outcome {
                Ok(Ok(mut response)) => {
                    response
                        .headers_mut()
                        .entry(REQUEST_ID_HEADER)
                        .or_insert(request_id);
                    Ok(response)
                }
                Ok(Err(error)) => Err(error),
                // Recorded; the panic goes on as it would have without the layer.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Settings {
    /// Reads the request's head, gives it a request id and its [`Audit`] handle.
    fn begin(&self, parts: &mut Parts) -> Pending {
        let started = Instant::now();
        let request_id = match parts.headers.get(&REQUEST_ID_HEADER) {
            Some(value) if is_usable_request_id(value) => value.clone(),
            _ => {
                let id = HeaderValue::from_str(&sealtrail_client::ids::new_v7().to_string())
                    .expect("a UUID is a header value");
                parts.headers.insert(REQUEST_ID_HEADER, id.clone());
                id
            }
        };
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .or_else(|| parts.extensions.get::<SocketAddr>().map(SocketAddr::ip))
            .or_else(|| parts.extensions.get::<IpAddr>().copied());
        let context = RequestContext {
            user_id: self.actor.as_ref().and_then(|actor| actor(parts)),
            tenant_id: self.tenant.as_ref().and_then(|tenant| tenant(parts)),
            ip_address: self.proxies.client_ip(peer, &parts.headers),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .map(|v| truncated(&String::from_utf8_lossy(v.as_bytes()), MAX_USER_AGENT_CHARS)),
            request_id: request_id.to_str().ok().map(str::to_owned),
        };
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or(UNMATCHED_ROUTE.to_owned(), |path| {
                truncated(path.as_str(), MAX_ROUTE_CHARS)
            });
        let mut details = Map::new();
        details.insert("method".into(), parts.method.as_str().into());
        details.insert("path".into(), parts.uri.path().into());
        match parts.uri.query() {
            Some(query) if query.len() > MAX_QUERY_BYTES => {
                details.insert("query_bytes".into(), query.len().into());
            }
            query => {
                if let Some(query) = redact::query(query, &self.redacted_query) {
                    details.insert("query".into(), query);
                }
            }
        }
        if let Some(headers) = redact::headers(&parts.headers, &self.recorded_headers) {
            details.insert("headers".into(), headers);
        }
        let context = Arc::new(Mutex::new(context));
        parts.extensions.insert(Audit {
            producer: self.producer.clone(),
            context: context.clone(),
        });
        Pending {
            started,
            context,
            request_id,
            route,
            details,
        }
    }

    /// Queues the request's event.
    async fn finish(&self, pending: Pending, status: StatusCode, panicked: bool) {
        let Pending {
            started,
            context,
            route,
            mut details,
            ..
        } = pending;
        let micros = started.elapsed().as_micros() as u64;
        details.insert("status".into(), status.as_u16().into());
        details.insert("duration_us".into(), micros.into());
        if panicked {
            details.insert("panicked".into(), true.into());
        }
        let failed = panicked || status.is_client_error() || status.is_server_error();
        // Filled under the lock: one copy of the context, not two.
        let mut event = Event::new("http.request", "http.route")
            .resource_id(route)
            .severity((self.severity)(status, panicked))
            .outcome(if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            })
            .in_context(&context.lock().expect("never poisoned"));
        event.details = details;
        // A closed producer (the service shutting down) records nothing more; the request
        // is answered all the same.
        let _ = self.producer.send(event).await;
    }
}

fn is_usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_CHARS
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn truncated(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
