//! The query vocabulary shared by the API, the CLI and the stores: which events (a filter),
//! in which order, how many, and where the previous page ended (an opaque keyset cursor).
//!
//! Parsing lives here rather than in the HTTP layer so the same rules — and the same error
//! messages — apply to every way a filter arrives, and so they can be fuzzed without I/O.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;

use crate::event::{EventLimits, FieldError, Severity, validate_tenant_id};
use crate::time_format::parse_rfc3339_micros;

/// How an `action` filter matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionMatch {
    /// `guest.rsvp.updated`: this action only.
    Exact(String),
    /// `guest.*`: every action starting with `guest.`.
    Prefix(String),
}

impl ActionMatch {
    /// Parses `name` or `prefix.*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.chars().count() > MAX_FILTER_VALUE_CHARS {
            return Err(format!(
                "is longer than {MAX_FILTER_VALUE_CHARS} characters"
            ));
        }
        let (body, is_prefix) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if let Some(bad) = body
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')))
        {
            return Err(format!(
                "contains {bad:?}; give an action name, or a prefix ending in * such as guest.*"
            ));
        }
        Ok(if is_prefix {
            ActionMatch::Prefix(body.to_owned())
        } else {
            ActionMatch::Exact(body.to_owned())
        })
    }

    /// Whether `action` matches.
    pub fn matches(&self, action: &str) -> bool {
        match self {
            ActionMatch::Exact(a) => a == action,
            ActionMatch::Prefix(p) => action.starts_with(p.as_str()),
        }
    }
}

/// Which events. Every present condition must hold; `from` is inclusive, `to` exclusive,
/// both on `occurred_at`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// One tenant, or all the caller may see.
    pub tenant_id: Option<String>,
    /// Any of these severities; empty means all.
    pub severities: Vec<Severity>,
    /// Action name or prefix.
    pub action: Option<ActionMatch>,
    /// Action name or prefix left out.
    pub exclude_action: Option<ActionMatch>,
    /// Acting user.
    pub user_id: Option<String>,
    /// Resource type.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// `occurred_at >= from`, UTC microseconds.
    pub from: Option<i64>,
    /// `occurred_at < to`, UTC microseconds.
    pub to: Option<i64>,
    /// Free text: a substring of the action, the resource type or the resource id, ASCII
    /// letters matched without regard to case. Held lowercased.
    pub text: Option<String>,
}

/// Whether `haystack` contains `needle_lower` (already ASCII-lowercased), ASCII letters
/// compared without case: the rule of the `text` filter, which the stores apply in SQL too.
pub fn contains_ascii_nocase(haystack: &str, needle_lower: &str) -> bool {
    let needle = needle_lower.as_bytes();
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The columns of one event a filter is evaluated on (without parsing its record).
#[derive(Clone, Copy, Debug)]
pub struct EventColumns<'a> {
    /// Owning tenant.
    pub tenant_id: &'a str,
    /// UTC microseconds.
    pub occurred_at: i64,
    /// Severity.
    pub severity: Severity,
    /// Action.
    pub action: &'a str,
    /// Acting user.
    pub user_id: Option<&'a str>,
    /// Resource type.
    pub resource_type: &'a str,
    /// Resource id.
    pub resource_id: Option<&'a str>,
}

impl EventFilter {
    /// Whether an event passes the filter: the same rules the stores apply in SQL.
    pub fn matches(&self, e: &EventColumns<'_>) -> bool {
        self.tenant_id.as_deref().is_none_or(|t| t == e.tenant_id)
            && (self.severities.is_empty() || self.severities.contains(&e.severity))
            && self.action.as_ref().is_none_or(|a| a.matches(e.action))
            && self
                .exclude_action
                .as_ref()
                .is_none_or(|a| !a.matches(e.action))
            && self.user_id.as_deref().is_none_or(|u| Some(u) == e.user_id)
            && self
                .resource_type
                .as_deref()
                .is_none_or(|r| r == e.resource_type)
            && self
                .resource_id
                .as_deref()
                .is_none_or(|r| Some(r) == e.resource_id)
            && self.from.is_none_or(|from| e.occurred_at >= from)
            && self.to.is_none_or(|to| e.occurred_at < to)
            && self.text.as_deref().is_none_or(|t| {
                contains_ascii_nocase(e.action, t)
                    || contains_ascii_nocase(e.resource_type, t)
                    || e.resource_id.is_some_and(|id| contains_ascii_nocase(id, t))
            })
    }
}

