//! Examples of preparation: the record for a known event byte for byte, the rules' messages,
//! and records and content hashes pinned from before preparation was split into stages.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

const NOW: i64 = 1_795_000_000_000_000;

fn bound() -> TenantScope {
    TenantScope::Bound("bloom-weddings".into())
}

fn prepare(value: Value) -> Result<PreparedEvent, FieldError> {
    prepare_event_value(value, &bound(), NOW, &EventLimits::default())
}

fn minimal() -> Value {
    json!({"action": "guest.dietary_restriction.updated", "resource_type": "guest"})
}

#[test]
fn the_record_is_canonical_json_with_the_seq_spliced_in() {
    let event = prepare(json!({
        "id": "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d",
        "action": "guest.dietary_restriction.updated",
        "resource_type": "guest",
        "resource_id": 4711,
        "user_id": "coord-17",
        "ip_address": "2001:0db8:0000:0000:0000:0000:0000:0001",
        "details": {"z": 1, "a": {"y": true, "b": null}},
        "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
        "reason": "guest called",
        "source": "wedding-api/0190f0e4",
        "source_seq": 7,
    }))
    .unwrap();
    let record = String::from_utf8(event.record(42)).unwrap();
    assert_eq!(
        record,
        concat!(
            r#"{"action":"guest.dietary_restriction.updated","actor_type":"user","#,
            r#""changes":[{"after":"vegan","before":"none","field":"dietary_restriction"}],"#,
            r#""details":{"a":{"b":null,"y":true},"z":1},"#,
            r#""id":"0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d","ip_address":"2001:db8::1","#,
            r#""occurred_at":"2026-11-18T11:06:40.000000Z","outcome":"success","#,
            r#""reason":"guest called","received_at":"2026-11-18T11:06:40.000000Z","#,
            r#""resource_id":"4711","resource_type":"guest","seq":42,"severity":"info","#,
            r#""source":"wedding-api/0190f0e4","source_seq":7,"#,
            r#""tenant_id":"bloom-weddings","user_id":"coord-17"}"#
        )
    );
    let value: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(
        crate::canonical::to_vec(&value),
        record.as_bytes(),
        "canonical fixed point"
    );
    let stored = StoredRecord::parse(record.as_bytes()).unwrap();
    assert_eq!(stored.seq, 42);
    assert_eq!(stored.resource_id.as_deref(), Some("4711"));
}

#[test]
fn a_retry_has_the_same_content_hash_and_any_change_gives_another() {
    let sent = json!({"id": "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d", "action": "a.b",
                      "resource_type": "guest"});
    let first = prepare(sent.clone()).unwrap();
    let retry = prepare_event_value(
        sent.clone(),
        &bound(),
        NOW + 5_000_000,
        &EventLimits::default(),
    )
    .unwrap();
    assert_eq!(first.content_hash, retry.content_hash);
    assert_ne!(first.record(1), retry.record(1), "received_at differs");
    let mut other = sent;
    other["severity"] = json!("critical");
    assert_ne!(prepare(other).unwrap().content_hash, first.content_hash);
    assert_eq!(
        prepare(minimal()).unwrap().content_hash,
        None,
        "server ids need no hash"
    );
}

#[test]
fn defaults_and_nulls() {
    let mut event = minimal();
    event["user_id"] = Value::Null;
    event["details"] = json!({});
    let e = prepare(event).unwrap();
    assert_eq!(e.severity, Severity::Info);
    assert_eq!(e.user_id, None);
    assert_eq!(e.occurred_at, NOW);
    assert_eq!(e.id.get_version_num(), 7);
    let record = String::from_utf8(e.record(1)).unwrap();
    assert!(
        !record.contains("details") && !record.contains("user_id"),
        "{record}"
    );
}

