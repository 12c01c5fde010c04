//! The web console at `/console/`: pages compiled into the binary (see `build.rs`), signed
//! in with an API key that has `read`, reading the log through the same `/v1` API as every
//! other client (the session cookie stands in for `Authorization`; see [`crate::auth`]).
//! Nothing here reads the store: what the console shows, and who may see it, is decided
//! by the API's handlers, and its reads are recorded in the access log like any other.

pub mod sessions;

use std::sync::LazyLock;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sealtrail_core::time_format::format_micros;
use sealtrail_core::{FieldError, Grant, Scope};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use sessions::Sessions;

use crate::access::{Read, Requester};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

mod files {
    include!(concat!(env!("OUT_DIR"), "/console_files.rs"));
}

/// What the pages may load and run: only the server's own files (no inline script or
/// style, no other origin), never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The header a request authenticated by the session cookie must carry unless it only
/// reads (GET/HEAD): a page of another site cannot set it without a CORS preflight this
/// server never grants, which SameSite=Strict already makes moot — both, on purpose.
pub const WRITE_HEADER: &str = "x-sealtrail-console";

/// The console's routes (none when `console.enabled` is off).
pub fn router(state: &AppState) -> Router<AppState> {
    if !state.config.console.enabled {
        return Router::new();
    }
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/login", get(login_page))
        .route("/console/assets/{name}", get(asset))
        .route(
            "/console/session",
            get(session_info).post(sign_in).delete(sign_out),
        )
        .route("/console/", get(page))
        .route("/console/{*path}", get(page))
}

/// Refuses a console request without `X-Sealtrail-Console: 1` (`what` it was, for the answer).
pub fn require_write_header(headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    if headers.get(WRITE_HEADER).is_some_and(|v| v == "1") {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "a console request {what} must carry the {WRITE_HEADER}: 1 header"
    )))
}

/// Refuses a cookie-authenticated request that a browser says came from another origin.
/// SameSite=Strict keeps other sites' requests from carrying the cookie, but not other
/// origins of the same site (another port, a sibling subdomain) — and WebSockets have no
/// CORS. `Sec-Fetch-Site` (every current browser sends it) must be `same-origin` (or
/// `none`: typed or bookmarked); without it, an `Origin` must name this host.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |why: String| {
        Err(ApiError::forbidden(format!(
            "the console's cookie is accepted from the console's own pages only: {why}"
        )))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            other => refuse(format!(
                "the request came from a {} page",
                String::from_utf8_lossy(other)
            )),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let own = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(_, authority)| Some(authority.as_bytes()) == host);
    if own {
        Ok(())
    } else {
        refuse(format!("Origin {origin:?} is not this server"))
    }
}

/// The signed-in caller, as the pages see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The API key's id.
    pub key_id: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// The tenant it is bound to; `null`: every tenant.
    pub tenant_id: Option<String>,
    /// When the session ends (RFC 3339), unless the key is revoked or expires first.
    pub expires_at: String,
}

impl SessionView {
    fn new(grant: &Grant, expires_at: i64) -> Self {
        Self {
            key_id: grant.key_id.clone(),
            scopes: grant.scopes.iter().map(ToString::to_string).collect(),
            tenant_id: grant.tenant_id.clone(),
            expires_at: format_micros(expires_at),
        }
    }
}

/// A sign-in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The API key (it must have `read`).
    pub api_key: String,
}

/// The grant behind a request's live session cookie: the session exists and has not
/// expired, and its key is still live (`Ok(None)` otherwise).
pub fn session_grant(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Grant, i64)>, ApiError> {
    let Some(token) = state.console.token_in(headers) else {
        return Ok(None);
    };
    let Some((key, expires_at)) = state.console.key(token) else {
        return Ok(None);
    };
    let grant = state.keys.authenticate(&key).map_err(ApiError::internal)?;
    Ok(grant.map(|g| (g, expires_at)))
}

