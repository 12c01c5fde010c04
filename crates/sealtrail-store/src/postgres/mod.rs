//! The PostgreSQL store: the same log as the embedded store — gap-free seqs, verbatim
//! canonical records, Merkle nodes at every 8th level, a signed checkpoint per commit —
//! kept in PostgreSQL tables, with events partitioned by month.
//!
//! Durability: the sequencer's connection runs with `synchronous_commit = on`, so a
//! `COMMIT` returns only once PostgreSQL has flushed its WAL; the syncer therefore has
//! nothing left to do. Readers take pooled connections and read committed snapshots.
//!
//! The signing key stays in the data directory (as for the embedded store): the database
//! holds the log, the server holds the key that vouches for it.

mod dump;
mod listen;
mod reader;
mod request_counts;
mod retention;
mod schema;
mod session;
mod verify;
mod writer;

use std::path::Path;

use postgres::{Client, NoTls};
use sealtrail_core::CheckpointSigner;
use sealtrail_core::merkle::{Hash, fold_complete};

pub use dump::{
    PgDump, RestoreStep, TableCopy, copy_file_name, dump_postgres, is_plain_table_name,
    restore_postgres,
};
pub use listen::CommitListener;
pub use reader::PgReader;
pub use request_counts::RequestCounts;
pub use retention::PgLedger;
pub use schema::{SCHEMA_VERSION, check as check_schema, grant_service_role, migrate};
pub use session::PgSession;
pub use verify::verify_postgres;
pub use writer::{COMMIT_CHANNEL, PgBackend, WRITER_LOCK, copy_event_rows};

use crate::{NODE_LEVEL_STRIDE, StoreError, identity};

/// Month partitions created ahead of the current one at every start of the sequencer.
const PARTITIONS_AHEAD_MONTHS: i64 = 2;

/// Opens a connection to `url` (no TLS: run it over a private network or a local socket,
/// or put a TLS-terminating pooler in front).
///
/// Unless the URL says otherwise, connecting gives up after 10 s and TCP keepalives are
/// on, so a database that vanished without closing the connection is noticed.
pub fn connect(url: &str) -> Result<Client, StoreError> {
    let invalid = |e: postgres::Error| {
        StoreError::Invalid(format!(
            "cannot connect to PostgreSQL at {}: {e}",
            redact(url)
        ))
    };
    let mut config: postgres::Config = url.parse().map_err(invalid)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.keepalives(true);
    if config.get_keepalives_idle() > std::time::Duration::from_secs(30) {
        config.keepalives_idle(std::time::Duration::from_secs(30));
    }
    config.connect(NoTls).map_err(|e| {
        StoreError::Invalid(format!(
            "cannot connect to PostgreSQL at {}: {e}",
            redact(url)
        ))
    })
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    if !url.contains("://") {
        // key=value form: hide the value of `password`.
        return url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Opens the log in the database at `url` for the sequencer: checks the schema (see
/// [`migrate`]), records or checks the origin, and loads the signing key from `data_dir`.
pub fn open_log(
    url: &str,
    data_dir: &Path,
    origin: Option<&str>,
) -> Result<(PgBackend, CheckpointSigner), StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        StoreError::io(format!("creating data directory {}", data_dir.display()), e)
    })?;
    let mut client = connect(url)?;
    schema::check(&mut client)?;
    let secret = identity::load_or_create_signing_key(data_dir)?;
    let stored: Option<String> = client
        .query_opt("SELECT value FROM sealtrail_meta WHERE key = 'origin'", &[])?
        .map(|row| row.get(0));
    let origin = match (stored, origin) {
        (Some(stored), Some(asked)) if stored != asked => {
            return Err(StoreError::Invalid(format!(
                "this log was created with origin {stored:?}; it cannot be renamed to {asked:?}"
            )));
        }
        (Some(stored), _) => stored,
        (None, asked) => {
            let origin = asked
                .map(str::to_owned)
                .unwrap_or_else(|| identity::default_origin(&secret));
            client.execute(
                "INSERT INTO sealtrail_meta (key, value) VALUES ('origin', $1)
                 ON CONFLICT (key) DO NOTHING",
                &[&origin],
            )?;
            origin
        }
    };
    let signer = identity::log_signer(data_dir, &origin, &key_rotations(&mut client)?, true)?;
    Ok((PgBackend::new(client, url)?, signer))
}

