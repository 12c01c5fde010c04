//! Benchmark events: shaped like the wedding SaaS's (a few hundred bytes, a change with
//! before/after, details), spread over tenants the way real customers are — one large, many
//! small — so tenant filters select realistic fractions.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sealtrail_core::time_format::format_micros;
use serde_json::{Value, json};

/// Tenants in the data set; the first holds half of all events.
pub const TENANTS: usize = 20;

const ACTIONS: [&str; 12] = [
    "guest.dietary_restriction.updated",
    "guest.rsvp.updated",
    "guest.seating.changed",
    "guest.added",
    "guest.removed",
    "vendor.booking.confirmed",
    "vendor.invoice.updated",
    "vendor.access.granted",
    "user.login.succeeded",
    "user.login.failed",
    "guest_list.exported",
    "wedding.timeline.changed",
];

pub fn tenant_name(i: usize) -> String {
    format!("tenant-{i:02}")
}

pub struct EventSource {
    rng: SmallRng,
}

impl EventSource {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// One event that occurred at `at` (UTC microseconds), with a producer id (as the SDK
    /// sends, which makes retries idempotent).
    pub fn event(&mut self, at: i64) -> Value {
        let rng = &mut self.rng;
        let roll = rng.random_range(0..100);
        let severity = match roll {
            0..80 => "info",
            80..95 => "warning",
            _ => "critical",
        };
        // Half of all events belong to tenant 0, the rest spread evenly.
        let tenant = if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(1..TENANTS)
        };
        json!({
            "id": uuid::Uuid::now_v7().to_string(),
            "tenant_id": tenant_name(tenant),
            "occurred_at": format_micros(at),
            "user_id": format!("coord-{}", rng.random_range(0..200)),
            "action": ACTIONS[rng.random_range(0..ACTIONS.len())],
            "resource_type": "guest",
            "resource_id": format!("guest-{}", rng.random_range(0..20_000)),
            "severity": severity,
            "ip_address": format!("203.0.{}.{}", rng.random_range(0..256), rng.random_range(1..255)),
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
            "reason": "Guest called the coordinator",
            "changes": [{"field": "dietary_restriction", "before": "none", "after": "vegan"}],
            "details": {"wedding_id": format!("wedding-{}", rng.random_range(0..500)), "table": rng.random_range(1..40)},
        })
    }
}
