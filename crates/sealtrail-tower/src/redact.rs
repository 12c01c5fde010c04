//! What of a request's query and headers goes into its audit event: query values of
//! sensitive names, and credentials in headers, are replaced by `[redacted]`.

use http::HeaderMap;
use serde_json::{Map, Value};

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Query parameter names redacted unless the configuration says otherwise.
pub const DEFAULT_REDACTED_QUERY: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "password",
    "secret",
    "code",
    "key",
    "api_key",
    "apikey",
    "signature",
    "sig",
];

/// Headers that are always redacted when recorded.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// The query as an object of name → value (a name given twice → a list), sensitive
/// values redacted; `None` for no query.
pub(crate) fn query(query: Option<&str>, redacted: &[String]) -> Option<Value> {
    let query = query.filter(|q| !q.is_empty())?;
    let mut map = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name);
        let value = if redacted.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
            Value::String(REDACTED.to_owned())
        } else {
            Value::String(decode(value))
        };
        match map.get_mut(&name) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                map.insert(name, value);
            }
        }
    }
    Some(Value::Object(map))
}

/// The named headers present, credentials redacted.
pub(crate) fn headers(headers: &HeaderMap, recorded: &[http::HeaderName]) -> Option<Value> {
    let mut map = Map::new();
    for name in recorded {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let shown = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            REDACTED.to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        map.insert(name.as_str().to_owned(), Value::String(shown));
    }
    (!map.is_empty()).then_some(Value::Object(map))
}

/// Percent-decoding with `+` as a space, as forms encode queries; invalid UTF-8 is
/// replaced rather than refused (this is a record of what was sent).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_query_values_and_credentials_are_redacted() {
        let redacted: Vec<String> = DEFAULT_REDACTED_QUERY
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            query(
                Some("page=2&token=abc&tag=a&tag=b%20c&Password=x&q=a+b&bad=%zz&end=%4"),
                &redacted
            ),
            Some(
                serde_json::json!({"page": "2", "token": "[redacted]", "tag": ["a", "b c"],
                                    "Password": "[redacted]", "q": "a b", "bad": "%zz", "end": "%4"})
            )
        );
        assert_eq!(query(Some(""), &redacted), None);
        let mut map = HeaderMap::new();
        map.insert("authorization", "Bearer secret".parse().unwrap());
        map.insert("accept-language", "pt-PT".parse().unwrap());
        let recorded =
            ["authorization", "accept-language", "x-absent"].map(http::HeaderName::from_static);
        assert_eq!(
            headers(&map, &recorded),
            Some(serde_json::json!({"authorization": "[redacted]", "accept-language": "pt-PT"}))
        );
    }
}
