//! Where sinks deliver. Each kind of receiver has a folder of its own implementing
//! [`Destination`] with the same parts: its `[[sinks]]` keys and their checks, building
//! the sink from them (secrets read, URLs fixed), the requests it makes of a batch in the
//! receiver's documented wire format, and what the receiver's answer means (a
//! [`Delivery`]), with its unit tests beside it and its integration tests in
//! `tests/destinations/<kind>.rs`.
//!
//! The registry at the end of this file lists every kind once; the config enum
//! [`SinkKind`] and the dispatch to each kind are generated from it, so adding a kind is
//! a folder and a line there.

pub mod datadog;
pub mod elasticsearch;
pub mod email;
pub mod pagerduty;
pub mod slack;
mod summary;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::KeyProblems;
use crate::delivery::Delivery;
use crate::event::SinkEvent;
use crate::store::HeldEvent;

pub use summary::{DIGEST_LISTED_EVENTS, digest_lines, headline, summary_fields};

/// How many events a kind sends in one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// When `max_batch_events` is not set.
    pub default_events: usize,
    /// The most the receiver takes in one request (`max_batch_events` may not exceed it).
    pub max_events: usize,
}

/// The events a route's rate limit held back, to be sent as one message.
#[derive(Clone, Copy, Debug)]
pub struct Digest<'a> {
    /// The sink's name.
    pub sink: &'a str,
    /// The route's label, `routes[2] (dietary changes)`.
    pub route: &'a str,
    /// The held events, in log order.
    pub held: &'a [HeldEvent],
}

/// One kind of receiver: what its config section says, how it is built, and how it
/// sends a batch and reads the answer.
pub trait Destination: Sized + Send + Sync + 'static {
    /// The kind's keys in a `[[sinks]]` entry, besides `name`, `kind` and the keys every
    /// sink takes ([`SinkConfig`](crate::SinkConfig)); it refuses unknown keys.
    type Config: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;

    /// Events per request.
    const BATCH_LIMITS: BatchLimits;

    /// Whether the kind alerts people: it then starts at the end of the log unless told
    /// otherwise, is subject to routes' rate limits, and sends digests.
    const ALERTING: bool = false;

    /// Checks the section without reading any secret, adding every problem under its key.
    fn check(config: &Self::Config, problems: &mut KeyProblems<'_>);

    /// Builds the sink, reading its secrets; the error is `key: what is wrong`.
    fn build(config: &Self::Config, request_timeout: Duration) -> Result<Self, String>;

    /// Sends `events` in one request (or one per event, for kinds with a batch of one)
    /// and says what the answer means.
    fn send(
        &self,
        client: &reqwest::Client,
        events: &[&SinkEvent],
    ) -> impl Future<Output = Delivery> + Send;

    /// Sends one digest. Only alerting kinds have one; the others refuse.
    fn send_digest(
        &self,
        client: &reqwest::Client,
        digest: Digest<'_>,
    ) -> impl Future<Output = Delivery> + Send {
        let _ = (client, digest);
        let reason = format!(
            "only alerting sinks ({}) send digests",
            SinkKind::alerting_names().join(", ")
        );
        async move { Delivery::Refused { reason } }
    }
}

/// A request on its way, whatever the kind.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;

/// A built sink of any kind, as its runner holds it.
pub trait BuiltDestination: Send + Sync {
    /// See [`Destination::send`].
    fn send<'a>(&'a self, client: &'a reqwest::Client, events: &'a [&'a SinkEvent]) -> Sending<'a>;
    /// See [`Destination::send_digest`].
    fn send_digest<'a>(&'a self, client: &'a reqwest::Client, digest: Digest<'a>) -> Sending<'a>;
}

impl<D: Destination> BuiltDestination for D {
    fn send<'a>(&'a self, client: &'a reqwest::Client, events: &'a [&'a SinkEvent]) -> Sending<'a> {
        Box::pin(Destination::send(self, client, events))
    }

    fn send_digest<'a>(&'a self, client: &'a reqwest::Client, digest: Digest<'a>) -> Sending<'a> {
        Box::pin(Destination::send_digest(self, client, digest))
    }
}

