//! Routes compiled from the config: which events a sink receives.

use sealtrail_core::{ActionMatch, Severity};
use serde_json::Value;

use crate::config::{RateLimit, RouteConfig};
use crate::event::SinkEvent;

/// One route, ready to match.
#[derive(Clone, Debug)]
pub struct Route {
    /// `routes[i] (name)`.
    pub label: String,
    tenant: Option<String>,
    severities: Vec<Severity>,
    action: Option<ActionMatch>,
    resource_type: Option<String>,
    details: Vec<(String, Value)>,
    /// Limits alerts through this route (see [`RateLimit`]).
    pub rate_limit: Option<RateLimit>,
}

impl Route {
    /// Compiles a checked route (see [`crate::config::check`]); values that do not parse
    /// were reported there.
    pub fn compile(index: usize, config: &RouteConfig) -> Self {
        Self {
            label: config.label(index),
            tenant: config.tenant.clone(),
            severities: config
                .severities
                .iter()
                .filter_map(|s| Severity::parse(s))
                .collect(),
            action: config
                .action
                .as_deref()
                .and_then(|a| ActionMatch::parse(a).ok()),
            resource_type: config.resource_type.clone(),
            details: config
                .details
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            rate_limit: config.rate_limit,
        }
    }

    /// Whether every condition of the route holds for `event`.
    pub fn matches(&self, event: &SinkEvent) -> bool {
        if let Some(tenant) = &self.tenant
            && tenant != event.tenant_id()
        {
            return false;
        }
        if !self.severities.is_empty() && !self.severities.contains(&event.severity()) {
            return false;
        }
        if let Some(action) = &self.action
            && !action.matches(event.action())
        {
            return false;
        }
        if let Some(resource_type) = &self.resource_type
            && resource_type != event.str("resource_type")
        {
            return false;
        }
        self.details
            .iter()
            .all(|(pointer, expected)| event.detail(pointer) == Some(expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tenant: &str, action: &str, severity: &str, details: Value) -> SinkEvent {
        let Value::Object(body) = serde_json::json!({
            "tenant_id": tenant, "action": action, "severity": severity,
            "resource_type": "guest", "details": details,
        }) else {
            unreachable!()
        };
        SinkEvent::from_json(1, body)
    }

    fn route(toml_text: &str) -> Route {
        let config: RouteConfig = toml::from_str(toml_text).expect("test route parses");
        assert!(crate::config::check(&[], &[]).is_empty());
        Route::compile(0, &config)
    }

    #[test]
    fn every_condition_must_hold() {
        let r = route(
            r#"
            sinks = ["caterer"]
            tenant = "acme"
            severities = ["warning", "critical"]
            action = "guest.*"
            resource_type = "guest"
            details = { "/guest/vendor" = "caterer", "/count" = 2 }
            "#,
        );
        let good = serde_json::json!({"guest": {"vendor": "caterer"}, "count": 2});
        assert!(r.matches(&event(
            "acme",
            "guest.diet.updated",
            "warning",
            good.clone()
        )));
        assert!(!r.matches(&event(
            "other",
            "guest.diet.updated",
            "warning",
            good.clone()
        )));
        assert!(!r.matches(&event("acme", "guest.diet.updated", "info", good.clone())));
        assert!(!r.matches(&event("acme", "venue.booked", "warning", good.clone())));
        let wrong = serde_json::json!({"guest": {"vendor": "florist"}, "count": 2});
        assert!(!r.matches(&event("acme", "guest.diet.updated", "critical", wrong)));
        let missing = serde_json::json!({"count": 2});
        assert!(!r.matches(&event("acme", "guest.x", "critical", missing)));
        // Equality is on the JSON value: 2 is not "2".
        let text = serde_json::json!({"guest": {"vendor": "caterer"}, "count": "2"});
        assert!(!r.matches(&event("acme", "guest.x", "critical", text)));
    }

    #[test]
    fn unknown_sink_keys_are_refused() {
        let text = r#"
            name = "x"
            kind = "webhook"
            url = "https://example.com/hook"
            secret = { env = "X" }
            retries = 3
        "#;
        let error = toml::from_str::<crate::config::SinkConfig>(text).unwrap_err();
        assert!(error.to_string().contains("retries"), "{error}");
        let inline = r#"
            name = "x"
            kind = "webhook"
            url = "https://example.com/hook"
            secret = "whsec_abc"
        "#;
        assert!(
            toml::from_str::<crate::config::SinkConfig>(inline).is_err(),
            "no inline secrets"
        );
    }

    #[test]
    fn an_empty_route_matches_everything() {
        let r = route(r#"sinks = ["all"]"#);
        assert!(r.matches(&event("t", "a", "info", Value::Null)));
    }

    #[test]
    fn exact_actions_do_not_match_longer_ones() {
        let r = route(
            r#"sinks = ["s"]
            action = "guest.updated""#,
        );
        assert!(r.matches(&event("t", "guest.updated", "info", Value::Null)));
        assert!(!r.matches(&event("t", "guest.updated.twice", "info", Value::Null)));
    }
}
