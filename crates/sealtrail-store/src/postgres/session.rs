//! One lazily opened connection for state that is read and written now and then (API
//! keys, sinks' cursors and leases), callable from async code as well as from threads.

use std::sync::Mutex;

use postgres::Client;

use crate::StoreError;

/// Set on every session's connection.
const SESSION_SETTINGS: &str = "SET statement_timeout = '30s'; SET lock_timeout = '5s'";

/// A connection to `url`, opened on first use and opened again when the database dropped
/// it (a restart shows only when the connection is used: the call then runs once more on
/// a new one).
pub struct PgSession {
    url: String,
    // Boxed: the client is large, and the stores holding a session are enums of backends.
    client: Box<Mutex<Option<Client>>>,
}

impl PgSession {
    /// A session on `url`; nothing is connected yet.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            client: Box::new(Mutex::new(None)),
        }
    }

    /// Runs `f` on the connection, one call at a time.
    ///
    /// The blocking client drives a runtime of its own, which cannot be entered from an
    /// async task: there, `f` runs on a thread of its own (a scoped one, so it may borrow).
    pub fn run<T: Send>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, StoreError> + Send + Sync,
    ) -> Result<T, StoreError> {
        let mut client = lock(&self.client);
        let url = &self.url;
        let run = |client: &mut Option<Client>| {
            for attempt in 0..2 {
                if client.as_ref().is_none_or(Client::is_closed) {
                    *client = None;
                    let mut fresh = super::connect(url)?;
                    // Small state, small statements: one that waits longer than this on a
                    // lock or a stalled database fails instead of holding its caller.
                    fresh.batch_execute(SESSION_SETTINGS)?;
                    *client = Some(fresh);
                }
                let connection = client.as_mut().expect("connected just now");
                match f(connection) {
                    Err(StoreError::Postgres(_)) if attempt == 0 && connection.is_closed() => {}
                    result => return result,
                }
            }
            unreachable!("the second attempt returns")
        };
        let client: &mut Option<Client> = &mut client;
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                scope
                    .spawn(move || run(client))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        } else {
            run(client)
        }
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        // A blocking client closes through a runtime of its own, which cannot run on an
        // async worker: let it go on a thread of its own.
        if let Some(client) = lock(&self.client).take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("sealtrail-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
