//! The event filter as command-line flags, for `sealtrail query` and `sealtrail tail`.
//!
//! The flags are made from core's one declaration of the filter,
//! [`EVENT_FILTER_PARAMS`]: its flag names, its descriptions as help, and which parameters
//! a stream offers. Nothing about a parameter is repeated here, so the CLI cannot drift from
//! the API and its OpenAPI document. clap is implemented by hand over that table rather than
//! derived, which keeps clap out of core (it has no CLI and no I/O); values are passed to
//! the server as given and checked there, with the API's error messages.

use std::fmt::Debug;
use std::marker::PhantomData;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use sealtrail_core::query::{EVENT_FILTER_PARAMS, FilterParam, stream_filter_params};

/// Which of the filter's parameters a command offers: those of the endpoint it calls.
pub trait FilterEndpoint: Debug {
    /// The parameters, in the order the table declares them.
    fn params() -> impl Iterator<Item = &'static FilterParam>;
}

/// `GET /v1/events`: every filter parameter.
#[derive(Debug)]
pub struct Events;

impl FilterEndpoint for Events {
    fn params() -> impl Iterator<Item = &'static FilterParam> {
        EVENT_FILTER_PARAMS.iter()
    }
}

/// `GET /v1/stream`: the parameters the live streams offer.
#[derive(Debug)]
pub struct Stream;

impl FilterEndpoint for Stream {
    fn params() -> impl Iterator<Item = &'static FilterParam> {
        stream_filter_params()
    }
}

/// The filter flags given, flattened into a command's arguments with `#[command(flatten)]`.
#[derive(Debug)]
pub struct FilterArgs<E> {
    /// The value of each of `E::params()`, if its flag was given.
    values: Vec<Option<String>>,
    endpoint: PhantomData<E>,
}

impl<E: FilterEndpoint> FilterArgs<E> {
    /// The query parameters for the server, in table order.
    pub fn params(&self) -> Vec<(String, String)> {
        E::params()
            .zip(&self.values)
            .filter_map(|(param, value)| Some((param.name.to_owned(), value.clone()?)))
            .collect()
    }
}

impl<E: FilterEndpoint> FromArgMatches for FilterArgs<E> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self {
            values: vec![None; E::params().count()],
            endpoint: PhantomData,
        };
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for (param, value) in E::params().zip(&mut self.values) {
            if let Some(given) = matches.get_one::<String>(param.name) {
                *value = Some(given.clone());
            }
        }
        Ok(())
    }
}

impl<E: FilterEndpoint> Args for FilterArgs<E> {
    fn augment_args(command: Command) -> Command {
        E::params().fold(command, |command, param| command.arg(flag(param)))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// The flag as clap's derive would declare an `Option<String>` field named after it.
fn flag(param: &'static FilterParam) -> Arg {
    Arg::new(param.name)
        .long(param.flag)
        .value_name(param.flag.replace('-', "_").to_uppercase())
        .help(param.description)
        .action(ArgAction::Set)
        .value_parser(clap::value_parser!(String))
        .required(false)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use serde_json::Value;
    use utoipa::OpenApi as _;

    use super::*;
    use crate::Cli;

    /// Query parameter name → description of one operation in the OpenAPI document.
    fn documented(doc: &Value, path: &str) -> Vec<(String, String)> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has parameters"))
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| {
                let text = |key: &str| p[key].as_str().unwrap_or_default().to_owned();
                (text("name"), text("description"))
            })
            .collect()
    }

    /// Long flag → help of one subcommand.
    fn flags(subcommand: &str) -> Vec<(String, String)> {
        let cli = Cli::command();
        let command = cli
            .find_subcommand(subcommand)
            .expect("the subcommand exists");
        command
            .get_arguments()
            .filter_map(|arg| {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                Some((arg.get_long()?.to_owned(), help))
            })
            .collect()
    }

    #[test]
    fn the_api_the_openapi_document_and_the_cli_offer_the_same_filter() {
        let doc = serde_json::to_value(sealtrail_server::openapi::ApiDoc::openapi())
            .expect("the document serialises");
        let events = documented(&doc, "/v1/events");
        let stats = documented(&doc, "/v1/stats");
        let stream = documented(&doc, "/v1/stream");
        let (query, tail) = (flags("query"), flags("tail"));
        for param in &EVENT_FILTER_PARAMS {
            let described = (param.name.to_owned(), param.description.to_owned());
            let flag = (param.flag.to_owned(), param.description.to_owned());
            let parsed = sealtrail_core::EventFilter::default().apply_param(param.name, "x");
            assert!(
                !matches!(parsed, Ok(false)),
                "the parser knows {}",
                param.name
            );
            assert!(
                events.contains(&described),
                "GET /v1/events lacks {}",
                param.name
            );
            assert!(
                stats.contains(&described),
                "GET /v1/stats lacks {}",
                param.name
            );
            assert!(
                query.contains(&flag),
                "`sealtrail query` lacks --{}",
                param.flag
            );
            assert_eq!(
                stream.contains(&described),
                param.on_streams,
                "GET /v1/stream and {}",
                param.name
            );
            assert_eq!(
                tail.contains(&flag),
                param.on_streams,
                "`sealtrail tail` and --{}",
                param.flag
            );
        }
    }

    #[derive(clap::Parser, Debug)]
    struct Probe<E: FilterEndpoint + Send + Sync + 'static> {
        #[command(flatten)]
        filter: FilterArgs<E>,
    }

    #[test]
    fn given_flags_become_the_parameters_in_table_order() {
        use clap::Parser as _;
        let probe = Probe::<Events>::try_parse_from([
            "probe",
            "--to",
            "2026-11-08T00:00:00Z",
            "--tenant",
            "bloom",
            "--resource-type",
            "guest",
        ])
        .expect("the flags parse");
        assert_eq!(
            probe.filter.params(),
            [
                ("tenant_id", "bloom"),
                ("resource_type", "guest"),
                ("to", "2026-11-08T00:00:00Z"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let tail = Probe::<Stream>::try_parse_from(["probe", "--from", "2026-11-08T00:00:00Z"]);
        assert!(tail.is_err(), "a stream offers no time range");
    }
}