#[test]
fn every_rule_names_its_field() {
    let long = "x".repeat(129);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([1]), "", "must be a JSON object"),
        (json!({"resource_type": "guest"}), "action", "required"),
        (json!({"action": "a"}), "resource_type", "required"),
        (
            json!({"action": 5, "resource_type": "g"}),
            "action",
            "must be a string",
        ),
        (
            json!({"action": long, "resource_type": "g"}),
            "action",
            "1 to 128",
        ),
        (
            json!({"action": "has space", "resource_type": "g"}),
            "action",
            "contains ' '",
        ),
        (
            json!({"action": "a", "resource_type": "g", "colour": 1}),
            "colour",
            "unknown field",
        ),
        (
            json!({"action": "a", "resource_type": "g", "source": "api/1"}),
            "source_seq",
            "required with source",
        ),
        (
            json!({"action": "a", "resource_type": "g", "source_seq": 4}),
            "source",
            "required with source_seq",
        ),
        (
            json!({"action": "a", "resource_type": "g", "seq": 1}),
            "seq",
            "assigned by the server",
        ),
        (
            json!({"action": "a", "resource_type": "g", "id": "nope"}),
            "id",
            "not a UUID",
        ),
        (
            json!({"action": "a", "resource_type": "g", "ip_address": "300.1.1.1"}),
            "ip_address",
            "not an IPv4",
        ),
        (
            json!({"action": "a", "resource_type": "g", "severity": "fatal"}),
            "severity",
            "not one of info, warning, critical",
        ),
        (
            json!({"action": "a", "resource_type": "g", "outcome": "maybe"}),
            "outcome",
            "not one of",
        ),
        (
            json!({"action": "a", "resource_type": "g", "actor_type": "robot"}),
            "actor_type",
            "not one of",
        ),
        (
            json!({"action": "a", "resource_type": "g", "occurred_at": "yesterday"}),
            "occurred_at",
            "RFC 3339",
        ),
        (
            json!({"action": "a", "resource_type": "g", "occurred_at": "2099-01-01T00:00:00Z"}),
            "occurred_at",
            "in the future",
        ),
        (
            json!({"action": "a", "resource_type": "g", "tenant_id": "other"}),
            "tenant_id",
            "bound to tenant",
        ),
        (
            json!({"action": "a", "resource_type": "g", "details": [1]}),
            "details",
            "must be a JSON object",
        ),
        (
            json!({"action": "a", "resource_type": "g", "details": {"n": 9007199254740993u64}}),
            "details.n",
            "beyond",
        ),
        (
            json!({"action": "a", "resource_type": "g", "details": {"a.b": 9007199254740993u64}}),
            "details[\"a.b\"]",
            "beyond",
        ),
        (
            json!({"action": "a", "resource_type": "g", "changes": {}}),
            "changes",
            "must be a list",
        ),
        (
            json!({"action": "a", "resource_type": "g", "changes": [{"before": 1}]}),
            "changes[0].field",
            "required",
        ),
        (
            json!({"action": "a", "resource_type": "g", "changes": [{"field": "x", "diff": 1}]}),
            "changes[0].diff",
            "unknown field",
        ),
        (
            json!({"action": "a", "resource_type": "g", "user_id": 1.5}),
            "user_id",
            "string or an integer",
        ),
        (
            json!({"action": "a", "resource_type": "g", "user_agent": "a\u{0}b"}),
            "user_agent",
            "control character",
        ),
        (
            json!({"action": "a", "resource_type": "g", "reason": "x".repeat(4097)}),
            "reason",
            "limit is 4096",
        ),
    ];
    for (input, field, reason) in cases {
        let err = prepare(input.clone()).expect_err(&input.to_string());
        assert_eq!(err.field, field, "{input}: {err}");
        assert!(err.reason.contains(reason), "{input}: {err}");
    }
}

#[test]
fn deep_and_large_details_are_refused() {
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "n": deep });
    }
    let err =
        prepare(json!({"action": "a", "resource_type": "g", "details": {"d": deep}})).unwrap_err();
    assert!(err.reason.contains("nested deeper than 32"), "{err}");
    let big = "x".repeat(70_000);
    let err =
        prepare(json!({"action": "a", "resource_type": "g", "details": {"d": big}})).unwrap_err();
    assert_eq!(err.field, "details");
    assert!(err.reason.contains("limit is 65536"), "{err}");
}

#[test]
fn unbound_keys_must_name_a_valid_tenant() {
    let limits = EventLimits::default();
    let err = prepare_event_value(minimal(), &TenantScope::Any, NOW, &limits).unwrap_err();
    assert_eq!(err.field, "tenant_id");
    let mut event = minimal();
    event["tenant_id"] = json!("acme corp");
    let err = prepare_event_value(event, &TenantScope::Any, NOW, &limits).unwrap_err();
    assert!(err.reason.contains("contains ' '"), "{err}");
}

/// Seals deterministically, so sealed records can be pinned byte for byte.
pub(super) struct TestSealer {
    pub(super) fields: Vec<String>,
    pub(super) subject: Option<&'static str>,
}