/// The log's key-rotation statements, oldest first (`sealtrail_meta`).
pub(crate) fn key_rotations(
    client: &mut impl postgres::GenericClient,
) -> Result<Vec<String>, StoreError> {
    let (from, to) = identity::ROTATION_META_RANGE;
    let rows = client
        .query(
            "SELECT key, value FROM sealtrail_meta WHERE key >= $1 AND key < $2",
            &[&from, &to],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    Ok(identity::filed_rotations(rows))
}

/// The verifier of the log at `url`, from its stored origin and the key in `data_dir`.
pub fn log_verifier(
    url: &str,
    data_dir: &Path,
) -> Result<sealtrail_core::CheckpointVerifier, StoreError> {
    let mut client = connect(url)?;
    schema::check(&mut client)?;
    let origin: String = client
        .query_opt("SELECT value FROM sealtrail_meta WHERE key = 'origin'", &[])?
        .map(|row| row.get(0))
        .ok_or_else(|| StoreError::Integrity("the log has no origin in sealtrail_meta".into()))?;
    identity::log_verifier(data_dir, &origin, &key_rotations(&mut client)?)
}

/// Creates the partitions for this month and the next [`PARTITIONS_AHEAD_MONTHS`].
fn create_partitions_ahead(client: &mut Client) -> Result<(), StoreError> {
    client.execute(
        "SELECT sealtrail_ensure_partition(
                    (extract(epoch FROM now() + make_interval(months => m::integer)) * 1000000)::bigint)
         FROM generate_series(0, $1::bigint) AS m",
        &[&PARTITIONS_AHEAD_MONTHS],
    )?;
    Ok(())
}

/// The hash of the complete subtree `(level, index)`, from the stored node at the nearest
/// kept level at or below it: one range read of at most 2^[`NODE_LEVEL_STRIDE`] hashes.
fn subtree_hash(
    client: &mut impl postgres::GenericClient,
    level: u32,
    index: u64,
) -> Result<Hash, StoreError> {
    let base = level - level % NODE_LEVEL_STRIDE;
    let span = 1u64 << (level - base);
    let first = (index << (level - base)) as i64;
    let end = first + span as i64;
    let rows = if base == 0 {
        // Leaf i is the event with seq i + 1. From the id table, which keeps the leaf
        // hashes of events whose month partition retention dropped.
        client.query(
            "SELECT leaf_hash FROM event_ids WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            &[&first, &end],
        )?
    } else {
        client.query(
            "SELECT hash FROM merkle_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
            &[&(base as i32), &first, &end],
        )?
    };
    let hashes: Vec<Hash> = rows
        .iter()
        .map(|row| hash_column(row.get::<_, &[u8]>(0)))
        .collect::<Result<_, _>>()?;
    if hashes.len() as u64 != span {
        return Err(StoreError::Integrity(format!(
            "the stored tree lacks {} of the {span} hashes under subtree (level {level}, index {index}); \
             run `sealtrail verify`",
            span - hashes.len() as u64
        )));
    }
    Ok(fold_complete(&hashes))
}

/// A stored hash, which must be 32 bytes.
fn hash_column(bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::Integrity(format!("a stored hash is {} bytes, not 32", bytes.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://sealtrail:s3cret@db:5432/audit"),
            "postgres://sealtrail:***@db:5432/audit"
        );
        assert_eq!(redact("postgres://db/audit"), "postgres://db/audit");
        assert_eq!(redact("host=/tmp user=me"), "host=/tmp user=me");
        assert_eq!(
            redact("host=db user=me password=s3cret dbname=audit"),
            "host=db user=me password=*** dbname=audit"
        );
    }
}
