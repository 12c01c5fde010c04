//! RFC 8785 (JCS) canonical JSON: the exact bytes a leaf hash is taken over.
//!
//! A record is written field by field in the canonical key order, so the sequencer can
//! splice the one value only it knows — `seq` — between a prepared head and tail without
//! re-serialising anything (see [`crate::event::PreparedEvent`]).

use canon_json::CanonicalFormatter;
use serde::Serialize;
use serde_json::{Map, Value};

/// Appends the canonical JSON of a parsed JSON value to `buf`.
///
/// The hot path of ingest: written directly rather than through a generic canonicalising
/// serializer, which buffers and re-sorts every object. `serde_json`'s maps are already
/// sorted by UTF-8 bytes, which is RFC 8785's UTF-16 order unless a key holds characters
/// from U+E000 up; only such maps are re-sorted. Integers print as themselves (validation
/// keeps them within ±2^53, where that is also their ECMAScript form); other numbers go
/// through the RFC 8785 number formatter.
pub fn write_json(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(true) => buf.extend_from_slice(b"true"),
        Value::Bool(false) => buf.extend_from_slice(b"false"),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => buf.extend_from_slice(i.to_string().as_bytes()),
            (None, Some(u)) => buf.extend_from_slice(u.to_string().as_bytes()),
            (None, None) => write_value(buf, value),
        },
        Value::String(text) => write_str(buf, text),
        Value::Array(items) => {
            buf.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_json(buf, item);
            }
            buf.push(b']');
        }
        Value::Object(map) => write_object(buf, map),
    }
}

/// Appends a JSON object with its members in RFC 8785 order.
pub fn write_object(buf: &mut Vec<u8>, map: &Map<String, Value>) {
    buf.push(b'{');
    let mut write_member = |i: usize, key: &str, value: &Value| {
        if i > 0 {
            buf.push(b',');
        }
        write_str(buf, key);
        buf.push(b':');
        write_json(buf, value);
    };
    if map.keys().all(|k| k.chars().all(|c| c < '\u{e000}')) {
        for (i, (key, value)) in map.iter().enumerate() {
            write_member(i, key, value);
        }
    } else {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        for (i, (key, value)) in members.into_iter().enumerate() {
            write_member(i, key, value);
        }
    }
    buf.push(b'}');
}

/// Appends a JSON string. `serde_json` escapes exactly what RFC 8785 does: the quote, the
/// backslash, the short forms of backspace, form feed, newline, return and tab, `\u00xx`
/// (lowercase hex) for the other control characters, and nothing else.
pub fn write_str(buf: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *buf, text).expect("writing a string to a Vec cannot fail");
}

/// Appends the canonical JSON of `value` to `buf`, for any serialisable value.
pub fn write_value<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    let mut serializer = serde_json::Serializer::with_formatter(buf, CanonicalFormatter::new());
    value
        .serialize(&mut serializer)
        .expect("values reaching the canonical writer were validated: finite numbers, UTF-8 keys");
}

/// The canonical JSON of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    write_value(&mut buf, value);
    buf
}

/// Writes a JSON object whose keys the caller supplies in canonical (sorted) order.
pub(crate) struct ObjectWriter {
    buf: Vec<u8>,
    empty: bool,
}

impl ObjectWriter {
    pub(crate) fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(b'{');
        Self { buf, empty: true }
    }

    /// Writes `"key":` and returns the byte offset where the member began.
    pub(crate) fn key(&mut self, key: &str) -> usize {
        let start = self.buf.len();
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        write_str(&mut self.buf, key);
        self.buf.push(b':');
        start
    }

    /// Writes one member with a string value and returns its byte range.
    pub(crate) fn member_str(&mut self, key: &str, value: &str) -> std::ops::Range<usize> {
        let start = self.key(key);
        write_str(&mut self.buf, value);
        start..self.buf.len()
    }

    /// Writes one member whose value is already canonical JSON and returns its byte range.
    pub(crate) fn member_raw(&mut self, key: &str, canonical: &[u8]) -> std::ops::Range<usize> {
        let start = self.key(key);
        self.buf.extend_from_slice(canonical);
        start..self.buf.len()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn split_off(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.push(b'}');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    #[allow(clippy::excessive_precision)] // RFC 8785's own example input
    fn matches_rfc8785_examples() {
        // RFC 8785 §3.2.2: number and string serialisation, and key sorting by UTF-16 units.
        let value = json!({
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u{20ac}$\u{000F}\u{000a}A'\u{0042}\u{0022}\u{005c}\\\"/",
            "literals": [null, true, false]
        });
        assert_eq!(
            String::from_utf8(to_vec(&value)).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn the_fast_writer_agrees_with_the_reference_canonicaliser() {
        let values = [
            json!({"b": [1, -2, 2.5, 1e30, 0.1, -0.0, 9007199254740991i64], "a": {"y": null, "x": true}}),
            json!({"\u{e9}": 1, "e": 2, "\u{10000}": 3, "\u{ffff}": 4, "z": "\u{1}\u{1f}\"\\/\u{7f}\u{2028}"}),
            json!([[], {}, "", 0, 5.0, 123456789012.5, 1e-7]),
        ];
        for value in values {
            let mut fast = Vec::new();
            write_json(&mut fast, &value);
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(to_vec(&value)).unwrap()
            );
        }
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        let value = json!({"b": [1, 2.5, {"z": null, "a": "x"}], "a": {"\u{e9}": 1, "e": 2}});
        let once = to_vec(&value);
        let reparsed: serde_json::Value = serde_json::from_slice(&once).unwrap();
        assert_eq!(to_vec(&reparsed), once);
    }
}
