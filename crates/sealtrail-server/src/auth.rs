//! Who is calling: the `Authorization: Bearer <key>` of every `/v1` request, resolved to a
//! [`Grant`] (scopes and tenant binding) before any handler runs; without it, the web
//! console's session cookie stands for the key it was signed in with.

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sealtrail_core::{Grant, Scope};

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Auth(pub Grant);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return console_session(parts, state);
        };
        let text = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let key = match text.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => {
                return Err(ApiError::unauthorized(
                    "expected Authorization: Bearer <API key>",
                ));
            }
        };
        // A hash and a map probe behind one pragma read: cheap enough to do inline.
        let grant = state.keys.authenticate(key).map_err(ApiError::internal)?;
        admit(state, grant)
    }
}

/// A request without `Authorization`: the console's session cookie, if it has a live one.
/// Anything but a read must also carry the console's header (see `console::WRITE_HEADER`).
fn console_session(parts: &Parts, state: &AppState) -> Result<Auth, ApiError> {
    let missing = || ApiError::unauthorized("missing Authorization: Bearer <API key>");
    if !state.config.console.enabled || state.console.token_in(&parts.headers).is_none() {
        return Err(missing());
    }
    crate::console::check_same_origin(&parts.headers)?;
    let reads_only = parts.method == Method::GET || parts.method == Method::HEAD;
    if !reads_only {
        crate::console::require_write_header(&parts.headers, "that changes anything")?;
    }
    match crate::console::session_grant(state, &parts.headers)? {
        Some((grant, _)) => admit(state, Some(grant)),
        None => Err(ApiError::unauthorized(
            "the console session has ended, expired or its key was revoked; sign in again",
        )),
    }
}

/// The caller of a live key, within its request rate.
fn admit(state: &AppState, grant: Option<Grant>) -> Result<Auth, ApiError> {
    match grant {
        Some(grant) => match state.rate_limits.check(&grant.key_id) {
            Ok(()) => Ok(Auth(grant)),
            Err(retry_after_secs) => Err(ApiError::rate_limited(
                &grant.key_id,
                state.config.limits.key_requests_per_sec,
                retry_after_secs,
            )),
        },
        None => Err(ApiError::unauthorized(
            "unknown, revoked or expired API key",
        )),
    }
}

impl Auth {
    /// Refuses with 403 unless the key carries `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "API key {} lacks the {scope} scope (it has {})",
                self.0.key_id,
                Scope::join(&self.0.scopes)
            )))
        }
    }

    /// Refuses unless the key is an admin key bound to no tenant: for what spans every
    /// tenant (`why` says what, for the answer).
    pub fn require_unbound_admin(&self, why: &str) -> Result<(), ApiError> {
        self.require(Scope::Admin)?;
        if let Some(tenant) = &self.0.tenant_id {
            return Err(ApiError::forbidden(format!(
                "API key {} is bound to tenant {tenant}; {why}",
                self.0.key_id
            )));
        }
        Ok(())
    }

    /// Refuses unless the key carries any of `scopes`.
    pub fn require_any(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        if scopes.iter().any(|s| self.0.allows(*s)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "API key {} needs one of the scopes {}",
                self.0.key_id,
                Scope::join(scopes)
            )))
        }
    }

    /// The tenant a read is confined to: a bound key's own tenant (asking for another is
    /// refused), or whatever an unbound key asked for.
    pub fn confine_tenant(&self, requested: Option<String>) -> Result<Option<String>, ApiError> {
        match (&self.0.tenant_id, requested) {
            (None, requested) => Ok(requested),
            (Some(bound), None) => Ok(Some(bound.clone())),
            (Some(bound), Some(requested)) if *bound == requested => Ok(Some(requested)),
            (Some(bound), Some(requested)) => Err(ApiError::forbidden_field(
                "tenant_id",
                format!(
                    "this API key is bound to tenant {bound:?} and cannot read tenant {requested:?}"
                ),
            )),
        }
    }
}