/// Newest first (the default) or oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Descending `(occurred_at, seq)`.
    #[default]
    Desc,
    /// Ascending `(occurred_at, seq)`.
    Asc,
}

/// Where a page ended: the sort key of its last event. Pages continue strictly after it, so
/// no event is skipped or repeated however many arrive meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCursor {
    /// `occurred_at` of the last event returned, UTC microseconds.
    pub occurred_at: i64,
    /// `seq` of the last event returned.
    pub seq: u64,
}

const CURSOR_VERSION: &str = "v1";

impl PageCursor {
    /// The opaque text clients pass back as `cursor`.
    pub fn encode(&self, order: Order) -> String {
        let order = match order {
            Order::Desc => "d",
            Order::Asc => "a",
        };
        BASE64URL.encode(format!(
            "{CURSOR_VERSION}:{order}:{}:{}",
            self.occurred_at, self.seq
        ))
    }

    /// Decodes a cursor, checking it was made for the same order.
    pub fn decode(text: &str, order: Order) -> Result<Self, String> {
        let invalid = || "is not a cursor this server issued".to_owned();
        let raw = BASE64URL.decode(text).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let mut parts = raw.split(':');
        let (Some(CURSOR_VERSION), Some(o), Some(at), Some(seq), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid());
        };
        let expected = match order {
            Order::Desc => "d",
            Order::Asc => "a",
        };
        if o != expected {
            return Err(
                "was issued for the other order; keep `order` the same while paging".into(),
            );
        }
        Ok(Self {
            occurred_at: at.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

/// A filtered, ordered, bounded read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Which events.
    pub filter: EventFilter,
    /// Sort direction.
    pub order: Order,
    /// At most this many events.
    pub limit: usize,
    /// Continue after this event.
    pub after: Option<PageCursor>,
    /// Read no event with a higher seq (the server passes the durable tree size, so
    /// nothing is read before it is on stable storage). Not an API parameter.
    pub visible_through: Option<u64>,
    /// The tenant the caller's key is bound to. A store that can confine a query below
    /// its SQL (PostgreSQL row-level security) does, in addition to the filter. Not an API
    /// parameter.
    pub scope: Option<String>,
    /// Also read archive segments, for the events whose bodies retention moved out of the
    /// hot store (`include_archived=true`; slower: every segment is read and verified).
    pub include_archived: bool,
}

/// Default page size when `limit` is absent.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest page a query may ask for.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// One parameter of the event filter: its name in query strings (and in a WebSocket
/// subscription's `filter` object), its CLI flag, the description the OpenAPI document and
/// `--help` show, and how its value is applied to an [`EventFilter`].
#[derive(Clone, Copy, Debug)]
pub struct FilterParam {
    /// The query parameter.
    pub name: &'static str,
    /// The long flag of `sealtrail query` and `sealtrail tail`, without `--`; shorter than
    /// the parameter where that reads better on a command line (`--tenant`, `--user`).
    pub flag: &'static str,
    /// What the parameter selects.
    pub description: &'static str,
    /// Whether the live streams offer it (`GET /v1/stream` documents it, `sealtrail tail`
    /// has the flag). A time range is not offered for following new events; the shared
    /// parser still accepts one there, as it accepts every filter parameter.
    pub on_streams: bool,
    /// Parses the value into the filter; the error is the reason, the caller names the field.
    apply: fn(&mut EventFilter, &str) -> Result<(), String>,
}

/// The one declaration of the event filter's parameters, in the order they are documented.
///
/// Everything that speaks the filter is made from this table, so nothing can fall out of
/// step: the query-string parsing ([`EventFilter::apply_param`], hence `GET /v1/events`,
/// `GET /v1/stats`, `GET /v1/stream` and WebSocket subscriptions), the OpenAPI parameters
/// of those operations ([`EventFilterParams`] and [`StreamFilterParams`], feature
/// `openapi`) and the CLI flags of `sealtrail query` and `sealtrail tail` (built from it in
/// the CLI crate, which keeps clap out of this crate). Every value is bounded by
/// [`MAX_FILTER_VALUE_CHARS`].
pub const EVENT_FILTER_PARAMS: [FilterParam; 10] = [
    FilterParam {
        name: "tenant_id",
        flag: "tenant",
        description: "Only this tenant (a tenant-bound key sees only its own)",
        on_streams: true,
        apply: |filter, value| {
            // Any tenant id the server could have stored, whatever its configured length
            // limit: checked for the alphabet and the filter-value bound only.
            let limits = EventLimits {
                max_tenant_chars: MAX_FILTER_VALUE_CHARS,
                ..Default::default()
            };
            validate_tenant_id(value, &limits)?;
            filter.tenant_id = Some(value.to_owned());
            Ok(())
        },
    },
    FilterParam {
        name: "severity",
        flag: "severity",
        description: "Comma list of info, warning, critical",
        on_streams: true,
        apply: |filter, value| {
            filter.severities = parse_severities(value)?;
            Ok(())
        },
    },
    FilterParam {
        name: "action",
        flag: "action",
        description: "Exact action, or a prefix ending in * (guest.*)",
        on_streams: true,
        apply: |filter, value| {
            filter.action = Some(ActionMatch::parse(value)?);
            Ok(())
        },
    },
    FilterParam {
        name: "exclude_action",
        flag: "exclude-action",
        description: "Leave out this action, or every action with this prefix ending in * (audit_log.*: the access log's own records)",
        on_streams: true,
        apply: |filter, value| {
            filter.exclude_action = Some(ActionMatch::parse(value)?);
            Ok(())
        },
    },
    FilterParam {
        name: "user_id",
        flag: "user",
        description: "Acting user",
        on_streams: true,
        apply: |filter, value| {
            filter.user_id = Some(non_empty(value)?);
            Ok(())
        },
    },
    FilterParam {
        name: "resource_type",
        flag: "resource-type",
        description: "Resource type",
        on_streams: true,
        apply: |filter, value| {
            filter.resource_type = Some(non_empty(value)?);
            Ok(())
        },
    },
    FilterParam {
        name: "resource_id",
        flag: "resource-id",
        description: "Resource id",
        on_streams: true,
        apply: |filter, value| {
            filter.resource_id = Some(non_empty(value)?);
            Ok(())
        },
    },
    FilterParam {
        name: "from",
        flag: "from",
        description: "occurred_at ≥ from (RFC 3339)",
        on_streams: false,
        apply: |filter, value| {
            filter.from = Some(parse_rfc3339_micros(value)?);
            Ok(())
        },
    },
    FilterParam {
        name: "to",
        flag: "to",
        description: "occurred_at < to (RFC 3339)",
        on_streams: false,
        apply: |filter, value| {
            filter.to = Some(parse_rfc3339_micros(value)?);
            Ok(())
        },
    },
    FilterParam {
        name: "text",
        flag: "text",
        description: "Free text found in the action, resource type or resource id (ASCII letters without regard to case)",
        on_streams: true,
        apply: |filter, value| {
            filter.text = Some(non_empty(value)?.to_ascii_lowercase());
            Ok(())
        },
    },
];

/// The names of the filter parameters every endpoint that selects events understands.
pub const FILTER_PARAMS: [&str; EVENT_FILTER_PARAMS.len()] = {
    let mut names = [""; EVENT_FILTER_PARAMS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = EVENT_FILTER_PARAMS[i].name;
        i += 1;
    }
    names
};

/// The filter parameters the live streams offer (see [`FilterParam::on_streams`]).
pub fn stream_filter_params() -> impl Iterator<Item = &'static FilterParam> {
    EVENT_FILTER_PARAMS.iter().filter(|p| p.on_streams)
}

impl EventFilter {
    /// Applies one filter parameter; returns `Ok(false)` if `key` is not a filter parameter.
    pub fn apply_param(&mut self, key: &str, value: &str) -> Result<bool, FieldError> {
        let Some(param) = EVENT_FILTER_PARAMS.iter().find(|p| p.name == key) else {
            return Ok(false);
        };
        (param.apply)(self, value).map_err(|reason| FieldError::new(key, reason))?;
        Ok(true)
    }