impl FieldSealer for TestSealer {
    fn sealed_fields(&self) -> &[String] {
        &self.fields
    }

    fn subject_pointer(&self) -> Option<&str> {
        self.subject
    }

    fn seal(
        &self,
        tenant: &str,
        subject: Option<&str>,
        field: &str,
        value_json: &str,
    ) -> Result<String, String> {
        let digest = hex::encode(Sha256::digest(value_json.as_bytes()));
        Ok(format!(
            "sealed:{tenant}:{}:{field}:{digest}",
            subject.unwrap_or("-")
        ))
    }

    fn key_content_hash(&self, hash: &mut Hash) {
        *hash = Sha256::new()
            .chain_update(b"key")
            .chain_update(*hash)
            .finalize()
            .into();
    }
}

fn full_event() -> Value {
    json!({
        "id": "0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d",
        "occurred_at": "2026-11-18T12:06:40.5+01:00",
        "action": "guest.dietary_restriction.updated",
        "resource_type": "guest",
        "resource_id": 4711,
        "user_id": "coord-17",
        "actor_type": "service",
        "severity": "warning",
        "outcome": "failure",
        "ip_address": "2001:0db8:0000:0000:0000:0000:0000:0001",
        "user_agent": "Mozilla/5.0 (X11)",
        "request_id": "req-1",
        "details": {"z": 1.5, "a": {"y": true, "b": null}, "\u{e000}k": [1, "x"], "k": 2},
        "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
        "reason": "guest called\nat noon",
    })
}

fn minimal_with_id() -> Value {
    let mut event = minimal();
    event["id"] = json!("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d");
    event
}

/// SHA-256 of `record(7)` and the content hash, as hex, as the single-function
/// preparation produced them before it was split into stages.
#[test]
fn records_and_content_hashes_are_pinned() {
    let all_sealable = [
        "ip_address",
        "user_agent",
        "request_id",
        "reason",
        "changes",
        "/details/a/y",
        "/details/z",
        "user_id",
        "/details/missing",
        "/details/a/b",
    ];
    let cases: Vec<(&str, Value, Option<TestSealer>)> = vec![
        ("plain", full_event(), None),
        ("minimal", minimal_with_id(), None),
        (
            "id without occurred_at",
            {
                let mut e = full_event();
                e.as_object_mut().unwrap().remove("occurred_at");
                e
            },
            None,
        ),
        (
            "sealer sealing nothing present",
            minimal_with_id(),
            Some(TestSealer {
                fields: vec!["ip_address".into(), "/details/x".into()],
                subject: None,
            }),
        ),
        (
            "sealed, per subject",
            full_event(),
            Some(TestSealer {
                fields: all_sealable.iter().map(|f| f.to_string()).collect(),
                subject: Some("/resource_id"),
            }),
        ),
        (
            "whole details and a field twice",
            full_event(),
            Some(TestSealer {
                fields: vec![
                    "/details".into(),
                    "ip_address".into(),
                    "ip_address".into(),
                    "/details/k".into(),
                ],
                subject: Some("/user_id"),
            }),
        ),
    ];
    let mut got = Vec::new();
    for (name, event, sealer) in cases {
        let prepared = prepare_event_sealed(
            event,
            &bound(),
            NOW,
            &EventLimits::default(),
            sealer.as_ref().map(|s| s as &dyn FieldSealer),
        )
        .unwrap();
        let record = prepared.record(7);
        let value: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(
            crate::canonical::to_vec(&value),
            record,
            "{name}: canonical"
        );
        got.push(format!(
            "{name}: {} {}",
            hex::encode(Sha256::digest(&record)),
            prepared.content_hash.map(hex::encode).unwrap_or_default()
        ));
    }
    let expected: Vec<String> = PINNED.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, expected);
}

