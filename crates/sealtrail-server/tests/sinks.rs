//! Sinks against a local receiver that checks each service's documented wire format and
//! injects the faults real receivers have.

mod common;

use std::path::Path;
use std::time::Duration;

use common::receiver::{self, Fault, Receiver};
use common::{TestServer, eventually, guest_event};
use sealtrail_core::Scope;
use sealtrail_server::Config;
use serde_json::{Value, json};

fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path.display().to_string()
}

/// `[[sinks]]`/`[[routes]]` as a user writes them, parsed the way `serve` parses its file.
fn sinks_config(config: &mut Config, toml_text: &str) {
    let parsed: Config = toml::from_str(toml_text).unwrap();
    config.sinks = parsed.sinks;
    config.routes = parsed.routes;
    config.validate().unwrap();
}

fn fast_retries() -> &'static str {
    "request_timeout_ms = 400\nretry_initial_delay_ms = 10\nretry_max_delay_ms = 50\nbreaker_failures = 3\nbreaker_cooldown_ms = 150"
}

/// One Elasticsearch sink "search" that every event is routed to, with fast retries.
fn search_sink(base: &str, batch: usize) -> String {
    format!(
        "[[sinks]]\nname = \"search\"\nkind = \"elasticsearch\"\nurl = \"{base}\"\nmax_batch_events = {batch}\n{}\n\n[[routes]]\nsinks = [\"search\"]\n",
        fast_retries()
    )
}

