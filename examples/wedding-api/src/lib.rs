//! A small wedding-planning API — guests, their dietary restrictions, vendors — audited
//! the way Sealtrail's users audit theirs: every request by the `sealtrail-tower` layer,
//! and the changes that matter (a guest's dietary restriction, with before, after and the
//! reason) as domain events from the handlers, all through one `sealtrail-client`
//! producer that never holds up a request.
//!
//! The app's users are its coordinators, signed in with a session token (`Authorization:
//! Bearer <token>`); the actor recorded is the coordinator, never a database role.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use sealtrail_client::event::{Event, Severity};
use sealtrail_client::producer::Producer;
use sealtrail_tower::{Audit, AuditLayer, TrustedProxies};
use serde::{Deserialize, Serialize};

/// A signed-in coordinator, put in the request's extensions by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Coordinator(pub String);

/// A guest.
#[derive(Clone, Debug, Serialize)]
pub struct Guest {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// What it cannot eat (`none` when nothing).
    pub dietary_restriction: String,
}

/// A vendor.
#[derive(Clone, Debug, Serialize)]
pub struct Vendor {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `caterer`, `florist`, `band`…
    pub kind: String,
}

#[derive(Default)]
struct Data {
    guests: BTreeMap<u64, Guest>,
    vendors: BTreeMap<u64, Vendor>,
    next_id: u64,
}

/// The service's state: its data (in memory: this is an example) and its sessions.
#[derive(Clone)]
pub struct WeddingApp {
    data: Arc<Mutex<Data>>,
    sessions: Arc<HashMap<String, String>>,
}

impl WeddingApp {
    /// An empty wedding with these session tokens → coordinators.
    pub fn new(sessions: HashMap<String, String>) -> Self {
        Self {
            data: Arc::default(),
            sessions: Arc::new(sessions),
        }
    }
}

/// The API, audited into `producer` (none: not audited, for the benchmark's baseline).
pub fn router(app: WeddingApp, producer: Option<Producer>, proxies: TrustedProxies) -> Router {
    let routes = Router::new()
        .route("/guests", get(list_guests).post(add_guest))
        .route("/guests/{id}", get(get_guest))
        .route("/guests/{id}/dietary-restriction", put(change_diet))
        .route("/vendors", get(list_vendors).post(add_vendor));
    let routes = match producer {
        Some(producer) => routes.layer(
            AuditLayer::new(producer)
                .actor(coordinator_of)
                .trusted_proxies(proxies),
        ),
        None => routes,
    };
    routes
        // Outside the audit layer, so the coordinator is known when a request is recorded.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            authenticate,
        ))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app)
}

fn coordinator_of(parts: &Parts) -> Option<String> {
    parts.extensions.get::<Coordinator>().map(|c| c.0.clone())
}

/// Puts the session's coordinator in the extensions; a request without a valid session is
/// still let through (and recorded) but refused by the handlers.
async fn authenticate(
    State(app): State<WeddingApp>,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(user) = token.and_then(|t| app.sessions.get(t)) {
        request.extensions_mut().insert(Coordinator(user.clone()));
    }
    next.run(request).await
}

/// A refused request's answer.
pub struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn signed_in(coordinator: Option<axum::Extension<Coordinator>>) -> Result<Coordinator, Refused> {
    coordinator
        .map(|c| c.0)
        .ok_or(Refused(StatusCode::UNAUTHORIZED, "sign in first"))
}

async fn list_guests(
    State(app): State<WeddingApp>,
    coordinator: Option<axum::Extension<Coordinator>>,
) -> Result<Json<Vec<Guest>>, Refused> {
    signed_in(coordinator)?;
    let data = app.data.lock().expect("never poisoned");
    Ok(Json(data.guests.values().cloned().collect()))
}

async fn get_guest(
    State(app): State<WeddingApp>,
    coordinator: Option<axum::Extension<Coordinator>>,
    Path(id): Path<u64>,
) -> Result<Json<Guest>, Refused> {
    signed_in(coordinator)?;
    let data = app.data.lock().expect("never poisoned");
    data.guests
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or(Refused(StatusCode::NOT_FOUND, "no such guest"))
}

/// A new guest.
#[derive(Deserialize)]
pub struct NewGuest {
    /// The name.
    pub name: String,
    /// What the guest cannot eat.
    #[serde(default)]
    pub dietary_restriction: Option<String>,
}

