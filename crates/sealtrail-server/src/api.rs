//! The API's wire shapes live in `sealtrail-core` so the client shares them.

pub use sealtrail_core::api::*;