const PINNED: [&str; 6] = [
    "plain: 15c223a2877605c2ad0f5cff35850a44e59326ea7020d91fbefba6e5633c3279 2eef1cd8c976ea7ce7ea7f97517feb41e2bbf2d0d90c71be0816258938cdc3b6",
    "minimal: ff7b6a1f5ccbbc45ee8bdd4f17ba918097ec82fb056acc9ff7e2bb21e5c1444d 9cc3781143d2cef8e7126107f6a11628f483a0c43fb8bb2df043fb04ff1d2310",
    "id without occurred_at: 14e40c2582394c2968fa260d90172077d5542b8c5fe213dddab6e95dab1ecc3b 13672b751ec2fdfc34cda51a10c1203527bc8824bb739decf24e5a177fd1e08d",
    "sealer sealing nothing present: ff7b6a1f5ccbbc45ee8bdd4f17ba918097ec82fb056acc9ff7e2bb21e5c1444d 4fdbdb2c186392c5dd642efa46e0012c1381a61c303372707c6870d2811d31e3",
    "sealed, per subject: 11e0dcf2bc895549a41b2268edd3c1b3bf2e135aa216d53a9f54223c8af872e1 8cafc7b0c2f33561bdf51b759cc316f1bc455e902c57c267c63884e94b468928",
    "whole details and a field twice: 3e341b38c7b1f9861664b6d5495e3d690e40a0be03e8e783d247b98955b67f5f 07d390f0f9cfa6f9382fdcd08b33edd2a12c7a31d9e51a6eb1b26d9c41a8a7ee",
];

#[test]
fn malformed_json_is_reported_with_its_position() {
    let err = prepare_event(b"{\"action\": ", &bound(), NOW, &EventLimits::default()).unwrap_err();
    assert!(err.reason.starts_with("malformed JSON"), "{err}");
    let err = prepare_event(
        b"{\"action\": \"\xff\"}",
        &bound(),
        NOW,
        &EventLimits::default(),
    )
    .unwrap_err();
    assert!(err.reason.contains("malformed JSON"), "{err}");
}

/// One value for a field and what must become of it: accepted, or refused naming `path`
/// with a reason containing `reason`.
struct Edge {
    value: Value,
    refused: Option<(String, String)>,
}

fn accepted(value: impl Into<Value>) -> Edge {
    Edge {
        value: value.into(),
        refused: None,
    }
}

fn refused(value: impl Into<Value>, path: &str, reason: impl Into<String>) -> Edge {
    Edge {
        value: value.into(),
        refused: Some((path.to_owned(), reason.into())),
    }
}

/// `depth` objects nested around `1`.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!({ "n": inner }))
}

/// A JSON string whose member makes `wrap`'s canonical JSON exactly `bytes` long.
fn padded_to(bytes: usize, wrap: impl Fn(Value) -> Value) -> Value {
    let overhead = crate::canonical::to_vec(&wrap(json!(""))).len();
    wrap(json!("x".repeat(bytes - overhead)))
}

/// The values at and just past each limit of a field of this kind.
fn edges(field: &fields::Field, limits: &EventLimits) -> Vec<Edge> {
    use fields::FieldKind::*;
    let name = field.name;
    let over_chars = |max: usize| format!("the limit is {max}");
    match field.kind {
        EventId => vec![
            accepted("0190f0e4-8f5e-7cc2-9d2e-0f3c2a1b4c5d"),
            refused("00000000-0000-0000-0000-000000000000", name, "nil UUID"),
        ],
        Tenant => {
            let max = limits.max_tenant_chars;
            vec![
                accepted("t".repeat(max)),
                refused("t".repeat(max + 1), name, format!("1 to {max} characters")),
            ]
        }
        Timestamp => {
            let latest = NOW + limits.max_future_skew_secs * crate::time_format::MICROS_PER_SECOND;
            vec![
                accepted(crate::time_format::format_micros(latest)),
                refused(
                    crate::time_format::format_micros(latest + 1),
                    name,
                    "in the future",
                ),
            ]
        }
        Name(max_chars) => {
            let max = max_chars(limits);
            vec![
                accepted("a".repeat(max)),
                refused("a".repeat(max + 1), name, format!("1 to {max} characters")),
                refused("", name, format!("1 to {max} characters")),
            ]
        }
        Identifier(max_chars) => {
            let max = max_chars(limits);
            vec![
                accepted("é".repeat(max)),
                accepted(u64::MAX),
                refused("é".repeat(max + 1), name, over_chars(max)),
            ]
        }
        Text {
            max_chars,
            multiline,
        } => {
            let max = max_chars(limits);
            let line_break = if multiline {
                accepted(format!("{}\n", "é".repeat(max - 1)))
            } else {
                refused("a\nb", name, "control character")
            };
            vec![
                accepted("é".repeat(max)),
                line_break,
                refused("é".repeat(max + 1), name, over_chars(max)),
            ]
        }
        Choice(names) => {
            let mut edges: Vec<Edge> = names.iter().map(|n| accepted(*n)).collect();
            edges.push(refused("none of them", name, "is not one of"));
            edges
        }
        IpAddress => vec![
            accepted("::ffff:192.0.2.1"),
            refused("192.0.2", name, "not an IPv4 or IPv6 address"),
        ],
        Changes => change_edges(limits),
        SourceSeq => {
            let max = crate::event::MAX_SOURCE_SEQ;
            vec![
                accepted(1),
                accepted(max),
                refused(max + 1, name, "out of range"),
                refused(0, name, "out of range"),
                refused(-1, name, "out of range"),
                refused(1.5, name, "out of range"),
                refused("1", name, "not a string"),
            ]
        }
        Details => {
            let bytes = limits.max_details_bytes;
            let deepest = limits.max_json_depth - 2; // `details` is 1 and its members 2
            vec![
                accepted(padded_to(bytes, |s| json!({ "d": s }))),
                refused(
                    padded_to(bytes + 1, |s| json!({ "d": s })),
                    name,
                    over_chars(bytes),
                ),
                accepted(json!({ "d": nested(deepest) })),
                refused(
                    json!({ "d": nested(deepest + 1) }),
                    "details.d",
                    "nested deeper",
                ),
            ]
        }
    }
}

