//! Helpers the tests and benchmarks share: a throwaway PostgreSQL cluster, started from the
//! server binaries on the machine, for tests that must stop and start their own database.

pub mod pg;

pub use pg::PgCluster;
