//! Retention policies: how long each kind of record is kept, and when it moves to cheap
//! storage — and, for one event at one moment, what is due.
//!
//! Defaults go by severity (critical kept 7 years and archived after 1, warning 3 years /
//! 180 days, info 1 year / 90 days); `[[retention.overrides]]` change them for a tenant, an
//! action (exact or `prefix.*`), a resource type or a severity, in any combination. The
//! first override in the configuration whose every given condition matches wins — so put
//! the narrow ones first — and an event no override matches takes its severity's default.
//! Ages count from `occurred_at`, the time the change happened, which is what a
//! compliance rule ("keep payment records 7 years") is about.
//!
//! A legal hold on what an event is about keeps it: past its archive age it is still
//! archived (copying is harmless) but its body stays in the hot store, and past its
//! retention it is not deleted, until the hold is released. Time is an argument here
//! (`now`), never read from a clock, so every decision is reproducible in tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::event::Severity;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400 * 1_000_000;
/// Longest retention a policy may name: a century, in days.
pub const MAX_KEEP_DAYS: u32 = 36_500;
/// Most overrides in one configuration.
pub const MAX_OVERRIDES: usize = 1_000;

/// How long one kind of record is kept, and when it is archived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Kept this many days after `occurred_at`; then its body is deleted (its leaf hash
    /// stays, so the log still verifies).
    pub keep_days: u32,
    /// Archived this many days after `occurred_at` (at most `keep_days`).
    pub archive_after_days: u32,
}

impl Policy {
    const fn days(keep_days: u32, archive_after_days: u32) -> Self {
        Self {
            keep_days,
            archive_after_days,
        }
    }
}

/// A policy for the events matching every condition given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    /// Named in plans and in the log's records of retention runs.
    pub name: String,
    /// Only this tenant's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Only this action, or actions starting with `prefix.` for `prefix.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only this resource type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Only this severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The policy.
    #[serde(flatten)]
    pub policy: Policy,
}

/// `[retention]` in the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Default for critical events.
    pub critical: Policy,
    /// Default for warnings.
    pub warning: Policy,
    /// Default for info events.
    pub info: Policy,
    /// Overrides, first match wins.
    pub overrides: Vec<PolicyOverride>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            critical: Policy::days(7 * 365, 365),
            warning: Policy::days(3 * 365, 180),
            info: Policy::days(365, 90),
            overrides: Vec::new(),
        }
    }
}

/// What a policy decision is about: the indexed fields of an event.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// Owning tenant.
    pub tenant: &'a str,
    /// Action name.
    pub action: &'a str,
    /// Resource type.
    pub resource_type: &'a str,
    /// Severity.
    pub severity: Severity,
    /// When it happened, UTC microseconds.
    pub occurred_at: i64,
}

/// The policy that applies to an event, and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied<'a> {
    /// `severity:<name>` for a default, the override's name otherwise.
    pub name: &'a str,
    /// The policy.
    pub policy: Policy,
}

/// What is due for one event at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    /// Nothing yet.
    Keep,
    /// Past its archive age: write it to an archive segment; its body then leaves the hot
    /// store.
    Archive,
    /// Past its archive age, under a legal hold: archive it, but keep its body in the hot
    /// store.
    ArchiveHeld,
    /// Past its retention: its body is deleted, hot and archived (the leaf hash stays).
    Delete,
    /// Past its retention, under a legal hold: kept until the hold is released.
    Held,
}

impl Fate {
    /// Every fate, in report order.
    pub const ALL: [Fate; 5] = [
        Fate::Keep,
        Fate::Archive,
        Fate::ArchiveHeld,
        Fate::Delete,
        Fate::Held,
    ];

    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Keep => "keep",
            Fate::Archive => "archive",
            Fate::ArchiveHeld => "archive (held)",
            Fate::Delete => "delete",
            Fate::Held => "held",
        }
    }
}