fn change_edges(limits: &EventLimits) -> Vec<Edge> {
    let entries = |n: usize| Value::Array(vec![json!({"field": "f"}); n]);
    let named = |chars: usize| json!([{ "field": "f".repeat(chars) }]);
    let after = |value: Value| json!([{ "field": "f", "after": value }]);
    let (max, field_chars, bytes) = (
        limits.max_changes,
        limits.max_change_field_chars,
        limits.max_details_bytes,
    );
    let deepest = limits.max_json_depth - 1; // each `before` and `after` is 1
    vec![
        accepted(entries(max)),
        refused(entries(max + 1), "changes", format!("the limit is {max}")),
        accepted(named(field_chars)),
        refused(
            named(field_chars + 1),
            "changes[0].field",
            format!("the limit is {field_chars}"),
        ),
        accepted(padded_to(bytes, after)),
        refused(
            padded_to(bytes + 1, after),
            "changes",
            format!("is {} bytes of JSON; the limit is {bytes}", bytes + 1),
        ),
        accepted(after(nested(deepest))),
        refused(
            after(nested(deepest + 1)),
            "changes[0].after",
            "nested deeper",
        ),
    ]
}

/// Walks the field table: every field's value at each of its limits is accepted, and one
/// past it refused naming the field.
#[test]
fn every_field_is_accepted_at_its_limit_and_refused_one_past_it() {
    let limits = EventLimits::default();
    for field in &fields::FIELDS {
        for edge in edges(field, &limits) {
            // `source` and `source_seq` come together.
            let mut event = json!({"action": "a", "resource_type": "g", "tenant_id": "t",
                                   "source": "s", "source_seq": 1});
            event[field.name] = edge.value.clone();
            let result = prepare_event_value(event, &TenantScope::Any, NOW, &limits);
            let shown: String = edge.value.to_string().chars().take(60).collect();
            match (result, edge.refused) {
                (Ok(_), None) => {}
                (Err(err), Some((path, reason))) => {
                    assert_eq!(err.field, path, "{}: {shown}: {err}", field.name);
                    assert!(
                        err.reason.contains(&reason),
                        "{}: {shown}: {err}",
                        field.name
                    );
                }
                (Ok(_), Some((path, reason))) => {
                    panic!("{}: {shown} accepted; want {path}: {reason}", field.name)
                }
                (Err(err), None) => panic!("{}: {shown} refused: {err}", field.name),
            }
        }
    }
}

#[test]
fn required_fields_are_refused_when_absent_or_null() {
    for field in fields::FIELDS
        .iter()
        .filter(|f| f.presence == fields::Presence::Required)
    {
        for absent in [None, Some(Value::Null)] {
            let mut event = json!({"action": "a", "resource_type": "g"});
            match &absent {
                Some(null) => event[field.name] = null.clone(),
                None => drop(event.as_object_mut().map(|m| m.remove(field.name))),
            }
            let err = prepare(event).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.reason.as_str()),
                (field.name, "required")
            );
        }
    }
}