    /// Checks relations between parameters once all are applied.
    pub fn check(&self) -> Result<(), FieldError> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(FieldError::new("to", "must be later than from"));
        }
        Ok(())
    }
}

/// The event filter's parameters as the OpenAPI query parameters of every operation that
/// selects events (`params(EventFilterParams)` in a handler's `#[utoipa::path]`).
#[cfg(feature = "openapi")]
pub struct EventFilterParams;

/// The filter parameters the live streams offer, as OpenAPI query parameters.
#[cfg(feature = "openapi")]
pub struct StreamFilterParams;

#[cfg(feature = "openapi")]
impl utoipa::IntoParams for EventFilterParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        EVENT_FILTER_PARAMS.iter().map(openapi_parameter).collect()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::IntoParams for StreamFilterParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        stream_filter_params().map(openapi_parameter).collect()
    }
}

/// An optional string in the query, as `("name" = Option<String>, Query, description = ..)`
/// documents it.
#[cfg(feature = "openapi")]
fn openapi_parameter(param: &FilterParam) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    ParameterBuilder::new()
        .name(param.name)
        .parameter_in(ParameterIn::Query)
        .description(Some(param.description))
        .required(Required::False)
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// A comma list of severities, without repeats, in severity order.
fn parse_severities(value: &str) -> Result<Vec<Severity>, String> {
    let mut severities = Vec::new();
    for name in value.split(',').map(str::trim) {
        let severity = Severity::parse(name)
            .ok_or_else(|| format!("{name:?} is not one of info, warning, critical"))?;
        if !severities.contains(&severity) {
            severities.push(severity);
        }
    }
    severities.sort();
    Ok(severities)
}

