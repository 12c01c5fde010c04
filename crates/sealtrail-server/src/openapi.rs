//! The OpenAPI document, generated from the handlers' annotations and the API types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API description served at `/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sealtrail",
        description = "A tamper-evident audit log: append events, query them, and prove what the log holds.",
        license(name = "MIT"),
    ),
    paths(
        crate::routes::ingest::ingest,
        crate::routes::query::list_events,
        crate::routes::query::get_event,
        crate::routes::query::search_events,
        crate::routes::query::stats,
        crate::routes::integrity::checkpoint,
        crate::routes::integrity::consistency_proof,
        crate::routes::integrity::public_key,
        crate::routes::integrity::rotate_signing_key,
        crate::routes::integrity::integrity_status,
        crate::routes::integrity::verify_now,
        crate::routes::ops::readyz,
        crate::stream::sse::stream,
        crate::stream::ws::ws,
        crate::routes::keys::list_keys,
        crate::routes::keys::create_key,
        crate::routes::keys::rotate_key,
        crate::routes::keys::revoke_key,
        crate::routes::tenants::shred_tenant,
        crate::routes::tenants::shred_subject,
        crate::routes::holds::place_hold,
        crate::routes::holds::list_holds,
        crate::routes::holds::release_hold,
        crate::routes::retention::run_retention,
        crate::routes::receipts::receipt,
        crate::routes::receipts::rejected,
        crate::routes::sinks::list_sinks,
        crate::routes::sinks::dead_letters,
        crate::routes::sinks::replay,
        crate::routes::sources::list_sources,
    ),
    modifiers(&BearerKey, &ErrorResponses),
    tags(
        (name = "events", description = "Append and read audit events"),
        (name = "integrity", description = "Checkpoints, proofs and the signing key"),
        (name = "streams", description = "Follow events live, resuming exactly where a client left off"),
        (name = "keys", description = "API keys: create, list, rotate, revoke (admin)"),
        (name = "tenants", description = "Crypto-shredding of a tenant's or a subject's data keys (admin)"),
        (name = "holds", description = "Legal holds: retention and archival delete nothing a hold covers until it is released (admin)"),
        (name = "retention", description = "Retention runs: archive, remove archived bodies from the hot store, delete past retention (admin)"),
        (name = "sinks", description = "Delivery to other systems: state, dead letters, replay"),
        (name = "sources", description = "Per-source sequence numbers: events producers numbered that never reached the log"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

/// Documents the errors every authenticated operation can answer with (the one error body
/// of `error.rs`), so each operation's list is complete without repeating it in every
/// annotation: 400 (a parameter or body is invalid), 401 (no, unknown, revoked or expired
/// key), 403 (scope or tenant), 404 where the path names something, 408 (request timeout),
/// 429 (the key's rate limit, with `Retry-After`), 503 (the log or the access log cannot
/// take the write).
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_path_parameter = path.contains('{');
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if operation.security.as_ref().is_none_or(|s| s.is_empty()) {
                    continue;
                }
                let mut codes = vec![
                    (
                        "400",
                        "A parameter or the body is invalid; `field` names it",
                    ),
                    ("401", "No API key, or an unknown, revoked or expired one"),
                    ("403", "The key lacks the scope, or asks for another tenant"),
                    (
                        "408",
                        "The request took longer than limits.request_timeout_secs",
                    ),
                    ("429", "The key is over its request rate; see Retry-After"),
                    (
                        "503",
                        "The log cannot take the write (or the read's access record)",
                    ),
                ];
                if has_path_parameter {
                    codes.push(("404", "Not found (or not visible to this key)"));
                }
                for (code, description) in codes {
                    operation
                        .responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `sealtrail keys create`"))
                    .build(),
            ),
        );
    }
}
