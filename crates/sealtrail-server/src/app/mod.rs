//! The application layer: what the server does, between HTTP and the stores.
//!
//! Handlers in `routes/` parse a request, authorise it, call one method here and turn the
//! answer into a response; nothing here knows HTTP. [`DurableLog`] owns the way into the
//! log — the sequencer, and on PostgreSQL the local spool and its drainer — so the
//! spool-or-log decision is made in one place. [`system`] holds the events the server
//! writes about itself (access records, shreddings, legal holds), typed rather than built as JSON
//! where they are needed.

pub mod access;
pub mod archived;
mod drain;
mod error;
pub mod holds;
pub mod ingest;
pub mod integrity;
pub mod log;
pub mod reads;
pub mod receipts;
pub mod retention;
pub mod retention_run;
pub mod shred;
pub mod signing;
pub mod sources;
pub mod system;

pub use error::AppError;
pub use log::{Appended, DurableLog};