/// Longest value a filter parameter may have, in characters: longer than any stored value
/// can be under the default limits, short enough to bound the work a query string causes.
pub const MAX_FILTER_VALUE_CHARS: usize = 1024;

fn non_empty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().count() > MAX_FILTER_VALUE_CHARS {
        return Err(format!(
            "is longer than {MAX_FILTER_VALUE_CHARS} characters"
        ));
    }
    Ok(value.to_owned())
}

impl PageRequest {
    /// Parses `GET /v1/events` query parameters. Unknown parameters are refused by name, so
    /// a misspelt filter never silently widens a query.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, FieldError> {
        let mut filter = EventFilter::default();
        let mut order = Order::Desc;
        let mut limit = DEFAULT_PAGE_LIMIT;
        let mut cursor = None;
        let mut include_archived = false;
        for (key, value) in params {
            if filter.apply_param(key, value)? {
                continue;
            }
            match key {
                "include_archived" => {
                    include_archived = value.parse().map_err(|_| {
                        FieldError::new(
                            "include_archived",
                            format!("{value:?} is not true or false"),
                        )
                    })?;
                }
                "order" => {
                    order = match value {
                        "desc" => Order::Desc,
                        "asc" => Order::Asc,
                        other => {
                            return Err(FieldError::new(
                                "order",
                                format!("{other:?} is not asc or desc"),
                            ));
                        }
                    }
                }
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_LIMIT).contains(n))
                        .ok_or_else(|| {
                            FieldError::new(
                                "limit",
                                format!("{value:?} is not a number from 1 to {MAX_PAGE_LIMIT}"),
                            )
                        })?;
                }
                "cursor" => cursor = Some(value),
                other => {
                    return Err(unknown_param(
                        other,
                        &["order", "limit", "cursor", "include_archived"],
                    ));
                }
            }
        }
        filter.check()?;
        let after = cursor
            .map(|c| PageCursor::decode(c, order).map_err(|r| FieldError::new("cursor", r)))
            .transpose()?;
        Ok(Self {
            filter,
            order,
            limit,
            after,
            visible_through: None,
            scope: None,
            include_archived,
        })
    }
}

/// The error for a parameter that is neither a filter parameter nor one of `extra` (the
/// others the endpoint takes): it names the parameter and lists the known ones.
pub fn unknown_param(name: &str, extra: &[&str]) -> FieldError {
    let mut known: Vec<&str> = FILTER_PARAMS.to_vec();
    known.extend_from_slice(extra);
    FieldError::new(
        name,
        format!("unknown parameter; known are {}", known.join(", ")),
    )
}

