//! Properties of preparation over arbitrary valid producer events (every field, nested
//! details, any Unicode, integers and floats, lists of changes): the record is canonical
//! JSON whose leaf hash a reader reproduces by canonicalising it again, a record fed back
//! as an event gives itself, and a retry keeps its content hash.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

use super::tests::TestSealer;
use super::*;
use crate::merkle::leaf_hash;
use crate::time_format::{MICROS_PER_SECOND, format_micros};

const NOW: i64 = 1_795_000_000_000_000;
const BOUND_TENANT: &str = "bloom-weddings";

/// The largest magnitude below which every double RFC 8785 writes reads back as a double,
/// not as an integer a producer may not send (see
/// `events_with_floats_beyond_2_53_are_accepted_but_their_records_are_not`).
const EXACT_FLOAT_MAGNITUDE: f64 = 9_007_199_254_740_992.0;

/// Text without control characters, which single-line fields refuse.
fn plain_text(chars: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let plain = any::<char>().prop_map(|c| if c.is_control() { '\u{fffd}' } else { c });
    vec(plain, chars).prop_map(String::from_iter)
}

fn any_text(max_chars: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..max_chars).prop_map(String::from_iter)
}

fn float(wide: bool) -> impl Strategy<Value = Value> {
    any::<f64>()
        .prop_filter("finite", |f| f.is_finite())
        .prop_map(move |f| Value::from(if wide { f } else { f % EXACT_FLOAT_MAGNITUDE }))
}

/// Free-form JSON as producers put in `details` and `changes`.
fn json_value(wide_floats: bool) -> impl Strategy<Value = Value> {
    const MAX_EXACT: i64 = 9_007_199_254_740_991;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-MAX_EXACT..=MAX_EXACT).prop_map(Value::from),
        float(wide_floats),
        any_text(12).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(any_text(6), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event_id() -> impl Strategy<Value = String> {
    (1..=u128::MAX, 0..5u8).prop_map(|(bits, spelling)| {
        let id = uuid::Uuid::from_u128(bits);
        match spelling {
            0 => id.hyphenated().to_string(),
            1 => id.hyphenated().to_string().to_uppercase(),
            2 => id.simple().to_string(),
            3 => id.braced().to_string(),
            _ => id.urn().to_string(),
        }
    })
}

/// An RFC 3339 time no later than the skew allows, in any offset and precision.
fn occurred_at() -> impl Strategy<Value = String> {
    let latest_secs = NOW / MICROS_PER_SECOND + EventLimits::default().max_future_skew_secs;
    (0..=latest_secs, 0..1_000_000_000u32, -1439..=1439i32).prop_map(|(secs, nanos, minutes)| {
        let offset = time::UtcOffset::from_whole_seconds(minutes * 60).expect("within a day");
        time::OffsetDateTime::from_unix_timestamp(secs)
            .expect("in range")
            .replace_nanosecond(nanos)
            .expect("below a second")
            .to_offset(offset)
            .format(&time::format_description::well_known::Rfc3339)
            .expect("four-digit years format")
    })
}

fn dotted_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:/-]{1,40}"
}

fn identifier() -> impl Strategy<Value = Value> {
    prop_oneof![
        plain_text(1..40).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
    ]
}

fn ip_address() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|s| std::net::Ipv6Addr::from(s).to_string()),
        any::<[u16; 8]>().prop_map(|s| s.map(|g| format!("{g:04x}")).join(":")),
    ]
}

fn changes(wide_floats: bool) -> impl Strategy<Value = Value> {
    let change = (
        plain_text(1..20),
        proptest::option::of(json_value(wide_floats)),
        proptest::option::of(json_value(wide_floats)),
    )
        .prop_map(|(field, before, after)| {
            let mut change = Map::new();
            change.insert("field".into(), field.into());
            before.map(|v| change.insert("before".into(), v));
            after.map(|v| change.insert("after".into(), v));
            Value::Object(change)
        });
    vec(change, 0..4).prop_map(Value::Array)
}

