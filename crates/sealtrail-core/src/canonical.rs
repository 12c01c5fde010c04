//! RFC 8785 (JCS) canonical JSON: the exact bytes a leaf hash is taken over.
//!
//! A record is written field by field in the canonical key order, so the sequencer can
//! splice the one value only it knows — `seq` — between a prepared head and tail without
//! re-serialising anything (see [`crate::event::PreparedEvent`]).

use canon_json::CanonicalFormatter;
use serde::Serialize;

/// Appends the canonical JSON of `value` to `buf`.
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
        write_value(&mut self.buf, key);
        self.buf.push(b':');
        start
    }

    /// Writes one member and returns its byte range.
    pub(crate) fn member<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> std::ops::Range<usize> {
        let start = self.key(key);
        write_value(&mut self.buf, value);
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
    fn canonical_form_is_a_fixed_point() {
        let value = json!({"b": [1, 2.5, {"z": null, "a": "x"}], "a": {"\u{e9}": 1, "e": 2}});
        let once = to_vec(&value);
        let reparsed: serde_json::Value = serde_json::from_slice(&once).unwrap();
        assert_eq!(to_vec(&reparsed), once);
    }
}