/// Generates [`SinkKind`] and its dispatch from the list of kinds below.
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident($kind:ty) = $name:literal, )+) => {
        /// The sink kinds, by `kind = "..."`; each holds its kind's own keys.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum SinkKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant(<$kind as Destination>::Config), )+
        }

        impl SinkKind {
            /// Every kind with its name and whether it alerts, in the registry's order.
            const ALL: &[(&str, bool)] = &[$( ($name, <$kind as Destination>::ALERTING) ),+];

            /// The name written in `kind = "..."`.
            pub fn name(&self) -> &'static str {
                match self { $( SinkKind::$variant(_) => $name, )+ }
            }

            /// Events per request.
            pub fn batch_limits(&self) -> BatchLimits {
                match self { $( SinkKind::$variant(_) => <$kind as Destination>::BATCH_LIMITS, )+ }
            }

            /// Whether the sink alerts people (and so is subject to route rate limits).
            pub fn is_alerting(&self) -> bool {
                match self { $( SinkKind::$variant(_) => <$kind as Destination>::ALERTING, )+ }
            }

            /// Checks the kind's own keys (no secrets read).
            pub fn check(&self, problems: &mut KeyProblems<'_>) {
                match self { $( SinkKind::$variant(c) => <$kind as Destination>::check(c, problems), )+ }
            }

            /// Builds the sink, reading its secrets; the error is `key: what is wrong`.
            pub fn build(&self, request_timeout: Duration) -> Result<Box<dyn BuiltDestination>, String> {
                Ok(match self {
                    $( SinkKind::$variant(c) => Box::new(<$kind as Destination>::build(c, request_timeout)?), )+
                })
            }
        }
    };
}

impl SinkKind {
    /// The names of the kinds that alert people, in the registry's order.
    pub fn alerting_names() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|(_, alerting)| *alerting)
            .map(|(name, _)| *name)
            .collect()
    }
}

// Every kind, once. The order is the order `kind` is listed in config errors.
registry! {
    /// POST JSON, signed the Standard Webhooks way.
    Webhook(webhook::Webhook) = "webhook",
    /// Elasticsearch or OpenSearch `_bulk`.
    Elasticsearch(elasticsearch::Elasticsearch) = "elasticsearch",
    /// Datadog Logs intake API v2.
    Datadog(datadog::Datadog) = "datadog",
    /// Slack incoming webhook.
    Slack(slack::Slack) = "slack",
    /// PagerDuty Events API v2.
    Pagerduty(pagerduty::Pagerduty) = "pagerduty",
    /// Email over SMTP, one message per event (or per digest).
    Email(email::Email) = "email",
}

#[cfg(test)]
mod config_messages {
    //! Every message a kind's config can get — serde's (unknown key, missing key, unknown
    //! kind) and the checks' and build's, each naming `sinks[i] (name).key` — pinned in
    //! `config_messages.txt`, so moving a kind's config around cannot change what users see.

