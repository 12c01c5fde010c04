//! The email sink against a real SMTP server (aiosmtpd, with STARTTLS and AUTH; see
//! `sealtrail_testkit::smtp` for how to have one).

use serde_json::json;

use crate::common::{TestSinks, eventually, fast_retries, secret_file};

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
    let t = TestSinks::start(&toml_text).await;
    let change = json!({
        "action": "guest.dietary_restriction.updated", "resource_type": "guest",
        "resource_id": "g-17", "user_id": "coord:ines", "reason": "guest called",
        "ip_address": "203.0.113.9",
        "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
        "details": {"guest": "Ada Lovelace",
                    "notify": ["caterer@food.example", "baker@cake.example"]},
    });
    t.ingest("acme", vec![change.clone()]).await;
    let id = t.ids_in_log_order()[0].clone();
    let mut unaddressable = change.clone();
    unaddressable["details"]["notify"] = json!(["not an address"]);
    t.ingest("acme", vec![unaddressable]).await;
    let unrouted = json!({"action": "venue.booked", "resource_type": "venue"});
    t.ingest("acme", vec![unrouted]).await;

    eventually(
        "the mail arrived and the bad address is dead-lettered",
        async || {
            let st = t.status("vendors");
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
    let dead = t.dead_letters("vendors");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("not an address"), "{dead}");
    assert!(
        error.contains("sent to the fixed recipients only"),
        "{dead}"
    );

    // A wrong password is the sink's problem, not the events': retried, never dead-lettered.
    eventually("the wrong password was refused", async || {
        t.status("wrong-password")["consecutive_failures"] != 0
    })
    .await;
    let wrong = t.status("wrong-password");
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
