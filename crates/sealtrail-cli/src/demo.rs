//! `sealtrail demo`: realistic audit events for our first users — wedding businesses in
//! several countries, their coordinators and vendors, and the guests whose dietary needs,
//! RSVPs and seats change, with reasons, before/after values, and a share of warnings and
//! criticals (allergies, failed logins, exports of the guest list, role changes).

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use sealtrail_core::time_format::{MICROS_PER_SECOND, format_micros, now_micros};
use serde_json::{Value, json};

use crate::ServerArgs;

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How many events.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Spread them over this many past days.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Random seed (the same seed gives the same events).
    #[arg(long, default_value_t = 2027)]
    seed: u64,
}

/// Events per request.
const DEMO_BATCH_EVENTS: usize = 500;

struct Business {
    tenant: &'static str,
    coordinators: &'static [&'static str],
    vendors: &'static [(&'static str, &'static str)],
    ip_prefix: &'static str,
    weddings: &'static [&'static str],
    guests: &'static [&'static str],
}

const BUSINESSES: &[Business] = &[
    Business {
        tenant: "bloom-and-vine",
        coordinators: &[
            "coord:ines.marques",
            "coord:tiago.ferreira",
            "coord:rita.sousa",
        ],
        vendors: &[
            ("caterer", "vendor:caterer:sabores-do-tejo"),
            ("florist", "vendor:florist:jardim-azul"),
            ("photographer", "vendor:photographer:luz-de-lisboa"),
            ("venue", "vendor:venue:quinta-da-ribafria"),
        ],
        ip_prefix: "85.240",
        weddings: &[
            "wedding:2027-05-14:silva-costa",
            "wedding:2027-06-21:almeida-reis",
        ],
        guests: &[
            "Ana Silva",
            "João Costa",
            "Marta Reis",
            "Pedro Almeida",
            "Sofia Lopes",
            "Rui Gomes",
            "Beatriz Santos",
            "Miguel Rocha",
        ],
    },
    Business {
        tenant: "golden-hour-weddings",
        coordinators: &["coord:maya.johnson", "coord:derek.alvarez"],
        vendors: &[
            ("caterer", "vendor:caterer:hill-country-bbq"),
            ("dj", "vendor:dj:sixth-street-sound"),
            ("baker", "vendor:baker:sugar-and-pecan"),
            ("venue", "vendor:venue:barton-creek-barn"),
        ],
        ip_prefix: "73.166",
        weddings: &[
            "wedding:2027-04-03:nguyen-parker",
            "wedding:2027-10-09:okafor-miller",
            "wedding:2027-11-20:lee-garcia",
        ],
        guests: &[
            "Emily Nguyen",
            "Jordan Parker",
            "Chidi Okafor",
            "Hannah Miller",
            "Luis Garcia",
            "Grace Lee",
            "Tom Becker",
            "Aisha Khan",
        ],
    },
    Business {
        tenant: "lakeside-celebrations",
        coordinators: &[
            "coord:giulia.bianchi",
            "coord:marco.ricci",
            "coord:elena.conti",
        ],
        vendors: &[
            ("caterer", "vendor:caterer:sapori-del-lago"),
            ("florist", "vendor:florist:fiori-di-como"),
            ("venue", "vendor:venue:villa-balbiano"),
            ("musician", "vendor:musician:quartetto-bellagio"),
        ],
        ip_prefix: "93.42",
        weddings: &[
            "wedding:2027-06-05:rossi-schneider",
            "wedding:2027-09-18:moretti-dubois",
        ],
        guests: &[
            "Luca Rossi",
            "Anna Schneider",
            "Chiara Moretti",
            "Julien Dubois",
            "Francesca Gallo",
            "Lukas Weber",
            "Sara Colombo",
            "Noah Fischer",
        ],
    },
];