/// What `GET /v1/stats` counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroup {
    /// Count per severity.
    Severity,
    /// Count per action.
    Action,
    /// Count per resource type.
    ResourceType,
    /// Count per acting user (`""` for events without one): the most active actors.
    UserId,
}

impl StatsGroup {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatsGroup::Severity => "severity",
            StatsGroup::Action => "action",
            StatsGroup::ResourceType => "resource_type",
            StatsGroup::UserId => "user_id",
        }
    }
}

/// Time buckets for stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsInterval {
    /// One bucket per UTC hour.
    Hour,
    /// One bucket per UTC day.
    Day,
}

impl StatsInterval {
    /// Bucket width in microseconds.
    pub fn micros(self) -> i64 {
        match self {
            StatsInterval::Hour => 3_600_000_000,
            StatsInterval::Day => 86_400_000_000,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatsInterval::Hour => "hour",
            StatsInterval::Day => "day",
        }
    }
}

/// A stats query: counts of the filtered events by one dimension, optionally per bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsRequest {
    /// Which events.
    pub filter: EventFilter,
    /// Counted by.
    pub group_by: StatsGroup,
    /// Bucketed by.
    pub interval: Option<StatsInterval>,
    /// Only this many of the largest counts, largest first (not with `interval`).
    pub top: Option<usize>,
    /// Count no event with a higher seq (see [`PageRequest::visible_through`]).
    pub visible_through: Option<u64>,
    /// The tenant the caller's key is bound to (see [`PageRequest::scope`]).
    pub scope: Option<String>,
}