impl RetentionConfig {
    /// Every problem with the configuration, each naming its key
    /// (`retention.overrides[2] (payments).keep_days: ...`).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, policy) in [
            ("retention.critical", &self.critical),
            ("retention.warning", &self.warning),
            ("retention.info", &self.info),
        ] {
            check_policy(key, policy, &mut problems);
        }
        if self.overrides.len() > MAX_OVERRIDES {
            problems.push(format!(
                "retention.overrides: {} overrides; at most {MAX_OVERRIDES}",
                self.overrides.len()
            ));
        }
        for (i, o) in self.overrides.iter().enumerate() {
            let key = format!("retention.overrides[{i}] ({})", o.name);
            if o.name.trim().is_empty() {
                problems.push(format!("retention.overrides[{i}].name: must not be empty"));
            }
            if o.tenant.is_none()
                && o.action.is_none()
                && o.resource_type.is_none()
                && o.severity.is_none()
            {
                problems.push(format!(
                    "{key}: names no tenant, action, resource_type or severity, so it would \
                     replace every default; change the defaults instead"
                ));
            }
            if let Some(action) = &o.action
                && (action.is_empty() || action.contains('*') && !action.ends_with(".*"))
            {
                problems.push(format!(
                    "{key}.action: {action:?} is neither an action nor a prefix ending in .*"
                ));
            }
            check_policy(&key, &o.policy, &mut problems);
        }
        problems
    }

    /// The policy for `subject`: the first override it matches, else its severity's default.
    pub fn policy_for(&self, subject: &Subject<'_>) -> Applied<'_> {
        if let Some(o) = self.overrides.iter().find(|o| o.matches(subject)) {
            return Applied {
                name: &o.name,
                policy: o.policy,
            };
        }
        let (name, policy) = match subject.severity {
            Severity::Critical => ("severity:critical", self.critical),
            Severity::Warning => ("severity:warning", self.warning),
            Severity::Info => ("severity:info", self.info),
        };
        Applied { name, policy }
    }

    /// What is due for `subject` at `now` (UTC µs); `held` if a legal hold covers it,
    /// `archived` if it is in an archive segment already.
    pub fn fate(&self, subject: &Subject<'_>, now: i64, held: bool, archived: bool) -> Fate {
        let policy = self.policy_for(subject).policy;
        let age = now.saturating_sub(subject.occurred_at);
        let past = |days: u32| age >= i64::from(days) * DAY_MICROS;
        match (past(policy.keep_days), past(policy.archive_after_days)) {
            (true, _) if held => Fate::Held,
            (true, _) => Fate::Delete,
            (false, true) if archived => Fate::Keep,
            (false, true) if held => Fate::ArchiveHeld,
            (false, true) => Fate::Archive,
            (false, false) => Fate::Keep,
        }
    }
}

impl PolicyOverride {
    fn matches(&self, s: &Subject<'_>) -> bool {
        let action = match self.action.as_deref() {
            None => true,
            Some(pattern) => match pattern.strip_suffix('*') {
                Some(prefix) => s.action.starts_with(prefix),
                None => s.action == pattern,
            },
        };
        action
            && self.tenant.as_deref().is_none_or(|t| t == s.tenant)
            && self
                .resource_type
                .as_deref()
                .is_none_or(|r| r == s.resource_type)
            && self.severity.is_none_or(|v| v == s.severity)
    }
}

fn check_policy(key: &str, policy: &Policy, problems: &mut Vec<String>) {
    if policy.keep_days == 0 || policy.keep_days > MAX_KEEP_DAYS {
        problems.push(format!(
            "{key}.keep_days: {} is not from 1 to {MAX_KEEP_DAYS}",
            policy.keep_days
        ));
    }
    if policy.archive_after_days > policy.keep_days {
        problems.push(format!(
            "{key}.archive_after_days: {} is after keep_days ({}): an event would be deleted \
             before it is archived",
            policy.archive_after_days, policy.keep_days
        ));
    }
}

/// Counts of what a retention run would do (or did), per tenant and policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// (tenant, policy name) → events per fate, in [`Fate::ALL`] order.
    pub rows: BTreeMap<(String, String), [u64; 5]>,
}