const DIETS: &[&str] = &[
    "none",
    "vegetarian",
    "vegan",
    "gluten-free",
    "halal",
    "kosher",
    "lactose intolerance",
    "peanut allergy (anaphylaxis)",
    "shellfish allergy",
    "celiac disease",
];
const RSVPS: &[&str] = &["invited", "attending", "declined", "maybe"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "WeddingPlannerApp/3.4.1 (Android 14; Pixel 8)",
];

fn is_allergy(diet: &str) -> bool {
    diet.contains("allergy") || diet.contains("celiac")
}

/// The wedding and guest an event is about (drawn for every event, whatever its kind).
struct GuestRef {
    wedding: &'static str,
    name: &'static str,
    /// `<wedding>:guest-<n>`.
    id: String,
}

/// One realistic event at `at` (UTC microseconds): the fields every event has (tenant,
/// time, coordinator, network) and those of one kind of event, drawn with the weights
/// below (out of 100).
fn demo_event(rng: &mut SmallRng, at: i64) -> Value {
    let b = BUSINESSES.choose(rng).expect("there are businesses");
    let coordinator = *b
        .coordinators
        .choose(rng)
        .expect("every business has coordinators");
    let wedding = *b.weddings.choose(rng).expect("every business has weddings");
    let guest_index = rng.random_range(0..b.guests.len());
    let guest = GuestRef {
        wedding,
        name: b.guests[guest_index],
        id: format!("{wedding}:guest-{}", guest_index + 1),
    };
    let base = common_fields(rng, b, coordinator, at);
    let roll = rng.random_range(0..100);
    let specific = match roll {
        0..25 => dietary_restriction_updated(rng, b, &guest),
        25..45 => rsvp_updated(rng, &guest),
        45..60 => seating_changed(rng, &guest),
        60..68 => guest_added(rng, &guest),
        68..71 => guest_removed(&guest),
        71..79 => vendor_paperwork(rng, b, wedding),
        79..82 => vendor_access_granted(rng, b, wedding),
        82..90 => login(rng),
        90..94 => guest_list_exported(rng, b, wedding, coordinator),
        94..97 => timeline_changed(wedding),
        97..99 => role_changed(rng, b),
        _ => personal_data_erased(&guest),
    };
    let mut event = base;
    for (k, v) in specific.as_object().expect("events are objects") {
        event[k] = v.clone();
    }
    event
}

/// The fields every event has: tenant, time, the acting coordinator, where the request
/// came from (an address in the business's country, a browser or the app).
fn common_fields(rng: &mut SmallRng, b: &Business, coordinator: &str, at: i64) -> Value {
    let ip = format!(
        "{}.{}.{}",
        b.ip_prefix,
        rng.random_range(0..256),
        rng.random_range(1..255)
    );
    let agent = *AGENTS.choose(rng).expect("there are agents");
    json!({
        "tenant_id": b.tenant,
        "occurred_at": format_micros(at),
        "user_id": coordinator,
        "ip_address": ip,
        "user_agent": agent,
        "request_id": format!("req-{:016x}", rng.random::<u64>()),
    })
}

/// A guest's dietary restriction changes; a warning when it becomes an allergy, and the
/// business's caterer is to be notified.
fn dietary_restriction_updated(rng: &mut SmallRng, b: &Business, guest: &GuestRef) -> Value {
    let caterer = b
        .vendors
        .iter()
        .find(|(kind, _)| *kind == "caterer")
        .map(|(_, id)| *id);
    let before = *DIETS.choose(rng).expect("diets");
    let after = *DIETS
        .iter()
        .filter(|d| **d != before)
        .collect::<Vec<_>>()
        .choose(rng)
        .expect("diets");
    let reason = *[
        "Guest emailed the coordinator",
        "Updated after the RSVP call",
        "Caterer asked to confirm the menu",
        "Plus-one's needs added",
    ]
    .choose(rng)
    .expect("reasons");
    json!({
        "action": "guest.dietary_restriction.updated",
        "resource_type": "guest",
        "resource_id": guest.id,
        "severity": if is_allergy(after) { "warning" } else { "info" },
        "reason": reason,
        "changes": [{"field": "dietary_restriction", "before": before, "after": after}],
        "details": {"wedding_id": guest.wedding, "guest_name": guest.name, "notify": caterer.into_iter().collect::<Vec<_>>()},
    })
}

