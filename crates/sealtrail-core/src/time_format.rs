//! Timestamps as the log keeps them: UTC microseconds since the Unix epoch in columns, and
//! one fixed RFC 3339 spelling (`2026-11-23T19:36:00.123456Z`) in records, so the same
//! instant always has the same canonical bytes whatever offset the producer wrote.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Parses an RFC 3339 timestamp into UTC microseconds; finer precision is truncated.
pub fn parse_rfc3339_micros(text: &str) -> Result<i64, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 timestamp ({e}), e.g. 2026-11-23T19:36:00Z"))?;
    let nanos = parsed.unix_timestamp_nanos();
    i64::try_from(nanos.div_euclid(1000)).map_err(|_| "timestamp out of range".to_owned())
}

/// The canonical spelling of a UTC microsecond timestamp.
pub fn format_micros(micros: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("microsecond timestamps stored by the log are within time's range")
        .to_offset(UtcOffset::UTC);
    at.format(&format)
        .expect("formatting a valid date with a fixed description cannot fail")
}

/// The current wall-clock time in UTC microseconds.
pub fn now_micros() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000)
        .expect("the current time fits in i64 microseconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_normalise_to_one_utc_spelling() {
        let a = parse_rfc3339_micros("2026-11-23T20:36:00.1234567+01:00").unwrap();
        let b = parse_rfc3339_micros("2026-11-23T19:36:00.123456Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_micros(a), "2026-11-23T19:36:00.123456Z");
    }

    #[test]
    fn non_rfc3339_text_is_refused() {
        for bad in [
            "2026-11-23",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-23 19:36:00",
        ] {
            assert!(parse_rfc3339_micros(bad).is_err(), "{bad}");
        }
    }
}
