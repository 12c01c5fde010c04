//! The authorization matrix: every endpoint (reads, writes, streams, search, keys,
//! shredding, legal holds, sinks) × every scope × own tenant / other tenant, and
//! no key / a bad key / a revoked key / an expired key — each with its expected status —
//! and no answer to a tenant-bound key ever holds another tenant's data.

mod common;

use common::TestServer;
use reqwest::Method;
use sealtrail_core::Scope;
use serde_json::json;

/// What an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    Ingest,
    Read,
    Stream,
    Admin,
    /// `admin` bound to no tenant (sinks carry every tenant's events).
    GlobalAdmin,
    /// `ingest` or `read` (checkpoints and proofs, for producers and auditors).
    Evidence,
    Nothing,
}

struct Endpoint {
    name: &'static str,
    method: Method,
    /// The path, aimed at a tenant (`{t}`) and, where there is one, its event (`{e}`).
    path: &'static str,
    body: Option<&'static str>,
    need: Need,
    /// What a key bound to another tenant gets (None: the endpoint is not about a tenant).
    other_tenant: Option<u16>,
    /// What an allowed caller gets.
    ok: u16,
}

fn endpoints() -> Vec<Endpoint> {
    use Need::*;
    let e = |name, method, path, body, need, other_tenant, ok| Endpoint {
        name,
        method,
        path,
        body,
        need,
        other_tenant,
        ok,
    };
    vec![
        e(
            "ingest",
            Method::POST,
            "/v1/events",
            Some(r#"{"tenant_id":"{t}","action":"guest.updated","resource_type":"guest"}"#),
            Ingest,
            Some(403),
            201,
        ),
        e(
            "query",
            Method::GET,
            "/v1/events?tenant_id={t}",
            None,
            Read,
            Some(403),
            200,
        ),
        // Without field encryption configured, an allowed caller gets 409, after auth.
        e(
            "search",
            Method::GET,
            "/v1/events/search?tenant_id={t}&field=/details/x&equals=y",
            None,
            Read,
            Some(403),
            409,
        ),
        e(
            "shred",
            Method::POST,
            "/v1/tenants/{t}/shred",
            Some("{}"),
            Admin,
            Some(403),
            409,
        ),
        e(
            "event by id",
            Method::GET,
            "/v1/events/{e}",
            None,
            Read,
            Some(404),
            200,
        ),
        e(
            "stats",
            Method::GET,
            "/v1/stats?group_by=severity&tenant_id={t}",
            None,
            Read,
            Some(403),
            200,
        ),
        e(
            "checkpoint",
            Method::GET,
            "/v1/checkpoint",
            None,
            Evidence,
            None,
            200,
        ),
        e(
            "consistency proof",
            Method::GET,
            "/v1/proofs/consistency?from=1&to=2",
            None,
            Evidence,
            None,
            200,
        ),
        e(
            "public key",
            Method::GET,
            "/v1/public-key",
            None,
            Evidence,
            None,
            200,
        ),
        e(
            "stream",
            Method::GET,
            "/v1/stream?tenant_id={t}",
            None,
            Stream,
            Some(403),
            200,
        ),
        // Without upgrade headers an allowed caller gets the upgrade refusal, after auth.
        e("websocket", Method::GET, "/v1/ws", None, Stream, None, 400),
        e("list keys", Method::GET, "/v1/keys", None, Admin, None, 200),
        e(
            "create key",
            Method::POST,
            "/v1/keys",
            Some(r#"{"scopes":["read"],"tenant_id":"{t}"}"#),
            Admin,
            Some(403),
            201,
        ),
        e(
            "place hold",
            Method::POST,
            "/v1/holds",
            Some(r#"{"tenant_id":"{t}","reason":"matrix"}"#),
            Admin,
            Some(403),
            201,
        ),
        e(
            "list holds",
            Method::GET,
            "/v1/holds?tenant_id={t}",
            None,
            Admin,
            Some(403),
            200,
        ),
        // No hold has this id: an allowed caller gets 404, after auth.
        e(
            "release hold",
            Method::POST,
            "/v1/holds/01900000-0000-7000-8000-000000000000/release",
            Some(r#"{"reason":"matrix"}"#),
            Admin,
            None,
            404,
        ),
        e(
            "sinks",
            Method::GET,
            "/v1/sinks",
            None,
            GlobalAdmin,
            None,
            200,
        ),
        e(
            "openapi",
            Method::GET,
            "/v1/openapi.json",
            None,
            Nothing,
            None,
            200,
        ),
    ]
}

fn allows(scopes: &[Scope], bound: bool, need: Need) -> bool {
    let has = |s: Scope| scopes.contains(&s) || scopes.contains(&Scope::Admin);
    match need {
        Need::Ingest => has(Scope::Ingest),
        Need::Read => has(Scope::Read),
        Need::Stream => has(Scope::Stream),
        Need::Admin => scopes.contains(&Scope::Admin),
        Need::GlobalAdmin => scopes.contains(&Scope::Admin) && !bound,
        Need::Evidence => has(Scope::Ingest) || has(Scope::Read),
        Need::Nothing => true,
    }
}

async fn call(
    s: &TestServer,
    endpoint: &Endpoint,
    key: Option<&str>,
    tenant: &str,
    event: &str,
) -> (u16, String) {
    let path = endpoint.path.replace("{t}", tenant).replace("{e}", event);
    let mut request = s.http.request(endpoint.method.clone(), s.url(&path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = endpoint.body {
        request = request
            .header("content-type", "application/json")
            .body(body.replace("{t}", tenant));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    // A stream's body never ends: its status is enough.
    if endpoint.name == "stream" && status == 200 {
        return (status, String::new());
    }
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_every_kind_of_caller_as_documented() {
    let s = TestServer::start().await;
    let event_of = async |tenant: &str, marker: &str| {
        let key = s.key(&[Scope::Ingest], Some(tenant));
        let (status, stored) = s
            .post_json(&key, "/v1/events", &json!({"action": "guest.updated", "resource_type": "guest", "details": {"marker": marker}}))
            .await;
        assert_eq!(status, 201);
        stored["events"][0]["id"].as_str().unwrap().to_owned()
    };
    let own_event = event_of("acme", "acme-data").await;
    let other_event = event_of("globex", "globex-secret-marker").await;

    let mut checked = 0;
    let scope_sets: [&[Scope]; 5] = [
        &[Scope::Ingest],
        &[Scope::Read],
        &[Scope::Stream],
        &[Scope::Admin],
        &[Scope::Ingest, Scope::Read, Scope::Stream],
    ];
    for scopes in scope_sets {
        for bound in [true, false] {
            let key = s.key(scopes, bound.then_some("acme"));
            for endpoint in endpoints() {
                for (tenant, event) in [
                    ("acme", own_event.as_str()),
                    ("globex", other_event.as_str()),
                ] {
                    let (status, body) = call(&s, &endpoint, Some(&key), tenant, event).await;
                    let expected = if !allows(scopes, bound, endpoint.need) {
                        403
                    } else if bound && tenant == "globex" {
                        endpoint.other_tenant.unwrap_or(endpoint.ok)
                    } else {
                        endpoint.ok
                    };
                    assert_eq!(
                        status, expected,
                        "{} with scopes {scopes:?} bound={bound} aimed at {tenant}: {body}",
                        endpoint.name
                    );
                    if bound {
                        assert!(
                            !body.contains("globex-secret-marker"),
                            "{} leaked another tenant's data to a key bound to acme: {body}",
                            endpoint.name
                        );
                    }
                    checked += 1;
                }
            }
        }
    }

    // Callers without a usable key.
    let revoked = s.key(&[Scope::Admin], None);
    s.revoke(&revoked);
    let admin = s.key(&[Scope::Admin], None);
    let (status, expiring) = s
        .post_json(
            &admin,
            "/v1/keys",
            &json!({"scopes": ["admin"], "expires_in_secs": 1}),
        )
        .await;
    assert_eq!(status, 201);
    let expired = expiring["key"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let bad = "st_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (label, key) in [
        ("no key", None),
        ("a bad key", Some(bad)),
        ("a revoked key", Some(revoked.as_str())),
        ("an expired key", Some(expired.as_str())),
    ] {
        for endpoint in endpoints() {
            let (status, body) = call(&s, &endpoint, key, "acme", &own_event).await;
            let expected = if endpoint.need == Need::Nothing {
                endpoint.ok
            } else {
                401
            };
            assert_eq!(status, expected, "{} with {label}: {body}", endpoint.name);
            assert!(
                !body.contains("acme-data") && !body.contains("globex-secret-marker"),
                "{label}: {body}"
            );
            checked += 1;
        }
    }
    let n = endpoints().len();
    assert_eq!(checked, 5 * 2 * n * 2 + 4 * n);
}
