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
        crate::routes::query::stats,
        crate::routes::integrity::checkpoint,
        crate::routes::integrity::consistency_proof,
        crate::routes::integrity::public_key,
        crate::routes::ops::readyz,
        crate::stream::sse::stream,
        crate::stream::ws::ws,
        crate::routes::keys::list_keys,
        crate::routes::keys::create_key,
        crate::routes::keys::rotate_key,
        crate::routes::keys::revoke_key,
        crate::routes::sinks::list_sinks,
        crate::routes::sinks::dead_letters,
        crate::routes::sinks::replay,
    ),
    modifiers(&BearerKey),
    tags(
        (name = "events", description = "Append and read audit events"),
        (name = "integrity", description = "Checkpoints, proofs and the signing key"),
        (name = "streams", description = "Follow events live, resuming exactly where a client left off"),
        (name = "keys", description = "API keys: create, list, rotate, revoke (admin)"),
        (name = "sinks", description = "Delivery to other systems: state, dead letters, replay"),
        (name = "operations", description = "Health"),
    )
)]
pub struct ApiDoc;

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
