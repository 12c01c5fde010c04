//! Listening for commits on a shared PostgreSQL log: every group commit, whichever server
//! made it, sends a notification on [`COMMIT_CHANNEL`], so the other servers' followers
//! wake at once instead of at their next poll.

use std::time::Duration;

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator as _;

use super::{COMMIT_CHANNEL, connect};
use crate::StoreError;

/// A connection LISTENing on the log's commit channel.
pub struct CommitListener {
    client: Client,
}

impl CommitListener {
    /// Connects to `url` and listens.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let mut client = connect(url)?;
        client.batch_execute(&format!("LISTEN {COMMIT_CHANNEL}"))?;
        Ok(Self { client })
    }

    /// Waits up to `timeout` for a commit; true if one (or more: they are drained) came.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let woken = self
            .client
            .notifications()
            .timeout_iter(timeout)
            .next()?
            .is_some();
        if woken {
            while self.client.notifications().iter().next()?.is_some() {}
        }
        if self.client.is_closed() {
            return Err(StoreError::Invalid(
                "the connection to PostgreSQL closed".into(),
            ));
        }
        Ok(woken)
    }
}
