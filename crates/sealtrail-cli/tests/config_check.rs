//! `sealtrail config check`: every problem in a config file, named, without starting.

use std::process::Command;

fn check(file: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sealtrail"))
        .args(["config", "check", "--config"])
        .arg(file)
        .env_remove("ST_TEST_DD_KEY_FOR_CHECK")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn config_check_names_every_problem_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "whsec_c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw==\n").unwrap();
    let file = dir.path().join("sealtrail.toml");
    std::fs::write(
        &file,
        format!(
            r#"
            [[sinks]]
            name = "hook"
            kind = "webhook"
            url = "https://hooks.example/audit"
            secret = {{ file = "{}" }}

            [[sinks]]
            name = "dd"
            kind = "datadog"
            api_key = {{ env = "ST_TEST_DD_KEY_FOR_CHECK" }}

            [[routes]]
            sinks = ["hook", "missing"]
            severities = ["loud"]
            "#,
            secret.display()
        ),
    )
    .unwrap();
    let (ok, out) = check(&file);
    assert!(!ok);
    assert!(
        out.contains(r#"routes[0].sinks: no sink is named "missing""#),
        "{out}"
    );
    assert!(out.contains(r#"routes[0].severities: "loud""#), "{out}");

    // With the routes fixed, the missing secret is what remains.
    let text = std::fs::read_to_string(&file).unwrap();
    let fixed = text
        .replace(r#"["hook", "missing"]"#, r#"["hook", "dd"]"#)
        .replace(r#"["loud"]"#, r#"["critical"]"#);
    std::fs::write(&file, fixed).unwrap();
    let (ok, out) = check(&file);
    assert!(!ok);
    assert!(
        out.contains(
            "sinks[1] (dd).api_key: environment variable ST_TEST_DD_KEY_FOR_CHECK is not set"
        ),
        "{out}"
    );
    assert!(!out.contains("c2VjcmV0"), "a secret was printed: {out}");

    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace(r#"["hook", "dd"]"#, r#"["hook"]"#)
            .replace(
                "[[sinks]]\n            name = \"dd\"\n            kind = \"datadog\"\n            api_key = { env = \"ST_TEST_DD_KEY_FOR_CHECK\" }\n",
                "",
            ),
    )
    .unwrap();
    let (ok, out) = check(&file);
    assert!(ok, "{out}");
    assert!(out.starts_with("ok: 1 sinks, 1 routes"), "{out}");
}
