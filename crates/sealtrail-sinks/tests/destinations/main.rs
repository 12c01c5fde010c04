//! Each kind of sink against a local receiver that checks the service's documented wire
//! format and injects the faults real receivers have, following a real log (the SQLite
//! store and its sequencer). One file per kind, beside `src/destinations/<kind>/`;
//! `runner.rs` has what every kind shares (retries, the circuit, narrowing a refused
//! batch, dead letters, restarts).
//!
//! What needs the whole server (the `/v1/sinks` endpoints' authorization, replay over
//! HTTP, `/metrics`) is tested in `crates/sealtrail-server/tests/sinks.rs`.

mod common;

mod datadog;
mod elasticsearch;
mod email;
mod pagerduty;
mod runner;
mod slack;
mod webhook;