fn details(wide_floats: bool) -> impl Strategy<Value = Value> {
    btree_map(any_text(8), json_value(wide_floats), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A valid producer event and the scope it is sent with. Absent optional fields are left
/// out or, as many producers do, sent as `null`.
fn valid_event(wide_floats: bool) -> impl Strategy<Value = (Value, TenantScope)> {
    use proptest::option::of;
    let scope = prop_oneof![
        Just((TenantScope::Bound(BOUND_TENANT.into()), None)),
        Just((
            TenantScope::Bound(BOUND_TENANT.into()),
            Some(BOUND_TENANT.to_owned())
        )),
        "[A-Za-z0-9._:@-]{1,128}".prop_map(|t| (TenantScope::Any, Some(t))),
    ];
    let who = (
        of(event_id()),
        of(occurred_at()),
        of(identifier()),
        of(select(&ActorType::WIRE_NAMES[..])),
        dotted_name(),
        dotted_name(),
        of(identifier()),
    );
    let how = (
        of(select(&Severity::WIRE_NAMES[..])),
        of(select(&Outcome::WIRE_NAMES[..])),
        of(ip_address()),
        of(plain_text(0..40)),
        of(plain_text(0..20)),
        of(any_text(60)
            .prop_map(|s| s.replace(|c: char| c.is_control() && !"\n\r\t".contains(c), ""))),
        of(changes(wide_floats)),
        of(details(wide_floats)),
    );
    let source = of((dotted_name(), 1..=crate::event::MAX_SOURCE_SEQ));
    (scope, who, how, source, any::<bool>()).prop_map(
        |((scope, tenant), who, how, source, nulls)| {
            let (id, occurred, user_id, actor_type, action, resource_type, resource_id) = who;
            let (severity, outcome, ip, user_agent, request_id, reason, changes, details) = how;
            let (source, source_seq) = source.unzip();
            let members: [(&str, Option<Value>); 18] = [
                ("id", id.map(Value::from)),
                ("tenant_id", tenant.map(Value::from)),
                ("occurred_at", occurred.map(Value::from)),
                ("user_id", user_id),
                ("actor_type", actor_type.map(Value::from)),
                ("action", Some(action.into())),
                ("resource_type", Some(resource_type.into())),
                ("resource_id", resource_id),
                ("severity", severity.map(Value::from)),
                ("outcome", outcome.map(Value::from)),
                ("ip_address", ip.map(Value::from)),
                ("user_agent", user_agent.map(Value::from)),
                ("request_id", request_id.map(Value::from)),
                ("reason", reason.map(Value::from)),
                ("changes", changes),
                ("details", details),
                ("source", source.map(Value::from)),
                ("source_seq", source_seq.map(Value::from)),
            ];
            let mut event = Map::new();
            for (name, value) in members {
                match value {
                    Some(value) => event.insert(name.to_owned(), value),
                    None if nulls => event.insert(name.to_owned(), Value::Null),
                    None => None,
                };
            }
            (Value::Object(event), scope)
        },
    )
}

fn prepare(event: Value, scope: &TenantScope, received_at: i64) -> PreparedEvent {
    prepare_event_value(event.clone(), scope, received_at, &EventLimits::default())
        .unwrap_or_else(|e| panic!("a valid event is accepted: {e}\n{event}"))
}

/// What a reader does to check a record: parse it, canonicalise it, hash it.
fn assert_canonical(record: &[u8]) -> Result<(), TestCaseError> {
    let value: Value = serde_json::from_slice(record).expect("a record is JSON");
    let again = crate::canonical::to_vec(&value);
    prop_assert_eq!(&again, record, "canonicalising the record again changes it");
    prop_assert_eq!(leaf_hash(&again), leaf_hash(record));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_accepted_event_records_canonical_bytes_a_reader_hashes_alike(
        (event, scope) in valid_event(true),
        seq in any::<u64>(),
    ) {
        let prepared = prepare(event, &scope, NOW);
        let record = prepared.record(seq);
        assert_canonical(&record)?;
        let stored = StoredRecord::parse(&record).expect("a record is a stored record");
        prop_assert_eq!(stored.seq, seq);
        prop_assert_eq!(stored.id, prepared.id);
        prop_assert_eq!(&stored.tenant_id, &prepared.tenant_id);
        prop_assert_eq!(stored.occurred_at, format_micros(prepared.occurred_at));
        prop_assert_eq!(stored.received_at, format_micros(NOW));
        prop_assert_eq!(stored.severity, prepared.severity);
        prop_assert_eq!(&stored.action, &prepared.action);
        prop_assert_eq!(&stored.user_id, &prepared.user_id);
        prop_assert_eq!(&stored.resource_type, &prepared.resource_type);
        prop_assert_eq!(&stored.resource_id, &prepared.resource_id);
    }

    #[test]
    fn a_record_sent_back_as_an_event_prepares_to_itself(
        (event, scope) in valid_event(false),
    ) {
        let had_id_and_time = event.get("id").is_some_and(|v| !v.is_null())
            && event.get("occurred_at").is_some_and(|v| !v.is_null());
        let first = prepare(event, &scope, NOW);
        let record = first.record(7);
        let mut resent: Value = serde_json::from_slice(&record).expect("a record is JSON");
        let members = resent.as_object_mut().expect("a record is an object");
        members.remove("seq");
        members.remove("received_at");
        let second = prepare(resent, &scope, NOW);
        prop_assert_eq!(second.record(7), record);
        if had_id_and_time {
            prop_assert_eq!(second.content_hash, first.content_hash);
        }
    }

    #[test]
    fn a_retry_received_later_keeps_its_content_hash(
        (mut event, scope) in valid_event(true),
        id in event_id(),
        later_micros in 1..MICROS_PER_SECOND * 3600,
    ) {
        event["id"] = id.into();
        let first = prepare(event.clone(), &scope, NOW);
        let retry = prepare(event, &scope, NOW + later_micros);
        prop_assert!(first.content_hash.is_some());
        prop_assert_eq!(retry.content_hash, first.content_hash);
    }

    #[test]
    fn sealed_records_are_canonical_and_keep_the_content_hash_of_a_retry(
        (mut event, scope) in valid_event(true),
        id in event_id(),
    ) {
        event["id"] = id.into();
        let mut fields: Vec<String> =
            ["ip_address", "user_agent", "request_id", "reason", "changes"].map(String::from).into();
        if let Some(details) = event.get("details").and_then(Value::as_object) {
            fields.extend(details.keys().map(|k| format!("/details/{}", k.replace('~', "~0").replace('/', "~1"))));
        }
        let sealer = TestSealer { fields, subject: Some("/user_id") };
        let limits = EventLimits::default();
        let seal = |received_at| {
            prepare_event_sealed(event.clone(), &scope, received_at, &limits, Some(&sealer))
                .expect("sealing a valid event succeeds")
        };
        let first = seal(NOW);
        assert_canonical(&first.record(3))?;
        prop_assert_eq!(seal(NOW + 1).content_hash, first.content_hash);
    }
}

/// Doubles from 2^53 up are integers, and RFC 8785 writes them without an exponent below
/// 10^21; read back, those up to 2^64 are integers beyond what a producer may send.
#[test]
fn events_with_floats_beyond_2_53_are_accepted_but_their_records_are_not() {
    let event = json_object(
        r#"{"action":"a","resource_type":"g","details":{"f":1.152921504606846976e18}}"#,
    );
    let scope = TenantScope::Bound(BOUND_TENANT.into());
    let record = prepare(event, &scope, NOW).record(1);
    let text = String::from_utf8(record).expect("UTF-8");
    assert!(
        text.contains(r#""details":{"f":1152921504606847000}"#),
        "{text}"
    );
    let mut resent: Value = serde_json::from_str(&text).expect("JSON");
    resent.as_object_mut().expect("object").remove("seq");
    resent
        .as_object_mut()
        .expect("object")
        .remove("received_at");
    let err = prepare_event_value(resent, &scope, NOW, &EventLimits::default()).unwrap_err();
    assert_eq!(err.field, "details.f");
}

fn json_object(text: &str) -> Value {
    serde_json::from_str(text).expect("test JSON")
}