async fn sign_in(
    State(state): State<AppState>,
    requester: Requester,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // Another page of the same site must not sign the browser in with a key of its own.
    require_write_header(&headers, "signing in")?;
    check_same_origin(&headers)?;
    let request: SignIn =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    let key = request.api_key.trim();
    if key.is_empty() {
        return Err(ApiError::invalid_parameter(FieldError::new(
            "api_key",
            "is required",
        )));
    }
    let grant = state
        .keys
        .authenticate(key)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::unauthorized("unknown, revoked or expired API key"))?;
    if let Err(retry_after_secs) = state.rate_limits.check(&grant.key_id) {
        return Err(ApiError::rate_limited(
            &grant.key_id,
            state.config.limits.key_requests_per_sec,
            retry_after_secs,
        ));
    }
    if !grant.allows(Scope::Read) {
        return Err(ApiError::forbidden(format!(
            "API key {} lacks the read scope the console needs (it has {})",
            grant.key_id,
            Scope::join(&grant.scopes)
        )));
    }
    // Recorded before the session exists: a sign-in that cannot be recorded does not happen.
    record_session(&state, &requester, &grant, SIGNED_IN).await?;
    let session = state.console.start(key, &grant.key_id);
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        state.console.cookie_name(),
        session.token,
        state.console.ttl().as_secs(),
        if state.console.secure() {
            "; Secure"
        } else {
            ""
        },
    );
    let mut response = Json(SessionView::new(&grant, session.expires_at)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a cookie of base64url and ASCII"),
    );
    no_store(&mut response);
    Ok(response)
}

async fn session_info(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (grant, expires_at) = session_grant(&state, &headers)?.ok_or_else(|| {
        ApiError::unauthorized("not signed in, or the session has ended; sign in again")
    })?;
    let mut response = Json(SessionView::new(&grant, expires_at)).into_response();
    no_store(&mut response);
    Ok(response)
}

async fn sign_out(
    State(state): State<AppState>,
    requester: Requester,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_write_header(&headers, "signing out")?;
    let grant = session_grant(&state, &headers)?;
    if let Some(token) = state.console.token_in(&headers)
        && state.console.end(token)
        && let Some((grant, _)) = grant
    {
        // The session is gone either way; a sign-out that cannot be recorded is logged.
        if let Err(e) = record_session(&state, &requester, &grant, SIGNED_OUT).await {
            tracing::warn!(error = ?e, key_id = %grant.key_id, "a console sign-out was not recorded");
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            state.console.cookie_name(),
            if state.console.secure() {
                "; Secure"
            } else {
                ""
            },
        ))
        .expect("ASCII"),
    );
    Ok(response)
}

/// The access-log actions of console sessions (under `audit_log.*`, with the reads).
const SIGNED_IN: &str = "audit_log.console_signed_in";
const SIGNED_OUT: &str = "audit_log.console_signed_out";

/// Records a sign-in or sign-out in the access log: the key, from where, with which browser,
/// in the key's tenant (or the global one for an unbound key).
async fn record_session(
    state: &AppState,
    requester: &Requester,
    grant: &Grant,
    action: &'static str,
) -> Result<(), ApiError> {
    let auth = Auth(grant.clone());
    let read = Read {
        action,
        filter: serde_json::Value::Object(Default::default()),
        confined_to: grant.tenant_id.as_deref(),
        returned: Default::default(),
        result_count: None,
        resource: None,
        event_id: None,
    };
    state
        .access_log
        .record(&requester.who(&auth), read)
        .await
        .map_err(ApiError::from)
}

async fn login_page() -> Response {
    html_file("login.html")
}

/// A signed-in page (the shell routes on its path), or the way to sign in.
async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    if session_grant(&state, &headers)?.is_some_and(|(g, _)| g.allows(Scope::Read)) {
        return Ok(html_file("index.html"));
    }
    let next = uri.path_and_query().map_or("/console/", |p| p.as_str());
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Ok(Redirect::to(&format!("/console/login?next={next}")).into_response())
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((bytes, etag)) = embedded(&format!("assets/{name}")) else {
        return ApiError::not_found(format!("the console has no asset {name:?}")).into_response();
    };
    let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    let etag = HeaderValue::from_str(etag).expect("hex");
    // Revalidated on every load (cheap: a 304), so a new binary's files are used at once.
    let mut response = if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = bytes.into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An embedded file and its ETag.
fn embedded(path: &str) -> Option<(&'static [u8], &'static str)> {
    static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
        files::FILES
            .iter()
            .map(|(_, bytes)| format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..12])))
            .collect()
    });
    let i = files::FILES.iter().position(|(name, _)| *name == path)?;
    Some((files::FILES[i].1, ETAGS[i].as_str()))
}

fn html_file(name: &str) -> Response {
    let Some((bytes, _)) = embedded(name) else {
        return ApiError::internal(format!("this build has no console page {name}"))
            .into_response();
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Filters live in the URL; they are nobody else's business.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pages_are_compiled_in() {
        for page in [
            "index.html",
            "login.html",
            "assets/app.js",
            "assets/verify.js",
        ] {
            assert!(super::embedded(page).is_some(), "{page} is not embedded");
        }
    }
}
