//! `sealtrail holds add / list / release` against a real `sealtrail serve`.

mod common;

use common::{ServeProcess, sealtrail};

/// Runs a command that must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = sealtrail(args);
    assert!(
        out.status.success(),
        "sealtrail {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The hold id in "placed hold ID on ...".
fn placed_id(stdout: &str) -> String {
    let rest = stdout
        .strip_prefix("placed hold ")
        .unwrap_or_else(|| panic!("{stdout:?}"));
    rest.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn holds_are_added_listed_and_released_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let key = ok(&[
        "keys",
        "create",
        "--data-dir",
        data_dir,
        "--scopes",
        "admin",
    ])
    .trim()
    .to_owned();
    let server = ServeProcess::start(dir.path());
    let api = ["--url", server.url.as_str(), "--key", key.as_str()];
    let run = |args: &[&str]| ok(&[args, &api].concat());

    let wide = run(&["holds", "add", "acme", "--reason", "litigation 2024-17"]);
    assert!(wide.contains("on tenant acme; recorded as event"), "{wide}");
    let wide_id = placed_id(&wide);
    let one = run(&[
        "holds",
        "add",
        "acme",
        "--resource-type",
        "guest",
        "--resource-id",
        "guest-7",
        "--reason",
        "dispute",
    ]);
    assert!(one.contains("on guest guest-7 in acme"), "{one}");
    let one_id = placed_id(&one);

    let listed = run(&["holds", "list", "--tenant", "acme"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("REASON"),
        "{listed}"
    );
    assert!(
        lines[1].starts_with(&wide_id) && lines[1].contains("active"),
        "{listed}"
    );
    assert!(
        lines[2].starts_with(&one_id) && lines[2].contains("guest/guest-7"),
        "{listed}"
    );

    let released = run(&["holds", "release", &wide_id, "--reason", "settled"]);
    assert!(
        released.starts_with(&format!("released hold {wide_id} on tenant acme")),
        "{released}"
    );
    let active = run(&["holds", "list"]);
    assert!(
        !active.contains(&wide_id) && active.contains(&one_id),
        "{active}"
    );
    let all = run(&["holds", "list", "--all"]);
    assert!(all.contains(&wide_id) && all.contains("released "), "{all}");

    // Releasing again fails and says why; a resource id needs its type.
    let again = sealtrail(
        &[
            &["holds", "release", wide_id.as_str(), "--reason", "twice"][..],
            &api,
        ]
        .concat(),
    );
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("released already"), "{stderr}");
    let untyped = sealtrail(
        &[
            &[
                "holds",
                "add",
                "acme",
                "--resource-id",
                "g-1",
                "--reason",
                "x",
            ][..],
            &api,
        ]
        .concat(),
    );
    assert!(!untyped.status.success());
    assert!(
        String::from_utf8_lossy(&untyped.stderr).contains("--resource-type"),
        "{}",
        String::from_utf8_lossy(&untyped.stderr)
    );
}