    use crate::config::{RouteConfig, SinkConfig, check};

    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        sinks: Vec<SinkConfig>,
        #[serde(default)]
        routes: Vec<RouteConfig>,
    }

    const CASES: &[&str] = &[
        "name = \"w\"\nkind = \"webhook\"\nurl = \"http://x\"\nsecret = { env = \"X\" }\nbogus = 1",
        "name = \"w\"\nkind = \"webhook\"\nurl = \"http://x\"",
        "name = \"w\"\nkind = \"kafka\"\nurl = \"http://x\"",
        "name = \"w\"\nkind = \"webhook\"\nurl = \"http://x\"\nsecret = \"inline\"",
        "name = \"w\"\nurl = \"http://x\"",
        "name = \"m\"\nkind = \"email\"\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nsecurity = \"ssl\"",
        "name = \"w\"\nkind = \"webhook\"\nurl = \"ftp://x\"\nsecret = { env = \"SEALTRAIL_GOLDEN_UNSET\" }",
        "name = \"w\"\nkind = \"webhook\"\nurl = \"not a url\"\nsecret = { file = \"/nonexistent/secret\" }\nmax_batch_events = 20000",
        "name = \"e\"\nkind = \"elasticsearch\"\nurl = \"http://es\"\nindex = \"_Bad\"\nusername = \"u\"\napi_key = { env = \"SEALTRAIL_GOLDEN_UNSET\" }",
        "name = \"e\"\nkind = \"elasticsearch\"\nurl = \"http://es\"\npassword = { env = \"SEALTRAIL_GOLDEN_UNSET\" }\nmax_batch_events = 0",
        "name = \"d\"\nkind = \"datadog\"\nsite = \"x/y\"\nurl = \"gopher://q\"\napi_key = { env = \"SEALTRAIL_GOLDEN_UNSET\" }\nmax_batch_events = 1001",
        "name = \"d\"\nkind = \"datadog\"\nsite = \"\"\napi_key = { env = \"SEALTRAIL_GOLDEN_UNSET\" }\ntags = 3",
        "name = \"s\"\nkind = \"slack\"\nwebhook_url = { env = \"SEALTRAIL_GOLDEN_NOT_URL\" }\nmax_batch_events = 2",
        "name = \"s\"\nkind = \"slack\"\nwebhook_url = { env = \"SEALTRAIL_GOLDEN_UNSET\" }\nurl = \"http://x\"",
        "name = \"p\"\nkind = \"pagerduty\"\nrouting_key = { env = \"SEALTRAIL_GOLDEN_SHORT\" }\nurl = \"x\"",
        "name = \"p\"\nkind = \"pagerduty\"\nrouting_key = { env = \"SEALTRAIL_GOLDEN_EMPTY\" }",
        "name = \"m\"\nkind = \"email\"\nhost = \"\"\nfrom = \"not an address\"\nto = [\"bad\"]\nusername = \"u\"",
        "name = \"m\"\nkind = \"email\"\nhost = \"h\"\nfrom = \"a@b.c\"\nto_from = \"details\"",
        "name = \"m\"\nkind = \"email\"\nhost = \"h\"\nfrom = \"a@b.c\"",
        "name = \"m\"\nkind = \"email\"\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\nca_file = \"/nonexistent/ca.pem\"\nusername = \"u\"\npassword = { env = \"SEALTRAIL_GOLDEN_UNSET\" }",
        "name = \"w\"\nkind = \"webhook\"\nurl = \"http://x\"\nsecret = { env = \"SEALTRAIL_GOLDEN_BAD_WHSEC\" }\nstart = \"latest\"",
    ];

    fn outcome(case: &str) -> String {
        // SAFETY: tests in this module only read these variables.
        unsafe {
            std::env::set_var("SEALTRAIL_GOLDEN_NOT_URL", "hooks.slack.com/x");
            std::env::set_var("SEALTRAIL_GOLDEN_SHORT", "abc");
            std::env::set_var("SEALTRAIL_GOLDEN_EMPTY", "  ");
            std::env::set_var("SEALTRAIL_GOLDEN_BAD_WHSEC", "whsec_!!!");
        }
        let text = format!("[[sinks]]\n{case}\n");
        match toml::from_str::<File>(&text) {
            Err(e) => format!("parse: {}", e.message()),
            Ok(file) => {
                let mut out = check(&file.sinks, &file.routes);
                out.push("--".into());
                out.extend(crate::check_config(&file.sinks, &file.routes));
                let s = &file.sinks[0];
                out.push(format!(
                    "kind={} batch={} latest={}",
                    s.kind_name(),
                    s.batch_events(),
                    s.starts_at_latest()
                ));
                out.join("\n")
            }
        }
    }

    #[test]
    fn config_messages_are_unchanged() {
        let mut all = String::new();
        for case in CASES {
            all.push_str(&format!("=== {case:?}\n{}\n", outcome(case)));
        }
        let expected = include_str!("config_messages.txt");
        for (got, want) in all.lines().zip(expected.lines()) {
            assert_eq!(got, want);
        }
        assert_eq!(all, expected);
    }
}
