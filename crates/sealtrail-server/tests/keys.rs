//! API keys over the admin API: create (with expiry), list without secrets, rotate (with and
//! without grace), revoke — each refused at once — and tenant-bound admins confined.

mod common;

use std::time::Duration;

use common::TestServer;
use sealtrail_core::Scope;
use serde_json::{Value, json};

async fn send(
    s: &TestServer,
    method: reqwest::Method,
    key: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = s.http.request(method, s.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_rotated_and_revoked_over_the_api() {
    let s = TestServer::start().await;
    let admin = s.key(&[Scope::Admin], None);
    let post = reqwest::Method::POST;

    let (status, created) = send(&s, post.clone(), &admin, "/v1/keys",
        Some(json!({"scopes": ["read"], "tenant_id": "acme", "description": "dashboard", "expires_in_secs": 1}))).await;
    assert_eq!(status, 201, "{created}");
    let short = created["key"].as_str().unwrap().to_owned();
    assert!(
        created["state"]
            .as_str()
            .unwrap()
            .starts_with("active until"),
        "{created}"
    );
    assert_eq!(s.get(&short, "/v1/events").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.get(&short, "/v1/events").await.0, 401, "expired");

    // The listing shows every key, never a secret.
    let (status, listed) = s.get(&admin, "/v1/keys").await;
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(
        !text.contains(&short[10..]) && !text.contains("st_"),
        "{text}"
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["state"].as_str().unwrap().starts_with("expired"))
    );

    // Rotation without grace: the old key is refused at once.
    let (_, made) = send(
        &s,
        post.clone(),
        &admin,
        "/v1/keys",
        Some(json!({"scopes": ["ingest", "read"], "tenant_id": "acme"})),
    )
    .await;
    let (old, old_id) = (
        made["key"].as_str().unwrap().to_owned(),
        made["key_id"].as_str().unwrap().to_owned(),
    );
    let (status, rotated) = send(
        &s,
        post.clone(),
        &admin,
        &format!("/v1/keys/{old_id}/rotate"),
        None,
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["scopes"], json!(["ingest", "read"]));
    assert_eq!(s.get(&old, "/v1/events").await.0, 401);
    assert_eq!(s.get(&new, "/v1/events").await.0, 200);
    // With grace, both work until it ends.
    let new_id = rotated["key_id"].as_str().unwrap().to_owned();
    let (status, graced) = send(
        &s,
        post.clone(),
        &admin,
        &format!("/v1/keys/{new_id}/rotate"),
        Some(json!({"grace_secs": 60})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(s.get(&new, "/v1/events").await.0, 200);
    let newest = graced["key"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&newest, "/v1/events").await.0, 200);

    // Revocation: refused from the next request.
    let newest_id = graced["key_id"].as_str().unwrap();
    let (status, _) = send(
        &s,
        reqwest::Method::DELETE,
        &admin,
        &format!("/v1/keys/{newest_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(s.get(&newest, "/v1/events").await.0, 401);
    let (status, _) = send(
        &s,
        reqwest::Method::DELETE,
        &admin,
        &format!("/v1/keys/{newest_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "already revoked");

    // Bad input names the field.
    let (status, error) = send(
        &s,
        post.clone(),
        &admin,
        "/v1/keys",
        Some(json!({"scopes": ["root"]})),
    )
    .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("scopes")),
        "{error}"
    );
    let (status, error) = send(
        &s,
        post.clone(),
        &admin,
        "/v1/keys",
        Some(json!({"scopes": ["read"], "expires_in_secs": 0})),
    )
    .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("expires_in_secs")),
        "{error}"
    );
    let (status, _) = send(&s, post.clone(), &admin, "/v1/keys/not-an-id/rotate", None).await;
    assert_eq!(status, 400);
    // Only admins manage keys.
    assert_eq!(s.get(&new, "/v1/keys").await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_bound_admin_manages_its_own_tenants_keys_only() {
    let s = TestServer::start().await;
    let acme_admin = s.key(&[Scope::Admin], Some("acme"));
    let other = s.key(&[Scope::Read], Some("other"));
    let post = reqwest::Method::POST;
    let (status, created) = send(
        &s,
        post.clone(),
        &acme_admin,
        "/v1/keys",
        Some(json!({"scopes": ["read"]})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["tenant_id"], "acme", "bound to the admin's tenant");
    let (status, _) = send(
        &s,
        post.clone(),
        &acme_admin,
        "/v1/keys",
        Some(json!({"scopes": ["read"], "tenant_id": "other"})),
    )
    .await;
    assert_eq!(status, 403);
    let (_, listed) = s.get(&acme_admin, "/v1/keys").await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["tenant_id"] == "acme"),
        "{listed}"
    );
    let other_id = other.split('_').nth(1).unwrap();
    let (status, _) = send(
        &s,
        reqwest::Method::DELETE,
        &acme_admin,
        &format!("/v1/keys/{other_id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "another tenant's key does not exist for it");
    assert_eq!(
        s.get(&other, "/v1/events").await.0,
        200,
        "and was not revoked"
    );
}