/// A guest answers the invitation (RSVP changes) and picks a meal.
fn rsvp_updated(rng: &mut SmallRng, guest: &GuestRef) -> Value {
    let before = *RSVPS.choose(rng).expect("rsvps");
    let after = *RSVPS
        .iter()
        .filter(|r| **r != before)
        .collect::<Vec<_>>()
        .choose(rng)
        .expect("rsvps");
    json!({
        "action": "guest.rsvp.updated",
        "resource_type": "guest",
        "resource_id": guest.id,
        "reason": "Guest answered the invitation",
        "changes": [{"field": "rsvp", "before": before, "after": after}],
        "details": {"wedding_id": guest.wedding, "guest_name": guest.name, "meal": *["fish", "beef", "vegetarian"].choose(rng).expect("meals")},
    })
}

/// A guest moves to another table, with the reason.
fn seating_changed(rng: &mut SmallRng, guest: &GuestRef) -> Value {
    let before = rng.random_range(1..20);
    let after = rng.random_range(1..20);
    json!({
        "action": "guest.seating.changed",
        "resource_type": "guest",
        "resource_id": guest.id,
        "reason": *["Family request", "Accessibility: near the exit", "Keep the ex-partners apart", "Kids' table filled up"].choose(rng).expect("reasons"),
        "changes": [{"field": "table", "before": before, "after": after}],
        "details": {"wedding_id": guest.wedding, "guest_name": guest.name},
    })
}

/// A guest joins the list, on the bride's side, the groom's or both.
fn guest_added(rng: &mut SmallRng, guest: &GuestRef) -> Value {
    json!({
        "action": "guest.added",
        "resource_type": "guest",
        "resource_id": guest.id,
        "reason": "Added to the guest list",
        "details": {"wedding_id": guest.wedding, "guest_name": guest.name, "side": *["bride", "groom", "both"].choose(rng).expect("sides")},
    })
}

/// The couple has a guest removed (a warning).
fn guest_removed(guest: &GuestRef) -> Value {
    json!({
        "action": "guest.removed",
        "resource_type": "guest",
        "resource_id": guest.id,
        "severity": "warning",
        "reason": "Couple asked to remove the guest",
        "details": {"wedding_id": guest.wedding, "guest_name": guest.name},
    })
}

/// A vendor's booking, invoice or contract, with an amount.
fn vendor_paperwork(rng: &mut SmallRng, b: &Business, wedding: &str) -> Value {
    let (kind, vendor) = *b.vendors.choose(rng).expect("vendors");
    json!({
        "action": *["vendor.booking.confirmed", "vendor.invoice.updated", "vendor.contract.signed"].choose(rng).expect("actions"),
        "resource_type": "vendor",
        "resource_id": vendor,
        "details": {"wedding_id": wedding, "vendor_kind": kind, "amount_eur": rng.random_range(300..12000)},
    })
}

/// A vendor is given read access to the guest list (a warning).
fn vendor_access_granted(rng: &mut SmallRng, b: &Business, wedding: &str) -> Value {
    let (_, vendor) = *b.vendors.choose(rng).expect("vendors");
    json!({
        "action": "vendor.access.granted",
        "resource_type": "vendor",
        "resource_id": vendor,
        "severity": "warning",
        "reason": "Vendor needs the guest list for place cards",
        "changes": [{"field": "permissions", "before": ["timeline:read"], "after": ["timeline:read", "guests:read"]}],
        "details": {"wedding_id": wedding},
    })
}