impl RetentionPlan {
    /// Counts one event.
    pub fn add(&mut self, tenant: &str, policy: &str, fate: Fate) {
        let row = self
            .rows
            .entry((tenant.to_owned(), policy.to_owned()))
            .or_default();
        let column = Fate::ALL
            .iter()
            .position(|f| *f == fate)
            .expect("every fate is listed");
        row[column] += 1;
    }

    /// Events with `fate`, over every row.
    pub fn total(&self, fate: Fate) -> u64 {
        let column = Fate::ALL.iter().position(|f| *f == fate).expect("listed");
        self.rows.values().map(|row| row[column]).sum()
    }

    /// The plan as a text table, one row per tenant and policy.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<24} {:<24}", "tenant", "policy");
        for fate in Fate::ALL {
            let _ = write!(out, " {:>14}", fate.as_str());
        }
        out.push('\n');
        for ((tenant, policy), row) in &self.rows {
            let _ = write!(out, "{tenant:<24} {policy:<24}");
            for n in row {
                let _ = write!(out, " {n:>14}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000 * 1_000_000;

    fn days_ago(days: i64) -> i64 {
        NOW - days * DAY_MICROS
    }

    fn subject(severity: Severity, age_days: i64) -> Subject<'static> {
        Subject {
            tenant: "bloom-and-vine",
            action: "guest.dietary_restriction.updated",
            resource_type: "guest",
            severity,
            occurred_at: days_ago(age_days),
        }
    }

    fn payments_override() -> PolicyOverride {
        PolicyOverride {
            name: "payments".into(),
            tenant: None,
            action: Some("payment.*".into()),
            resource_type: None,
            severity: None,
            policy: Policy::days(10 * 365, 30),
        }
    }

    #[test]
    fn defaults_go_by_severity_at_the_edges_of_each_age() {
        let config = RetentionConfig::default();
        let table = [
            (Severity::Info, 89, Fate::Keep),
            (Severity::Info, 90, Fate::Archive),
            (Severity::Info, 364, Fate::Archive),
            (Severity::Info, 365, Fate::Delete),
            (Severity::Warning, 179, Fate::Keep),
            (Severity::Warning, 180, Fate::Archive),
            (Severity::Warning, 3 * 365, Fate::Delete),
            (Severity::Critical, 364, Fate::Keep),
            (Severity::Critical, 365, Fate::Archive),
            (Severity::Critical, 7 * 365 - 1, Fate::Archive),
            (Severity::Critical, 7 * 365, Fate::Delete),
        ];
        for (severity, age, expected) in table {
            assert_eq!(
                config.fate(&subject(severity, age), NOW, false, false),
                expected,
                "{severity:?} at {age} days"
            );
        }
    }

    #[test]
    fn holds_keep_what_would_be_deleted_and_keep_bodies_of_what_is_archived() {
        let config = RetentionConfig::default();
        let old = subject(Severity::Info, 400);
        let aging = subject(Severity::Info, 100);
        assert_eq!(config.fate(&old, NOW, true, false), Fate::Held);
        assert_eq!(config.fate(&old, NOW, true, true), Fate::Held);
        assert_eq!(config.fate(&aging, NOW, true, false), Fate::ArchiveHeld);
        assert_eq!(
            config.fate(&aging, NOW, false, true),
            Fate::Keep,
            "archived already"
        );
        assert_eq!(config.fate(&old, NOW, false, true), Fate::Delete);
    }

    #[test]
    fn the_first_matching_override_wins_and_every_condition_must_match() {
        let config = RetentionConfig {
            overrides: vec![
                PolicyOverride {
                    name: "lakeside-critical".into(),
                    tenant: Some("lakeside".into()),
                    action: None,
                    resource_type: None,
                    severity: Some(Severity::Critical),
                    policy: Policy::days(20 * 365, 700),
                },
                payments_override(),
                PolicyOverride {
                    name: "invoices".into(),
                    tenant: None,
                    action: None,
                    resource_type: Some("invoice".into()),
                    severity: None,
                    policy: Policy::days(8 * 365, 400),
                },
            ],
            ..RetentionConfig::default()
        };
        let mut s = Subject {
            tenant: "lakeside",
            action: "payment.refunded",
            resource_type: "invoice",
            severity: Severity::Critical,
            occurred_at: days_ago(1),
        };
        assert_eq!(config.policy_for(&s).name, "lakeside-critical");
        s.severity = Severity::Info;
        assert_eq!(config.policy_for(&s).name, "payments", "order decides");
        s.action = "paymentx.created";
        assert_eq!(
            config.policy_for(&s).name,
            "invoices",
            "prefix is payment. with the dot"
        );
        s.resource_type = "guest";
        assert_eq!(config.policy_for(&s).name, "severity:info");
        s.action = "payment";
        assert_eq!(
            config.policy_for(&s).name,
            "severity:info",
            "payment.* is not payment"
        );
        let refund = Subject {
            occurred_at: days_ago(31),
            action: "payment.refunded",
            ..s
        };
        assert_eq!(config.fate(&refund, NOW, false, false), Fate::Archive);
    }

    #[test]
    fn every_problem_names_its_key() {
        let config = RetentionConfig {
            info: Policy::days(30, 90),
            warning: Policy::days(0, 0),
            overrides: vec![
                PolicyOverride {
                    name: "everything".into(),
                    tenant: None,
                    action: None,
                    resource_type: None,
                    severity: None,
                    policy: Policy::days(10, 1),
                },
                PolicyOverride {
                    action: Some("pay*ment".into()),
                    policy: Policy::days(MAX_KEEP_DAYS + 1, 1),
                    ..payments_override()
                },
            ],
            ..RetentionConfig::default()
        };
        let problems = config.check();
        let expected = [
            "retention.warning.keep_days: 0 is not from 1 to 36500",
            "retention.info.archive_after_days: 90 is after keep_days (30)",
            "retention.overrides[0] (everything): names no tenant",
            "retention.overrides[1] (payments).action: \"pay*ment\" is neither",
            "retention.overrides[1] (payments).keep_days: 36501 is not from 1 to 36500",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for start in expected {
            assert!(
                problems.iter().any(|p| p.starts_with(start)),
                "{start} in {problems:#?}"
            );
        }
        assert!(RetentionConfig::default().check().is_empty());
    }

    #[test]
    fn the_config_reads_with_defaults_for_what_it_leaves_out() {
        // As the server's TOML reader hands it over (core parses no TOML itself).
        let config: RetentionConfig = serde_json::from_value(serde_json::json!({
            "info": {"keep_days": 400, "archive_after_days": 60},
            "overrides": [{"name": "payments", "action": "payment.*", "keep_days": 3650, "archive_after_days": 30}],
        }))
        .unwrap();
        assert_eq!(config.info, Policy::days(400, 60));
        assert_eq!(config.critical, RetentionConfig::default().critical);
        assert_eq!(
            config.overrides,
            vec![PolicyOverride {
                policy: Policy::days(3650, 30),
                ..payments_override()
            }]
        );
    }

    #[test]
    fn a_plan_counts_per_tenant_and_policy() {
        let config = RetentionConfig::default();
        let mut plan = RetentionPlan::default();
        for (tenant, severity, age, held) in [
            ("a", Severity::Info, 10, false),
            ("a", Severity::Info, 100, false),
            ("a", Severity::Info, 400, false),
            ("a", Severity::Info, 400, true),
            ("b", Severity::Critical, 400, false),
        ] {
            let s = Subject {
                tenant,
                ..subject(severity, age)
            };
            let applied = config.policy_for(&s);
            plan.add(tenant, applied.name, config.fate(&s, NOW, held, false));
        }
        assert_eq!(
            plan.rows[&("a".into(), "severity:info".into())],
            [1, 1, 0, 1, 1]
        );
        assert_eq!(
            plan.rows[&("b".into(), "severity:critical".into())],
            [0, 1, 0, 0, 0]
        );
        assert_eq!(plan.total(Fate::Archive), 2);
        assert!(plan.table().lines().count() == 3);
    }
}