async fn add_guest(
    State(app): State<WeddingApp>,
    coordinator: Option<axum::Extension<Coordinator>>,
    audit: Option<Audit>,
    Json(new): Json<NewGuest>,
) -> Result<(StatusCode, Json<Guest>), Refused> {
    signed_in(coordinator)?;
    let guest = {
        let mut data = app.data.lock().expect("never poisoned");
        data.next_id += 1;
        let guest = Guest {
            id: data.next_id,
            name: new.name,
            dietary_restriction: new.dietary_restriction.unwrap_or_else(|| "none".into()),
        };
        data.guests.insert(guest.id, guest.clone());
        guest
    };
    record(
        audit,
        Event::new("guest.created", "guest")
            .resource_id(guest.id.to_string())
            .change(
                "dietary_restriction",
                serde_json::Value::Null,
                &guest.dietary_restriction,
            ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(guest)))
}

/// A change of a guest's dietary restriction, and why.
#[derive(Deserialize)]
pub struct DietChange {
    /// The new restriction.
    pub dietary_restriction: String,
    /// Why (who asked, how).
    pub reason: String,
}

/// The change the caterer must hear about: recorded with before, after and the reason;
/// an allergy is a warning.
async fn change_diet(
    State(app): State<WeddingApp>,
    coordinator: Option<axum::Extension<Coordinator>>,
    audit: Option<Audit>,
    Path(id): Path<u64>,
    Json(change): Json<DietChange>,
) -> Result<Json<Guest>, Refused> {
    signed_in(coordinator)?;
    let (before, guest) = {
        let mut data = app.data.lock().expect("never poisoned");
        let guest = data
            .guests
            .get_mut(&id)
            .ok_or(Refused(StatusCode::NOT_FOUND, "no such guest"))?;
        let before = std::mem::replace(
            &mut guest.dietary_restriction,
            change.dietary_restriction.clone(),
        );
        (before, guest.clone())
    };
    let severity = if change.dietary_restriction.contains("allergy") {
        Severity::Warning
    } else {
        Severity::Info
    };
    record(
        audit,
        Event::new("guest.dietary_restriction.updated", "guest")
            .resource_id(id.to_string())
            .severity(severity)
            .reason(change.reason)
            .change("dietary_restriction", before, &guest.dietary_restriction),
    )
    .await;
    Ok(Json(guest))
}

async fn list_vendors(
    State(app): State<WeddingApp>,
    coordinator: Option<axum::Extension<Coordinator>>,
) -> Result<Json<Vec<Vendor>>, Refused> {
    signed_in(coordinator)?;
    let data = app.data.lock().expect("never poisoned");
    Ok(Json(data.vendors.values().cloned().collect()))
}

/// A new vendor.
#[derive(Deserialize)]
pub struct NewVendor {
    /// The name.
    pub name: String,
    /// `caterer`, `florist`, `band`…
    pub kind: String,
}

async fn add_vendor(
    State(app): State<WeddingApp>,
    coordinator: Option<axum::Extension<Coordinator>>,
    audit: Option<Audit>,
    Json(new): Json<NewVendor>,
) -> Result<(StatusCode, Json<Vendor>), Refused> {
    signed_in(coordinator)?;
    let vendor = {
        let mut data = app.data.lock().expect("never poisoned");
        data.next_id += 1;
        let vendor = Vendor {
            id: data.next_id,
            name: new.name,
            kind: new.kind,
        };
        data.vendors.insert(vendor.id, vendor.clone());
        vendor
    };
    record(
        audit,
        Event::new("vendor.created", "vendor")
            .resource_id(vendor.id.to_string())
            .detail("kind", &vendor.kind),
    )
    .await;
    Ok((StatusCode::CREATED, Json(vendor)))
}

/// Records a domain event with the request's context when the service is audited.
async fn record(audit: Option<Audit>, event: Event) {
    if let Some(audit) = audit {
        // The producer applies backpressure or spools; it refuses only once shut down.
        let _ = audit.record(event).await;
    }
}

/// `token=user,token=user` as the sessions map.
pub fn parse_sessions(text: &str) -> Result<HashMap<String, String>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (token, user) = pair
                .split_once('=')
                .ok_or_else(|| format!("session {pair:?}: want token=user"))?;
            Ok((token.trim().to_owned(), user.trim().to_owned()))
        })
        .collect()
}
