//! The web console's server side over HTTP: signing in and out, the session cookie standing
//! for its key on the API (and only as far as the key goes), the pages behind it, the
//! embedded files; and the server's own full verifications the console shows. The pages
//! themselves are tested in a real browser (`console/e2e/`).

mod common;

use common::{TestServer, eventually};
use reqwest::StatusCode;
use sealtrail_core::Scope;
use serde_json::{Value, json};

/// Signs in with `key`: the answer's status, body and the `Set-Cookie` header.
async fn sign_in(server: &TestServer, key: &str) -> (StatusCode, Value, Option<String>) {
    let response = server
        .http
        .post(server.url("/console/session"))
        .header("x-sealtrail-console", "1")
        .json(&json!({ "api_key": key }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), cookie)
}

/// The `name=value` part of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn no_redirects() -> reqwest::Client {
    sealtrail_testkit::http_client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get_with_cookie(server: &TestServer, cookie: &str, path: &str) -> reqwest::Response {
    server
        .http
        .get(server.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_session_stands_for_its_key_until_signed_out() {
    let server = TestServer::start().await;
    let writer = server.key(&[Scope::Ingest], Some("bloom"));
    let (status, body) = server.post_batch(&writer, 0..5).await;
    assert!((200..300).contains(&status), "{body}");
    let reader = server.key(&[Scope::Read, Scope::Ingest], None);

    let (status, body, _) = sign_in(&server, "stk_nope_nope").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body, _) = sign_in(&server, &writer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["message"].as_str().unwrap().contains("read"), "{body}");

    let (status, body, set_cookie) = sign_in(&server, &reader).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key_id"], reader.split('_').nth(1).unwrap());
    assert_eq!(body["tenant_id"], Value::Null);
    let set_cookie = set_cookie.expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set_cookie.contains(flag), "{set_cookie} lacks {flag}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = cookie_pair(&set_cookie);

    // The cookie reads through the API as the key does.
    eventually("the cookie reads the 5 events", async || {
        let response = get_with_cookie(&server, &cookie, "/v1/events?limit=10").await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        page["events"].as_array().unwrap().len() == 5
    })
    .await;
    let me: Value = get_with_cookie(&server, &cookie, "/console/session")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["key_id"], body["key_id"]);

    // A write by cookie needs the console's header.
    let write = |header: bool| {
        let mut request = server
            .http
            .post(server.url("/v1/events"))
            .header("cookie", &cookie)
            .json(&json!({ "events": [{
                "tenant_id": "bloom", "action": "guest.viewed", "resource_type": "guest"
            }] }));
        if header {
            request = request.header("x-sealtrail-console", "1");
        }
        request.send()
    };
    let refused = write(false).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let message: Value = refused.json().await.unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("x-sealtrail-console"),
        "{message}"
    );
    assert!(write(true).await.unwrap().status().is_success());

    // Only the console's own pages may use the cookie: a page of another origin of the same
    // site (another port, a sibling subdomain) is refused, for reads and WebSockets too.
    for (name, value) in [
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.localhost:9999"),
    ] {
        let response = server
            .http
            .get(server.url("/v1/events"))
            .header("cookie", &cookie)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    let own_origin = server.base.clone();
    let response = server
        .http
        .get(server.url("/v1/events"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .header("origin", own_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Another page cannot sign the browser in with a key of its own.
    let forced = server
        .http
        .post(server.url("/console/session"))
        .json(&json!({ "api_key": reader }))
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), StatusCode::FORBIDDEN);

    // Signed out: the cookie is cleared, and the old value no longer opens anything.
    let signed_out = server
        .http
        .delete(server.url("/console/session"))
        .header("cookie", &cookie)
        .header("x-sealtrail-console", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let cleared = signed_out.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let response = get_with_cookie(&server, &cookie, "/v1/events").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = get_with_cookie(&server, &cookie, "/console/session").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions_and_a_bound_key_stays_in_its_tenant() {
    let server = TestServer::start().await;
    let writer = server.key(&[Scope::Ingest], None);
    for tenant in ["bloom", "thorn"] {
        let events: Vec<Value> = (0..3)
            .map(|n| {
                let mut e = common::guest_event(n);
                e["tenant_id"] = json!(tenant);
                e
            })
            .collect();
        let (status, body) = server
            .post_json(&writer, "/v1/events", &json!({ "events": events }))
            .await;
        assert!((200..300).contains(&status), "{body}");
    }
    let bound = server.key(&[Scope::Read], Some("bloom"));
    let (_, body, set_cookie) = sign_in(&server, &bound).await;
    assert_eq!(body["tenant_id"], "bloom");
    let cookie = cookie_pair(&set_cookie.unwrap());
    eventually(
        "the bound key's cookie reads its tenant's 3 events only",
        async || {
            let page: Value = get_with_cookie(&server, &cookie, "/v1/events")
                .await
                .json()
                .await
                .unwrap();
            let tenants: Vec<&str> = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["tenant_id"].as_str().unwrap())
                .collect();
            assert!(tenants.iter().all(|t| *t == "bloom"), "{tenants:?}");
            tenants.len() == 3
        },
    )
    .await;
    let other = get_with_cookie(&server, &cookie, "/v1/events?tenant_id=thorn").await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);

    server.revoke(&bound);
    let after = get_with_cookie(&server, &cookie, "/v1/events").await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let page = no_redirects()
        .get(server.url("/console/events"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        StatusCode::SEE_OTHER,
        "a revoked key's pages lock"
    );
    server.stop().await;
}

#[tokio::test]
async fn pages_need_a_session_and_files_are_compiled_in() {
    let server = TestServer::start().await;
    let reader = server.key(&[Scope::Read], None);
    let locked = no_redirects()
        .get(server.url("/console/events?severity=warning&action=guest.*"))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        locked.headers()["location"],
        "/console/login?next=%2Fconsole%2Fevents%3Fseverity%3Dwarning%26action%3Dguest.*"
    );
    let login = server
        .http
        .get(server.url("/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let csp = login.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(login.text().await.unwrap().contains("<form"));

    let (_, _, set_cookie) = sign_in(&server, &reader).await;
    let cookie = cookie_pair(&set_cookie.unwrap());
    for path in [
        "/console/",
        "/console/events",
        "/console/events/0190",
        "/console/sinks",
    ] {
        let page = get_with_cookie(&server, &cookie, path).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert!(
            page.text().await.unwrap().contains("/console/assets/"),
            "{path}"
        );
    }

    let script = server
        .http
        .get(server.url("/console/assets/verify.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = script.headers()["etag"].clone();
    let again = server
        .http
        .get(server.url("/console/assets/verify.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let missing = server
        .http
        .get(server.url("/console/assets/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn the_console_can_be_switched_off() {
    let server = TestServer::start_with(|c| c.console.enabled = false).await;
    let reader = server.key(&[Scope::Read], None);
    let (status, _, _) = sign_in(&server, &reader).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get_open("/console/").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_server_verifies_the_whole_log_and_finds_an_edited_record() {
    let server = TestServer::start().await;
    let writer = server.key(&[Scope::Ingest], Some("bloom"));
    let reader = server.key(&[Scope::Read], None);
    let admin = server.key(&[Scope::Admin], None);
    let (status, body) = server.post_batch(&writer, 0..50).await;
    assert!((200..300).contains(&status), "{body}");

    // The scheduled run happens at start; one on request covers the 50 events.
    let (status, body) = server
        .post_json(&reader, "/v1/integrity/verify", &json!({}))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .post_json(&admin, "/v1/integrity/verify", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verification"]["ok"], true, "{body}");
    assert_eq!(body["verification"]["events"], 50);
    let (status, status_body) = server.get(&reader, "/v1/integrity").await;
    assert_eq!(status, 200);
    assert_eq!(status_body["verification"], body["verification"]);
    assert_eq!(status_body["checkpoint"]["tree_size"], 50);
    let metrics = server.get_open("/metrics").await.1;
    assert!(
        metrics.contains("sealtrail_verified_tree_size 50"),
        "{metrics}"
    );

    edit_record_of_seq_7(&server).await;
    let (_, body) = server
        .post_json(&admin, "/v1/integrity/verify", &json!({}))
        .await;
    assert_eq!(body["verification"]["ok"], false, "{body}");
    let problem = body["verification"]["problem"].as_str().unwrap();
    assert!(problem.contains("seq 7"), "{problem}");
    let (_, status_body) = server.get(&reader, "/v1/integrity").await;
    assert_eq!(
        status_body["verification"]["ok"], false,
        "the latest result is the failed one"
    );
    let metrics = server.get_open("/metrics").await.1;
    assert!(
        metrics.contains("sealtrail_verification_failures 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sealtrail_verified_tree_size 0"),
        "{metrics}"
    );
    server.stop().await;
}

/// Edits the record of seq 7 in the embedded store behind the server's back.
async fn edit_record_of_seq_7(server: &TestServer) {
    let path = server.dir.path().join("log.sqlite");
    tokio::task::spawn_blocking(move || {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute(
                "UPDATE events SET record = replace(record, 'vegan', 'vegetarian') WHERE seq = 7",
                [],
            )
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn signing_in_and_out_is_in_the_access_log() {
    let server = TestServer::start_with(|c| c.access_log.enabled = true).await;
    let bound = server.key(&[Scope::Read], Some("bloom"));
    let (status, _, set_cookie) = sign_in(&server, &bound).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie_pair(&set_cookie.unwrap());
    let signed_out = server
        .http
        .delete(server.url("/console/session"))
        .header("cookie", &cookie)
        .header("x-sealtrail-console", "1")
        .header("user-agent", "compliance-browser/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let admin = server.key(&[Scope::Admin], None);
    let key_id = bound.split('_').nth(1).unwrap().to_owned();
    eventually("both are recorded in the key's tenant", async || {
        let (_, page) = server
            .get(
                &admin,
                "/v1/events?tenant_id=bloom&action=audit_log.console_*&order=asc",
            )
            .await;
        let events = page["events"].as_array().unwrap();
        let actions: Vec<&str> = events
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        if actions.len() < 2 {
            return false;
        }
        assert_eq!(
            actions,
            [
                "audit_log.console_signed_in",
                "audit_log.console_signed_out"
            ]
        );
        assert!(
            events
                .iter()
                .all(|e| e["user_id"] == format!("key:{key_id}"))
        );
        assert_eq!(events[1]["user_agent"], "compliance-browser/1.0");
        assert_eq!(events[0]["ip_address"], "127.0.0.1");
        true
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn producers_cannot_write_access_log_records() {
    let server = TestServer::start().await;
    let writer = server.key(&[Scope::Ingest], Some("bloom"));
    let (status, body) = server
        .post_json(
            &writer,
            "/v1/events",
            &json!({"action": "audit_log.read", "resource_type": "audit_log"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "action");
    assert!(
        body["reason"].as_str().unwrap().contains("reserved"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn stats_give_the_top_actors_and_actions_only_when_asked() {
    let server = TestServer::start().await;
    let writer = server.key(&[Scope::Ingest], Some("bloom"));
    let reader = server.key(&[Scope::Read], None);
    let events: Vec<serde_json::Value> = ["ines", "ines", "ines", "bruno", "bruno", "marta"]
        .iter()
        .map(|user| json!({"action": "guest.viewed", "resource_type": "guest", "user_id": user}))
        .chain([json!({"action": "guest.viewed", "resource_type": "guest"})])
        .collect();
    let (status, body) = server
        .post_json(&writer, "/v1/events", &json!({ "events": events }))
        .await;
    assert!((200..300).contains(&status), "{body}");
    eventually("the top two actors, the total of all", async || {
        let (status, stats) = server
            .get(&reader, "/v1/stats?group_by=user_id&top=2")
            .await;
        assert_eq!(status, 200, "{stats}");
        stats["total"] == 7
            && stats["rows"]
                == json!([
                    {"key": "ines", "count": 3},
                    {"key": "bruno", "count": 2},
                ])
    })
    .await;
    let (_, all) = server.get(&reader, "/v1/stats?group_by=user_id").await;
    let keys: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["", "bruno", "ines", "marta"],
        "an empty key: no user"
    );
    for bad in ["top=0", "top=1001", "top=2&interval=hour"] {
        let (status, body) = server
            .get(&reader, &format!("/v1/stats?group_by=action&{bad}"))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], "top", "{bad}");
    }
    server.stop().await;
}
