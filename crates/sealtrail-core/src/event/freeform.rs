//! The free-form members, `changes` and `details`: JSON a producer shapes as it likes,
//! bounded in depth and size and kept to numbers RFC 8785 reproduces exactly.
//!
//! Both come out as canonical JSON, written once here: their byte limits are on that form,
//! and the record embeds the same bytes.

use serde_json::Value;

use super::validate::{check_text, json_kind};
use super::{EventLimits, FieldError};

/// Validates `changes` and returns its canonical JSON (`None` for an empty list): a list of
/// `{after?, before?, field}` objects, keys in canonical order.
pub(crate) fn validate_changes(
    value: Value,
    limits: &EventLimits,
) -> Result<Option<Vec<u8>>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError::new(
            "changes",
            format!(
                "must be a list of {{field, before, after}}, not {}",
                json_kind(&value)
            ),
        ));
    };
    if items.len() > limits.max_changes {
        return Err(FieldError::new(
            "changes",
            format!(
                "has {} entries; the limit is {}",
                items.len(),
                limits.max_changes
            ),
        ));
    }
    if items.is_empty() {
        return Ok(None);
    }
    let mut canonical = Vec::with_capacity(64 * items.len());
    canonical.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        let at = |e: FieldError| e.within(&format!("changes[{i}]"));
        let Value::Object(entry) = item else {
            return Err(at(FieldError::new(
                "",
                "must be an object {field, before, after}",
            )));
        };
        if let Some(name) = entry
            .keys()
            .find(|k| !["field", "before", "after"].contains(&k.as_str()))
        {
            return Err(at(FieldError::new(
                name.clone(),
                "unknown field; a change has field, before, after",
            )));
        }
        let field = match entry.get("field") {
            Some(Value::String(f)) if !f.is_empty() => f,
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(at(FieldError::new("field", "required")));
            }
            Some(other) => {
                return Err(at(FieldError::new(
                    "field",
                    format!("must be a string, not {}", json_kind(other)),
                )));
            }
        };
        check_text("field", field, limits.max_change_field_chars, false).map_err(at)?;
        for side in ["before", "after"] {
            if let Some(v) = entry.get(side) {
                check_json_value(v, 1, limits).map_err(|r| at(FieldError::new(side, r)))?;
            }
        }
        if i > 0 {
            canonical.push(b',');
        }
        // The keys are ASCII and already in canonical order in the map.
        crate::canonical::write_object(&mut canonical, &entry);
    }
    canonical.push(b']');
    if canonical.len() > limits.max_details_bytes {
        return Err(FieldError::new(
            "changes",
            format!(
                "is {} bytes of JSON; the limit is {}",
                canonical.len(),
                limits.max_details_bytes
            ),
        ));
    }
    Ok(Some(canonical))
}

/// Validates `details` and returns its canonical JSON (`None` for an empty object).
pub(crate) fn validate_details(
    value: Value,
    limits: &EventLimits,
) -> Result<Option<Vec<u8>>, FieldError> {
    let Value::Object(details) = value else {
        return Err(FieldError::new(
            "details",
            format!("must be a JSON object, not {}", json_kind(&value)),
        ));
    };
    for (key, v) in &details {
        check_json_value(v, 2, limits)
            .map_err(|r| FieldError::new(member_path("details", key), r))?;
    }
    if details.is_empty() {
        return Ok(None);
    }
    let mut canonical = Vec::with_capacity(128);
    crate::canonical::write_object(&mut canonical, &details);
    if canonical.len() > limits.max_details_bytes {
        return Err(FieldError::new(
            "details",
            format!(
                "is {} bytes of JSON; the limit is {}",
                canonical.len(),
                limits.max_details_bytes
            ),
        ));
    }
    Ok(Some(canonical))
}

/// `parent.key`, or `parent["key"]` when the key is not a plain name (so `details["a.b"]`
/// is not mistaken for `details.a.b`).
fn member_path(parent: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", serde_json::Value::String(key.to_owned()))
    }
}

/// The largest integer every JSON implementation represents exactly (I-JSON, RFC 7493).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Bounds the depth of free-form JSON and keeps its numbers within what RFC 8785 (which
/// reads every number as an IEEE double) reproduces exactly.
fn check_json_value(value: &Value, depth: usize, limits: &EventLimits) -> Result<(), String> {
    if depth > limits.max_json_depth {
        return Err(format!(
            "nested deeper than {} levels",
            limits.max_json_depth
        ));
    }
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let as_float = n.as_f64().unwrap_or(f64::INFINITY);
            if as_float.abs() > MAX_EXACT_INTEGER {
                return Err(format!(
                    "the integer {n} is beyond ±2^53 and would lose precision; send it as a string"
                ));
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_json_value(v, depth + 1, limits)),
        Value::Object(map) => map
            .values()
            .try_for_each(|v| check_json_value(v, depth + 1, limits)),
        _ => Ok(()),
    }
}