/// A login: one in three fails (a warning), and one failure in four locks the account (a
/// critical).
fn login(rng: &mut SmallRng) -> Value {
    let failed = rng.random_range(0..3) == 0;
    let mut e = json!({
        "action": if failed { "user.login.failed" } else { "user.login.succeeded" },
        "resource_type": "session",
        "outcome": if failed { "failure" } else { "success" },
        "severity": if failed { "warning" } else { "info" },
    });
    if failed && rng.random_range(0..4) == 0 {
        e["action"] = json!("user.account.locked");
        e["severity"] = json!("critical");
        e["reason"] = json!("Five failed logins in ten minutes");
    }
    e
}

/// The guest list is exported with dietary needs: a warning by a coordinator, a critical
/// when a vendor does it (one in three).
fn guest_list_exported(
    rng: &mut SmallRng,
    b: &Business,
    wedding: &str,
    coordinator: &str,
) -> Value {
    let (_, vendor) = *b.vendors.choose(rng).expect("vendors");
    let by_vendor = rng.random_range(0..3) == 0;
    json!({
        "action": "guest_list.exported",
        "resource_type": "guest_list",
        "resource_id": wedding,
        "user_id": if by_vendor { vendor } else { coordinator },
        "severity": if by_vendor { "critical" } else { "warning" },
        "details": {"format": "csv", "rows": rng.random_range(40..220), "columns": ["name", "table", "dietary_restriction"]},
    })
}

/// The venue moves the ceremony.
fn timeline_changed(wedding: &str) -> Value {
    json!({
        "action": "wedding.timeline.changed",
        "resource_type": "wedding",
        "resource_id": wedding,
        "changes": [{"field": "ceremony_start", "before": "16:00", "after": "16:30"}],
        "reason": "Venue asked for a later start",
    })
}

/// A coordinator is made admin (a critical).
fn role_changed(rng: &mut SmallRng, b: &Business) -> Value {
    json!({
        "action": "user.role.changed",
        "resource_type": "user",
        "resource_id": *b.coordinators.choose(rng).expect("coordinators"),
        "severity": "critical",
        "changes": [{"field": "role", "before": "coordinator", "after": "admin"}],
        "reason": "Covering for the owner on leave",
    })
}

/// The system erases a guest's personal data on their GDPR request (a critical).
fn personal_data_erased(guest: &GuestRef) -> Value {
    json!({
        "action": "guest.personal_data.erased",
        "resource_type": "guest",
        "resource_id": guest.id,
        "severity": "critical",
        "actor_type": "system",
        "user_id": "system:privacy",
        "reason": "GDPR erasure request from the guest",
        "details": {"wedding_id": guest.wedding, "fields": ["email", "phone", "dietary_restriction"]},
    })
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let client = args.server.client()?;
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let span = i64::from(args.days) * 86_400 * MICROS_PER_SECOND;
    let start = now_micros() - span;
    let mut times: Vec<i64> = (0..args.events)
        .map(|_| start + rng.random_range(0..span.max(1)))
        .collect();
    times.sort_unstable();
    let bar = ProgressBar::new(args.events as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events").expect("valid template"),
    );
    let started = Instant::now();
    for chunk in times.chunks(DEMO_BATCH_EVENTS) {
        let events: Vec<Value> = chunk.iter().map(|&at| demo_event(&mut rng, at)).collect();
        client.ingest(events).await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    println!(
        "sent {} demo events for {} wedding businesses in {:.1}s",
        args.events,
        BUSINESSES.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealtrail_core::{EventLimits, TenantScope, prepare_event_value};

    #[test]
    fn every_demo_event_is_valid() {
        let mut rng = SmallRng::seed_from_u64(1);
        let now = now_micros();
        for i in 0..2000 {
            let event = demo_event(&mut rng, now - i * 1_000_000);
            prepare_event_value(
                event.clone(),
                &TenantScope::Any,
                now,
                &EventLimits::default(),
            )
            .unwrap_or_else(|e| panic!("{event}: {e}"));
        }
    }
}
