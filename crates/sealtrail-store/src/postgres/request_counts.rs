//! Requests per API key and calendar second, summed over every server on the database
//! (table `key_request_windows`, migration 9): what the server's rate limiter shares.

use super::PgSession;
use crate::StoreError;

/// Seconds of counts kept; older ones are deleted by [`RequestCounts::add`] when asked.
pub const KEEP_SECONDS: i64 = 10;

/// The shared counts.
pub struct RequestCounts {
    session: PgSession,
}

impl RequestCounts {
    /// The counts in the database at `url` (connected on first use).
    pub fn new(url: &str) -> Self {
        Self {
            session: PgSession::new(url),
        }
    }

    /// Adds `(key id, second, requests)` to the counts in one statement and returns each
    /// one's total so far (every server's); with `clean`, counts older than
    /// [`KEEP_SECONDS`] before `now_second` are deleted.
    pub fn add(
        &self,
        counts: &[(String, i64, i64)],
        clean: bool,
        now_second: i64,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let keys: Vec<&str> = counts.iter().map(|c| c.0.as_str()).collect();
        let seconds: Vec<i64> = counts.iter().map(|c| c.1).collect();
        let requests: Vec<i64> = counts.iter().map(|c| c.2).collect();
        self.session.run(|c| {
            let rows = c.query(
                "INSERT INTO key_request_windows (key_id, second, requests)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (key_id, second)
                 DO UPDATE SET requests = key_request_windows.requests + excluded.requests
                 RETURNING key_id, second, requests",
                &[&keys, &seconds, &requests],
            )?;
            if clean {
                c.execute(
                    "DELETE FROM key_request_windows WHERE second < $1",
                    &[&(now_second - KEEP_SECONDS)],
                )?;
            }
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    }
}