impl StatsRequest {
    /// Parses `GET /v1/stats` query parameters.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, FieldError> {
        let mut filter = EventFilter::default();
        let mut group_by = StatsGroup::Severity;
        let mut interval = None;
        let mut top = None;
        for (key, value) in params {
            if filter.apply_param(key, value)? {
                continue;
            }
            match key {
                "group_by" => {
                    group_by = match value {
                        "severity" => StatsGroup::Severity,
                        "action" => StatsGroup::Action,
                        "resource_type" => StatsGroup::ResourceType,
                        "user_id" => StatsGroup::UserId,
                        other => {
                            return Err(FieldError::new(
                                "group_by",
                                format!(
                                    "{other:?} is not severity, action, resource_type or user_id"
                                ),
                            ));
                        }
                    }
                }
                "interval" => {
                    interval = Some(match value {
                        "hour" => StatsInterval::Hour,
                        "day" => StatsInterval::Day,
                        other => {
                            return Err(FieldError::new(
                                "interval",
                                format!("{other:?} is not hour or day"),
                            ));
                        }
                    })
                }
                "top" => {
                    top = Some(
                        value
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=MAX_PAGE_LIMIT).contains(n))
                            .ok_or_else(|| {
                                FieldError::new(
                                    "top",
                                    format!("{value:?} is not a number from 1 to {MAX_PAGE_LIMIT}"),
                                )
                            })?,
                    )
                }
                other => return Err(unknown_param(other, &["group_by", "interval", "top"])),
            }
        }
        filter.check()?;
        if top.is_some() && interval.is_some() {
            return Err(FieldError::new(
                "top",
                "applies to counts without an interval (the largest groups overall)",
            ));
        }
        Ok(Self {
            filter,
            group_by,
            interval,
            top,
            visible_through: None,
            scope: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_filter() {
        let req = PageRequest::from_params([
            ("tenant_id", "bloom"),
            ("severity", "critical,warning"),
            ("action", "guest.*"),
            ("user_id", "coord-1"),
            ("resource_type", "guest"),
            ("resource_id", "17"),
            ("from", "2026-11-01T00:00:00Z"),
            ("to", "2026-11-08T00:00:00Z"),
            ("order", "asc"),
            ("limit", "1000"),
        ])
        .unwrap();
        assert_eq!(
            req.filter.severities,
            vec![Severity::Warning, Severity::Critical]
        );
        assert_eq!(
            req.filter.action,
            Some(ActionMatch::Prefix("guest.".into()))
        );
        assert_eq!(req.order, Order::Asc);
        assert_eq!(req.limit, 1000);
    }

    #[test]
    fn every_declared_filter_parameter_sets_its_own_condition() {
        let valid = |name: &str| match name {
            "tenant_id" => "bloom",
            "severity" => "info",
            "action" | "exclude_action" => "guest.*",
            "from" | "to" => "2026-11-01T00:00:00Z",
            _ => "x",
        };
        let mut seen: Vec<EventFilter> = Vec::new();
        for (param, name) in EVENT_FILTER_PARAMS.iter().zip(FILTER_PARAMS) {
            assert_eq!(param.name, name);
            let mut filter = EventFilter::default();
            assert_eq!(filter.apply_param(name, valid(name)), Ok(true), "{name}");
            assert_ne!(filter, EventFilter::default(), "{name} sets a condition");
            assert!(
                !seen.contains(&filter),
                "{name} sets a condition of its own"
            );
            seen.push(filter);
        }
        let on_streams: Vec<&str> = FILTER_PARAMS
            .iter()
            .copied()
            .filter(|n| !matches!(*n, "from" | "to"))
            .collect();
        assert_eq!(
            stream_filter_params().map(|p| p.name).collect::<Vec<_>>(),
            on_streams
        );
    }

    #[test]
    fn free_text_is_a_substring_of_action_resource_type_or_id_without_case() {
        let mut filter = EventFilter::default();
        assert_eq!(filter.apply_param("text", "Dietary"), Ok(true));
        assert_eq!(filter.text.as_deref(), Some("dietary"));
        let columns = |action, resource_type, resource_id| EventColumns {
            tenant_id: "bloom",
            occurred_at: 0,
            severity: Severity::Info,
            action,
            user_id: None,
            resource_type,
            resource_id,
        };
        assert!(filter.matches(&columns("guest.dietary_restriction.updated", "guest", None)));
        assert!(!filter.matches(&columns("guest.rsvp.updated", "guest", Some("g-1"))));
        filter.apply_param("text", "G-1").unwrap();
        assert!(filter.matches(&columns("guest.rsvp.updated", "guest", Some("g-17"))));
        filter.apply_param("text", "VENDOR").unwrap();
        assert!(filter.matches(&columns("caterer.booked", "vendor", None)));
        assert!(!contains_ascii_nocase("straße", "strasse"));
        assert!(contains_ascii_nocase("anything", ""));
        assert_eq!(
            filter.apply_param("text", "").unwrap_err().field,
            "text",
            "empty is refused, naming the field"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases: [(&[(&str, &str)], &str); 8] = [
            (&[("severity", "fatal")], "severity"),
            (&[("limit", "0")], "limit"),
            (&[("limit", "1001")], "limit"),
            (&[("from", "yesterday")], "from"),
            (
                &[
                    ("from", "2026-11-02T00:00:00Z"),
                    ("to", "2026-11-01T00:00:00Z"),
                ],
                "to",
            ),
            (&[("tenant", "x")], "tenant"),
            (&[("cursor", "garbage")], "cursor"),
            (&[("action", "guest.**x")], "action"),
        ];
        let long = "x".repeat(MAX_FILTER_VALUE_CHARS + 1);
        for key in ["tenant_id", "user_id", "resource_id"] {
            let err = PageRequest::from_params([(key, long.as_str())]).unwrap_err();
            assert_eq!(err.field, key);
        }
        for (params, field) in cases {
            let err = PageRequest::from_params(params.iter().copied()).unwrap_err();
            assert_eq!(err.field, field, "{params:?}: {err}");
        }
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_order() {
        let cursor = PageCursor {
            occurred_at: -5,
            seq: 77,
        };
        let text = cursor.encode(Order::Desc);
        assert_eq!(PageCursor::decode(&text, Order::Desc), Ok(cursor));
        assert!(PageCursor::decode(&text, Order::Asc).is_err());
    }

    #[test]
    fn action_prefixes_match_by_prefix() {
        let m = ActionMatch::parse("guest.*").unwrap();
        assert!(m.matches("guest.rsvp.updated"));
        assert!(!m.matches("vendor.added"));
        assert!(
            ActionMatch::parse("guest.rsvp.updated")
                .unwrap()
                .matches("guest.rsvp.updated")
        );
    }
}