async fn sink_status(s: &TestServer, admin: &str, name: &str) -> Value {
    let (status, body) = s.get(admin, "/v1/sinks").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_sink_receives_its_routed_events_in_its_documented_format() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let toml_text = format!(
        r#"
        [[sinks]]
        name = "hook"
        kind = "webhook"
        url = "{base}/hook"
        secret = {{ file = "{hook}" }}
        max_batch_events = 1

        [[sinks]]
        name = "search"
        kind = "elasticsearch"
        url = "{base}"
        index = "audit-{{yyyy}}.{{mm}}"
        api_key = {{ file = "{es}" }}

        [[sinks]]
        name = "dd"
        kind = "datadog"
        url = "{base}/api/v2/logs"
        api_key = {{ file = "{dd}" }}
        service = "wedding-planner"
        tags = ["env:test"]

        [[sinks]]
        name = "chat"
        kind = "slack"
        webhook_url = {{ file = "{slack}" }}
        event_url = "https://audit.example/events/{{id}}"

        [[sinks]]
        name = "pager"
        kind = "pagerduty"
        url = "{base}/v2/enqueue"
        routing_key = {{ file = "{pd}" }}
        dedup_key = "{{tenant_id}}/{{resource_type}}/{{resource_id}}"

        [[routes]]
        name = "everything"
        sinks = ["hook", "search"]

        [[routes]]
        name = "acme guests"
        sinks = ["dd"]
        tenant = "acme"
        action = "guest.*"

        [[routes]]
        name = "dietary warnings"
        sinks = ["chat"]
        severities = ["warning"]
        action = "guest.dietary_restriction.updated"

        [[routes]]
        name = "pages"
        sinks = ["pager"]
        severities = ["critical"]
        details = {{ "/page" = true }}
        "#,
        base = rx.base,
        hook = secret_file(secrets.path(), "hook", receiver::WEBHOOK_SECRET),
        dd = secret_file(secrets.path(), "dd", receiver::DD_API_KEY),
        slack = secret_file(secrets.path(), "slack", &format!("{}/slack", rx.base)),
        pd = secret_file(secrets.path(), "pd", receiver::PD_ROUTING_KEY),
        es = secret_file(
            secrets.path(),
            "es",
            "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        ),
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let acme = s.key(&[Scope::Ingest], Some("acme"));
    let other = s.key(&[Scope::Ingest], Some("other"));
    let admin = s.key(&[Scope::Admin], None);

    assert_eq!(s.post_batch(&acme, 0..40).await.0, 201);
    assert_eq!(s.post_batch(&other, 40..50).await.0, 201);
    let page = json!({"action": "venue.cancelled", "resource_type": "venue", "resource_id": "v1",
                      "severity": "critical", "details": {"page": true}});
    let quiet = json!({"action": "venue.cancelled", "resource_type": "venue", "resource_id": "v2",
                       "severity": "critical", "details": {"page": false}});
    assert_eq!(s.post_json(&acme, "/v1/events", &page).await.0, 201);
    assert_eq!(s.post_json(&acme, "/v1/events", &quiet).await.0, 201);
    let total = 52;

    eventually("every sink has caught up", async || {
        let (_, body) = s.get(&admin, "/v1/sinks").await;
        body.as_array()
            .unwrap()
            .iter()
            .all(|x| x["cursor"] == total && x["lag_events"] == 0)
    })
    .await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    // Webhook and Elasticsearch: every event, once, in log order.
    let (_, listed) = s.get(&admin, "/v1/events?limit=100").await;
    let mut ids: Vec<String> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    assert_eq!(ids.len(), total as usize);
    assert_eq!(rx.doc_ids(), ids);
    let hooks = rx.accepted("/hook");
    let hook_ids: Vec<String> = hooks
        .iter()
        .map(|h| h["message"]["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hook_ids, ids);
    assert_eq!(hooks[0]["message"]["type"], "audit_event.created");
    assert_eq!(hooks[0]["id"], format!("msg_{}", ids[0]));
    let doc = rx.doc(&ids[0]).unwrap();
    assert_eq!(doc["@timestamp"], doc["occurred_at"]);
    assert!(doc["leaf_hash"].is_string());
    let bulk = &rx.requests("/_bulk")[0];
    assert_eq!(
        bulk.headers["authorization"],
        "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
    );
    let first_action: Value = serde_json::from_str(
        std::str::from_utf8(&bulk.body)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let index = first_action["create"]["_index"].as_str().unwrap();
    assert!(
        index.starts_with("audit-20") && index.len() == "audit-2026.12".len(),
        "{index}"
    );

    // Datadog: acme's guest events only, gzip, the documented fields.
    let logs = rx.accepted("/api/v2/logs");
    assert_eq!(logs.len(), 40);
    assert!(
        rx.requests("/api/v2/logs")
            .iter()
            .all(|r| r.headers["content-encoding"] == "gzip")
    );
    assert_eq!(logs[0]["service"], "wedding-planner");
    assert!(logs[0]["ddtags"].as_str().unwrap().contains("env:test"));
    assert!(logs[0]["ddtags"].as_str().unwrap().contains("tenant:acme"));
    assert_eq!(logs[0]["status"], "warning", "guest_event(0) is a warning");
    assert_eq!(logs[1]["status"], "info");

    // Slack: the dietary warnings (every 4th guest event), readable.
    let messages = rx.accepted("/slack");
    assert_eq!(messages.len(), 13);
    let text = messages[0].to_string();
    assert!(text.contains("guest.dietary_restriction.updated"), "{text}");
    assert!(text.contains("https://audit.example/events/"), "{text}");
    assert!(text.contains("coord:ines"), "{text}");

    // PagerDuty: the one critical event whose details ask for a page.
    let pages = rx.accepted("/v2/enqueue");
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0]["dedup_key"], "acme/venue/v1");
    assert_eq!(pages[0]["payload"]["severity"], "critical");
    assert_eq!(pages[0]["event_action"], "trigger");

    // The status shows each sink's delivery, and no secret anywhere.
    let status = sink_status(&s, &admin, "search").await;
    assert_eq!(status["delivered_events"], total);
    assert_eq!(status["circuit"], "closed");
    assert_eq!(status["dead_letters"], 0);
    assert!(status["last_success_at"].is_string());
    let (_, all) = s.get(&admin, "/v1/sinks").await;
    let shown = all.to_string();
    for secret in [
        receiver::DD_API_KEY,
        receiver::PD_ROUTING_KEY,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert!(!shown.contains(secret));
    }
    ids.clear();

    // Sinks are an admin matter.
    let reader = s.key(&[Scope::Read], None);
    assert_eq!(s.get(&reader, "/v1/sinks").await.0, 403);
    let bound_admin = s.key(&[Scope::Admin], Some("acme"));
    assert_eq!(s.get(&bound_admin, "/v1/sinks").await.0, 403);
    assert_eq!(s.get(&admin, "/v1/sinks/nope/dead-letters").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_and_a_refused_event_is_dead_lettered_then_replayed() {
    let rx = Receiver::start().await;
    let toml_text = search_sink(&rx.base, 10);
    // Every fault a receiver has, before the first request gets through: a 5xx, a 429
    // with Retry-After, an answer slower than the timeout, a dropped connection; then
    // per-item results in the first accepted bulk: one 429 (retried), one 400 (refused).
    rx.fault(Fault::Status(503, None));
    rx.fault(Fault::Status(429, Some(1)));
    rx.fault(Fault::Delay(Duration::from_millis(800)));
    rx.fault(Fault::Drop);
    rx.item_faults(&[201, 429, 400]);
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    assert_eq!(s.post_batch(&key, 0..20).await.0, 201);

    eventually("19 events are in the index", async || {
        rx.doc_ids().len() == 19
    })
    .await;
    eventually("the cursor is at the end", async || {
        sink_status(&s, &admin, "search").await["cursor"] == 20
    })
    .await;
    let requests = rx.requests("/_bulk");
    let after_429 = requests.iter().position(|r| r.status == 429).unwrap();
    let waited = requests[after_429 + 1].at - requests[after_429].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {waited:?}"
    );

    let (status, dead) = s.get(&admin, "/v1/sinks/search/dead-letters").await;
    assert_eq!(status, 200);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("item status 400"),
        "{dead:?}"
    );
    let dead_seq = dead[0]["seq"].as_u64().unwrap();
    let status = sink_status(&s, &admin, "search").await;
    assert_eq!(status["dead_letters"], 1);
    assert_eq!(status["circuit"], "closed");
    let last_error = status["last_error"]["message"].as_str().unwrap();
    assert!(!last_error.is_empty());

    // The receiver has been fixed: replay.
    let replay = s
        .http
        .post(s.url("/v1/sinks/search/dead-letters/replay"))
        .bearer_auth(&admin)
        .json(&json!({"seqs": [dead_seq]}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    eventually("the replayed event is in the index", async || {
        rx.doc_ids().len() == 20
    })
    .await;
    eventually("the dead letter is gone", async || {
        s.get(&admin, "/v1/sinks/search/dead-letters").await.1 == json!([])
    })
    .await;
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_and_a_restart_lose_nothing_and_duplicate_nothing() {
    let rx = Receiver::start().await;
    let toml_text = search_sink(&rx.base, 25);
    rx.set_down(true);
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    for start in (0..200).step_by(50) {
        assert_eq!(s.post_batch(&key, start..start + 50).await.0, 201);
    }
    eventually("the circuit opens", async || {
        let st = sink_status(&s, &admin, "search").await;
        st["circuit"] != "closed"
            && st["lag_events"] == 200
            && st["lag_seconds"].as_f64().unwrap() > 0.0
    })
    .await;
    // Sealtrail restarts in the middle of the outage.
    let s = s.restart().await;
    let admin = s.key(&[Scope::Admin], None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.set_down(false);
    eventually("every event arrived", async || rx.doc_ids().len() == 200).await;
    eventually("the sink has caught up", async || {
        sink_status(&s, &admin, "search").await["lag_events"] == 0
    })
    .await;
    // In log order, each once.
    let (_, listed) = s.get(&admin, "/v1/events?limit=200").await;
    let mut by_seq: Vec<(u64, String)> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by_seq.sort();
    let ids: Vec<String> = by_seq.into_iter().map(|(_, id)| id).collect();
    assert_eq!(rx.doc_ids(), ids);
    let sent: usize = rx
        .requests("/_bulk")
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.body.iter().filter(|&&b| b == b'\n').count() / 2)
        .sum();
    assert_eq!(
        sent, 200,
        "nothing was sent twice once the receiver answered"
    );
    let _ = guest_event(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_over_a_routes_rate_limit_arrive_as_one_digest() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let toml_text = format!(
        r#"
        [[sinks]]
        name = "chat"
        kind = "slack"
        webhook_url = {{ file = "{slack}" }}

        [[routes]]
        name = "warnings"
        sinks = ["chat"]
        severities = ["warning"]
        rate_limit = {{ max_events = 2, per_secs = 2 }}
        "#,
        slack = secret_file(secrets.path(), "slack", &format!("{}/slack", rx.base)),
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    // guest_event(n) is a warning for every 4th n: 10 warnings.
    assert_eq!(s.post_batch(&key, 0..40).await.0, 201);
    eventually("two alerts and one digest arrived", async || {
        rx.accepted("/slack").len() == 3
    })
    .await;
    let messages = rx.accepted("/slack");
    assert!(messages[0]["text"].as_str().unwrap().contains("guest-0"));
    assert!(messages[1]["text"].as_str().unwrap().contains("guest-4"));
    let digest = messages[2].to_string();
    assert!(
        digest.contains("8 events matched routes[0] (warnings)"),
        "{digest}"
    );
    assert!(
        digest.contains("guest-8") && digest.contains("guest-36"),
        "{digest}"
    );
    let status = sink_status(&s, &admin, "chat").await;
    assert_eq!(status["cursor"], 40);
    assert_eq!(status["dead_letters"], 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.accepted("/slack").len(), 3, "nothing is sent twice");
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_email_sink_delivers_through_a_real_smtp_server_with_starttls_and_auth() {
    let smtp = tokio::task::spawn_blocking(sealtrail_testkit::smtp::SmtpServer::start)
        .await
        .unwrap()
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let email_sink = |name: &str, password_file: &str| {
        format!(
            r#"
            [[sinks]]
            name = "{name}"
            kind = "email"
            host = "127.0.0.1"
            port = {port}
            security = "starttls"
            username = "{user}"
            password = {{ file = "{password_file}" }}
            ca_file = "{ca}"
            from = "Sealtrail <audit@wedding.example>"
            to = ["coordinator@wedding.example"]
            to_from = "/details/notify"
            subject = "[{{tenant_id}}] {{action}}: {{/details/guest}}"
            {fast}
            "#,
            port = smtp.port,
            user = smtp.user,
            ca = smtp.ca_file().display(),
            fast = fast_retries(),
        )
    };
    let toml_text = format!(
        r#"
        {good}
        {bad}
        [[routes]]
        sinks = ["vendors", "wrong-password"]
        action = "guest.dietary_restriction.updated"
        "#,
        good = email_sink(
            "vendors",
            &secret_file(secrets.path(), "pw", &smtp.password)
        ),
        bad = email_sink(
            "wrong-password",
            &secret_file(secrets.path(), "bad", "not-it")
        ),
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    let change = json!({
        "action": "guest.dietary_restriction.updated", "resource_type": "guest",
        "resource_id": "g-17", "user_id": "coord:ines", "reason": "guest called",
        "ip_address": "203.0.113.9",
        "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
        "details": {"guest": "Ada Lovelace",
                    "notify": ["caterer@food.example", "baker@cake.example"]},
    });
    let (status, stored) = s.post_json(&key, "/v1/events", &change).await;
    assert_eq!(status, 201, "{stored}");
    let id = stored["events"][0]["id"].as_str().unwrap().to_owned();
    let mut unaddressable = change.clone();
    unaddressable["details"]["notify"] = json!(["not an address"]);
    assert_eq!(s.post_json(&key, "/v1/events", &unaddressable).await.0, 201);
    let unrouted = json!({"action": "venue.booked", "resource_type": "venue"});
    assert_eq!(s.post_json(&key, "/v1/events", &unrouted).await.0, 201);

    eventually(
        "the mail arrived and the bad address is dead-lettered",
        async || {
            let st = sink_status(&s, &admin, "vendors").await;
            st["cursor"] == 3 && st["dead_letters"] == 1
        },
    )
    .await;
    let messages = smtp.messages();
    // The event naming a bad address still reaches the fixed recipient.
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[1].contains("X-RcptTo: coordinator@wedding.example\n"),
        "{}",
        messages[1]
    );
    let mail = &messages[0];
    assert!(
        mail.contains("Subject: [acme] guest.dietary_restriction.updated: Ada Lovelace"),
        "{mail}"
    );
    assert!(
        mail.contains("From: Sealtrail <audit@wedding.example>"),
        "{mail}"
    );
    assert!(
        mail.contains(
            "X-RcptTo: coordinator@wedding.example, caterer@food.example, baker@cake.example"
        ),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("Message-ID: <{id}@sealtrail>")),
        "{mail}"
    );
    assert!(mail.contains("Why: guest called"), "{mail}");
    assert!(
        mail.contains("dietary_restriction: \"none\" -> \"vegan\""),
        "{mail}"
    );
    assert!(mail.contains("From: 203.0.113.9"), "{mail}");
    let (_, dead) = s.get(&admin, "/v1/sinks/vendors/dead-letters").await;
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("not an address"), "{dead}");
    assert!(
        error.contains("sent to the fixed recipients only"),
        "{dead}"
    );

    // A wrong password is the sink's problem, not the events': retried, never dead-lettered.
    eventually("the wrong password was refused", async || {
        sink_status(&s, &admin, "wrong-password").await["consecutive_failures"] != 0
    })
    .await;
    let wrong = sink_status(&s, &admin, "wrong-password").await;
    assert_eq!(wrong["cursor"], 0);
    assert_eq!(wrong["dead_letters"], 0);
    assert!(
        wrong["consecutive_failures"].as_u64().unwrap() >= 1,
        "{wrong}"
    );
    let error = wrong["last_error"]["message"].as_str().unwrap();
    assert!(error.contains("535"), "{error}");
    assert!(!error.contains("not-it"), "the password leaked: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_slows_neither_ingest_nor_the_other_sinks() {
    let dead = Receiver::start().await;
    dead.set_down(true);
    let healthy = Receiver::start().await;
    let toml_text = format!(
        r#"
        [[sinks]]
        name = "dead"
        kind = "elasticsearch"
        url = "{dead}"
        max_batch_events = 10
        {fast}

        [[sinks]]
        name = "healthy"
        kind = "elasticsearch"
        url = "{healthy}"
        max_batch_events = 10

        [[routes]]
        sinks = ["dead", "healthy"]
        "#,
        dead = dead.base,
        healthy = healthy.base,
        fast = fast_retries(),
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    for start in (0..300).step_by(30) {
        assert_eq!(s.post_batch(&key, start..start + 30).await.0, 201);
    }
    eventually("the healthy receiver has everything", async || {
        healthy.doc_ids().len() == 300
    })
    .await;
    let stuck = sink_status(&s, &admin, "dead").await;
    assert_eq!(stuck["cursor"], 0, "{stuck}");
    assert_eq!(stuck["lag_events"], 300);
    assert!(
        stuck["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{stuck}"
    );
    assert!(dead.doc_ids().is_empty());
    let (_, metrics) = s.get_open("/metrics").await;
    assert!(
        metrics.contains(r#"sealtrail_sink_lag_events{sink="dead"} 300"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sealtrail_sink_delivered_events{sink="healthy"} 300"#),
        "{metrics}"
    );
    let fine = sink_status(&s, &admin, "healthy").await;
    assert_eq!(
        (fine["lag_events"].as_u64(), fine["circuit"].as_str()),
        (Some(0), Some("closed"))
    );
}

/// Every kind of sink rides out the same faults: a 5xx, a 429 with Retry-After, an answer
/// slower than its timeout and a dropped connection; then the receiver accepts each event
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_sink_rides_out_5xx_429_timeouts_and_dropped_connections() {
    let secrets = tempfile::tempdir().unwrap();
    let kinds = [
        ("webhook", "/hook"),
        ("datadog", "/api/v2/logs"),
        ("slack", "/slack"),
        ("pagerduty", "/v2/enqueue"),
    ];
    for (kind, path) in kinds {
        let rx = Receiver::start().await;
        let target = match kind {
            "webhook" => format!(
                "url = \"{}/hook\"\nsecret = {{ file = \"{}\" }}\nmax_batch_events = 1",
                rx.base,
                secret_file(secrets.path(), "hook", receiver::WEBHOOK_SECRET)
            ),
            "datadog" => format!(
                "url = \"{}/api/v2/logs\"\napi_key = {{ file = \"{}\" }}",
                rx.base,
                secret_file(secrets.path(), "dd", receiver::DD_API_KEY)
            ),
            "slack" => format!(
                "webhook_url = {{ file = \"{}\" }}",
                secret_file(secrets.path(), "slack", &format!("{}/slack", rx.base))
            ),
            _ => format!(
                "url = \"{}/v2/enqueue\"\nrouting_key = {{ file = \"{}\" }}",
                rx.base,
                secret_file(secrets.path(), "pd", receiver::PD_ROUTING_KEY)
            ),
        };
        let toml_text = format!(
            "[[sinks]]\nname = \"s\"\nkind = \"{kind}\"\n{target}\n{fast}\n\n[[routes]]\nsinks = [\"s\"]\n",
            fast = fast_retries()
        );
        rx.fault(Fault::Status(308, None));
        rx.fault(Fault::Status(503, None));
        rx.fault(Fault::Status(429, Some(1)));
        rx.fault(Fault::Delay(Duration::from_millis(800)));
        rx.fault(Fault::Drop);
        let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
        let key = s.key(&[Scope::Ingest], Some("acme"));
        assert_eq!(s.post_batch(&key, 0..3).await.0, 201);
        eventually(&format!("{kind} accepted the events"), async || {
            rx.accepted(path).len() >= 3
        })
        .await;
        let admin = s.key(&[Scope::Admin], None);
        eventually(&format!("{kind} caught up"), async || {
            sink_status(&s, &admin, "s").await["lag_events"] == 0
        })
        .await;
        assert_eq!(rx.accepted(path).len(), 3, "{kind}: each event once");
        let statuses: Vec<u16> = rx.requests(path).iter().map(|r| r.status).collect();
        // The slow answer is not recorded: the client gave up on it, which cancelled it.
        // A redirect is not followed (it would turn the POST into a GET): it is retried.
        assert!(
            statuses.starts_with(&[308, 503, 429, 200]),
            "{kind}: {statuses:?}"
        );
        let status = sink_status(&s, &admin, "s").await;
        assert_eq!(status["dead_letters"], 0, "{kind}: {status}");
        assert!(rx.violations().is_empty(), "{kind}: {:?}", rx.violations());
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_webhook_url_never_shows_in_errors() {
    let secrets = tempfile::tempdir().unwrap();
    // Nothing listens on this port: every attempt fails with a connection error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/services/T000/B000/XXXXSECRETTOKEN");
    let toml_text = format!(
        "[[sinks]]\nname = \"chat\"\nkind = \"slack\"\nwebhook_url = {{ file = \"{}\" }}\n{}\n\n[[routes]]\nsinks = [\"chat\"]\n",
        secret_file(secrets.path(), "slack", &url),
        fast_retries()
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    assert_eq!(s.post_batch(&key, 0..1).await.0, 201);
    eventually("the failure is reported", async || {
        sink_status(&s, &admin, "chat").await["last_error"].is_object()
    })
    .await;
    let (_, all) = s.get(&admin, "/v1/sinks").await;
    let text = all.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(
        !text.contains("SECRETTOKEN") && !text.contains("/services/"),
        "{text}"
    );
}

/// A receiver refuses any request holding one "poison" event: the sink narrows its batch
/// down to that event in a few requests, dead-letters it, and delivers all the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_event_is_isolated_and_never_blocks_the_others() {
    let rx = Receiver::start().await;
    rx.refuse_containing("guest-poison");
    let secrets = tempfile::tempdir().unwrap();
    let toml_text = format!(
        "[[sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/hook\"\nsecret = {{ file = \"{}\" }}\nmax_batch_events = 16\n{}\n\n[[routes]]\nsinks = [\"hook\"]\n",
        rx.base,
        secret_file(secrets.path(), "hook", receiver::WEBHOOK_SECRET),
        fast_retries()
    );
    let s = TestServer::start_with(|c| sinks_config(c, &toml_text)).await;
    let key = s.key(&[Scope::Ingest], Some("acme"));
    let admin = s.key(&[Scope::Admin], None);
    let mut events: Vec<Value> = (0..32).map(guest_event).collect();
    events[11]["resource_id"] = json!("guest-poison");
    let (status, _) = s
        .post_json(&key, "/v1/events", &json!({ "events": events }))
        .await;
    assert_eq!(status, 201);
    eventually("the sink is past every event", async || {
        sink_status(&s, &admin, "hook").await["cursor"] == 32
    })
    .await;
    let delivered: usize = rx
        .accepted("/hook")
        .iter()
        .map(|m| {
            m["message"]["data"]["events"]
                .as_array()
                .map_or(1, Vec::len)
        })
        .sum();
    assert_eq!(delivered, 31);
    let (_, dead) = s.get(&admin, "/v1/sinks/hook/dead-letters").await;
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    assert_eq!(dead[0]["seq"], 12);
    let requests = rx.requests("/hook").len();
    assert!(
        requests <= 12,
        "{requests} requests to isolate one event in 32"
    );
}
